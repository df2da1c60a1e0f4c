//! What every criterion bench shares: root check, the rigs to run on, and
//! explicit criterion settings.
//!
//! Environment: `STRATA_BENCH_DRIVERS=a,b` limits the targets (labels or
//! driver names); devmapper runs only with `STRATA_BENCH_DEVMAPPER=1` (the
//! VM tier sets it).

#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;
use strata::bench::rig::{select_targets, BenchTarget, Rig};

/// Whether benches can run here (root); prints why not.
pub fn can_run(bench: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("\n*** SKIP bench {bench}: needs root (loop devices, mkfs, mounts) ***\n");
        return false;
    }
    true
}

/// The targets asked for: every driver in the registry unless
/// `STRATA_BENCH_DRIVERS` narrows it; devmapper only when asked.
pub fn targets() -> Vec<BenchTarget> {
    let wanted: Vec<String> = std::env::var("STRATA_BENCH_DRIVERS")
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let devmapper = std::env::var("STRATA_BENCH_DEVMAPPER").as_deref() == Ok("1");
    select_targets(&wanted)
        .into_iter()
        .filter(|t| {
            let keep = t.driver != "devmapper" || devmapper;
            if !keep {
                eprintln!("SKIP devmapper: set STRATA_BENCH_DEVMAPPER=1 to include it");
            }
            keep
        })
        .collect()
}

/// Opens a rig for each target, skipping (with the reason) those that fail.
pub fn rigs() -> Vec<Rig> {
    targets()
        .iter()
        .filter_map(|t| match Rig::new(t) {
            Ok(rig) => Some(rig),
            Err(e) => {
                eprintln!("SKIP {}: {e:#}", t.label);
                None
            }
        })
        .collect()
}

/// Criterion with small, explicit settings: every iteration builds real
/// kernel objects, so few samples and a short warm-up.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(2))
        .noise_threshold(0.05)
        .without_plots()
        .configure_from_args()
}

/// Runs `sample` once to see whether the case works on this rig; prints
/// a skip line and returns false if not.
pub fn works<T>(what: &str, sample: impl FnOnce() -> strata::bench::Result<T>) -> bool {
    match sample() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP {what}: {e:#}");
            false
        }
    }
}

/// Nanoseconds as a Duration.
pub fn dur(ns: f64) -> Duration {
    Duration::from_nanos(ns as u64)
}
