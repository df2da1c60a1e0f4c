//! `report.md`: n, medians, p95, ratios to the volume baseline with their
//! bootstrap intervals, copy-up amplification, then the sections of the
//! other steps ([`super::sections`]), all from one [`Results`].

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::cells::{
    ci_text, comparison_cells, ms, ranks, ratio_text, summary_cells, COMPARISON_ALIGN,
    COMPARISON_HEADER,
};
use super::results::{Case, Results, TargetResult, AMPLIFICATION, AMPLIFICATION_USAGE};
use super::stats::{median, p95, Comparison, Summary, NOISE_RULE};
use super::{human_bytes, Result, GIB, KIB};

impl Results {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::Plan;
    use crate::bench::results::HostInfo;
    use crate::bench::rig::Backing;

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
}
