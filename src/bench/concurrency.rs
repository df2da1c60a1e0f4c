//! Concurrency: many Prepare calls on one parent at once, through the
//! containerd snapshots API on a unix socket, as a runtime starting many
//! containers of one image sends them.
//!
//! The rig's snapshotter is served by [`crate::serve::spawn`] (the server
//! `strata serve` runs) on a socket in the rig's scratch directory. Each
//! caller is a thread with its own connection ([`GrpcSnapshotter`]),
//! connected before a barrier releases them all; each records when its call
//! started and returned relative to the release. The spread from the first
//! completion to the last shows whether calls queue behind each other
//! (containerd issue 12335 saw 10 s on devmapper).

use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::Context;
use strata_driver_api::{Labels, SnapshotKey};

use super::rig::Rig;
use super::stats::percentile;
use super::Result;
use crate::serve::{spawn, GrpcSnapshotter};
use crate::snapshotter::Snapshotter;

/// Workload name of concurrency series in the results.
pub const WORKLOAD: &str = "concurrent_prepare";

/// When one call started and returned, ns after the callers were released.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallTiming {
    /// Start of the call.
    pub start_ns: f64,
    /// Its return.
    pub end_ns: f64,
}

impl CallTiming {
    /// The call's latency.
    pub fn latency_ns(&self) -> f64 {
        self.end_ns - self.start_ns
    }
}

/// What one burst of calls showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Calls.
    pub calls: usize,
    /// From the first completion to the last (ns).
    pub spread_ns: f64,
    /// From the release to the last completion (ns).
    pub makespan_ns: f64,
    /// Median latency (ns).
    pub p50_ns: f64,
    /// 99th percentile latency (ns).
    pub p99_ns: f64,
}

/// Summarises a burst (None when it is empty).
pub fn summarise(calls: &[CallTiming]) -> Option<Summary> {
    let ends = calls.iter().map(|c| c.end_ns);
    let first = ends.clone().reduce(f64::min)?;
    let last = ends.reduce(f64::max)?;
    let latencies: Vec<f64> = calls.iter().map(CallTiming::latency_ns).collect();
    Some(Summary {
        calls: calls.len(),
        spread_ns: last - first,
        makespan_ns: last,
        p50_ns: percentile(&latencies, 50.0)?,
        p99_ns: percentile(&latencies, 99.0)?,
    })
}

/// Serves the rig on a socket and sends `n` Prepare calls on `parent` at
/// once, each on its own connection. The snapshots made are removed
/// afterwards (untimed).
pub fn burst(rig: &Rig, parent: &SnapshotKey, n: usize) -> Result<Vec<CallTiming>> {
    let socket = rig.backing.scratch.path().join("concurrency.sock");
    let served: Arc<dyn Snapshotter> = rig.snapshots.clone();
    let server =
        spawn(served, &socket).with_context(|| format!("serving on {}", socket.display()))?;
    let keys: Vec<SnapshotKey> = (0..n).map(|_| rig.fresh_key("concurrent")).collect();
    let clients = (0..n)
        .map(|_| GrpcSnapshotter::connect(&socket))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut t0 = Instant::now();
    let outcomes = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .into_iter()
            .zip(&keys)
            .map(|(client, key)| {
                let barrier = Arc::clone(&barrier);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let made = client.prepare(key, Some(parent), Labels::new());
                    (start, Instant::now(), made.map(drop))
                })
            })
            .collect();
        barrier.wait();
        t0 = Instant::now();
        handles
            .into_iter()
            .map(|h| h.join().expect("prepare thread panicked"))
            .collect::<Vec<_>>()
    });
    drop(server);
    let since = |t: Instant| t.saturating_duration_since(t0).as_nanos() as f64;
    let mut timings = Vec::with_capacity(n);
    let mut failed = None;
    for (start, end, made) in outcomes {
        match made {
            Ok(()) => timings.push(CallTiming {
                start_ns: since(start),
                end_ns: since(end),
            }),
            Err(e) => failed = Some(e),
        }
    }
    for key in &keys {
        // Those whose prepare failed are not there.
        let _ = rig.snapshots.remove(key);
    }
    match failed {
        Some(e) => Err(anyhow::Error::new(e).context(format!(
            "{} of {n} concurrent prepares failed",
            n - timings.len()
        ))),
        None => Ok(timings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_measures_spread_from_first_to_last_completion() {
        let calls: Vec<CallTiming> = (0..100)
            .map(|i| CallTiming {
                start_ns: 10.0,
                end_ns: 110.0 + 10.0 * i as f64,
            })
            .collect();
        let s = summarise(&calls).unwrap();
        assert_eq!(s.calls, 100);
        assert_eq!(s.spread_ns, 990.0);
        assert_eq!(s.makespan_ns, 1100.0);
        assert_eq!(s.p50_ns, 595.0);
        assert!((s.p99_ns - 1080.1).abs() < 1e-6, "{}", s.p99_ns);
        assert_eq!(summarise(&[]), None);
    }
}
