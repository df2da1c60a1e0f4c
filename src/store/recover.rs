//! What every process does on opening a store: finish or undo what
//! processes that died left half-done. Only work of dead sessions is
//! touched (see [`crate::db::session`]); work of live processes,
//! and snapshots a runtime made through `strata serve` (they carry no
//! session label), are left alone.

use std::path::Path;

use serde::Serialize;
use strata_driver_api::{Kind, SnapshotKey};

use crate::db::session;
use crate::snapshotter::{Incomplete, Snapshotter};

use super::Store;
use crate::error::Result;
use crate::store::keys::LABEL_SESSION;

/// What opening the store cleaned up.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Recovered {
    /// Snapshot operations finished (commit, remove) or undone (create).
    pub operations: Vec<Incomplete>,
    /// Scratch and half-created container snapshots removed.
    pub snapshots: Vec<SnapshotKey>,
    /// Scratch directories removed (with their mounts).
    pub scratch_dirs: usize,
    /// Processes found dead since the last open (their session files).
    pub dead_sessions: usize,
    /// What else was finished or undone for them (by the caller, which
    /// runs `check`'s safe repairs when a process died).
    pub finished: Vec<String>,
}

impl Recovered {
    /// Whether nothing was left to clean up.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
            && self.snapshots.is_empty()
            && self.scratch_dirs == 0
            && self.finished.is_empty()
    }

    /// One line for the user, e.g. after a Ctrl-C or a kill.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.operations.is_empty() {
            let keys: Vec<String> = self
                .operations
                .iter()
                .map(|i| format!("{} {}", verb(i), i.key))
                .collect();
            parts.push(keys.join(", "));
        }
        if !self.snapshots.is_empty() {
            parts.push(format!(
                "removed {} scratch snapshot(s)",
                self.snapshots.len()
            ));
        }
        if self.scratch_dirs > 0 {
            parts.push(format!("removed {} scratch dir(s)", self.scratch_dirs));
        }
        parts.extend(self.finished.iter().cloned());
        format!(
            "cleaned up after an interrupted strata process: {}",
            parts.join("; ")
        )
    }
}

fn verb(i: &Incomplete) -> &'static str {
    match i.state {
        crate::snapshotter::State::Committing => "finished committing",
        crate::snapshotter::State::Removing => "finished removing",
        _ => "undid creating",
    }
}

/// Cleans up after dead sessions. A step that fails is logged and left for
/// `strata check` (it must not stop the command the user asked for).
pub fn recover(store: &Store) -> Result<Recovered> {
    let dead_sessions = store.session().reap_dead().len();
    // One read of the records serves both passes: repair only touches
    // half-done records, the second pass only ready ones.
    let records = store.snapshots().records()?;
    let operations = store.snapshots().repair_among(&records).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not finish an interrupted operation; run strata check");
        Vec::new()
    });
    let snapshots = remove_dead_snapshots(store, records)?;
    let scratch_dirs = remove_dead_scratch_dirs(store);
    Ok(Recovered {
        operations,
        snapshots,
        dead_sessions: dead_sessions + scratch_dirs,
        scratch_dirs,
        finished: Vec::new(),
    })
}

/// Uncommitted snapshots a dead session made and nothing claims: scratch
/// views and extractions, and container snapshots whose container record
/// was never written.
fn remove_dead_snapshots(
    store: &Store,
    records: Vec<(SnapshotKey, crate::snapshotter::Record)>,
) -> Result<Vec<SnapshotKey>> {
    let containers = store.meta()?.containers()?;
    let mut removed = Vec::new();
    for (key, record) in records {
        let Some(owner) = record.labels.get(LABEL_SESSION) else {
            continue;
        };
        if record.kind == Kind::Committed
            || record.state != crate::snapshotter::State::Ready
            || store.session().is_alive(owner)
            || containers.iter().any(|c| c.snapshot == key)
        {
            continue;
        }
        match store.snapshots().remove(&key) {
            Ok(()) => removed.push(key),
            Err(strata_driver_api::Error::NotFound(_)) => {}
            Err(e) => tracing::warn!(%key, error = %e, "could not remove a dead scratch snapshot"),
        }
    }
    Ok(removed)
}

/// `<root>/tmp/<session>` directories of dead sessions.
fn remove_dead_scratch_dirs(store: &Store) -> usize {
    let Ok(entries) = std::fs::read_dir(store.layout().scratch_root()) else {
        return 0;
    };
    let sessions = store.layout().sessions();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == store.session().id() || session::is_alive(&sessions, &name) {
            continue;
        }
        if remove_scratch_dir(&entry.path()) {
            removed += 1;
        }
    }
    removed
}

/// Unmounts everything below `dir`, then removes it; a directory with a
/// mount that will not go is left (never delete through a mount).
pub fn remove_scratch_dir(dir: &Path) -> bool {
    if let Err(e) = strata_driver_api::mount::unmount_below(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not unmount scratch mounts");
    }
    let still_mounted = strata_driver_api::mount::mount_points()
        .map(|points| points.iter().any(|p| p.starts_with(dir)))
        .unwrap_or(true);
    if still_mounted {
        return false;
    }
    match strata_driver_api::tree::remove_tree(dir) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove scratch dir");
            false
        }
    }
}
