//! Every snapshot key and label Strata uses, in one place. A runtime's
//! snapshots (made through `strata serve`) carry none of these labels, so
//! `check` and recovery never mistake them for Strata's own.

use strata_driver_api::SnapshotKey;

use crate::model::{ChainId, ContainerId, ImageRecord};

/// The session (process) that made a snapshot: its scratch and half-made
/// snapshots are left alone while that process lives.
pub const LABEL_SESSION: &str = "strata.io/session";
/// A container's writable snapshot: the container id.
pub const LABEL_CONTAINER: &str = "strata.io/container";
/// The scratch snapshot a layer is extracted into before it is committed.
pub const LABEL_EXTRACT: &str = "strata.io/extract";
/// The scratch view `check --data` reads a layer through.
pub const LABEL_CHECK: &str = "strata.io/check";

/// Snapshot key of a committed layer: its chain id.
pub fn layer_snapshot_key(chain: &ChainId) -> SnapshotKey {
    SnapshotKey(chain.0.clone())
}

/// The chain id a snapshot key names, if it is a layer's key.
pub fn layer_chain(key: &SnapshotKey) -> Option<ChainId> {
    key.as_str()
        .starts_with("sha256:")
        .then(|| crate::model::Digest(key.0.clone()))
}

/// Key of the snapshot a container of `image` starts from (its top layer).
pub fn image_top_key(image: &ImageRecord) -> Option<SnapshotKey> {
    image.layers.last().map(|l| layer_snapshot_key(&l.chain_id))
}

/// Snapshot key of a container's writable layer.
pub fn container_snapshot_key(id: &ContainerId) -> SnapshotKey {
    SnapshotKey(format!("container-{id}"))
}

/// A fresh key for the scratch snapshot a layer is extracted into.
pub fn extract_key() -> SnapshotKey {
    SnapshotKey(format!("extract-{}", ContainerId::generate()))
}

/// A fresh key for a short-lived read-only view (diff, commit, save).
pub fn scratch_view_key() -> SnapshotKey {
    SnapshotKey(format!("view-{}", ContainerId::generate()))
}

/// A fresh key for the view `check --data` reads a layer through.
pub fn check_view_key() -> SnapshotKey {
    SnapshotKey(format!("check-{}", ContainerId::generate()))
}
