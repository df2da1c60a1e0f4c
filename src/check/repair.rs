//! Repairing one problem. Each repair is idempotent, so a check that dies
//! half-way is simply run again.

use std::path::Path;

use strata_driver_api::Error;

use super::Problem;
use crate::error::{Result, StoreError};
use crate::mounts::unmount_persistent;
use crate::Store;

/// Repairs `problem`; returns what was done.
pub fn repair(store: &Store, problem: &Problem) -> Result<String> {
    let sn = store.snapshots();
    Ok(match problem {
        Problem::Incomplete(item) => {
            sn.repair()?;
            match item.state {
                crate::snapshotter::State::Committing => {
                    format!("finished committing {}", item.key)
                }
                crate::snapshotter::State::Removing => format!("finished removing {}", item.key),
                _ => format!("rolled back the creation of {}", item.key),
            }
        }
        Problem::OrphanStorage(id) => {
            if sn.remove_orphan(*id)? {
                format!("removed storage {id}")
            } else {
                format!("storage {id} is in use again; left alone")
            }
        }
        Problem::UnusedLayer(key) => {
            let chain = crate::store::keys::layer_chain(key)
                .ok_or_else(|| StoreError::Invalid(format!("{key} is not a layer")))?;
            store.layers().remove(&chain)?;
            format!("pruned layer {key}")
        }
        Problem::Dangling { key, id, .. } => match sn.remove_if_id(key, *id) {
            Ok(()) | Err(Error::NotFound(_)) => format!("removed snapshot {key}"),
            Err(Error::FailedPrecondition(why)) => format!("{why}; left alone"),
            Err(e) => return Err(e.into()),
        },
        Problem::DeadSnapshot { key, .. } => {
            // Checked again in the transaction that starts the removal: a
            // `create` whose process ended since the scan may have recorded
            // its container, which owns the snapshot now.
            let unclaimed =
                |t: &crate::db::Txn<'_>| match crate::store::container_with_snapshot_in(t, key)? {
                    Some(c) => Err(Error::FailedPrecondition(format!(
                        "snapshot {key} is container {} now",
                        c.short()
                    ))),
                    None => Ok(()),
                };
            match sn.remove_unless(key, unclaimed) {
                Ok(()) | Err(Error::NotFound(_)) => format!("removed snapshot {key}"),
                Err(Error::FailedPrecondition(why)) => format!("{why}; left alone"),
                Err(e) => return Err(e.into()),
            }
        }
        Problem::ContainerWithoutSnapshot(c) => {
            // Read again: a `create` that wrote both records since the
            // scan read the snapshots (its snapshot record comes first,
            // so one missing now stays missing).
            let Some(c) = store.meta()?.container(&c.id)? else {
                return Ok(format!("container {} is gone already", c.id.short()));
            };
            if has_snapshot(store, &c.snapshot)? {
                return Ok(format!(
                    "container {} has its snapshot; left alone",
                    c.id.short()
                ));
            }
            if let Some(at) = &c.mounted_at {
                unmount_persistent(at)?;
            }
            store.meta()?.delete_container(&c.id)?;
            let dir = store.layout().container_dir(&c.id.0);
            remove_tree_unless_mounted(&dir)?;
            format!("removed the record of container {}", c.id.short())
        }
        Problem::UnrecordedMount(path) => {
            if claimed_mount(store, path)? {
                return Ok(format!(
                    "{} is a container's mount now; left alone",
                    path.display()
                ));
            }
            unmount_persistent(path)?;
            format!("unmounted {}", path.display())
        }
        Problem::StaleMountRecord(c) => {
            // Only the stale record, as it is now: a `mount` since the
            // scan recorded a live mount there.
            let stored = store.meta()?.update_container(&c.id, |record| {
                let live = record.mounted_at != c.mounted_at
                    || record
                        .mounted_at
                        .as_deref()
                        .is_some_and(|p| mounted(p).unwrap_or(true));
                if !live {
                    record.mounted_at = None;
                }
                !live
            })?;
            if stored.is_some_and(|r| r.mounted_at.is_some()) {
                format!("container {} is mounted now; left alone", c.id.short())
            } else {
                format!("recorded container {} as not mounted", c.id.short())
            }
        }
        Problem::LeftoverTemp(path) => {
            if crate::store::remove_scratch_dir(path) {
                format!("removed {}", path.display())
            } else {
                return Err(StoreError::Invalid(format!(
                    "{} is still mounted and could not be unmounted",
                    path.display()
                )));
            }
        }
        Problem::OrphanManifest(path) | Problem::OrphanLayerTar(path) => {
            if !still_orphan(store, problem, path)? {
                return Ok(format!("{} is in use now; left alone", path.display()));
            }
            std::fs::remove_file(path)
                .or_else(ignore_missing)
                .map_err(|e| StoreError::io("remove", path, e))?;
            format!("removed {}", path.display())
        }
        Problem::BackingAttachedTwice { file, .. } => {
            let detached = strata_driver_api::mount::detach_extra_loops(file)?;
            format!(
                "detached {} (unused)",
                detached
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Problem::BrokenImage { .. }
        | Problem::MissingManifest(_)
        | Problem::CorruptFile { .. }
        | Problem::PendingReclaim { .. } => {
            return Err(StoreError::Invalid("not repairable".into()))
        }
    })
}

/// Whether snapshot `key` has a record now (being created counts, being
/// removed does not), as the scan counts a container's snapshot.
fn has_snapshot(store: &Store, key: &strata_driver_api::SnapshotKey) -> Result<bool> {
    use crate::snapshotter::State;
    Ok(store.snapshots().records()?.iter().any(|(k, r)| {
        k == key && matches!(r.state, State::Ready | State::Committing | State::Creating)
    }))
}

/// Whether a container record claims mount point `path` now: recorded as
/// mounted there, or being mounted there by a live process.
fn claimed_mount(store: &Store, path: &Path) -> Result<bool> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    Ok(store.meta()?.containers()?.iter().any(|c| {
        c.mounted_at.as_deref().map(canonical).as_deref() == Some(path)
            || (c
                .mounting
                .as_deref()
                .is_some_and(|s| store.session().is_alive(s))
                && canonical(&store.layout().container_rootfs(&c.id.0)) == path)
    }))
}

