//! Layers in and out of the store: `load`, `save`, `diff`, `commit`,
//! `export`. Kept layer tars are [`crate::ops::kept`]'s; files written
//! outside the store, [`crate::ops::output`]'s.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use strata_driver_api::{Mount, SnapshotKey, Snapshotter, SnapshotterExt};

use crate::archive::{
    changes, changes_overlay, escape_name, write_layer, write_tree, ApplyLimits, Change,
};
use crate::error::{Result, StoreError};
use crate::image::{ImageArchive, ImageToSave, SaveOptions};
use crate::limits::Limits;
use crate::model::{ContainerId, Digest, ImageRecord, LayerRecord, Reference};
use crate::mounts::TempMount;
use crate::ops::kept::{apply_and_keep, keep_tar, layer_tar_path};
use crate::ops::layer::apply_layer_snapshot;
use crate::ops::output::PartialOutput;
use crate::store::keys::{image_top_key, layer_snapshot_key, scratch_view_key};
use crate::Store;

/// Loads every image of an OCI layout or docker save archive. Layers whose
/// chain id is already stored are reused. A refused load leaves nothing:
/// see [`load_with_progress`].
pub fn load(store: &Store, file: &Path) -> Result<Vec<ImageRecord>> {
    load_with_progress(store, file, &mut |_| {})
}

/// What a load made, in order, so that a failure can undo all of it.
#[derive(Default)]
struct Made {
    /// Snapshots committed by this load, with their chain ids (whose CRC
    /// manifests were written with them).
    snapshots: Vec<(SnapshotKey, Digest)>,
    /// Kept layer tars that did not exist before this load.
    tars: Vec<PathBuf>,
}

impl Made {
    /// The one rollback path of a failed load (no image was recorded: they
    /// are recorded together, last): snapshots newest first with their
    /// manifests, then kept tars. Returns how many layers it removed.
    fn roll_back(self, store: &Store) -> usize {
        let mut removed = 0;
        for (key, chain) in self.snapshots.iter().rev() {
            if let Err(e) = store.snapshots().remove(key) {
                tracing::error!(%key, error = %e, "removing a failed load's layer");
                continue;
            }
            removed += 1;
            if let Err(e) = crate::check::manifest::remove(store.root(), chain) {
                tracing::error!(%key, error = %e, "removing a failed load's layer manifest");
            }
        }
        for tar in &self.tars {
            let _ = fs::remove_file(tar);
        }
        removed
    }
}

