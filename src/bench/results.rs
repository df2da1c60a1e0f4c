//! What a run measured: every sample of every target, by case, written as
//! `results.json`; [`super::report`] renders it as markdown.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::plan::Plan;
use super::rig::{Backing, BackingInfo};
use super::stats::Comparison;
use super::Result;

/// Metric of the amplification counted from unshared extents (FIEMAP).
pub const AMPLIFICATION: &str = "amplification";
/// Metric of the amplification counted from the driver's usage growth.
pub const AMPLIFICATION_USAGE: &str = "amplification_usage";

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The host.
    pub host: HostInfo,
    /// What was measured.
    pub plan: Plan,
    /// One entry per driver target, and one `volume-<backing>` per backing.
    pub targets: Vec<TargetResult>,
}

/// The host a run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    /// `uname -r`.
    pub kernel: String,
    /// Online CPUs.
    pub cpus: usize,
    /// The work dir, where host-backed homes and loop files live.
    pub work_dir: String,
    /// Its filesystem.
    pub work_fs: String,
    /// Start, seconds since the epoch.
    pub started: u64,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
}

impl HostInfo {
    /// Describes this host now.
    pub fn current() -> Self {
        Self {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            work_dir: String::new(),
            work_fs: String::new(),
            started: strata_driver_api::now_ns() / 1_000_000_000,
            duration_s: 0.0,
        }
    }

    /// This description with the work dir `dir` and its filesystem.
    pub fn in_work_dir(self, dir: &Path) -> Self {
        Self {
            work_dir: dir.display().to_string(),
            work_fs: super::rig::fs_type_name(dir),
            ..self
        }
    }
}

/// Results of one target (a driver on a backing, or a volume baseline).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetResult {
    /// `btrfs`, `overlay2-xfs`, `volume-host`, ...
    pub label: String,
    /// Driver name (`volume` for a baseline).
    pub driver: String,
    /// The backing kind asked for.
    pub backing_kind: Option<Backing>,
    /// The backing as made.
    pub backing: Option<BackingInfo>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// The driver's status lines.
    pub status: Vec<(String, String)>,
    /// Why it did not run, if it did not.
    pub skipped: Option<String>,
    /// Every measured series.
    pub series: Vec<Series>,
    /// Workloads that failed, with the error.
    pub errors: Vec<String>,
    /// Wall time of each step (image builds, workloads, cleanup), seconds.
    pub wall_s: BTreeMap<String, f64>,
}

/// What one series measures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Case {
    /// `copy_up`, `volume`, `create`, `commit`, `remove`, `usage`, `read`.
    pub workload: String,
    /// `open`, `write`, `total`, `second`, `amplification`, `latency`, `throughput`.
    pub metric: String,
    /// Size of the file written to (copy-up, volume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    /// Size of the first write (copy-up, volume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_size: Option<u64>,
    /// Size of a one-layer image (create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<u64>,
    /// Layers of the image (create, read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// Files in the container (usage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
    /// Committed snapshots already in the store (scale).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing: Option<usize>,
    /// Calls sent at once (concurrency).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<usize>,
    /// Containers sharing one image (density).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<usize>,
}

impl Case {
    /// A case of `workload` measuring `metric`.
    pub fn new(workload: &str, metric: &str) -> Self {
        Self {
            workload: workload.into(),
            metric: metric.into(),
            ..Self::default()
        }
    }
}

/// The samples of one case.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// What was measured.
    #[serde(flatten)]
    pub case: Case,
    /// `ns`, `bytes/s` or `ratio`.
    pub unit: &'static str,
    /// Every sample, in order.
    pub samples: Vec<f64>,
}

impl TargetResult {
    /// Appends `sample` to the series of `case`, creating it.
    pub fn push(&mut self, case: &Case, unit: &'static str, sample: f64) {
        match self.series.iter_mut().find(|s| s.case == *case) {
            Some(s) => s.samples.push(sample),
            None => self.series.push(Series {
                case: case.clone(),
                unit,
                samples: vec![sample],
            }),
        }
    }

    /// The samples of the series matching `case`.
    pub fn samples(&self, case: &Case) -> &[f64] {
        self.series
            .iter()
            .find(|s| s.case == *case)
            .map_or(&[], |s| &s.samples)
    }

    /// Whether this is a volume baseline.
    pub fn is_volume(&self) -> bool {
        self.driver == "volume"
    }
}

impl Results {
    /// The volume baseline measured on `backing`.
    pub fn volume(&self, backing: Option<Backing>) -> Option<&TargetResult> {
        self.targets
            .iter()
            .find(|t| t.is_volume() && t.backing_kind == backing)
    }

    /// Driver targets that ran.
    pub fn drivers(&self) -> impl Iterator<Item = &TargetResult> {
        self.targets
            .iter()
            .filter(|t| !t.is_volume() && t.skipped.is_none())
    }

    /// Median of `case` on `target` divided by the median of the same
    /// volume case on the same backing.
    pub fn ratio_to_volume(&self, target: &TargetResult, case: &Case) -> Option<f64> {
        self.compare_to_volume(target, case).map(|c| c.ratio.ratio)
    }

    /// `case` on `target` against the same volume case on the same backing.
    pub fn compare_to_volume(&self, target: &TargetResult, case: &Case) -> Option<Comparison> {
        let mut vcase = case.clone();
        vcase.workload = "volume".into();
        let volume = self.volume(target.backing_kind)?;
        Comparison::new(target.samples(case), volume.samples(&vcase))
    }

    /// Writes `results.json` into `dir`.
    pub fn write_json(&self, dir: &Path) -> Result<()> {
        let path = dir.join("results.json");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
    }
}
