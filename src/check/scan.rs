//! Finding problems: the metadata store against the driver's storage, the
//! mount table and the files under the root.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::snapshotter::{Incomplete, Record, State};
use strata_driver_api::{Kind, SnapshotId, SnapshotKey};

use super::Finding;
use crate::error::Result;
use crate::model::{ContainerRecord, ImageRecord};
use crate::store::keys::{
    layer_chain, layer_snapshot_key, LABEL_CHECK, LABEL_CONTAINER, LABEL_EXTRACT, LABEL_SESSION,
};
use crate::Store;

/// One inconsistency.
#[derive(Debug, Clone)]
pub enum Problem {
    /// A snapshot operation died between its intent record and its end.
    Incomplete(Incomplete),
    /// Driver storage no snapshot record refers to.
    OrphanStorage(SnapshotId),
    /// A snapshot record whose storage is gone.
    Dangling {
        /// Snapshot key.
        key: SnapshotKey,
        /// Its storage id.
        id: SnapshotId,
        /// Whether an image's layer chain names it (then it is not removed).
        image_layer: bool,
    },
    /// A container whose writable snapshot is missing.
    ContainerWithoutSnapshot(ContainerRecord),
    /// A Strata snapshot whose owner is gone: a container snapshot with no
    /// container, an import's or a check's scratch snapshot.
    DeadSnapshot {
        /// Snapshot key.
        key: SnapshotKey,
        /// Why it is dead.
        why: String,
    },
    /// An image whose layer snapshots are missing.
    BrokenImage {
        /// The image.
        image: ImageRecord,
        /// Keys of missing layers.
        missing: Vec<SnapshotKey>,
    },
    /// A committed layer no image references (a note: never removed).
    UnusedLayer(SnapshotKey),
    /// A mount under the root that no container record claims.
    UnrecordedMount(PathBuf),
    /// A container recorded as mounted that is not.
    StaleMountRecord(ContainerRecord),
    /// A scratch directory or mount left under `<root>/tmp`.
    LeftoverTemp(PathBuf),
    /// A kept layer tar no image needs.
    OrphanLayerTar(PathBuf),
    /// A manifest of a layer that does not exist, or a half-written one.
    OrphanManifest(PathBuf),
    /// A committed layer without manifest: its data cannot be verified (a note).
    MissingManifest(SnapshotKey),
    /// A backing file attached to more than one loop device: a second live
    /// instance of its filesystem corrupts it.
    BackingAttachedTwice {
        /// The backing file.
        file: PathBuf,
        /// Its loop devices.
        devices: Vec<PathBuf>,
    },
    /// Space of removed snapshots the driver still reclaims in the
    /// background (btrfs: qgroups awaiting its cleaner): a note, finished by
    /// `--repair`.
    PendingReclaim {
        /// The driver.
        driver: &'static str,
        /// What is pending, e.g. `qgroup 0/261`.
        items: Vec<String>,
    },
    /// A file of a committed layer whose content no longer matches.
    CorruptFile {
        /// The layer.
        layer: SnapshotKey,
        /// How it differs.
        mismatch: crate::store::layers::Mismatch,
    },
}

impl Problem {
    /// The report line.
    pub fn finding(&self) -> Finding {
        let (kind, subject, detail, damage) = self.describe();
        Finding {
            kind,
            subject,
            detail,
            damage,
            items: match self {
                Self::PendingReclaim { items, .. } => items.clone(),
                _ => Vec::new(),
            },
            repaired: None,
            repair_error: None,
        }
    }

