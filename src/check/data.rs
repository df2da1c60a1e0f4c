//! `check --data`: re-reads every committed layer through a read-only view
//! and compares each file with the layer's manifest
//! ([`crate::store::LayerStore::verify`]).

use crate::snapshotter::State;
use strata_driver_api::{Kind, SnapshotKey};

use super::Problem;
use crate::error::Result;
use crate::model::ChainId;
use crate::store::keys::layer_chain;
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
    let layers: Vec<(SnapshotKey, ChainId)> = store
        .snapshots()
        .records()?
        .into_iter()
        .filter(|(_, r)| {
            r.kind == Kind::Committed && r.state == State::Ready && stored.contains(&r.id)
        })
        .filter_map(|(k, _)| layer_chain(&k).map(|chain| (k, chain)))
        .collect();
    for (key, chain) in layers {
        let Some(mismatches) = store.layers().verify(&chain)? else {
            out.problems.push(Problem::MissingManifest(key));
            continue;
        };
        out.layers += 1;
        out.problems
            .extend(mismatches.into_iter().map(|mismatch| Problem::CorruptFile {
                layer: key.clone(),
                mismatch,
            }));
    }
    Ok(out)
}
