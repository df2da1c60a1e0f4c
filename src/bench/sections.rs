//! Report sections of the scale, concurrency, deep-stack and density
//! workloads ([`super::scale`], [`super::concurrency`], [`super::deep`],
//! [`super::density`]), appended to `report.md`.

use std::fmt::Write as _;

use super::results::{Case, Results, TargetResult};
use super::stats::{median, p95, percentile};
use super::{concurrency, deep, density, human_bytes, scale, GIB, KIB};

/// Appends every section that has figures.
pub fn markdown(results: &Results, md: &mut String) {
    scale_table(results, md);
    concurrency_table(results, md);
    deep_table(results, md);
    density_table(results, md);
}

/// Nanoseconds as milliseconds with sensible precision.
fn ms(ns: Option<f64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) if ns >= 100e6 => format!("{:.0}", ns / 1e6),
        Some(ns) if ns >= 1e6 => format!("{:.2}", ns / 1e6),
        Some(ns) => format!("{:.3}", ns / 1e6),
    }
}

fn has(t: &TargetResult, workload: &str) -> bool {
    t.series.iter().any(|s| s.case.workload == workload)
}

fn scale_table(results: &Results, md: &mut String) {
    let counts = &results.plan.scale_counts;
    if !results.drivers().any(|t| has(t, scale::WORKLOAD)) {
        return;
    }
    let heads: Vec<String> = counts.iter().map(|c| format!("{c} existing")).collect();
    let _ = writeln!(
        md,
        "## Scale: latency against snapshots in the store\n\n\
         The store holds N committed empty snapshots (children of one empty layer, made through \
         the snapshotter API); each round prepares on that layer, commits, asks usage of and removes \
         the result. Median (p95) in ms, n per cell; growth = median at the largest N / median at \
         the smallest (goal ≤ {:.1}×); a change smaller than the spread (p95 - median) at the \
         smallest N is marked as within noise, not held against the goal.\n\n\
         | target | op | {} | n | growth |\n|---|---|{}---|---|",
        scale::GOAL,
        heads.join(" | "),
        "---|".repeat(counts.len())
    );
    for t in results.drivers().filter(|t| has(t, scale::WORKLOAD)) {
        let rows = scale::rows(t);
        let growth = scale::growth(&rows);
        for op in scale::OPS {
            let cells: Vec<String> = counts
                .iter()
                .map(|&c| {
                    rows.iter()
                        .find(|r| r.op == op && r.existing == c)
                        .map_or_else(
                            || "-".into(),
                            |r| format!("{} ({})", ms(Some(r.median)), ms(Some(r.p95))),
                        )
                })
                .collect();
            let n = rows
                .iter()
                .find(|r| r.op == op)
                .map_or_else(|| "-".into(), |r| r.n.to_string());
            let g = growth.iter().find(|g| g.op == op).map_or_else(
                || "-".into(),
                |g| {
                    let mark = if g.over_goal() {
                        " **over goal**"
                    } else if g.noisy {
                        " (within noise)"
                    } else {
                        ""
                    };
                    format!("{:.2}×{mark}", g.ratio)
                },
            );
            let _ = writeln!(
                md,
                "| {} | {op} | {} | {n} | {g} |",
                t.label,
                cells.join(" | ")
            );
        }
        let populate: Vec<String> = t
            .series
            .iter()
            .filter(|s| s.case.workload == scale::WORKLOAD && s.case.metric == "populate")
            .filter_map(|s| {
                Some(format!(
                    "to {}: {} ms per snapshot",
                    s.case.existing?,
                    ms(median(&s.samples))
                ))
            })
            .collect();
        if !populate.is_empty() {
            let _ = writeln!(
                md,
                "| {} | populate (prepare + commit) | {} | | |",
                t.label,
                populate.join("; ")
            );
        }
    }
    md.push('\n');
}

fn concurrency_table(results: &Results, md: &mut String) {
    if !results.drivers().any(|t| has(t, concurrency::WORKLOAD)) {
        return;
    }
    let _ = writeln!(
        md,
        "## Concurrent Prepare through the socket\n\n\
         N callers, each on its own connection to the proxy server, send Prepare on one parent at once. \
         Spread = last completion - first completion; makespan = release to last completion; latency \
         per call in ms.\n\n\
         | target | calls | spread | makespan | p50 | p99 |\n|---|---|---|---|---|---|"
    );
    for t in results.drivers() {
        for s in t
            .series
            .iter()
            .filter(|s| s.case.workload == concurrency::WORKLOAD && s.case.metric == "latency")
        {
            let other = |metric: &str| {
                median(t.samples(&Case {
                    metric: metric.into(),
                    ..s.case.clone()
                }))
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                t.label,
                s.samples.len(),
                ms(other("spread")),
                ms(other("makespan")),
                ms(percentile(&s.samples, 50.0)),
                ms(percentile(&s.samples, 99.0)),
            );
        }
    }
    md.push('\n');
}

