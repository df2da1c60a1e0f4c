//! Results of a run, written as `results.json` (every sample) and
//! `report.md` (medians, p95, ratios to the volume baseline, copy-up
//! amplification).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::plan::Plan;
use super::rig::{Backing, BackingInfo};
use super::stats::{median, p95};
use super::{human_bytes, Result, GIB, KIB};

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
    /// Filesystem of the temp dir, where host-backed homes and loop files live.
    pub temp_fs: String,
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
            temp_fs: super::rig::fs_type_name(&std::env::temp_dir()),
            started: strata_driver_api::now_ns() / 1_000_000_000,
            duration_s: 0.0,
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
        let mut vcase = case.clone();
        vcase.workload = "volume".into();
        let v = median(self.volume(target.backing_kind)?.samples(&vcase))?;
        Some(median(target.samples(case))? / v)
    }

    /// Writes `results.json` into `dir`.
    pub fn write_json(&self, dir: &Path) -> Result<()> {
        let path = dir.join("results.json");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
    }

    /// Writes `report.md` into `dir`.
    pub fn write_markdown(&self, dir: &Path) -> Result<()> {
        let path = dir.join("report.md");
        std::fs::write(&path, self.markdown()).with_context(|| format!("write {}", path.display()))
    }

    /// The markdown report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let h = &self.host;
        let _ = writeln!(md, "# strata bench ({} run)\n", self.plan.name);
        let _ = writeln!(
            md,
            "Kernel {}, {} CPUs, temp dir on {}, {:.0} s. Latencies in ms (median, p95 over the samples); \
             ratio = driver median / median of the same writes to a bind-mounted plain directory \
             (volume) on the same backing filesystem.\n",
            h.kernel, h.cpus, h.temp_fs, h.duration_s
        );
        self.targets_table(&mut md);
        self.headline_table(&mut md);
        self.copy_up_table(&mut md);
        self.latency_table(&mut md, "Create (prepare) latency", "create");
        self.latency_table(
            &mut md,
            "Commit latency (container with a new 1 MiB file)",
            "commit",
        );
        self.latency_table(&mut md, "Remove latency (the committed layer)", "remove");
        self.latency_table(&mut md, "Usage latency", "usage");
        self.read_table(&mut md);
        super::sections::markdown(self, &mut md);
        self.errors_list(&mut md);
        md
    }

    fn targets_table(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "## Drivers\n\n| target | driver | backing | options | status |\n|---|---|---|---|---|"
        );
        for t in &self.targets {
            let backing = t.backing.as_ref().map_or_else(
                || "-".into(),
                |b| {
                    let kind = if b.loop_size.is_some() { "loop " } else { "" };
                    format!("{kind}{} {}", b.fstype, b.mkfs_args.join(" "))
                        .trim()
                        .to_owned()
                },
            );
            let opts: Vec<String> = t.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let status = t
                .skipped
                .as_ref()
                .map_or_else(|| "ran".into(), |r| format!("skipped: {r}"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                t.label,
                t.driver,
                backing,
                opts.join(" "),
                status
            );
        }
        md.push('\n');
    }

    fn headline_table(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "## First 4 KiB write into a 1 GiB file\n\nopen(O_WRONLY) + write + fsync in a fresh container.\n\n\
             | target | open | write+fsync | total median | total p95 | volume median | ratio |\n|---|---|---|---|---|---|---|"
        );
        let case = |metric: &str| Case {
            file_size: Some(GIB),
            write_size: Some(4 * KIB),
            ..Case::new("copy_up", metric)
        };
        for t in self.drivers() {
            let total = t.samples(&case("total"));
            if total.is_empty() {
                continue;
            }
            let mut vcase = case("total");
            vcase.workload = "volume".into();
            let vol = self
                .volume(t.backing_kind)
                .and_then(|v| median(v.samples(&vcase)));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                t.label,
                ms(median(t.samples(&case("open")))),
                ms(median(t.samples(&case("write")))),
                ms(median(total)),
                ms(p95(total)),
                ms(vol),
                ratio(self.ratio_to_volume(t, &case("total")))
            );
        }
        md.push('\n');
    }

    fn copy_up_table(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "## Copy-up against volume writes\n\nopen, write (+fsync) and total are the first write; second is a further \
             write of the same size at the next offset (steady state). Amplification = growth of the driver's own usage \
             accounting over the first write / bytes written.\n\n\
             | target | file | write | open | write | total (p95) | ratio | second | ratio | amplification |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        );
        let mut rows: Vec<&TargetResult> = self.targets.iter().filter(|t| t.is_volume()).collect();
        rows.extend(self.drivers());
        for t in rows {
            let workload = if t.is_volume() { "volume" } else { "copy_up" };
            for s in t
                .series
                .iter()
                .filter(|s| s.case.workload == workload && s.case.metric == "total")
            {
                let c = |metric: &str| Case {
                    metric: metric.into(),
                    ..s.case.clone()
                };
                let (r1, r2) = if t.is_volume() {
                    (None, None)
                } else {
                    (
                        self.ratio_to_volume(t, &c("total")),
                        self.ratio_to_volume(t, &c("second")),
                    )
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} |",
                    t.label,
                    human_bytes(s.case.file_size.unwrap_or(0)),
                    human_bytes(s.case.write_size.unwrap_or(0)),
                    ms(median(t.samples(&c("open")))),
                    ms(median(t.samples(&c("write")))),
                    ms(median(&s.samples)),
                    ms(p95(&s.samples)),
                    ratio(r1),
                    ms(median(t.samples(&c("second")))),
                    ratio(r2),
                    median(t.samples(&c("amplification")))
                        .map_or_else(|| "-".into(), |a| format!("{a:.1}")),
                );
            }
        }
        md.push('\n');
    }

    fn latency_table(&self, md: &mut String, title: &str, workload: &str) {
        let _ = writeln!(
            md,
            "## {title}\n\n| target | case | median | p95 | samples |\n|---|---|---|---|---|"
        );
        for t in self.drivers() {
            for s in t.series.iter().filter(|s| s.case.workload == workload) {
                let case = match (&s.case.image_size, &s.case.layers, &s.case.files) {
                    (Some(size), _, _) => format!("1-layer image of {}", human_bytes(*size)),
                    (_, Some(n), _) => format!("{n}-layer image"),
                    (_, _, Some(n)) => format!("container with {n} files"),
                    _ => "-".into(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {case} | {} | {} | {} |",
                    t.label,
                    ms(median(&s.samples)),
                    ms(p95(&s.samples)),
                    s.samples.len()
                );
            }
        }
        md.push('\n');
    }

    fn read_table(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "## Cold read of a file at the bottom of the stack ({}, caches dropped)\n\n\
             | target | layers | MiB/s median | MiB/s p95 |\n|---|---|---|---|",
            human_bytes(self.plan.read_size)
        );
        for t in self.drivers() {
            for s in t.series.iter().filter(|s| s.case.workload == "read") {
                let mibs = |v: Option<f64>| {
                    v.map_or_else(|| "-".into(), |v| format!("{:.0}", v / (1u64 << 20) as f64))
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    t.label,
                    s.case.layers.unwrap_or(0),
                    mibs(median(&s.samples)),
                    mibs(p95(&s.samples))
                );
            }
        }
        md.push('\n');
    }

    fn errors_list(&self, md: &mut String) {
        let errors: Vec<String> = self
            .targets
            .iter()
            .flat_map(|t| t.errors.iter().map(move |e| format!("- {}: {e}", t.label)))
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(md, "## Failed workloads\n\n{}\n", errors.join("\n"));
        }
    }
}