    fn describe(&self) -> (&'static str, String, String, bool) {
        match self {
            Self::Incomplete(i) => (
                "incomplete_operation",
                i.key.to_string(),
                format!(
                    "snapshot {} (storage {}) was left {:?}",
                    i.key, i.id, i.state
                ),
                true,
            ),
            Self::OrphanStorage(id) => (
                "orphan_storage",
                id.to_string(),
                format!("driver storage {id} has no snapshot record"),
                true,
            ),
            Self::Dangling {
                key,
                id,
                image_layer,
            } => (
                "dangling_record",
                key.to_string(),
                format!(
                    "snapshot {key} has no storage (id {id}){}",
                    if *image_layer {
                        "; an image needs it, so it is kept"
                    } else {
                        ""
                    }
                ),
                true,
            ),
            Self::ContainerWithoutSnapshot(c) => (
                "container_without_snapshot",
                c.id.0.clone(),
                format!(
                    "container {} ({}) has no snapshot {}",
                    c.id.short(),
                    c.name,
                    c.snapshot
                ),
                true,
            ),
            Self::DeadSnapshot { key, why } => {
                ("dead_snapshot", key.to_string(), why.clone(), true)
            }
            Self::BrokenImage { image, missing } => (
                "broken_image",
                image.id.0.clone(),
                format!(
                    "image {} ({}) lacks layer(s) {}; remove it and load it again",
                    image.id.short(),
                    image
                        .tags
                        .iter()
                        .map(|t| t.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    missing
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                true,
            ),
            Self::UnusedLayer(key) => (
                "unused_layer",
                key.to_string(),
                format!("layer {key} is used by no image (kept)"),
                false,
            ),
            Self::UnrecordedMount(p) => (
                "unrecorded_mount",
                p.display().to_string(),
                "mounted, but no container record says so".into(),
                true,
            ),
            Self::StaleMountRecord(c) => (
                "stale_mount_record",
                c.id.0.clone(),
                format!(
                    "container {} is recorded as mounted at {} but is not",
                    c.id.short(),
                    c.mounted_at.as_deref().unwrap_or(Path::new("?")).display()
                ),
                true,
            ),
            Self::LeftoverTemp(p) => (
                "leftover_temp",
                p.display().to_string(),
                "scratch mount or directory of a dead operation".into(),
                true,
            ),
            Self::OrphanLayerTar(p) => (
                "orphan_layer_tar",
                p.display().to_string(),
                "kept tar of a layer no image has".into(),
                true,
            ),
            Self::OrphanManifest(p) => (
                "orphan_manifest",
                p.display().to_string(),
                "manifest of a layer that does not exist".into(),
                true,
            ),
            Self::MissingManifest(key) => (
                "missing_manifest",
                key.to_string(),
                format!("layer {key} has no manifest; its data cannot be verified"),
                false,
            ),
            Self::BackingAttachedTwice { file, devices } => (
                "backing_attached_twice",
                file.display().to_string(),
                format!(
                    "attached to {} loop devices ({}); mounting two of them corrupts the filesystem",
                    devices.len(),
                    devices
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                true,
            ),
            Self::PendingReclaim { driver, items } => (
                "pending_reclaim",
                (*driver).to_owned(),
                format!(
                    "{} item(s) of removed snapshots still being reclaimed in the background",
                    items.len()
                ),
                false,
            ),
            Self::CorruptFile { layer, mismatch } => (
                "corrupt_file",
                layer.to_string(),
                mismatch.to_string(),
                true,
            ),
        }
    }

    /// Whether `--repair` can do something about it; unused layers only
    /// when pruning was asked for. Pending reclaim is finished once, after
    /// the other repairs (they can add to it), not in their rounds.
    pub fn repairable(&self, prune: bool) -> bool {
        match self {
            Self::Dangling { image_layer, .. } => !image_layer,
            Self::UnusedLayer(_) => prune,
            Self::PendingReclaim { .. } => false,
            Self::BrokenImage { .. } | Self::MissingManifest(_) | Self::CorruptFile { .. } => false,
            _ => true,
        }
    }

    /// Repairs run in this order: mounts go before the storage under them,
    /// half-done operations before what depends on them.
    pub fn repair_order(&self) -> u8 {
        match self {
            Self::LeftoverTemp(_) | Self::UnrecordedMount(_) => 0,
            Self::StaleMountRecord(_) => 1,
            Self::Incomplete(_) => 2,
            Self::DeadSnapshot { .. } => 3,
            Self::ContainerWithoutSnapshot(_) => 4,
            Self::Dangling { .. } => 5,
            Self::OrphanStorage(_) => 6,
            _ => 7,
        }
    }
}

/// Everything the scan looks at, read once.
struct State0 {
    records: Vec<(SnapshotKey, Record)>,
    stored: HashSet<SnapshotId>,
    images: Vec<ImageRecord>,
    containers: Vec<ContainerRecord>,
}

/// Finds every problem (without `--data` checks).
pub fn scan(store: &Store) -> Result<Vec<Problem>> {
    let sn = store.snapshots();
    let meta = store.meta()?;
    let s = State0 {
        records: sn.records()?,
        stored: store.driver().stored_ids()?.into_iter().collect(),
        images: meta.images()?,
        containers: meta.containers()?,
    };
    let mut out: Vec<Problem> = sn
        .incomplete()?
        .into_iter()
        .map(Problem::Incomplete)
        .collect();
    out.extend(sn.orphans()?.into_iter().map(Problem::OrphanStorage));
    snapshots(store, &s, &mut out);
    images(&s, &mut out);
    containers(&s, &mut out);
    mounts(store, &s, &mut out)?;
    temp_dirs(store, &mut out)?;
    layer_tars(store, &s, &mut out)?;
    manifests(store, &s, &mut out)?;
    backing_files(store, &mut out);
    pending_reclaim(store, &mut out)?;
    Ok(out)
}

/// What the driver still reclaims in the background after removals.
fn pending_reclaim(store: &Store, out: &mut Vec<Problem>) -> Result<()> {
    let items = store.driver().pending_reclaim()?;
    if !items.is_empty() {
        out.push(Problem::PendingReclaim {
            driver: store.driver().name(),
            items,
        });
    }
    Ok(())
}

fn ready(s: &State0) -> impl Iterator<Item = &(SnapshotKey, Record)> {
    s.records.iter().filter(|(_, r)| r.state == State::Ready)
}

fn image_layers(s: &State0) -> HashSet<SnapshotKey> {
    s.images
        .iter()
        .flat_map(|i| i.layers.iter().map(|l| layer_snapshot_key(&l.chain_id)))
        .collect()
}

/// Dangling records, dead scratch/container snapshots, unused layers.
fn snapshots(store: &Store, s: &State0, out: &mut Vec<Problem>) {
    let needed = image_layers(s);
    let parents: HashSet<&SnapshotKey> = s
        .records
        .iter()
        .filter_map(|(_, r)| r.parent.as_ref())
        .collect();
    let containers: HashMap<&str, &ContainerRecord> =
        s.containers.iter().map(|c| (c.id.0.as_str(), c)).collect();
    for (key, r) in ready(s) {
        if !s.stored.contains(&r.id) {
            out.push(Problem::Dangling {
                key: key.clone(),
                id: r.id,
                image_layer: needed.contains(key),
            });
            continue;
        }
        if let Some(why) = dead_reason(store, key, r, &containers) {
            out.push(Problem::DeadSnapshot {
                key: key.clone(),
                why,
            });
        } else if r.kind == Kind::Committed
            && layer_chain(key).is_some()
            && !needed.contains(key)
            && !parents.contains(key)
            && !made_by_live_session(store, r)
        {
            out.push(Problem::UnusedLayer(key.clone()));
        }
    }
}

/// Whether a live process made `r` (its session label): a layer a `load`
/// or `import` committed is in no image until that process records it.
fn made_by_live_session(store: &Store, r: &Record) -> bool {
    r.labels
        .get(LABEL_SESSION)
        .is_some_and(|s| store.session().is_alive(s))
}

/// Why an uncommitted Strata snapshot is dead, if it is. Snapshots of a
/// live process (its session label) are in use; snapshots a runtime made
/// through `strata serve` carry none of Strata's labels and are never dead.
fn dead_reason(
    store: &Store,
    key: &SnapshotKey,
    r: &Record,
    containers: &HashMap<&str, &ContainerRecord>,
) -> Option<String> {
    if r.kind == Kind::Committed {
        return None;
    }
    let session = r.labels.get(LABEL_SESSION);
    if session.is_some_and(|s| store.session().is_alive(s)) {
        return None;
    }
    if let Some(owner) = r.labels.get(LABEL_CONTAINER) {
        let owned = containers
            .get(owner.as_str())
            .is_some_and(|c| &c.snapshot == key);
        return (!owned)
            .then(|| format!("snapshot {key} belongs to container {owner}, which does not exist"));
    }
    if r.labels.contains_key(LABEL_EXTRACT) {
        return Some(format!(
            "snapshot {key} is the scratch layer of an import that died"
        ));
    }
    if r.labels.contains_key(LABEL_CHECK) {
        return Some(format!(
            "snapshot {key} is the scratch view of a data check that died"
        ));
    }
    if r.kind == Kind::View && session.is_some() && r.labels.len() == 1 {
        return Some(format!(
            "snapshot {key} is the scratch view of a diff, commit or save that died"
        ));
    }
    None
}

/// Images whose layer snapshots are missing.
fn images(s: &State0, out: &mut Vec<Problem>) {
    let good: HashSet<&SnapshotKey> = ready(s)
        .filter(|(_, r)| r.kind == Kind::Committed && s.stored.contains(&r.id))
        .map(|(k, _)| k)
        .collect();
    for image in &s.images {
        let missing: Vec<SnapshotKey> = image
            .layers
            .iter()
            .map(|l| layer_snapshot_key(&l.chain_id))
            .filter(|k| !good.contains(k))
            .collect();
        if !missing.is_empty() {
            out.push(Problem::BrokenImage {
                image: image.clone(),
                missing,
            });
        }
    }
}

/// Containers whose snapshot is missing.
fn containers(s: &State0, out: &mut Vec<Problem>) {
    let keys: HashSet<&SnapshotKey> = s
        .records
        .iter()
        .filter(|(_, r)| matches!(r.state, State::Ready | State::Committing | State::Creating))
        .map(|(k, _)| k)
        .collect();
    for c in &s.containers {
        if !keys.contains(&c.snapshot) {
            out.push(Problem::ContainerWithoutSnapshot(c.clone()));
        }
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Mounts under `<root>/containers` and `<root>/tmp` against the records.
/// The driver's own backing mounts (under its home) are its business.
fn mounts(store: &Store, s: &State0, out: &mut Vec<Problem>) -> Result<()> {
    let root = canonical(store.root());
    let points: BTreeSet<PathBuf> = strata_driver_api::mount::mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(&root))
        .collect();
    // A container a live process is mounting right now is not damage.
    let being_mounted = s.containers.iter().filter(|c| {
        c.mounting
            .as_deref()
            .is_some_and(|owner| store.session().is_alive(owner))
    });
    let recorded: HashSet<PathBuf> = s
        .containers
        .iter()
        .filter_map(|c| c.mounted_at.clone())
        .chain(being_mounted.map(|c| store.layout().container_rootfs(&c.id.0)))
        .map(|p| canonical(&p))
        .collect();
    let layout = crate::store::Layout::new(&root);
    for p in &points {
        if p.starts_with(layout.scratch_root()) {
            if !in_live_scratch(store, &root, p) {
                out.push(Problem::LeftoverTemp(p.clone()));
            }
        } else if p.starts_with(layout.containers()) && !recorded.contains(p) {
            out.push(Problem::UnrecordedMount(p.clone()));
        }
    }
    for c in &s.containers {
        if let Some(at) = &c.mounted_at {
            if !points.contains(&canonical(at)) {
                out.push(Problem::StaleMountRecord(c.clone()));
            }
        }
    }
    Ok(())
}

/// Whether `p` lies in the scratch directory of a live process.
fn in_live_scratch(store: &Store, root: &Path, p: &Path) -> bool {
    p.strip_prefix(crate::store::Layout::new(root).scratch_root())
        .ok()
        .and_then(|rest| rest.components().next())
        .is_some_and(|session| {
            store
                .session()
                .is_alive(&session.as_os_str().to_string_lossy())
        })
}

/// Scratch directories `<root>/tmp/<session>/` of processes that died
/// (mounts among them are reported by [`mounts`]).
fn temp_dirs(store: &Store, out: &mut Vec<Problem>) -> Result<()> {
    let tmp = canonical(&store.layout().scratch_root());
    let Ok(sessions) = std::fs::read_dir(&tmp) else {
        return Ok(());
    };
    for entry in sessions.flatten() {
        if !in_live_scratch(store, &canonical(store.root()), &entry.path()) {
            out.push(Problem::LeftoverTemp(entry.path()));
        }
    }
    Ok(())
}

/// Kept layer tars of layers no image has any more.
fn layer_tars(store: &Store, s: &State0, out: &mut Vec<Problem>) -> Result<()> {
    let unused = store.layers().unused_tars(&s.images)?;
    out.extend(unused.into_iter().map(Problem::OrphanLayerTar));
    Ok(())
}

/// Manifests of layers that do not exist, and half-written manifests.
fn manifests(store: &Store, s: &State0, out: &mut Vec<Problem>) -> Result<()> {
    let committed: HashSet<&SnapshotKey> = s
        .records
        .iter()
        .filter(|(_, r)| r.kind == Kind::Committed)
        .map(|(k, _)| k)
        .collect();
    let orphans = store.layers().orphan_manifests(&committed)?;
    out.extend(orphans.into_iter().map(Problem::OrphanManifest));
    Ok(())
}

/// Backing files (per the driver) attached to more than one loop device.
fn backing_files(store: &Store, out: &mut Vec<Problem>) {
    for b in store.driver().backing_files() {
        let devices = strata_driver_api::mount::loops_backed_by(&b.file);
        if devices.len() > 1 {
            out.push(Problem::BackingAttachedTwice {
                file: b.file,
                devices,
            });
        }
    }
}
