//! Turning a layer tar into a committed snapshot keyed by its chain id.

use std::io::{Read, Write};

use crate::snapshotter::{Snapshotter, SnapshotterExt};
use sha2::{Digest as _, Sha256};
use strata_driver_api::{failpoint, Labels, SnapshotKey};

use crate::archive::{apply_layer, ApplyLimits, ApplyOptions};
use crate::check::manifest;
use crate::error::Result;
use crate::model::{ChainId, Digest, LayerRecord};
use crate::mounts::TempMount;
use crate::store::keys::{extract_key, layer_snapshot_key, LABEL_EXTRACT};
use crate::Store;

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest and returns the digest and byte count of everything read.
    pub fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        std::io::copy(
            &mut self.inner,
            &mut HashSink(&mut self.hasher, &mut self.count),
        )?;
        Ok((Digest::from_hasher(self.hasher), self.count))
    }
}

struct HashSink<'a>(&'a mut Sha256, &'a mut u64);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        *self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Applies the uncompressed layer `tar` on top of `parent` and commits it
/// under its chain id. If that chain already exists the new copy is dropped
/// and the existing one reused. `limits` are enforced while reading (see
/// [`ApplyLimits`]). On any error nothing is left behind.
pub fn apply_layer_snapshot(
    store: &Store,
    parent: Option<&ChainId>,
    tar: impl Read,
    limits: ApplyLimits,
) -> Result<LayerRecord> {
    let sn = store.snapshots();
    let key = extract_key();
    let parent_key = parent.map(layer_snapshot_key);
    let mut labels = store.session_labels();
    labels.insert(LABEL_EXTRACT.to_owned(), "1".to_owned());
    let mounts = sn.prepare(&key, parent_key.as_ref(), labels)?;
    failpoint("layer.prepared");
    let result = fill_and_commit(
        store,
        &key,
        &mounts,
        parent,
        crate::interrupt::Reader(tar),
        limits,
    );
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
    result
}

fn fill_and_commit(
    store: &Store,
    key: &SnapshotKey,
    mounts: &[strata_driver_api::Mount],
    parent: Option<&ChainId>,
    tar: impl Read,
    limits: ApplyLimits,
) -> Result<LayerRecord> {
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
        let mount = TempMount::new(mounts, store.temp_dir("mounts")?.join(key.as_str()))?;
        apply_layer(mount.path(), &mut reader, &options)?;
        mount.sync()?;
        manifest::compute(mount.path())?
    };
    failpoint("layer.applied");
    // The last safe point: once committed, finishing is shorter than undoing.
    crate::interrupt::check()?;
    let (diff_id, size) = reader
        .finish()
        .map_err(|e| crate::StoreError::io("read layer", key.as_str(), e))?;
    let chain_id = crate::model::chain_id(parent, &diff_id);
    let name = layer_snapshot_key(&chain_id);
    if manifest::load(store.root(), &chain_id)?.is_none() {
        manifest::save(store.root(), store.session(), &chain_id, &sums)?;
    }
    if !store.snapshots().exists(&name)? {
        store.snapshots().commit(&name, key, Labels::new())?;
        failpoint("layer.committed");
    }
    Ok(LayerRecord {
        diff_id,
        chain_id,
        size,
    })
}