/// Nanoseconds as milliseconds with sensible precision.
fn ms(ns: Option<f64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) => {
            let ms = ns / 1e6;
            if ms >= 100.0 {
                format!("{ms:.0}")
            } else if ms >= 1.0 {
                format!("{ms:.2}")
            } else {
                format!("{ms:.3}")
            }
        }
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}×"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        label: &str,
        driver: &str,
        backing: Backing,
        workload: &str,
        total: &[f64],
    ) -> TargetResult {
        let mut t = TargetResult {
            label: label.into(),
            driver: driver.into(),
            backing_kind: Some(backing),
            ..TargetResult::default()
        };
        let case = Case {
            file_size: Some(GIB),
            write_size: Some(4 * KIB),
            ..Case::new(workload, "total")
        };
        for &v in total {
            t.push(&case, "ns", v);
        }
        t
    }

    #[test]
    fn ratio_uses_the_volume_on_the_same_backing() {
        let results = Results {
            host: HostInfo::current(),
            plan: Plan::quick(),
            targets: vec![
                target(
                    "volume-host",
                    "volume",
                    Backing::Host,
                    "volume",
                    &[1e6, 2e6, 3e6],
                ),
                target("volume-xfs", "volume", Backing::Xfs, "volume", &[4e6]),
                target(
                    "overlay2",
                    "overlay2",
                    Backing::Host,
                    "copy_up",
                    &[10e6, 20e6, 30e6],
                ),
                target("overlay2-xfs", "overlay2", Backing::Xfs, "copy_up", &[8e6]),
            ],
        };
        let case = Case {
            file_size: Some(GIB),
            write_size: Some(4 * KIB),
            ..Case::new("copy_up", "total")
        };
        assert_eq!(
            results.ratio_to_volume(&results.targets[2], &case),
            Some(10.0)
        );
        assert_eq!(
            results.ratio_to_volume(&results.targets[3], &case),
            Some(2.0)
        );
        let md = results.markdown();
        assert!(
            md.contains("| overlay2 | - | - | 20.00 | 29.00 | 2.00 | 10.00× |"),
            "{md}"
        );
        assert!(md.contains("| overlay2-xfs |"), "{md}");
    }
}
