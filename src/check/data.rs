//! `check --data`: re-reads every committed layer through a read-only view
//! and compares each file with the layer's manifest.

use crate::snapshotter::{Snapshotter, State};
use strata_driver_api::{Kind, SnapshotKey};

use super::{manifest, Problem};
use crate::error::Result;
use crate::model::Digest;
use crate::mounts::TempMount;
use crate::store::keys::{check_view_key, LABEL_CHECK};
use crate::Store;

/// What the data check found.
#[derive(Debug, Default)]
pub struct Verified {
    /// Layers re-read.
    pub layers: usize,
    /// Corrupt files and layers without manifest.
    pub problems: Vec<Problem>,
}

/// Verifies every committed Strata layer (keys `sha256:...`).
pub fn verify(store: &Store) -> Result<Verified> {
    let mut out = Verified::default();
    let stored: std::collections::HashSet<_> = store.driver().stored_ids()?.into_iter().collect();
    let layers: Vec<SnapshotKey> = store
        .snapshots()
        .records()?
        .into_iter()
        .filter(|(k, r)| {
            r.kind == Kind::Committed
                && r.state == State::Ready
                && k.as_str().starts_with("sha256:")
                && stored.contains(&r.id)
        })
        .map(|(k, _)| k)
        .collect();
    for key in layers {
        let Some(expected) = manifest::load(store.root(), &Digest(key.0.clone()))? else {
            out.problems.push(Problem::MissingManifest(key));
            continue;
        };
        let actual = read_layer(store, &key)?;
        out.layers += 1;
        out.problems.extend(
            manifest::compare(&expected, &actual)
                .into_iter()
                .map(|mismatch| Problem::CorruptFile {
                    layer: key.clone(),
                    mismatch,
                }),
        );
    }
    Ok(out)
}

/// Sums the merged view of layer `key` through a temporary read-only view.
fn read_layer(store: &Store, key: &SnapshotKey) -> Result<manifest::Manifest> {
    let sn = store.snapshots();
    let view = check_view_key();
    let mut labels = store.session_labels();
    labels.insert(LABEL_CHECK.to_owned(), "1".to_owned());
    let mounts = sn.view(&view, Some(key), labels)?;
    let result = store
        .temp_dir("check")
        .and_then(|dir| TempMount::new(&mounts, dir.join(view.as_str())))
        .and_then(|mount| manifest::compute(mount.path()));
    if let Err(e) = sn.remove(&view) {
        tracing::error!(%view, error = %e, "removing a check view; the next `strata check --repair` will");
    }
    result
}
