//! Results of a run, written as `results.json` (every sample) and
//! `report.md` (n, medians, p95, ratios to the volume baseline with their
//! bootstrap intervals, copy-up amplification).
//!
//! Sections added elsewhere render their comparison rows with
//! [`comparison_cells`] under [`COMPARISON_HEADER`] and rank them with
//! [`ranks`], so every ratio in the report follows one rule
//! ([`super::stats::NOISE_RULE`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::plan::Plan;
use super::rig::{Backing, BackingInfo};
use super::runner::{AMPLIFICATION, AMPLIFICATION_USAGE};
use super::stats::{median, p95, Comparison, Summary, NOISE_RULE};
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
            "Kernel {}, {} CPUs, work dir {} on {}, {:.0} s. Latencies in ms: n samples, their median \
             and p95. ratio = driver median / median of the same writes to a bind-mounted plain \
             directory (volume) on the same backing filesystem; 95% CI = percentile bootstrap \
             interval of that ratio ({} resamples of each side, independently, fixed seed). \
             {NOISE_RULE} Ranks order the other rows by ratio, lowest first.\n",
            h.kernel,
            h.cpus,
            h.work_dir,
            h.work_fs,
            h.duration_s,
            super::stats::RESAMPLES
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
            "## First 4 KiB write into a 1 GiB file\n\nopen(O_WRONLY) + write + fsync in a fresh container; \
             the baseline is the volume on the same backing.\n\n\
             | target | open | write+fsync | {COMPARISON_HEADER} |\n|---|---|---|{COMPARISON_ALIGN}|"
        );
        let case = |metric: &str| Case {
            file_size: Some(GIB),
            write_size: Some(4 * KIB),
            ..Case::new("copy_up", metric)
        };
        let rows: Vec<(&TargetResult, Option<Comparison>)> = self
            .drivers()
            .filter(|t| !t.samples(&case("total")).is_empty())
            .map(|t| (t, self.compare_to_volume(t, &case("total"))))
            .collect();
        let comparisons: Vec<Option<Comparison>> = rows.iter().map(|r| r.1).collect();
        for ((t, c), rank) in rows.iter().zip(ranks(&comparisons)) {
            let cells = match c {
                Some(c) => comparison_cells(c, rank, ms),
                None => {
                    let own = Summary::of(t.samples(&case("total")));
                    summary_cells(own.as_ref(), ms) + " | - | - | - | - | - | -"
                }
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {cells} |",
                t.label,
                ms(median(t.samples(&case("open")))),
                ms(median(t.samples(&case("write")))),
            );
        }
        md.push('\n');
    }

    fn copy_up_table(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "## Copy-up against volume writes\n\nopen, write (+fsync) and total are the first write; second is a further \
             write of the same size at the next offset (steady state). Ratios are to the volume row of the same \
             backing, file and write size. Amplification = the container's own bytes of the file after the first \
             write / bytes written: bytes in extents FIEMAP does not flag shared (a reflink or snapshot copy counts \
             only what was rewritten); marked (usage) where that cannot be known (the file lives in a filesystem \
             image on a block device, as with blockfile and devmapper, or FIEMAP is unsupported), which is then \
             the growth of the driver's usage accounting over the first write.\n\n\
             | target | file | write | open | write | n | total median | total p95 | ratio | 95% CI | second | ratio | amplification |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|"
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
                        self.compare_to_volume(t, &c("total")),
                        self.compare_to_volume(t, &c("second")),
                    )
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    t.label,
                    human_bytes(s.case.file_size.unwrap_or(0)),
                    human_bytes(s.case.write_size.unwrap_or(0)),
                    ms(median(t.samples(&c("open")))),
                    ms(median(t.samples(&c("write")))),
                    summary_cells(Summary::of(&s.samples).as_ref(), ms),
                    r1.as_ref().map_or_else(|| "-".into(), ratio_text),
                    r1.as_ref().map_or_else(|| "-".into(), ci_text),
                    ms(median(t.samples(&c("second")))),
                    r2.as_ref().map_or_else(|| "-".into(), ratio_text),
                    amplification(t, &s.case),
                );
            }
        }
        md.push('\n');
    }

    fn latency_table(&self, md: &mut String, title: &str, workload: &str) {
        let _ = writeln!(
            md,
            "## {title}\n\n| target | case | n | median | p95 |\n|---|---|---|---|---|"
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
                    "| {} | {case} | {} |",
                    t.label,
                    summary_cells(Summary::of(&s.samples).as_ref(), ms),
                );
            }
        }
        md.push('\n');
    }

    fn read_table(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "## Cold read of a file at the bottom of the stack ({}, caches dropped)\n\n\
             | target | layers | n | MiB/s median | MiB/s p95 |\n|---|---|---|---|---|",
            human_bytes(self.plan.read_size)
        );
        for t in self.drivers() {
            for s in t.series.iter().filter(|s| s.case.workload == "read") {
                let mibs = |v: Option<f64>| {
                    v.map_or_else(|| "-".into(), |v| format!("{:.0}", v / (1u64 << 20) as f64))
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    t.label,
                    s.case.layers.unwrap_or(0),
                    s.samples.len(),
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

/// Columns [`comparison_cells`] fills, for a markdown table header.
pub const COMPARISON_HEADER: &str =
    "n | median | p95 | baseline n | baseline median | baseline p95 | ratio | 95% CI | rank";
/// The alignment row under [`COMPARISON_HEADER`].
pub const COMPARISON_ALIGN: &str = "---|---|---|---|---|---|---|---|---";

/// The cells of a comparison row under [`COMPARISON_HEADER`] (no outer
/// pipes); `value` formats a median or p95 (e.g. [`ms`]), `rank` comes from
/// [`ranks`].
pub fn comparison_cells(
    c: &Comparison,
    rank: Option<usize>,
    value: fn(Option<f64>) -> String,
) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        summary_cells(Some(&c.subject), value),
        summary_cells(Some(&c.baseline), value),
        ratio_text(c),
        ci_text(c),
        rank.map_or_else(|| "-".into(), |r| r.to_string()),
    )
}

/// `n | median | p95` of a summary, `0 | - | -` without one.
pub fn summary_cells(s: Option<&Summary>, value: fn(Option<f64>) -> String) -> String {
    match s {
        Some(s) => format!(
            "{} | {} | {}",
            s.n,
            value(Some(s.median)),
            value(Some(s.p95))
        ),
        None => "0 | - | -".into(),
    }
}

/// `0.89×`, or `≈ (noisy) 1.02×` for a row [`super::stats::is_noisy`] flags.
pub fn ratio_text(c: &Comparison) -> String {
    if c.noisy {
        format!("≈ (noisy) {}", ratio(Some(c.ratio.ratio)))
    } else {
        ratio(Some(c.ratio.ratio))
    }
}

/// The ratio's 95% interval, `0.81–0.95×`.
pub fn ci_text(c: &Comparison) -> String {
    format!("{:.2}–{:.2}×", c.ratio.lo, c.ratio.hi)
}

/// Rank of each comparison by ratio, lowest first (1-based); noisy rows
/// and missing ones get none and take no place.
pub fn ranks(comparisons: &[Option<Comparison>]) -> Vec<Option<usize>> {
    let mut ranked: Vec<(usize, f64)> = comparisons
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.filter(|c| !c.noisy).map(|c| (i, c.ratio.ratio)))
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut out = vec![None; comparisons.len()];
    for (place, (i, _)) in ranked.into_iter().enumerate() {
        out[i] = Some(place + 1);
    }
    out
}

