//! Containers: create, mount, umount, rm, inspect.

use std::path::PathBuf;

use crate::snapshotter::Snapshotter;
use strata_driver_api::{failpoint, LABEL_SIZE};

use crate::error::{Result, StoreError};
use crate::model::{ContainerId, ContainerRecord};
use crate::mounts::{mount_persistent, unmount_persistent, ContainerMountOptions};
use crate::store::keys::{container_snapshot_key, image_top_key, LABEL_CONTAINER};
use crate::Store;

/// What `strata create` takes.
#[derive(Debug, Default)]
pub struct CreateRequest<'a> {
    /// Image reference or id.
    pub image: &'a str,
    /// Container name; generated when absent.
    pub name: Option<&'a str>,
    /// Size limit in bytes.
    pub size: Option<u64>,
    /// The user's labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Creates a container: a writable snapshot on the image's top layer.
pub fn create(store: &Store, req: &CreateRequest<'_>) -> Result<ContainerRecord> {
    if req.size == Some(0) {
        return Err(StoreError::Invalid(
            "--size 0: a size limit must be above 0 bytes".into(),
        ));
    }
    let image = store.resolve_image(req.image)?;
    let meta = store.meta()?;
    let id = ContainerId::generate();
    let name = match req.name {
        Some(n) => validate_name(n)?,
        None => format!("strata_{}", &id.0[..8]),
    };
    if meta.containers()?.iter().any(|c| c.name == name) {
        return Err(StoreError::Conflict(format!("container name {name}")));
    }
    let key = container_snapshot_key(&id);
    let mut labels = store.session_labels();
    labels.insert(LABEL_CONTAINER.to_owned(), id.0.clone());
    if let Some(size) = req.size {
        labels.insert(LABEL_SIZE.to_owned(), size.to_string());
    }
    crate::interrupt::check()?;
    store
        .snapshots()
        .prepare(&key, image_top_key(&image).as_ref(), labels)?;
    failpoint("container.create.prepared");
    if let Err(e) = crate::interrupt::check() {
        store.snapshots().remove(&key)?;
        return Err(StoreError::from(e).undone("its writable layer removed"));
    }
    let record = ContainerRecord {
        id,
        name,
        image: image.id.clone(),
        image_ref: req.image.to_owned(),
        snapshot: key.clone(),
        size_limit: req.size,
        mounted_at: None,
        mounting: None,
        labels: req.labels.clone(),
        created_ns: crate::now_ns(),
    };
    if let Err(e) = meta.add_container(&record) {
        let _ = store.snapshots().remove(&key);
        return Err(e);
    }
    Ok(record)
}

fn validate_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err(StoreError::Invalid(format!(
            "invalid container name {name:?}: use letters, digits and _.- starting with a letter or digit"
        )));
    }
    Ok(name.to_owned())
}

/// Where `strata mount` mounts a container's merged rootfs.
pub fn rootfs_path(store: &Store, id: &ContainerId) -> PathBuf {
    store.layout().container_rootfs(&id.0)
}

/// Mounts the container's merged view and returns its path (idempotent:
/// an existing mount is returned as it is, whatever `options` say). Its
/// record is changed as it is at each step, never written back whole: an
/// `rm` or `rename` by another process meanwhile stands, and a container
/// removed while it was being mounted fails the mount and is unmounted.
pub fn mount(store: &Store, text: &str, options: ContainerMountOptions) -> Result<PathBuf> {
    let record = store.resolve_container(text)?;
    if let Some(path) = &record.mounted_at {
        if strata_driver_api::mount::is_mountpoint(path)? {
            return Ok(path.clone());
        }
    }
    let id = record.id.clone();
    let target = rootfs_path(store, &id);
    let mounts = store.snapshots().mounts(&record.snapshot)?;
    crate::interrupt::check()?;
    // The intent first: a mount this process makes and dies before
    // recording is then known to be its, and undone by the next command.
    let session = store.session().id().to_owned();
    change_container(store, &id, |r| r.mounting = Some(session))?;
    if let Err(e) = mount_persistent(&mounts, &target, options) {
        let _ = change_container(store, &id, |r| r.mounting = None);
        return Err(e);
    }
    failpoint("container.mount.mounted");
    let recorded = crate::interrupt::check()
        .map_err(StoreError::from)
        .and_then(|()| {
            change_container(store, &id, |r| {
                r.mounted_at = Some(target.clone());
                r.mounting = None;
            })
        });
    if let Err(e) = recorded {
        let _ = unmount_persistent(&target);
        let _ = std::fs::remove_dir(&target);
        let _ = change_container(store, &id, |r| {
            r.mounted_at = None;
            r.mounting = None;
        });
        return Err(e.undone(format!("{} unmounted", target.display())));
    }
    Ok(target)
}

