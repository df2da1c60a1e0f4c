//! `strata check`: compares the metadata store with the driver's storage,
//! the mount table and the files under the root, reports each
//! inconsistency, and with `repair` finishes or undoes what a crash left
//! half-done.
//!
//! What it looks for is [`Problem`]; [`scan`] finds them, [`repair`] fixes
//! the repairable ones, [`data`] re-reads committed layers against their
//! manifest ([`crate::store::LayerStore::verify`]). Repair never deletes a committed layer an image references
//! and never touches storage it cannot recognise by its snapshot id.

pub mod data;
mod repair;
mod scan;

use serde::Serialize;

use crate::error::Result;
use crate::Store;

pub use repair::repair;
pub use scan::{scan, Problem};

/// What to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Fix what can be fixed.
    pub repair: bool,
    /// Re-read every committed layer against its manifest.
    pub data: bool,
    /// With `repair`, also remove committed layers no image references
    /// (never one an image references, nor one with children).
    pub prune: bool,
}

/// One problem found, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Category, e.g. `orphan_storage`.
    pub kind: &'static str,
    /// What it concerns: snapshot key, id, container, image or path.
    pub subject: String,
    /// Human explanation.
    pub detail: String,
    /// Whether it counts as damage (exit 1); notes do not.
    pub damage: bool,
    /// The items it concerns, when there are several (pending reclaim).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// What `--repair` did about it, if anything.
    pub repaired: Option<String>,
    /// Why a repair attempt failed.
    pub repair_error: Option<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Everything found, with repair actions.
    pub findings: Vec<Finding>,
    /// Damage still present at the end (after repair, when repairing).
    pub remaining: Vec<Finding>,
    /// Whether repair ran.
    pub repair: bool,
    /// Whether layer data was verified.
    pub data: bool,
    /// Layers whose data was verified.
    pub layers_verified: usize,
}

impl Report {
    /// Whether damage remains: the exit status is 1 then.
    pub fn damaged(&self) -> bool {
        !self.remaining.is_empty()
    }

    /// How many findings were repaired.
    pub fn repaired(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.repaired.is_some())
            .count()
    }
}

/// Repair rounds: fixing one problem can reveal another (a dangling
/// container snapshot leaves a container without snapshot).
const ROUNDS: usize = 8;

/// How long `--repair` waits for a driver's background reclaim (btrfs'
/// cleaner dropping deleted subvolumes).
pub const RECLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// After a strata process died: repairs what it left that is safe to
/// repair beside live processes (a container record whose snapshot an
/// interrupted `rm` removed, a mount record an interrupted `umount` left, a
/// mount an interrupted `mount` made but never recorded, kept tars and
/// manifests the dead process wrote and nothing claims).
/// Everything else waits for `check --repair`. Returns what was done.
pub fn finish_interrupted(store: &Store) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let dead_mounting = dead_mount_intents(store)?;
    for problem in scan(store)? {
        let safe = match &problem {
            Problem::ContainerWithoutSnapshot(_) | Problem::StaleMountRecord(_) => true,
            Problem::UnrecordedMount(path) => dead_mounting
                .iter()
                .any(|c| canonical(&store.layout().container_rootfs(&c.id.0)) == *path),
            Problem::OrphanLayerTar(path) | Problem::OrphanManifest(path) => {
                crate::store::owned::left_by_dead_session(store, path)
            }
            _ => false,
        };
        if safe {
            match repair::repair(store, &problem) {
                Ok(action) => done.push(action),
                Err(e) => tracing::warn!(error = %e, "finishing an interrupted operation"),
            }
        }
    }
    for dead in dead_mounting {
        // Read again: a repair above may have changed the record.
        if let Some(mut container) = store.meta()?.container(&dead.id)? {
            container.mounting = None;
            store.meta()?.put_container(&container)?;
        }
    }
    Ok(done)
}

/// Containers whose `mount` process died between marking and recording it.
fn dead_mount_intents(store: &Store) -> Result<Vec<crate::model::ContainerRecord>> {
    Ok(store
        .meta()?
        .containers()?
        .into_iter()
        .filter(|c| {
            c.mounting
                .as_deref()
                .is_some_and(|owner| !store.session().is_alive(owner))
        })
        .collect())
}

/// Finishes the driver's background reclaim (once, after the other
/// repairs, which can add to it), waiting up to [`RECLAIM_WAIT`], and
/// records the outcome on its finding.
fn finish_reclaim(store: &Store, problems: &mut Vec<Problem>, findings: &mut [Finding]) {
    let Some(i) = problems
        .iter()
        .position(|p| matches!(p, Problem::PendingReclaim { .. }))
    else {
        return;
    };
    let kind = problems[i].finding().kind;
    let Some(finding) = findings.iter_mut().find(|f| f.kind == kind) else {
        return;
    };
    let deadline = std::time::Instant::now() + RECLAIM_WAIT;
    match store.driver().finish_reclaim(deadline) {
        Ok(left) if left.is_empty() => {
            finding.repaired = Some(format!("reclaimed {}", finding.items.join(", ")));
            problems.remove(i);
        }
        Ok(left) => {
            finding.repair_error = Some(format!(
                "{} still pending after {} s: {}",
                left.len(),
                RECLAIM_WAIT.as_secs(),
                left.join(", ")
            ));
        }
        Err(e) => finding.repair_error = Some(e.to_string()),
    }
}

fn canonical(p: &std::path::Path) -> std::path::PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Runs the check on an open store.
pub fn check(store: &Store, options: CheckOptions) -> Result<Report> {
    let mut problems = scan(store)?;
    let mut layers_verified = 0;
    let mut data_problems = Vec::new();
    if options.data {
        let verified = data::verify(store)?;
        layers_verified = verified.layers;
        data_problems = verified.problems;
    }
    let mut findings: Vec<Finding> = problems
        .iter()
        .chain(&data_problems)
        .map(Problem::finding)
        .collect();
    if !options.repair {
        let remaining = findings.iter().filter(|f| f.damage).cloned().collect();
        return Ok(Report {
            findings,
            remaining,
            repair: false,
            data: options.data,
            layers_verified,
        });
    }
    findings.clear();
    for _ in 0..ROUNDS {
        problems.sort_by_key(Problem::repair_order);
        let mut attempted = false;
        for problem in &problems {
            let mut finding = problem.finding();
            if problem.repairable(options.prune) {
                attempted = true;
                match repair::repair(store, problem) {
                    Ok(action) => finding.repaired = Some(action),
                    Err(e) => finding.repair_error = Some(e.to_string()),
                }
            }
            if !findings
                .iter()
                .any(|f| f.kind == finding.kind && f.subject == finding.subject)
            {
                findings.push(finding);
            }
        }
        if !attempted {
            break;
        }
        problems = scan(store)?;
    }
    finish_reclaim(store, &mut problems, &mut findings);
    findings.extend(data_problems.iter().map(Problem::finding));
    let remaining = problems
        .iter()
        .chain(&data_problems)
        .map(Problem::finding)
        .filter(|f| f.damage)
        .collect();
    Ok(Report {
        findings,
        remaining,
        repair: true,
        data: options.data,
        layers_verified,
    })
}
