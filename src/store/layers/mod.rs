//! The layer store: a committed layer is three things kept by chain id (its
//! snapshot, its CRC manifest) and by diff id (its kept tar, so `save` can
//! write the exact bytes the config's diff ids name). [`LayerStore`] makes,
//! reads and removes all three; ops and `check` go through it, and
//! [`NewLayers`] is the one rollback path of whatever made new layers.
//!
//! Crash safety: the extraction snapshot carries this process's session
//! label from its creation, the manifest and a kept tar carry its session
//! mark ([`super::owned`]) until a record claims them, so a process that
//! dies half-way leaves only what `check` and recovery recognise as its.

mod io;
pub mod manifest;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::snapshotter::{Snapshotter, SnapshotterExt};
use strata_driver_api::{failpoint, Labels, Mount, SnapshotKey, LABEL_MIN_FREE};

pub use manifest::{FileSum, Manifest, Mismatch};

use self::io::{HashingReader, SparseWriter, Tee};
use super::keys::{extract_key, layer_snapshot_key, LABEL_EXTRACT};
use super::view::{ScratchView, ViewFor};
use super::Store;
use crate::archive::{apply_layer, ApplyLimits, ApplyOptions};
use crate::error::{Result, StoreError};
use crate::model::{ChainId, ContainerId, Digest, ImageRecord, LayerRecord};
use crate::mounts::TempMount;

/// Free space asked of a new layer's snapshot to extract a tar of
/// `tar_size` bytes: the tar plus a quarter (a small file takes a whole
/// block where the tar pads it to 512 bytes; inodes, directories) plus
/// 64 MiB for the filesystem's own needs.
pub fn room_for(tar_size: u64) -> u64 {
    tar_size
        .saturating_add(tar_size / 4)
        .saturating_add(64 << 20)
}

/// The layers of one open store (see the module docs).
pub struct LayerStore<'a> {
    store: &'a Store,
}

/// What one operation added to the layer store, so that a failure can undo
/// exactly that and nothing another process made meanwhile.
#[derive(Debug, Default)]
pub struct NewLayers {
    /// Layers this operation committed (not those it found already there).
    chains: Vec<ChainId>,
    /// Kept tars that did not exist before.
    tars: Vec<PathBuf>,
}

impl NewLayers {
    /// Undoes everything recorded, newest layer first (its manifest with
    /// it), then the kept tars. Returns how many layers it removed; what
    /// it cannot remove is logged and left for `strata check --repair`.
    pub fn roll_back(self, layers: &LayerStore<'_>) -> usize {
        let mut removed = 0;
        for chain in self.chains.iter().rev() {
            match layers.remove(chain) {
                Ok(()) => removed += 1,
                Err(e) => tracing::error!(%chain, error = %e, "removing a new layer"),
            }
        }
        for tar in &self.tars {
            if let Err(e) = fs::remove_file(tar) {
                tracing::error!(path = %tar.display(), error = %e, "removing a new layer tar");
            }
        }
        removed
    }
}