/// The amplification cell of a copy-up row: the median over the samples,
/// marked `(usage)` when counted from the driver's usage growth.
fn amplification(t: &TargetResult, case: &Case) -> String {
    let of = |metric: &str| {
        median(t.samples(&Case {
            metric: metric.into(),
            ..case.clone()
        }))
    };
    match (of(AMPLIFICATION), of(AMPLIFICATION_USAGE)) {
        (Some(a), _) => format!("{a:.1}"),
        (None, Some(a)) => format!("{a:.1} (usage)"),
        (None, None) => "-".into(),
    }
}

/// Nanoseconds as milliseconds with sensible precision.
pub fn ms(ns: Option<f64>) -> String {
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
            md.contains("| overlay2 | - | - | 3 | 20.00 | 29.00 | 3 | 2.00 | 2.90 | 10.00× | "),
            "{md}"
        );
        assert!(md.contains("× | 1 |\n"), "overlay2 is ranked: {md}");
        assert!(
            md.contains("| overlay2-xfs | - | - | 1 | 8.00 | 8.00 | 1 | 4.00 | 4.00 | ≈ (noisy) 2.00× | 2.00–2.00× | - |"),
            "a one-sample baseline is flagged and not ranked: {md}"
        );
    }

    fn comparison(ratio: f64, noisy: bool) -> Option<Comparison> {
        let s = Summary {
            n: 20,
            median: ratio,
            p95: ratio,
        };
        Some(Comparison {
            subject: s,
            baseline: Summary {
                median: 1.0,
                p95: 1.0,
                ..s
            },
            ratio: super::super::stats::RatioCi {
                ratio,
                lo: ratio,
                hi: ratio,
            },
            noisy,
        })
    }

    #[test]
    fn ranks_skip_noisy_and_missing_rows() {
        let rows = [
            comparison(3.0, false),
            comparison(0.5, true),
            None,
            comparison(0.8, false),
        ];
        assert_eq!(ranks(&rows), vec![Some(2), None, None, Some(1)]);
    }

    #[test]
    fn comparison_cells_show_n_median_p95_ratio_and_interval() {
        let c = comparison(2.0, false).unwrap();
        assert_eq!(
            comparison_cells(&c, Some(1), ms),
            "20 | 0.000 | 0.000 | 20 | 0.000 | 0.000 | 2.00× | 2.00–2.00× | 1"
        );
        let noisy = comparison(1.1, true).unwrap();
        assert!(comparison_cells(&noisy, None, ms).ends_with("≈ (noisy) 1.10× | 1.10–1.10× | -"));
    }
}
