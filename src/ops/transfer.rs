//! Layers in and out of the store: `load`, `save`, `diff`, `commit`,
//! `export`. A layer's snapshot, kept tar and manifest are the
//! [`crate::store::LayerStore`]'s; files written outside the store,
//! [`crate::ops::output`]'s.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::snapshotter::{Snapshotter, SnapshotterExt};
use sha2::{Digest as _, Sha256};

use crate::archive::{
    changes, changes_overlay, escape_name, write_layer, write_tree, ApplyLimits, Change,
};
use crate::error::{Result, StoreError};
use crate::image::{ImageArchive, ImageToSave, SaveOptions};
use crate::limits::Limits;
use crate::model::{
    ChainId, ContainerId, ContainerRecord, Digest, ImageRecord, LayerRecord, Reference,
};
use crate::mounts::TempMount;
use crate::ops::output::{Counted, PartialOutput};
use crate::store::keys::layer_snapshot_key;
use crate::store::view::{ScratchView, ViewFor};
use crate::store::NewLayers;
use crate::Store;

/// Loads every image of an OCI layout or docker save archive. Layers whose
/// chain id is already stored are reused. A refused load leaves nothing:
/// see [`load_with_progress`].
pub fn load(store: &Store, file: &Path) -> Result<Vec<ImageRecord>> {
    load_with_progress(store, file, &mut |_| {})
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
    let mut made = NewLayers::default();
    let result = load_images(store, &archive, &limits, &mut made, progress);
    if let Err(err) = result {
        let removed = made.roll_back(&store.layers());
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
    made: &mut NewLayers,
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
            let apply_limits = limits.apply_limits(limits.image_size.saturating_sub(image_size));
            let record = store
                .layers()
                .apply_and_keep(
                    layers.last().map(|l| &l.chain_id),
                    archive.open_layer(layer)?,
                    Some(uncompressed_estimate(&layer.media_type, layer.size)),
                    apply_limits,
                    made,
                )
                .map_err(|e| in_layer(e, &layer.what))?;
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

/// What a layer blob of `size` bytes extracts to, for sizing its
/// snapshot: its size for a plain tar, four times that for a compressed
/// one (a typical ratio, not a bound: a layer that expands more must fit
/// in the room a snapshot has anyway, e.g. blockfile's 10 GiB default).
fn uncompressed_estimate(media_type: &str, size: u64) -> u64 {
    if media_type.ends_with(".tar") {
        size
    } else {
        size.saturating_mul(4)
    }
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

/// Saves images (by reference or id) as one OCI layout archive at `out`,
/// written to a temporary name and renamed when complete.
pub fn save(store: &Store, refs: &[String], out: &Path, gzip: bool) -> Result<()> {
    save_counted(store, refs, out, gzip, &|_| {})
}

/// [`save`], calling `progress` with the bytes written so far.
pub fn save_counted(
    store: &Store,
    refs: &[String],
    out: &Path,
    gzip: bool,
    progress: &dyn Fn(u64),
) -> Result<()> {
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
        BufWriter::new(Counted::new(
            crate::interrupt::Writer(partial.file()),
            progress,
        )),
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
    let layers = store.layers();
    let path = layers.tar_path(&layer.diff_id);
    if path.exists() {
        return Ok(path);
    }
    let tmp = layers.scratch_tar("regen")?;
    let diff_id = {
        let upper = view(store, &layer.chain_id)?;
        let lower = parent.map(|p| view(store, p)).transpose()?;
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
    // Regenerated for an image that has it: nothing to roll back.
    layers.keep_tar(&tmp, &diff_id, &mut NewLayers::default())?;
    Ok(path)
}

/// A transfer's read-only view of layer `chain`.
fn view<'a>(store: &'a Store, chain: &ChainId) -> Result<ScratchView<'a>> {
    ScratchView::new(store, Some(&layer_snapshot_key(chain)), ViewFor::Transfer)
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

/// A container's root mounted for reading (its own mount if mounted).
struct ContainerRoot {
    _mount: Option<TempMount>,
    path: PathBuf,
}

fn container_root(store: &Store, record: &ContainerRecord) -> Result<ContainerRoot> {
    if let Some(p) = &record.mounted_at {
        if strata_driver_api::mount::is_mountpoint(p)? {
            return Ok(ContainerRoot {
                _mount: None,
                path: p.clone(),
            });
        }
    }
    let mounts = store.snapshots().mounts(&record.snapshot)?;
    let dir = store
        .temp_dir("mounts")?
        .join(format!("ro-{}", ContainerId::generate()));
    let m = TempMount::new(&mounts, dir)?;
    let path = m.path().to_owned();
    Ok(ContainerRoot {
        _mount: Some(m),
        path,
    })
}

fn image_of(store: &Store, record: &ContainerRecord) -> Result<ImageRecord> {
    store
        .meta()?
        .image(&record.image)?
        .ok_or_else(|| StoreError::UnknownImage(record.image.0.clone()))
}

/// What a container changed against its image, as `docker diff` lists it.
pub fn diff(store: &Store, text: &str) -> Result<Vec<Change>> {
    let record = store.resolve_container(text)?;
    let image = image_of(store, &record)?;
    let root = container_root(store, &record)?;
    changes_of(store, &record, &image, &root)
}

/// The changes of container `record` (mounted at `root`) against `image`.
/// A driver that keeps a container's own changes apart (overlay2's upper
/// directory) is read there; others are walked against a view of the image.
fn changes_of(
    store: &Store,
    record: &ContainerRecord,
    image: &ImageRecord,
    root: &ContainerRoot,
) -> Result<Vec<Change>> {
    let Some(top) = image.layers.last() else {
        return Ok(changes(None, &root.path)?);
    };
    let lower = view(store, &top.chain_id)?;
    let id = store.snapshots().id_of(&record.snapshot)?;
    match store.driver().changes_dir(id) {
        Some(upper) => Ok(changes_overlay(Some(lower.path()), &upper)?),
        None => Ok(changes(Some(lower.path()), &root.path)?),
    }
}

/// Commits a container's changes as a new image `reference` (the container
/// stays as it is). Prints nothing; returns the new image.
pub fn commit(store: &Store, text: &str, reference: &Reference) -> Result<ImageRecord> {
    let record = store.resolve_container(text)?;
    let image = image_of(store, &record)?;
    let layers = store.layers();
    let tmp = layers.scratch_tar("commit")?;
    let diff_id = {
        let root = container_root(store, &record)?;
        let ch = changes_of(store, &record, &image, &root)?;
        write_hashed(&root.path, &ch, &tmp)?
    };
    let parent = image.layers.last().map(|l| &l.chain_id);
    // The layer is complete once committed: an image-less layer is pruned
    // as unused by `strata check`, as before.
    let mut made = NewLayers::default();
    let layer = match File::open(&tmp)
        .map_err(|e| StoreError::io("open", &tmp, e))
        .and_then(|tar| {
            let size = tar.metadata().ok().map(|m| m.len());
            layers.apply(
                parent,
                io::BufReader::new(tar),
                size,
                ApplyLimits::default(),
                &mut made,
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
    layers.keep_tar(&tmp, &diff_id, &mut made)?;
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
    export_counted(store, text, out, &|_| {})
}

/// [`export`], calling `progress` with the bytes written so far.
pub fn export_counted(store: &Store, text: &str, out: &Path, progress: &dyn Fn(u64)) -> Result<()> {
    let root = container_root(store, &store.resolve_container(text)?)?;
    let mut partial = PartialOutput::create(out)?;
    let result = {
        let mut w = BufWriter::new(Counted::new(
            crate::interrupt::Writer(partial.file()),
            progress,
        ));
        write_tree(&root.path, &mut w)
            .map_err(StoreError::from)
            .and_then(|()| w.flush().map_err(|e| StoreError::io("write", out, e)))
    };
    match result {
        Ok(()) => partial.finish(),
        Err(e) => Err(e.undone(partial.discard())),
    }
}