impl<'a> LayerStore<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Applies the uncompressed layer `tar` on top of `parent` and commits
    /// it under its chain id. If that chain already exists the new copy is
    /// dropped and the existing one reused. `size_hint`, the tar's size
    /// when the caller knows it (or an estimate), asks fixed-capacity
    /// drivers for room to extract it ([`room_for`]). `limits` are enforced
    /// while reading (see [`ApplyLimits`]). On any error nothing is left
    /// behind; on success a layer this call committed is added to `made`.
    pub fn apply(
        &self,
        parent: Option<&ChainId>,
        tar: impl Read,
        size_hint: Option<u64>,
        limits: ApplyLimits,
        made: &mut NewLayers,
    ) -> Result<LayerRecord> {
        let sn = self.store.snapshots();
        let key = extract_key();
        let parent_key = parent.map(layer_snapshot_key);
        let mut labels = self.store.session_labels();
        labels.insert(LABEL_EXTRACT.to_owned(), "1".to_owned());
        if let Some(tar_size) = size_hint {
            labels.insert(LABEL_MIN_FREE.to_owned(), room_for(tar_size).to_string());
        }
        let mounts = sn.prepare(&key, parent_key.as_ref(), labels)?;
        failpoint("layer.prepared");
        let result =
            self.fill_and_commit(&key, &mounts, parent, crate::interrupt::Reader(tar), limits);
        if result.is_err() || sn.exists(&key).unwrap_or(false) {
            match sn.remove(&key) {
                Ok(()) => {
                    if let Err(e) = result {
                        return Err(e.undone("the partly applied layer removed"));
                    }
                }
                Err(e) => {
                    tracing::error!(%key, error = %e, "removing a failed import's snapshot; `strata check --repair` will");
                }
            }
        }
        let (record, committed) = result?;
        if committed {
            made.chains.push(record.chain_id.clone());
        }
        Ok(record)
    }

    /// Fills the extraction snapshot `key` through its mount, writes the
    /// manifest, commits. Returns the record and whether this call
    /// committed the layer (false: it was there already).
    fn fill_and_commit(
        &self,
        key: &SnapshotKey,
        mounts: &[Mount],
        parent: Option<&ChainId>,
        tar: impl Read,
        limits: ApplyLimits,
    ) -> Result<(LayerRecord, bool)> {
        // Every driver gets the layer through its mounted snapshot, with real
        // deletions: on overlay2 the kernel turns them into its own whiteouts
        // (and a directory removed and made again into an opaque one). Writing
        // into the upper directory instead would miss what only the merged view
        // shows: a symlink planted by a lower layer that a path goes through,
        // or an opaque marker at the root (which overlayfs ignores there); the
        // merged content must be what vfs gets from the same image.
        let options = ApplyOptions {
            overlay_whiteouts: false,
            limits,
        };
        let mut reader = HashingReader::new(tar);
        let sums = {
            let dir = self.store.temp_dir("mounts")?.join(key.as_str());
            let mount = TempMount::new(mounts, dir)?;
            apply_layer(mount.path(), &mut reader, &options)?;
            mount.sync()?;
            manifest::compute(mount.path())?
        };
        failpoint("layer.applied");
        // The last safe point: once committed, finishing is shorter than undoing.
        crate::interrupt::check()?;
        let (diff_id, size) = reader
            .finish()
            .map_err(|e| StoreError::io("read layer", key.as_str(), e))?;
        let chain_id = crate::model::chain_id(parent, &diff_id);
        let name = layer_snapshot_key(&chain_id);
        let layout = self.store.layout();
        if manifest::load(layout, &chain_id)?.is_none() {
            manifest::save(layout, self.store.session(), &chain_id, &sums)?;
        }
        let mut committed = false;
        if !self.store.snapshots().exists(&name)? {
            self.store.snapshots().commit(&name, key, Labels::new())?;
            committed = true;
            failpoint("layer.committed");
        }
        let record = LayerRecord {
            diff_id,
            chain_id,
            size,
        };
        Ok((record, committed))
    }

    /// [`LayerStore::apply`] that also keeps the tar it applied (zero
    /// blocks left as holes), so `save` can reproduce the layer byte for
    /// byte. Every path that brings a foreign layer into the store (`load`,
    /// `import`) goes through here; `limits` bound what the tar may expand
    /// to, and a refused layer's tar is never kept.
    pub fn apply_and_keep(
        &self,
        parent: Option<&ChainId>,
        tar: impl Read,
        size_hint: Option<u64>,
        limits: ApplyLimits,
        made: &mut NewLayers,
    ) -> Result<LayerRecord> {
        let tmp = self.scratch_tar("in")?;
        let out = strata_driver_api::private::create_private_file(&tmp)?;
        let mut reader = Tee {
            inner: tar,
            out: SparseWriter::new(out),
        };
        let result = self
            .apply(parent, &mut reader, size_hint, limits, made)
            .and_then(|record| {
                reader
                    .out
                    .finish()
                    .map_err(|e| StoreError::io("write", &tmp, e))?;
                self.keep_tar(&tmp, &record.diff_id, made)?;
                Ok(record)
            });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Where the tar of layer `diff_id` is kept.
    pub fn tar_path(&self, diff_id: &Digest) -> PathBuf {
        self.store.layout().layer_tar(diff_id)
    }

    /// A fresh scratch path for a layer tar being written (`what` names
    /// the operation); [`LayerStore::keep_tar`] moves it into place.
    pub fn scratch_tar(&self, what: &str) -> Result<PathBuf> {
        Ok(self
            .store
            .temp_dir("layer-tars")?
            .join(format!("{what}-{}.tar", ContainerId::generate())))
    }

    /// Keeps the complete tar `tmp` as the tar of layer `diff_id` (marked
    /// as this session's until an image record claims it); a tar that did
    /// not exist before is added to `made`. The tar is written to disk
    /// first: the image record that follows is durable, and a kept tar a
    /// power loss left empty or torn would fail every later `save` (a
    /// missing one is regenerated).
    pub fn keep_tar(&self, tmp: &Path, diff_id: &Digest, made: &mut NewLayers) -> Result<()> {
        let dst = self.tar_path(diff_id);
        if let Some(dir) = dst.parent() {
            crate::perms::private_dir(dir)?;
        }
        let existed = dst.exists();
        fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io("fsync", tmp, e))?;
        super::owned::mark(self.store.session(), tmp);
        fs::rename(tmp, &dst).map_err(|e| StoreError::io("rename", tmp, e))?;
        if !existed {
            made.tars.push(dst);
        }
        Ok(())
    }

    /// Kept tars no image in `images` uses and no live process is writing.
    pub fn unused_tars(&self, images: &[ImageRecord]) -> Result<Vec<PathBuf>> {
        let dir = self.store.layout().layer_tars();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("read directory", &dir, e)),
        };
        let used: HashSet<PathBuf> = images
            .iter()
            .flat_map(|i| i.layers.iter().map(|l| self.tar_path(&l.diff_id)))
            .collect();
        let mut out = Vec::new();
        for e in entries {
            let path = e
                .map_err(|e| StoreError::io("read directory", &dir, e))?
                .path();
            if !used.contains(&path) && !super::owned::held_by_live_session(self.store, &path) {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// Deletes kept layer tars that no recorded image uses any more (after
    /// `rmi`). Returns how many were deleted.
    pub fn prune_tars(&self) -> Result<usize> {
        let images = self.store.meta()?.images()?;
        let mut removed = 0;
        for path in self.unused_tars(&images)? {
            if path.extension().is_some_and(|x| x == "tar") {
                fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes layer `chain`: its snapshot, then its manifest. Fails,
    /// removing nothing, when the snapshot is missing
    /// ([`strata_driver_api::Error::NotFound`]) or has children
    /// ([`strata_driver_api::Error::FailedPrecondition`]), or an image
    /// names it (checked in the transaction that starts the removal, so an
    /// image another process records meanwhile keeps it, also FailedPrecondition).
    /// Kept tars are by diff id, shared between chains: see
    /// [`LayerStore::prune_tars`].
    pub fn remove(&self, chain: &ChainId) -> Result<()> {
        let key = layer_snapshot_key(chain);
        self.store
            .snapshots()
            .remove_unless(&key, |t| {
                match super::meta::image_with_layer_in(t, chain)? {
                    Some(image) => Err(strata_driver_api::Error::FailedPrecondition(format!(
                        "cannot remove layer {key}: image {image} uses it"
                    ))),
                    None => Ok(()),
                }
            })?;
        // Named after the verb the crash test kills here.
        failpoint("image.rmi.layer_removed");
        manifest::remove(self.store.layout(), chain)
    }

    /// The manifest recorded for layer `chain`, if any.
    pub fn manifest(&self, chain: &ChainId) -> Result<Option<Manifest>> {
        manifest::load(self.store.layout(), chain)
    }

    /// Re-reads layer `chain` through a read-only view and compares it
    /// with its manifest: `None` when it has none.
    pub fn verify(&self, chain: &ChainId) -> Result<Option<Vec<Mismatch>>> {
        let Some(expected) = self.manifest(chain)? else {
            return Ok(None);
        };
        let key = layer_snapshot_key(chain);
        let view = ScratchView::new(self.store, Some(&key), ViewFor::Check)?;
        let actual = manifest::compute(view.path())?;
        Ok(Some(manifest::compare(&expected, &actual)))
    }

    /// Manifest files of layers not in `committed` and half-written ones,
    /// leaving those a live process is writing.
    pub fn orphan_manifests(&self, committed: &HashSet<&SnapshotKey>) -> Result<Vec<PathBuf>> {
        let layout = self.store.layout();
        let (chains, strays) = manifest::stored(layout)?;
        let files = chains
            .into_iter()
            .filter(|chain| !committed.contains(&layer_snapshot_key(chain)))
            .map(|chain| layout.manifest(&chain))
            .chain(strays);
        Ok(files
            .filter(|p| !super::owned::held_by_live_session(self.store, p))
            .collect())
    }
}
