//! `strata system df`: space used by images, containers and layers, and
//! how much of it a prune (or `check --repair --prune`) would reclaim.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::Result;
use crate::ops::snapshots::{list, SnapshotEntry};
use crate::store::keys::layer_snapshot_key;
use crate::Store;

/// One line of the summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DfLine {
    /// `Images`, `Containers` or `Layers`.
    pub kind: &'static str,
    /// How many there are.
    pub total: usize,
    /// How many are in use (images with containers, mounted containers,
    /// layers some image references).
    pub active: usize,
    /// Bytes they use (snapshot exclusive usage; a layer shared by images
    /// counts once).
    pub size: u64,
    /// Bytes a prune would free: dangling images' unshared layers,
    /// unmounted containers, layers no image references.
    pub reclaimable: u64,
}

/// One item of `df -v`.
#[derive(Debug, Clone, Serialize)]
pub struct DfItem {
    /// `image`, `container` or `layer`.
    pub kind: &'static str,
    /// Id, or the snapshot key of a layer.
    pub id: String,
    /// Tags, container name, or the layer's owner.
    pub name: String,
    /// Bytes (its layers' for an image, shared ones included).
    pub size: u64,
    /// Whether something uses it.
    pub active: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct DfReport {
    /// Images, containers, layers.
    pub summary: Vec<DfLine>,
    /// Every item, when asked for.
    pub items: Vec<DfItem>,
}

/// Measures the store (every snapshot's usage: walks files on some drivers).
pub fn df(store: &Store) -> Result<DfReport> {
    let meta = store.meta()?;
    let images = meta.images()?;
    let containers = meta.containers()?;
    let snaps: HashMap<String, SnapshotEntry> = list(store, true)?
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect();
    let size_of = |key: &str| snaps.get(key).and_then(|s| s.size).unwrap_or(0);
    let used_images: HashSet<_> = containers.iter().map(|c| c.image.clone()).collect();
    let mut items = Vec::new();
    let mut referenced: HashMap<String, bool> = HashMap::new();
    for image in &images {
        let keep = !image.tags.is_empty() || used_images.contains(&image.id);
        let keys: Vec<String> = image
            .layers
            .iter()
            .map(|l| layer_snapshot_key(&l.chain_id).0)
            .collect();
        for k in &keys {
            *referenced.entry(k.clone()).or_default() |= keep;
        }
        let tags: Vec<&str> = image.tags.iter().map(|t| t.0.as_str()).collect();
        items.push(DfItem {
            kind: "image",
            id: image.id.0.clone(),
            name: tags.join(","),
            size: keys.iter().map(|k| size_of(k)).sum(),
            active: used_images.contains(&image.id),
        });
    }
    let layer_keys: Vec<&SnapshotEntry> = snaps
        .values()
        .filter(|s| s.kind == "committed" && s.key.starts_with("sha256:"))
        .collect();
    let image_line = DfLine {
        kind: "Images",
        total: images.len(),
        active: used_images.len(),
        size: referenced.keys().map(|k| size_of(k)).sum(),
        reclaimable: referenced
            .iter()
            .filter(|(_, keep)| !**keep)
            .map(|(k, _)| size_of(k))
            .sum(),
    };
    let mut container_line = DfLine {
        kind: "Containers",
        total: containers.len(),
        ..DfLine::default()
    };
    for c in &containers {
        let size = size_of(&c.snapshot.0);
        let mounted = c.mounted_at.is_some();
        container_line.size += size;
        if mounted {
            container_line.active += 1;
        } else {
            container_line.reclaimable += size;
        }
        items.push(DfItem {
            kind: "container",
            id: c.id.0.clone(),
            name: c.name.clone(),
            size,
            active: mounted,
        });
    }
    let mut layer_line = DfLine {
        kind: "Layers",
        total: layer_keys.len(),
        ..DfLine::default()
    };
    for s in &layer_keys {
        let size = s.size.unwrap_or(0);
        let active = referenced.contains_key(&s.key);
        layer_line.size += size;
        if active {
            layer_line.active += 1;
        } else {
            layer_line.reclaimable += size;
        }
        items.push(DfItem {
            kind: "layer",
            id: s.key.clone(),
            name: s.owner.clone(),
            size,
            active,
        });
    }
    Ok(DfReport {
        summary: vec![image_line, container_line, layer_line],
        items,
    })
}
