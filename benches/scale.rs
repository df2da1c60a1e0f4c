//! Snapshot operations against the number of snapshots in the store: for
//! each count, the store is filled with committed empty snapshots (through
//! the snapshotter API) and criterion times prepare, commit, usage and
//! remove there. Every round's figures are also kept, and a summary per
//! driver is printed at the end: median and p95 per count, and the growth
//! from the smallest count to the largest (goal ≤ 1.5×).
//!
//! `STRATA_BENCH_SCALE_COUNTS=10,1000` changes the counts (default
//! 10,1000,10000).

mod common;

use std::cell::RefCell;

use strata::bench::results::TargetResult;
use strata::bench::rig::Rig;
use strata::bench::scale;

fn counts() -> Vec<usize> {
    let mut counts: Vec<usize> = std::env::var("STRATA_BENCH_SCALE_COUNTS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 1_000, 10_000]);
    counts.sort_unstable();
    counts
}

fn bench_rig(c: &mut criterion::Criterion, rig: &Rig, counts: &[usize]) -> TargetResult {
    let label = &rig.target.label;
    let figures = RefCell::new(TargetResult::default());
    let base = match scale::base(rig) {
        Ok(base) => base,
        Err(e) => {
            eprintln!("SKIP scale/{label}: {e:#}");
            return figures.into_inner();
        }
    };
    let mut existing = 0;
    for &count in counts {
        match scale::populate(rig, &base, count.saturating_sub(existing), || {}) {
            Ok(ns) => eprintln!(
                "scale/{label}: filled to {count} snapshots in {:.1} s",
                ns / 1e9
            ),
            Err(e) => {
                eprintln!("SKIP scale/{label} at {count}: {e:#}");
                break;
            }
        }
        existing = existing.max(count);
        for (i, op) in scale::OPS.iter().enumerate() {
            c.bench_function(&format!("scale/{label}/{op}/{count}-existing"), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let sample = scale::sample(rig, &base).expect("scale sample");
                            let mut figures = figures.borrow_mut();
                            for (op, ns) in sample.pairs() {
                                figures.push(&scale::case(op, count), "ns", ns);
                            }
                            common::dur(sample.pairs()[i].1)
                        })
                        .sum()
                })
            });
        }
    }
    figures.into_inner()
}

fn print_summary(label: &str, figures: &TargetResult) {
    let rows = scale::rows(figures);
    for r in &rows {
        println!(
            "scale/{label}/{}: {} existing: median {:.3} ms, p95 {:.3} ms (n={})",
            r.op,
            r.existing,
            r.median / 1e6,
            r.p95 / 1e6,
            r.n
        );
    }
    for g in scale::growth(&rows) {
        let verdict = if g.over_goal() {
            "OVER the goal"
        } else if g.noisy {
            "within noise"
        } else {
            "within the goal"
        };
        println!(
            "scale/{label}/{}: {} / {} existing = {:.2}x ({verdict} of {:.1}x)",
            g.op,
            g.to,
            g.from,
            g.ratio,
            scale::GOAL
        );
    }
}

fn main() {
    if !common::can_run("scale") {
        return;
    }
    let counts = counts();
    let mut c = common::criterion();
    for rig in common::rigs() {
        let figures = bench_rig(&mut c, &rig, &counts);
        print_summary(&rig.target.label, &figures);
    }
    c.final_summary();
}