/// Whether the kept tar or manifest `path` is still an orphan by the
/// records as they are now: a `load` or `import` whose process ended since
/// the scan (its session mark no longer counts) recorded the image that
/// names the tar, or committed the layer the manifest describes, first.
fn still_orphan(store: &Store, problem: &Problem, path: &Path) -> Result<bool> {
    let layers = store.layers();
    if matches!(problem, Problem::OrphanLayerTar(_)) {
        let images = store.meta()?.images()?;
        return Ok(layers.unused_tars(&images)?.iter().any(|p| p == path));
    }
    let records = store.snapshots().records()?;
    let committed = records
        .iter()
        .filter(|(_, r)| r.kind == strata_driver_api::Kind::Committed)
        .map(|(k, _)| k)
        .collect();
    Ok(layers
        .orphan_manifests(&committed)?
        .iter()
        .any(|p| p == path))
}

/// Whether `path` is a mount point.
fn mounted(path: &Path) -> Result<bool> {
    Ok(strata_driver_api::mount::is_mountpoint(path)?)
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Removes `dir` with everything in it, refusing if anything below it is
/// still mounted (removing through a mount would delete real data).
fn remove_tree_unless_mounted(dir: &Path) -> Result<()> {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let busy = strata_driver_api::mount::mount_points()?
        .into_iter()
        .any(|p| p.starts_with(&canonical));
    if busy {
        return Err(StoreError::Invalid(format!(
            "{} still has mounts below it; not removing",
            dir.display()
        )));
    }
    if !dir.is_dir() {
        return std::fs::remove_file(dir)
            .or_else(ignore_missing)
            .map_err(|e| StoreError::io("remove", dir, e));
    }
    strata_driver_api::tree::remove_tree(dir)
        .or_else(ignore_missing)
        .map_err(|e| StoreError::io("remove", dir, e))
}