fn deep_table(results: &Results, md: &mut String) {
    if !results.drivers().any(|t| has(t, deep::WORKLOAD)) {
        return;
    }
    let _ = writeln!(
        md,
        "## Deep stacks: mount and a lookup in the bottom layer\n\n\
         Mount of a fresh container's root; then, caches dropped, stat + open + 4 KiB read of a file \
         only the bottom layer holds. Median (p95) in ms; ratio = median / the 1-layer median.\n\n\
         | target | layers | n | mount | ratio | lookup | ratio |\n|---|---|---|---|---|---|---|"
    );
    for t in results.drivers() {
        let case = |metric: &str, layers: usize| Case {
            layers: Some(layers),
            ..Case::new(deep::WORKLOAD, metric)
        };
        for s in t
            .series
            .iter()
            .filter(|s| s.case.workload == deep::WORKLOAD && s.case.metric == "mount")
        {
            let layers = s.case.layers.unwrap_or(0);
            let cell = |metric: &str| {
                let v = t.samples(&case(metric, layers));
                let base = median(t.samples(&case(metric, 1)));
                let r = median(v)
                    .zip(base)
                    .map_or_else(|| "-".into(), |(m, b)| format!("{:.2}×", m / b));
                (format!("{} ({})", ms(median(v)), ms(p95(v))), r)
            };
            let (mount, mr) = cell("mount");
            let (lookup, lr) = cell("lookup");
            let _ = writeln!(
                md,
                "| {} | {layers} | {} | {mount} | {mr} | {lookup} | {lr} |",
                t.label,
                s.samples.len()
            );
        }
    }
    md.push('\n');
}

fn density_table(results: &Results, md: &mut String) {
    if !results.drivers().any(|t| has(t, density::WORKLOAD)) {
        return;
    }
    let _ = writeln!(
        md,
        "## Density: page cache of containers reading one image's file\n\n\
         N containers of one image each read the same file once, cold. Growth ÷ file size: 1 = one \
         shared copy, N = a copy per container. cgroup = page cache charged to the readers' memory \
         cgroup; host = change of the host's Cached - Shmem over the reads (includes a loop device's \
         cache of its backing file, and other processes' activity). Beside it, the price of sharing: \
         the first 4 KiB write into a 1 GiB file (copy-up, median ms).\n\n\
         | target | containers | file | cgroup growth ÷ file | host growth ÷ file | first 4 KiB write |\n\
         |---|---|---|---|---|---|"
    );
    let copy_up = Case {
        file_size: Some(GIB),
        write_size: Some(4 * KIB),
        ..Case::new("copy_up", "total")
    };
    for t in results.drivers() {
        for s in t
            .series
            .iter()
            .filter(|s| s.case.workload == density::WORKLOAD && s.case.metric == "cgroup_ratio")
        {
            let host = median(t.samples(&Case {
                metric: "host_ratio".into(),
                ..s.case.clone()
            }));
            let ratio = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                t.label,
                s.case.containers.unwrap_or(0),
                human_bytes(s.case.file_size.unwrap_or(0)),
                ratio(median(&s.samples)),
                ratio(host),
                ms(median(t.samples(&copy_up)))
            );
        }
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::Plan;
    use crate::bench::results::HostInfo;

    #[test]
    fn sections_show_each_workloads_figures() {
        let mut t = TargetResult {
            label: "overlay2".into(),
            driver: "overlay2".into(),
            ..TargetResult::default()
        };
        for (count, v) in [(10, 1e6), (1_000, 2e6)] {
            for op in scale::OPS {
                t.push(&scale::case(op, count), "ns", v);
            }
        }
        let burst = Case {
            concurrent: Some(2),
            ..Case::new(concurrency::WORKLOAD, "latency")
        };
        t.push(&burst, "ns", 3e6);
        t.push(&burst, "ns", 5e6);
        let spread = Case {
            metric: "spread".into(),
            ..burst.clone()
        };
        t.push(&spread, "ns", 2e6);
        for (layers, v) in [(1, 1e6), (128, 4e6)] {
            for metric in ["mount", "lookup"] {
                let c = Case {
                    layers: Some(layers),
                    ..Case::new(deep::WORKLOAD, metric)
                };
                t.push(&c, "ns", v);
            }
        }
        let d = Case {
            containers: Some(5),
            file_size: Some(64 << 20),
            ..Case::new(density::WORKLOAD, "cgroup_ratio")
        };
        t.push(&d, "ratio", 1.02);
        let results = Results {
            host: HostInfo::current(),
            plan: Plan::quick(),
            targets: vec![t],
        };
        let mut md = String::new();
        markdown(&results, &mut md);
        for row in [
            "| overlay2 | prepare | 1.00 (1.00) | 2.00 (2.00) | 1 | 2.00× **over goal** |",
            "| overlay2 | 2 | 2.00 | - | 4.00 | 4.98 |",
            "| overlay2 | 128 | 1 | 4.00 (4.00) | 4.00× | 4.00 (4.00) | 4.00× |",
            "| overlay2 | 5 | 64 MiB | 1.02 | - | - |",
        ] {
            assert!(md.contains(row), "missing {row:?} in\n{md}");
        }
    }
}
