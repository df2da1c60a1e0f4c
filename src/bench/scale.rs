//! Scale: snapshot operation latency against the number of snapshots
//! already in the store.
//!
//! The store is filled with committed empty snapshots, all children of one
//! empty base layer, through the snapshotter API (prepare + commit, nothing
//! mounted), up to each count of the plan in turn. At each count a batch of
//! samples times prepare (on the base), commit, usage and remove of the
//! committed result, which leaves the count where it was. What a
//! store-wide cost (a full table scan, a directory listing) would add shows
//! as growth from the smallest count to the largest.

use std::time::Instant;

use strata_driver_api::{Labels, SnapshotKey};

use super::results::{Case, TargetResult};
use super::rig::{sync_fs, Rig};
use super::stats::{median, p95};
use super::Result;
use crate::snapshotter::Snapshotter;

/// The operations timed at each count, in the order they run.
pub const OPS: [&str; 4] = ["prepare", "commit", "usage", "remove"];

/// Workload name of scale series in the results.
pub const WORKLOAD: &str = "scale";

/// The goal the report compares against: the figure at the largest count
/// at most this many times the figure at the smallest.
pub const GOAL: f64 = 1.5;

/// Untimed rounds before the samples at each count: the first operations
/// on a fresh store pay for cold caches, not for the count.
pub const WARM_UP: usize = 2;

/// One timed round: each operation once, on a fresh snapshot.
#[derive(Debug, Clone, Copy)]
pub struct OpSample {
    /// `prepare` on the base (ns).
    pub prepare: f64,
    /// `commit` of that empty active snapshot (ns).
    pub commit: f64,
    /// `usage` of the committed snapshot (ns).
    pub usage: f64,
    /// `remove` of the committed snapshot (ns).
    pub remove: f64,
}

impl OpSample {
    /// `(operation, ns)` in [`OPS`] order.
    pub fn pairs(&self) -> [(&'static str, f64); 4] {
        [
            ("prepare", self.prepare),
            ("commit", self.commit),
            ("usage", self.usage),
            ("remove", self.remove),
        ]
    }
}

/// The empty committed layer every scale snapshot is a child of.
pub fn base(rig: &Rig) -> Result<SnapshotKey> {
    let key = rig.fresh_key("scale-base-active");
    let name = rig.fresh_key("scale-base");
    rig.snapshots.prepare(&key, None, Labels::new())?;
    rig.snapshots.commit(&name, &key, Labels::new())?;
    Ok(name)
}

/// Adds `n` committed empty snapshots on `base`; `tick` is called after
/// each. Returns the wall time taken (ns).
pub fn populate(rig: &Rig, base: &SnapshotKey, n: usize, mut tick: impl FnMut()) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..n {
        let key = rig.fresh_key("scale-active");
        rig.snapshots.prepare(&key, Some(base), Labels::new())?;
        rig.snapshots
            .commit(&rig.fresh_key("scale-filler"), &key, Labels::new())?;
        tick();
    }
    Ok(t.elapsed().as_nanos() as f64)
}

/// Times prepare, commit, usage and remove once each; the store holds as
/// many snapshots afterwards as before.
pub fn sample(rig: &Rig, base: &SnapshotKey) -> Result<OpSample> {
    let key = rig.fresh_key("scale-sample");
    let name = rig.fresh_key("scale-sampled");
    let timed = |f: &dyn Fn() -> strata_driver_api::Result<()>| -> Result<f64> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_nanos() as f64)
    };
    Ok(OpSample {
        prepare: timed(&|| {
            rig.snapshots
                .prepare(&key, Some(base), Labels::new())
                .map(drop)
        })?,
        commit: timed(&|| rig.snapshots.commit(&name, &key, Labels::new()))?,
        usage: timed(&|| rig.snapshots.usage(&name).map(drop))?,
        remove: timed(&|| rig.snapshots.remove(&name))?,
    })
}

/// The case of operation `op` with `existing` snapshots in the store.
pub fn case(op: &str, existing: usize) -> Case {
    Case {
        existing: Some(existing),
        ..Case::new(WORKLOAD, op)
    }
}

/// Fills the store up to each count of `counts` (ascending) and takes
/// `samples` rounds there after a sync and [`WARM_UP`] untimed rounds; records every sample in `result`, with the
/// populate time per snapshot as metric `populate`.
pub fn run(
    rig: &Rig,
    counts: &[usize],
    samples: usize,
    result: &mut TargetResult,
    mut tick: impl FnMut(),
) -> Result<()> {
    let base = base(rig)?;
    let mut existing = 0;
    for &count in counts {
        let add = count.saturating_sub(existing);
        let ns = populate(rig, &base, add, &mut tick)?;
        existing += add;
        if add > 0 {
            result.push(&case("populate", count), "ns", ns / add as f64);
        }
        // Write back what earlier steps and the fill left dirty: the
        // samples' fsyncs (driver and metadata database) would wait for it.
        sync_fs(&rig.backing.path)?;
        sync_fs(rig.backing.scratch.path())?;
        for _ in 0..WARM_UP {
            sample(rig, &base)?;
        }
        for _ in 0..samples {
            for (op, ns) in sample(rig, &base)?.pairs() {
                result.push(&case(op, count), "ns", ns);
            }
            tick();
        }
    }
    Ok(())
}

