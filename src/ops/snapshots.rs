//! `strata snapshots`: every snapshot in the store, whoever made it (image
//! layers, containers, Strata's own scratch snapshots, and those a runtime
//! made through `strata serve`), as a list, a parent tree, or with usage.

use std::collections::{BTreeMap, HashMap};

use crate::snapshotter::{Snapshotter, SnapshotterExt};
use serde::Serialize;
use strata_driver_api::Labels;

use crate::error::Result;
use crate::store::keys::{layer_snapshot_key, LABEL_EXTRACT, LABEL_SESSION};
use crate::Store;

/// One snapshot, as `strata snapshots` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotEntry {
    /// Key (active, view) or name (committed).
    pub key: String,
    /// `active`, `view` or `committed`.
    pub kind: String,
    /// Parent's name, if any.
    pub parent: Option<String>,
    /// Labels, as set by Strata or the runtime.
    pub labels: Labels,
    /// Who uses it: `image TAG|ID`, `container NAME`, `strata` (a scratch
    /// snapshot of a running or dead command) or `runtime` (made through
    /// the socket).
    pub owner: String,
    /// Creation time, ns since the epoch.
    pub created_ns: u64,
    /// Bytes exclusive to the snapshot, when the driver could tell.
    pub size: Option<u64>,
    /// Inodes exclusive to the snapshot (0 when the driver cannot tell).
    pub inodes: Option<u64>,
    /// Why the usage is missing, if it is.
    pub usage_error: Option<String>,
}

/// A snapshot with the snapshots whose parent it is.
#[derive(Debug, Clone, Serialize)]
pub struct TreeNode {
    /// The snapshot.
    #[serde(flatten)]
    pub snapshot: SnapshotEntry,
    /// Its children, by key.
    pub children: Vec<TreeNode>,
}

/// Per-snapshot usage and the total.
#[derive(Debug, Clone, Serialize)]
pub struct UsageReport {
    /// Every snapshot, by key.
    pub snapshots: Vec<SnapshotEntry>,
    /// Sum of the sizes known.
    pub total_size: u64,
    /// Sum of the inode counts known.
    pub total_inodes: u64,
}

/// Every snapshot in the store, sorted by key. With `usage`, each one's
/// exclusive size is measured (which walks files on some drivers).
pub fn list(store: &Store, usage: bool) -> Result<Vec<SnapshotEntry>> {
    let sn = store.snapshots();
    let meta = store.meta()?;
    let mut owners: HashMap<String, String> = HashMap::new();
    for image in meta.images()? {
        let name = image
            .tags
            .first()
            .map(|t| t.0.clone())
            .unwrap_or_else(|| image.id.short().to_owned());
        for layer in &image.layers {
            owners
                .entry(layer_snapshot_key(&layer.chain_id).0)
                .or_insert_with(|| format!("image {name}"));
        }
    }
    for c in meta.containers()? {
        owners.insert(c.snapshot.0.clone(), format!("container {}", c.name));
    }
    let mut out = Vec::new();
    for info in sn.list(&[])? {
        let key = info.name.0.clone();
        let owner = owners.get(&key).cloned().unwrap_or_else(|| {
            let committed = info.kind == strata_driver_api::Kind::Committed;
            let scratch = !committed
                && (["extract-", "view-"].iter().any(|p| key.starts_with(p))
                    || info.labels.contains_key(LABEL_EXTRACT)
                    || info.labels.contains_key(LABEL_SESSION));
            // Strata names its layer snapshots by chain id; containerd's
            // keys are `namespace/N/name`.
            let layer = key.starts_with("sha256:");
            if scratch {
                "strata".to_owned()
            } else if layer && committed {
                "unused layer".to_owned()
            } else {
                "runtime".to_owned()
            }
        });
        let (size, inodes, usage_error) = if usage {
            match sn.usage(&info.name) {
                Ok(u) => (Some(u.size), Some(u.inodes), None),
                Err(e) => (None, None, Some(e.to_string())),
            }
        } else {
            (None, None, None)
        };
        out.push(SnapshotEntry {
            key,
            kind: info.kind.as_str().to_owned(),
            parent: info.parent.map(|p| p.0),
            labels: info.labels,
            owner,
            created_ns: info.created_ns,
            size,
            inodes,
            usage_error,
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Arranges `entries` as trees: roots are the snapshots without a parent
/// (or whose parent is not listed), children sorted by key.
pub fn tree(entries: Vec<SnapshotEntry>) -> Vec<TreeNode> {
    let keys: std::collections::HashSet<String> = entries.iter().map(|e| e.key.clone()).collect();
    let mut children: BTreeMap<Option<String>, Vec<SnapshotEntry>> = BTreeMap::new();
    for e in entries {
        let parent = e.parent.clone().filter(|p| keys.contains(p));
        children.entry(parent).or_default().push(e);
    }
    fn build(
        parent: Option<String>,
        children: &mut BTreeMap<Option<String>, Vec<SnapshotEntry>>,
    ) -> Vec<TreeNode> {
        let mine = children.remove(&parent).unwrap_or_default();
        mine.into_iter()
            .map(|snapshot| {
                let kids = build(Some(snapshot.key.clone()), children);
                TreeNode {
                    snapshot,
                    children: kids,
                }
            })
            .collect()
    }
    build(None, &mut children)
}

/// Every snapshot with its usage, and the totals.
pub fn usage(store: &Store) -> Result<UsageReport> {
    let snapshots = list(store, true)?;
    Ok(UsageReport {
        total_size: snapshots.iter().filter_map(|s| s.size).sum(),
        total_inodes: snapshots.iter().filter_map(|s| s.inodes).sum(),
        snapshots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, parent: Option<&str>) -> SnapshotEntry {
        SnapshotEntry {
            key: key.into(),
            kind: "committed".into(),
            parent: parent.map(Into::into),
            labels: Labels::new(),
            owner: "runtime".into(),
            created_ns: 0,
            size: None,
            inodes: None,
            usage_error: None,
        }
    }

    #[test]
    fn tree_nests_children_under_parents() {
        let t = tree(vec![
            entry("a", None),
            entry("b", Some("a")),
            entry("c", Some("b")),
            entry("d", Some("a")),
            entry("orphan", Some("gone")),
        ]);
        let roots: Vec<&str> = t.iter().map(|n| n.snapshot.key.as_str()).collect();
        assert_eq!(roots, ["a", "orphan"]);
        let kids: Vec<&str> = t[0]
            .children
            .iter()
            .map(|n| n.snapshot.key.as_str())
            .collect();
        assert_eq!(kids, ["b", "d"]);
        assert_eq!(t[0].children[0].children[0].snapshot.key, "c");
    }
}