/// Applies `change` to container `id`'s record as it is now; a record
/// another process removed meanwhile is [`StoreError::UnknownContainer`].
fn change_container(
    store: &Store,
    id: &ContainerId,
    change: impl FnOnce(&mut ContainerRecord),
) -> Result<ContainerRecord> {
    store
        .meta()?
        .update_container(id, |r| {
            change(r);
            true
        })?
        .ok_or_else(|| StoreError::UnknownContainer(id.0.clone()))
}

/// Unmounts the container's merged view (idempotent).
pub fn umount(store: &Store, text: &str) -> Result<ContainerRecord> {
    let record = store.resolve_container(text)?;
    let target = rootfs_path(store, &record.id);
    unmount_persistent(&target)?;
    failpoint("container.umount.unmounted");
    change_container(store, &record.id, |r| r.mounted_at = None)
}

/// Removes a container and its writable layer. A mounted one is refused
/// unless `force`, which unmounts it first.
pub fn remove(store: &Store, text: &str, force: bool) -> Result<ContainerRecord> {
    let record = store.resolve_container(text)?;
    // The only safe point: once the unmount or the removal has begun,
    // finishing is shorter than undoing.
    crate::interrupt::check()?;
    // A live `strata mount` records the mount only once it is made.
    let being_mounted = record
        .mounting
        .as_deref()
        .is_some_and(|s| store.session().is_alive(s));
    let mounted = record
        .mounted_at
        .clone()
        .or_else(|| being_mounted.then(|| rootfs_path(store, &record.id)));
    if let Some(path) = mounted {
        if !force {
            return Err(StoreError::StillMounted {
                id: record.id.short().to_owned(),
                path,
            });
        }
        umount(store, &record.id.0)?;
    }
    match store.snapshots().remove(&record.snapshot) {
        Ok(()) | Err(strata_driver_api::Error::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    failpoint("container.rm.removed");
    store.meta()?.delete_container(&record.id)?;
    let dir = store.layout().container_dir(&record.id.0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(record)
}

/// Gives the container `text` resolves to the name `name`.
pub fn rename(store: &Store, text: &str, name: &str) -> Result<ContainerRecord> {
    let record = store.resolve_container(text)?;
    let name = validate_name(name)?;
    crate::interrupt::check()?;
    store.meta()?.rename_container(&record.id, &name)
}

/// `docker inspect`-like description, with the driver's mount specs as
/// GraphDriver data.
pub fn inspect(store: &Store, text: &str) -> Result<serde_json::Value> {
    let record = store.resolve_container(text)?;
    let sn = store.snapshots();
    let mounts = sn.mounts(&record.snapshot)?;
    let info = sn.stat(&record.snapshot)?;
    let usage = sn.usage(&record.snapshot).ok();
    let mut data = serde_json::Map::new();
    for (i, m) in mounts.iter().enumerate() {
        let prefix = if mounts.len() > 1 {
            format!("{i}.")
        } else {
            String::new()
        };
        data.insert(format!("{prefix}Type"), m.fstype.clone().into());
        data.insert(format!("{prefix}Source"), m.source.clone().into());
        for opt in &m.options {
            if let Some((k, v)) = opt.split_once('=') {
                let name = match k {
                    "lowerdir" => "LowerDir",
                    // Asked of the driver below.
                    "upperdir" => continue,
                    "workdir" => "WorkDir",
                    other => other,
                };
                data.insert(format!("{prefix}{name}"), v.into());
            }
        }
    }
    if let Some(upper) = store.driver().changes_dir(sn.id_of(&record.snapshot)?) {
        data.insert("UpperDir".into(), upper.display().to_string().into());
    }
    crate::ops::inspect_mounts::add_block_details(&mounts, &mut data);
    data.insert(
        "MergedDir".into(),
        rootfs_path(store, &record.id).display().to_string().into(),
    );
    Ok(serde_json::json!({
        "Id": record.id.0,
        "Name": record.name,
        "Image": record.image.0,
        "ImageRef": record.image_ref,
        "Created": crate::model::rfc3339(record.created_ns / 1_000_000_000),
        "Mounted": record.mounted_at.is_some(),
        "SizeLimit": record.size_limit,
        "Labels": record.labels,
        "SizeRw": usage.map(|u| u.size),
        "Snapshot": { "Key": info.name.0, "Parent": info.parent.map(|p| p.0), "Labels": info.labels },
        "GraphDriver": { "Name": store.config().driver, "Data": data },
        "Mounts": mounts,
    }))
}
