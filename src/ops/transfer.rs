//! Layers in and out of the store: `load`, `save`, `diff`, `commit`,
//! `export`.
//!
//! Every layer tar that enters the store (load, commit) is kept under
//! `<root>/layer-tars/<diff id hex>.tar`, so `save` can write the exact bytes
//! the config's diff ids name; a layer without a kept tar (from `import`)
//! is regenerated from its snapshot and must hash to the same diff id.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use strata_driver_api::{Labels, Mount, SnapshotKey, Snapshotter, SnapshotterExt};

use crate::archive::{changes, changes_overlay, write_layer, write_tree, Change};
use crate::error::{Result, StoreError};
use crate::image::{ImageArchive, ImageToSave, SaveOptions};
use crate::model::{layer_snapshot_key, ContainerId, Digest, ImageRecord, LayerRecord, Reference};
use crate::mounts::TempMount;
use crate::ops::layer::apply_layer_snapshot;
use crate::Store;

/// Where the tar of layer `diff_id` is kept.
pub fn layer_tar_path(store: &Store, diff_id: &Digest) -> PathBuf {
    store
        .root()
        .join("layer-tars")
        .join(format!("{}.tar", diff_id.hex()))
}

/// Deletes kept layer tars that no recorded image uses any more (after
/// `rmi`). Returns how many were deleted.
pub fn prune_layer_tars(store: &Store) -> Result<usize> {
    let dir = store.root().join("layer-tars");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("read directory", &dir, e)),
    };
    let used: HashSet<String> = store
        .meta()?
        .images()?
        .iter()
        .flat_map(|i| i.layers.iter().map(|l| format!("{}.tar", l.diff_id.hex())))
        .collect();
    let mut removed = 0;
    for e in entries {
        let e = e.map_err(|e| StoreError::io("read directory", &dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar") && !used.contains(&name) {
            fs::remove_file(e.path()).map_err(|err| StoreError::io("remove", e.path(), err))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Copies everything read into a file.
struct Tee<R> {
    inner: R,
    out: BufWriter<File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Loads every image of an OCI layout or docker save archive. Layers whose
/// chain id is already stored are reused; on error the snapshots this load
/// created are removed again and no image is recorded.
pub fn load(store: &Store, file: &Path) -> Result<Vec<ImageRecord>> {
    load_with_progress(store, file, &mut |_| {})
}

/// [`load`], reporting each layer as it is applied or found present
/// (`progress` gets a one-line message, for a terminal).
pub fn load_with_progress(
    store: &Store,
    file: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<ImageRecord>> {
    let archive = ImageArchive::open_with_temp(file, &store.temp_dir("load")?)?;
    let mut created: Vec<(SnapshotKey, Digest)> = Vec::new();
    let result = load_images(store, &archive, &mut created, progress);
    if result.is_err() {
        for (key, diff_id) in created.iter().rev() {
            if let Err(e) = store.snapshots().remove(key) {
                tracing::error!(%key, error = %e, "removing a failed load's layer");
            }
            let _ = fs::remove_file(layer_tar_path(store, diff_id));
        }
    }
    result
}

fn load_images(
    store: &Store,
    archive: &ImageArchive,
    created: &mut Vec<(SnapshotKey, Digest)>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<ImageRecord>> {
    let known: Vec<LayerRecord> = store
        .meta()?
        .images()?
        .into_iter()
        .flat_map(|i| i.layers)
        .collect();
    let mut records = Vec::new();
    for img in archive.images() {
        let chains = img.chain_ids();
        let mut layers: Vec<LayerRecord> = Vec::new();
        let n = img.layers.len();
        for (i, (layer, chain)) in img.layers.iter().zip(&chains).enumerate() {
            let short = layer.diff_id.short();
            let key = layer_snapshot_key(chain);
            if store.snapshots().exists(&key)? {
                let size = known
                    .iter()
                    .find(|l| l.chain_id == *chain)
                    .map(|l| l.size)
                    .unwrap_or(0);
                layers.push(LayerRecord {
                    diff_id: layer.diff_id.clone(),
                    chain_id: chain.clone(),
                    size,
                });
                progress(&format!("layer {}/{n} {short}: already present", i + 1));
                continue;
            }
            progress(&format!(
                "layer {}/{n} {short}: applying ({} bytes)",
                i + 1,
                layer.size
            ));
            let record = load_layer(store, archive, layer, layers.last().map(|l| &l.chain_id))?;
            created.push((key, record.diff_id.clone()));
            if record.chain_id != *chain {
                return Err(StoreError::Invalid(format!(
                    "{}: applied layer has chain id {}, expected {chain}",
                    layer.what, record.chain_id
                )));
            }
            layers.push(record);
        }
        let mut tags = Vec::new();
        for t in &img.tags {
            match Reference::parse(t) {
                Ok(r) => tags.push(r),
                Err(e) => {
                    tracing::warn!(tag = %t, error = %e, "skipping a tag strata cannot record")
                }
            }
        }
        let meta = store.meta()?;
        if let Some(existing) = meta.image(&img.id)? {
            for t in existing.tags {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
        }
        let record = ImageRecord {
            id: img.id.clone(),
            config: img.config.clone(),
            layers,
            tags,
            created_ns: crate::now_ns(),
        };
        meta.put_image(&record)?;
        records.push(record);
    }
    Ok(records)
}

fn load_layer(
    store: &Store,
    archive: &ImageArchive,
    layer: &crate::image::ArchiveLayer,
    parent: Option<&Digest>,
) -> Result<LayerRecord> {
    apply_and_keep(store, parent, archive.open_layer(layer)?)
}

/// [`apply_layer_snapshot`] that also keeps the tar it applied (see the
/// module docs), so `save` can reproduce the layer byte for byte. Every
/// path that brings a foreign layer into the store (`load`, `import`)
/// goes through here.
pub fn apply_and_keep(
    store: &Store,
    parent: Option<&Digest>,
    tar: impl Read,
) -> Result<LayerRecord> {
    let tmp = store
        .temp_dir("layer-tars")?
        .join(format!("in-{}.tar", ContainerId::generate()));
    let out = strata_driver_api::private::create_private_file(&tmp)?;
    let mut reader = Tee {
        inner: tar,
        out: BufWriter::new(out),
    };
    let result = apply_layer_snapshot(store, parent, &mut reader).and_then(|record| {
        reader
            .out
            .flush()
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        keep_tar(store, &tmp, &record.diff_id)?;
        Ok(record)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn keep_tar(store: &Store, tmp: &Path, diff_id: &Digest) -> Result<()> {
    let dst = layer_tar_path(store, diff_id);
    if let Some(dir) = dst.parent() {
        crate::perms::private_dir(dir)?;
    }
    fs::rename(tmp, &dst).map_err(|e| StoreError::io("rename", tmp, e))
}

/// Saves images (by reference or id) as one OCI layout archive at `out`,
/// written to a temporary name and renamed when complete.
pub fn save(store: &Store, refs: &[String], out: &Path, gzip: bool) -> Result<()> {
    let mut seen = HashSet::new();
    let mut images = Vec::new();
    for r in refs {
        let image = store.resolve_image(r)?;
        if !seen.insert(image.id.clone()) {
            continue;
        }
        let mut layers = Vec::new();
        let mut parent: Option<&Digest> = None;
        for l in &image.layers {
            layers.push(ensure_layer_tar(store, l, parent)?);
            parent = Some(&l.chain_id);
        }
        images.push(ImageToSave {
            tags: image.tags.iter().map(|t| t.0.clone()).collect(),
            config: image.config.clone(),
            layers,
        });
    }
    let tmp = out.with_extension("strata-partial");
    let file = strata_driver_api::private::create_private_file(&tmp)?;
    let opts = SaveOptions {
        gzip,
        temp_dir: store.temp_dir("save")?,
    };
    let result = crate::image::write_oci_archive(BufWriter::new(file), &images, &opts);
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    fs::rename(&tmp, out).map_err(|e| StoreError::io("rename", &tmp, e))
}

/// The kept tar of `layer`, regenerating it from the snapshots if needed.
fn ensure_layer_tar(
    store: &Store,
    layer: &LayerRecord,
    parent: Option<&Digest>,
) -> Result<PathBuf> {
    let path = layer_tar_path(store, &layer.diff_id);
    if path.exists() {
        return Ok(path);
    }
    let tmp = store
        .temp_dir("layer-tars")?
        .join(format!("regen-{}.tar", layer.diff_id.hex()));
    let diff_id = {
        let upper = View::new(store, Some(&layer_snapshot_key(&layer.chain_id)))?;
        let lower = match parent {
            Some(p) => Some(View::new(store, Some(&layer_snapshot_key(p)))?),
            None => None,
        };
        let ch = changes(lower.as_ref().map(|v| v.path()), upper.path())?;
        write_hashed(upper.path(), &ch, &tmp)?
    };
    if diff_id != layer.diff_id {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Invalid(format!(
            "layer {} has no kept tar and regenerating it gave diff id {diff_id}; cannot save it faithfully",
            layer.diff_id
        )));
    }
    keep_tar(store, &tmp, &diff_id)?;
    Ok(path)
}

/// Writes the layer tar of `ch` from `root` to `dst`, returning its diff id.
fn write_hashed(root: &Path, ch: &[Change], dst: &Path) -> Result<Digest> {
    let file = strata_driver_api::private::create_private_file(dst)?;
    let mut w = HashingWriter {
        inner: BufWriter::new(file),
        hasher: Sha256::new(),
    };
    write_layer(root, ch, &mut w)?;
    w.inner
        .flush()
        .map_err(|e| StoreError::io("write", dst, e))?;
    Ok(Digest::from_hasher(w.hasher))
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A temporary read-only view of a committed snapshot, mounted; removed on
/// drop. `None` gives an empty directory.
struct View<'a> {
    store: &'a Store,
    key: SnapshotKey,
    mount: Option<TempMount>,
    mounts: Vec<Mount>,
}

impl<'a> View<'a> {
    fn new(store: &'a Store, parent: Option<&SnapshotKey>) -> Result<Self> {
        let key = SnapshotKey(format!("view-{}", ContainerId::generate()));
        let mounts = store.snapshots().view(&key, parent, Labels::new())?;
        let mut view = View {
            store,
            key,
            mount: None,
            mounts,
        };
        let dir = store.temp_dir("mounts")?.join(view.key.as_str());
        view.mount = Some(TempMount::new(&view.mounts, dir)?);
        Ok(view)
    }

    fn path(&self) -> &Path {
        self.mount
            .as_ref()
            .map(|m| m.path())
            .unwrap_or(Path::new("/nonexistent"))
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        self.mount.take();
        if let Err(e) = self.store.snapshots().remove(&self.key) {
            tracing::error!(key = %self.key, error = %e, "removing a temporary view");
        }
    }
}

/// The upper directory of an overlay mount spec, if that is what it is.
pub(crate) fn overlay_upper(mounts: &[Mount]) -> Option<PathBuf> {
    let m = mounts.iter().find(|m| m.fstype == "overlay")?;
    m.options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(PathBuf::from)
}

/// A container's root mounted for reading (its own mount if mounted).
struct ContainerRoot {
    _mount: Option<TempMount>,
    path: PathBuf,
    mounts: Vec<Mount>,
}

fn container_root(
    store: &Store,
    text: &str,
) -> Result<(crate::model::ContainerRecord, ContainerRoot)> {
    let record = store.resolve_container(text)?;
    let mounts = store.snapshots().mounts(&record.snapshot)?;
    if let Some(p) = &record.mounted_at {
        if strata_driver_api::mount::is_mountpoint(p)? {
            let root = ContainerRoot {
                _mount: None,
                path: p.clone(),
                mounts,
            };
            return Ok((record, root));
        }
    }
    let dir = store
        .temp_dir("mounts")?
        .join(format!("ro-{}", ContainerId::generate()));
    let m = TempMount::new(&mounts, dir)?;
    let path = m.path().to_owned();
    Ok((
        record,
        ContainerRoot {
            _mount: Some(m),
            path,
            mounts,
        },
    ))
}

/// What a container changed against its image, as `docker diff` lists it.
/// overlay2 containers are read from their upper directory; others are
/// walked against a view of the image.
pub fn diff(store: &Store, text: &str) -> Result<Vec<Change>> {
    let (record, root) = container_root(store, text)?;
    let image = store
        .meta()?
        .image(&record.image)?
        .ok_or_else(|| StoreError::UnknownImage(record.image.0.clone()))?;
    let lower = match image.top_snapshot() {
        Some(top) => Some(View::new(store, Some(&top))?),
        None => None,
    };
    let lower_path = lower.as_ref().map(|v| v.path());
    match overlay_upper(&root.mounts) {
        Some(upper) => Ok(changes_overlay(lower_path, &upper)?),
        None => Ok(changes(lower_path, &root.path)?),
    }
}

/// Commits a container's changes as a new image `reference` (the container
/// stays as it is). Prints nothing; returns the new image.
pub fn commit(store: &Store, text: &str, reference: &Reference) -> Result<ImageRecord> {
    let ch = diff(store, text)?;
    let (record, root) = container_root(store, text)?;
    let image = store
        .meta()?
        .image(&record.image)?
        .ok_or_else(|| StoreError::UnknownImage(record.image.0.clone()))?;
    let tmp = store
        .temp_dir("layer-tars")?
        .join(format!("commit-{}.tar", ContainerId::generate()));
    let diff_id = write_hashed(&root.path, &ch, &tmp)?;
    drop(root);
    let parent = image.layers.last().map(|l| &l.chain_id);
    let tar = File::open(&tmp).map_err(|e| StoreError::io("open", &tmp, e))?;
    let layer = match apply_layer_snapshot(store, parent, io::BufReader::new(tar)) {
        Ok(l) => l,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if layer.diff_id != diff_id {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Invalid(format!(
            "commit: layer hashed to {diff_id} but applied as {}",
            layer.diff_id
        )));
    }
    keep_tar(store, &tmp, &diff_id)?;
    strata_driver_api::failpoint("commit.layer_done");
    let config = committed_config(
        &image.config,
        &diff_id,
        &format!("strata commit {}", record.name),
    )?;
    let mut layers = image.layers.clone();
    layers.push(layer);
    let new = ImageRecord {
        id: Digest::of(&config),
        config,
        layers,
        tags: vec![reference.clone()],
        created_ns: crate::now_ns(),
    };
    let meta = store.meta()?;
    let mut stored = meta.image(&new.id)?.unwrap_or_else(|| new.clone());
    if !stored.tags.contains(reference) {
        stored.tags.push(reference.clone());
    }
    meta.put_image(&stored)?;
    Ok(stored)
}

/// The parent's config with one more diff id and history entry.
fn committed_config(parent: &[u8], diff_id: &Digest, created_by: &str) -> Result<Vec<u8>> {
    let mut c: serde_json::Value = serde_json::from_slice(parent)
        .map_err(|e| StoreError::Invalid(format!("image config: {e}")))?;
    let created = crate::ops::import::rfc3339(crate::now_ns() / 1_000_000_000);
    c["created"] = created.clone().into();
    let diff_ids = c["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut diff_ids = diff_ids;
    diff_ids.push(diff_id.0.clone().into());
    c["rootfs"] = serde_json::json!({ "type": "layers", "diff_ids": diff_ids });
    let mut history = c["history"].as_array().cloned().unwrap_or_default();
    history.push(serde_json::json!({ "created": created, "created_by": created_by }));
    c["history"] = history.into();
    serde_json::to_vec(&c).map_err(|e| StoreError::Invalid(format!("image config: {e}")))
}

/// Writes a container's merged root as one flat tar at `out`.
pub fn export(store: &Store, text: &str, out: &Path) -> Result<()> {
    let (_record, root) = container_root(store, text)?;
    let tmp = out.with_extension("strata-partial");
    let file = strata_driver_api::private::create_private_file(&tmp)?;
    let mut w = BufWriter::new(file);
    let result = write_tree(&root.path, &mut w)
        .map_err(StoreError::from)
        .and_then(|()| w.flush().map_err(|e| StoreError::io("write", &tmp, e)));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, out).map_err(|e| StoreError::io("rename", &tmp, e))
}