/// Median and p95 of one operation at one count.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleRow {
    /// The operation.
    pub op: String,
    /// Snapshots in the store.
    pub existing: usize,
    /// Samples.
    pub n: usize,
    /// Median (ns).
    pub median: f64,
    /// 95th percentile (ns).
    pub p95: f64,
}

/// The scale rows of `target`, by operation (in [`OPS`] order) then count.
pub fn rows(target: &TargetResult) -> Vec<ScaleRow> {
    let mut out: Vec<ScaleRow> = target
        .series
        .iter()
        .filter(|s| s.case.workload == WORKLOAD && OPS.contains(&s.case.metric.as_str()))
        .filter_map(|s| {
            Some(ScaleRow {
                op: s.case.metric.clone(),
                existing: s.case.existing?,
                n: s.samples.len(),
                median: median(&s.samples)?,
                p95: p95(&s.samples)?,
            })
        })
        .collect();
    let rank = |op: &str| OPS.iter().position(|o| *o == op);
    out.sort_by_key(|r| (rank(&r.op), r.existing));
    out
}

/// How one operation's latency grew from the smallest count to the largest.
#[derive(Debug, Clone, PartialEq)]
pub struct Growth {
    /// The operation.
    pub op: String,
    /// The smallest count.
    pub from: usize,
    /// The largest count.
    pub to: usize,
    /// Median at `to` / median at `from`.
    pub ratio: f64,
    /// The change is smaller than the spread at `from` (p95 - median):
    /// noise could explain it, so it is not held against the goal.
    pub noisy: bool,
}

impl Growth {
    /// Whether the growth is beyond [`GOAL`] and not explained by noise.
    pub fn over_goal(&self) -> bool {
        self.ratio > GOAL && !self.noisy
    }
}

/// Median at the largest count over median at the smallest, per operation
/// (only where at least two counts were measured).
pub fn growth(rows: &[ScaleRow]) -> Vec<Growth> {
    OPS.iter()
        .filter_map(|op| {
            let of_op: Vec<&ScaleRow> = rows.iter().filter(|r| r.op == *op).collect();
            let lo = of_op.iter().min_by_key(|r| r.existing)?;
            let hi = of_op.iter().max_by_key(|r| r.existing)?;
            (hi.existing > lo.existing && lo.median > 0.0).then(|| Growth {
                op: (*op).to_owned(),
                from: lo.existing,
                to: hi.existing,
                ratio: hi.median / lo.median,
                noisy: (hi.median - lo.median).abs() < lo.p95 - lo.median,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(samples: &[(&str, usize, &[f64])]) -> TargetResult {
        let mut t = TargetResult::default();
        for (op, count, values) in samples {
            for &v in *values {
                t.push(&case(op, *count), "ns", v);
            }
        }
        t
    }

    #[test]
    fn rows_are_ordered_by_operation_then_count() {
        let t = target(&[
            ("remove", 1000, &[4.0, 6.0]),
            ("prepare", 1000, &[2.0]),
            ("prepare", 10, &[1.0, 3.0, 2.0]),
            ("populate", 1000, &[9.0]),
        ]);
        let r = rows(&t);
        let keys: Vec<(&str, usize, usize)> =
            r.iter().map(|r| (r.op.as_str(), r.existing, r.n)).collect();
        assert_eq!(
            keys,
            [
                ("prepare", 10, 3),
                ("prepare", 1000, 1),
                ("remove", 1000, 2)
            ]
        );
        assert_eq!(r[0].median, 2.0);
        assert_eq!(r[2].median, 5.0);
    }

    #[test]
    fn growth_divides_the_largest_count_by_the_smallest() {
        let t = target(&[
            ("prepare", 10, &[2.0]),
            ("prepare", 1000, &[3.0]),
            ("prepare", 10_000, &[5.0]),
            ("commit", 10, &[4.0]),
            ("usage", 10, &[1.0]),
            ("usage", 10_000, &[1.0]),
        ]);
        let g = growth(&rows(&t));
        let summary: Vec<(&str, usize, usize, f64, bool)> = g
            .iter()
            .map(|g| (g.op.as_str(), g.from, g.to, g.ratio, g.over_goal()))
            .collect();
        assert_eq!(
            summary,
            [
                ("prepare", 10, 10_000, 2.5, true),
                ("usage", 10, 10_000, 1.0, false)
            ]
        );
    }

    #[test]
    fn growth_within_the_baselines_spread_is_noise() {
        // Baseline median 1, p95 ~9.6: a median of 3 at the larger count
        // is within that spread.
        let spread: Vec<f64> = [1.0; 9].into_iter().chain([10.0, 10.0]).collect();
        let t = target(&[("remove", 10, &spread), ("remove", 1000, &[3.0])]);
        let g = &growth(&rows(&t))[0];
        assert_eq!(g.ratio, 3.0);
        assert!(g.noisy && !g.over_goal(), "{g:?}");
    }
}