/// [`load`], reporting each layer as it is applied or found present
/// (`progress` gets a one-line message, for a terminal).
///
/// Everything that can be checked before writing is checked first (every
/// image's documents, layer count and blobs' presence; see
/// [`crate::limits`]); then all layers of all images are applied, each
/// within the layer and image size limits; only then are the images
/// recorded. On any error everything this load made (layers, their
/// manifests and kept tars, image records) is removed again.
pub fn load_with_progress(
    store: &Store,
    file: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<ImageRecord>> {
    let limits = store.limits()?;
    let archive = ImageArchive::open_limited(file, &store.temp_dir("load")?, limits.image_size)?;
    let mut made = Made::default();
    let result = load_images(store, &archive, &limits, &mut made, progress);
    if let Err(err) = result {
        let removed = made.roll_back(store);
        return Err(if removed > 0 {
            err.undone(format!("{removed} layer(s) removed"))
        } else {
            err
        });
    }
    result
}

fn load_images(
    store: &Store,
    archive: &ImageArchive,
    limits: &Limits,
    made: &mut Made,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<ImageRecord>> {
    let images = archive.images();
    if images.is_empty() {
        return Err(StoreError::Invalid(format!(
            "{}: the archive holds no image",
            file_name(archive)
        )));
    }
    for img in images {
        if img.layers.len() > limits.layers {
            return Err(StoreError::Invalid(format!(
                "image {}: {} layers is over the layer count limit of {} (limits.layers / STRATA_LIMIT_LAYERS)",
                img.id,
                img.layers.len(),
                limits.layers
            )));
        }
    }
    let known: HashMap<Digest, u64> = store
        .meta()?
        .images()?
        .into_iter()
        .flat_map(|i| i.layers)
        .map(|l| (l.chain_id, l.size))
        .collect();
    let mut pending = Vec::new();
    for img in images {
        let chains = img.chain_ids();
        let mut layers: Vec<LayerRecord> = Vec::new();
        let mut image_size = 0u64;
        let n = img.layers.len();
        for (i, (layer, chain)) in img.layers.iter().zip(&chains).enumerate() {
            crate::interrupt::check()?;
            let short = layer.diff_id.short();
            let key = layer_snapshot_key(chain);
            if store.snapshots().exists(&key)? {
                let size = known.get(chain).copied().unwrap_or(0);
                image_size = image_size.saturating_add(size);
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
            let tar_path = layer_tar_path(store, &layer.diff_id);
            let had_tar = tar_path.exists();
            let apply_limits = limits.apply_limits(limits.image_size.saturating_sub(image_size));
            let record = load_layer(
                store,
                archive,
                layer,
                layers.last().map(|l| &l.chain_id),
                apply_limits,
            )
            .map_err(|e| in_layer(e, &layer.what))?;
            made.snapshots.push((key, record.chain_id.clone()));
            if !had_tar {
                made.tars.push(tar_path);
            }
            if record.chain_id != *chain {
                return Err(StoreError::Invalid(format!(
                    "{}: applied layer has chain id {}, expected {chain}",
                    layer.what, record.chain_id
                )));
            }
            image_size = image_size.saturating_add(record.size);
            layers.push(record);
        }
        let mut tags = Vec::new();
        for t in &img.tags {
            match Reference::parse(t) {
                Ok(r) => tags.push(r),
                Err(e) => {
                    tracing::warn!(tag = %escape_name(t.as_bytes()), error = %e, "skipping a tag strata cannot record")
                }
            }
        }
        pending.push(ImageRecord {
            id: img.id.clone(),
            config: img.config.clone(),
            layers,
            tags,
            created_ns: crate::now_ns(),
        });
    }
    crate::interrupt::check()?;
    // Every image in one transaction: a load records all its images or none.
    store.meta()?.add_images(pending)
}

fn file_name(archive: &ImageArchive) -> String {
    archive.path().display().to_string()
}

/// Names the layer in an archive error that does not already.
fn in_layer(e: StoreError, what: &str) -> StoreError {
    match e {
        StoreError::Archive(source) => StoreError::Layer {
            layer: what.to_owned(),
            source,
        },
        other => other,
    }
}

fn load_layer(
    store: &Store,
    archive: &ImageArchive,
    layer: &crate::image::ArchiveLayer,
    parent: Option<&Digest>,
    limits: ApplyLimits,
) -> Result<LayerRecord> {
    apply_and_keep(store, parent, archive.open_layer(layer)?, limits)
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
    let opts = SaveOptions {
        gzip,
        temp_dir: store.temp_dir("save")?,
    };
    let mut partial = PartialOutput::create(out)?;
    let result = crate::image::write_oci_archive(
        BufWriter::new(crate::interrupt::Writer(partial.file())),
        &images,
        &opts,
    );
    match result {
        Ok(()) => partial.finish(),
        Err(e) => Err(StoreError::from(e).undone(partial.discard())),
    }
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
    crate::interrupt::check().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
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
/// The file is removed again on error (and on interruption, checked per
/// entry and per chunk written).
fn write_hashed(root: &Path, ch: &[Change], dst: &Path) -> Result<Digest> {
    let file = strata_driver_api::private::create_private_file(dst)?;
    let mut w = HashingWriter {
        inner: BufWriter::new(crate::interrupt::Writer(file)),
        hasher: Sha256::new(),
    };
    let written = write_layer(root, ch, &mut w)
        .map_err(StoreError::from)
        .and_then(|()| w.inner.flush().map_err(|e| StoreError::io("write", dst, e)));
    if let Err(e) = written {
        drop(w);
        let _ = fs::remove_file(dst);
        return Err(e);
    }
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
        let key = scratch_view_key();
        let mounts = store
            .snapshots()
            .view(&key, parent, store.session_labels())?;
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
    let lower = match image_top_key(&image) {
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
    let layer = match File::open(&tmp)
        .map_err(|e| StoreError::io("open", &tmp, e))
        .and_then(|tar| {
            apply_layer_snapshot(
                store,
                parent,
                io::BufReader::new(tar),
                ApplyLimits::default(),
            )
        }) {
        Ok(l) => l,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e.undone("the new layer's tar removed"));
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
    let created = crate::model::rfc3339(crate::now_ns() / 1_000_000_000);
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
    let mut partial = PartialOutput::create(out)?;
    let result = {
        let mut w = BufWriter::new(crate::interrupt::Writer(partial.file()));
        write_tree(&root.path, &mut w)
            .map_err(StoreError::from)
            .and_then(|()| w.flush().map_err(|e| StoreError::io("write", out, e)))
    };
    match result {
        Ok(()) => partial.finish(),
        Err(e) => Err(e.undone(partial.discard())),
    }
}
