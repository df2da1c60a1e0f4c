//! `container prune`, `image prune`, `system prune`: remove what nothing
//! uses, saying what went and how much space it freed.
//!
//! Each item is removed by the verb that removes it alone
//! ([`crate::ops::container::remove`], [`crate::ops::image::remove`]), so
//! a signal stops a prune between items (or at that verb's own safe
//! point): what was removed stays removed, and the error says how many.

use std::collections::HashSet;

use crate::snapshotter::Snapshotter;
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::store::keys::layer_snapshot_key;
use crate::Store;

/// One thing a prune removed.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    /// `container` or `image`.
    pub kind: &'static str,
    /// Full id.
    pub id: String,
    /// Container name, or the image's former tags (none when dangling).
    pub name: String,
    /// Bytes freed (exclusive usage of the snapshots removed, as the driver
    /// measured them just before).
    pub freed: u64,
}

/// What a prune removed, and the bytes freed in total.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    /// Removed items, in order.
    pub removed: Vec<Pruned>,
    /// Sum of their `freed`.
    pub freed: u64,
}

impl PruneReport {
    fn push(&mut self, item: Pruned) {
        self.freed += item.freed;
        self.removed.push(item);
    }

    /// Turns an interruption into one that says how much was pruned.
    fn stopped(&self, e: StoreError) -> StoreError {
        match self.removed.len() {
            0 => e,
            n => e.undone(format!("{n} already pruned stay removed")),
        }
    }
}

/// Removes every container that is not mounted, with its writable layer.
pub fn containers(store: &Store, report: &mut PruneReport) -> Result<()> {
    for c in store.meta()?.containers()? {
        if c.mounted_at.is_some() {
            continue;
        }
        crate::interrupt::check().map_err(|e| report.stopped(e.into()))?;
        let freed = store
            .snapshots()
            .usage(&c.snapshot)
            .map(|u| u.size)
            .unwrap_or(0);
        tracing::debug!(container = %c.id, freed, "pruning a container");
        match crate::ops::container::remove(store, &c.id.0, false) {
            Ok(_) => report.push(Pruned {
                kind: "container",
                id: c.id.0.clone(),
                name: c.name.clone(),
                freed,
            }),
            // Mounted or removed by another process meanwhile: not ours to prune.
            Err(StoreError::StillMounted { .. } | StoreError::UnknownContainer(_)) => {}
            Err(e) => return Err(report.stopped(e)),
        }
    }
    Ok(())
}

/// Removes every dangling image (no tag) that no container uses, with the
/// layers no other image needs.
pub fn dangling_images(store: &Store, report: &mut PruneReport) -> Result<()> {
    let meta = store.meta()?;
    let used: HashSet<_> = meta.containers()?.into_iter().map(|c| c.image).collect();
    for image in meta.images()? {
        if !image.tags.is_empty() || used.contains(&image.id) {
            continue;
        }
        crate::interrupt::check().map_err(|e| report.stopped(e.into()))?;
        let sn = store.snapshots();
        let sizes: Vec<_> = image
            .layers
            .iter()
            .map(|l| {
                let key = layer_snapshot_key(&l.chain_id);
                let size = sn.usage(&key).map(|u| u.size).unwrap_or(0);
                (key, size)
            })
            .collect();
        tracing::debug!(image = %image.id, "pruning a dangling image");
        match crate::ops::image::remove(store, &image.id.0) {
            Ok(_) => {}
            Err(StoreError::ImageInUse { .. } | StoreError::UnknownImage(_)) => continue,
            Err(e) => return Err(report.stopped(e)),
        }
        let freed = sizes
            .iter()
            .filter(|(key, _)| sn.stat(key).is_err())
            .map(|(_, size)| size)
            .sum();
        report.push(Pruned {
            kind: "image",
            id: image.id.0.clone(),
            name: String::new(),
            freed,
        });
    }
    Ok(())
}
