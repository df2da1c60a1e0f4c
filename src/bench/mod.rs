//! Benchmarks: block-level copy-up against volume writes, and the other
//! costs a runtime pays (create, commit, remove, usage, deep-stack reads).
//!
//! The same code serves `cargo bench` (criterion, in `benches/`) and
//! `strata bench` (a side-by-side report). Start at [`rig`]: a [`rig::Rig`]
//! is one driver on its own freshly made backing filesystem, with images
//! built directly through the snapshotter. [`workloads`] times one sample of
//! each workload on a rig; [`runner`] runs a [`plan::Plan`] over every
//! driver the host supports and collects [`results::Results`], which
//! [`report`] writes as JSON and markdown and [`plot`] draws.
//!
//! [`deep`], [`density`], [`concurrency`] and [`scale`] add the costs of
//! many layers, many containers, many callers and many snapshots;
//! [`sections`] reports them.
//!
//! Every driver in [`crate::drivers::DRIVER_NAMES`] takes part; one that
//! cannot be opened on this host is skipped with the reason.

pub mod cells;
pub mod concurrency;
pub mod containerd;
pub mod deep;
pub mod density;
pub mod plan;
pub mod plot;
pub mod report;
pub mod results;
pub mod rig;
pub mod runner;
pub mod scale;
pub mod sections;
pub mod stats;
pub mod workdir;
pub mod workloads;

/// One KiB.
pub const KIB: u64 = 1 << 10;
/// One MiB.
pub const MIB: u64 = 1 << 20;
/// One GiB.
pub const GIB: u64 = 1 << 30;

/// Errors of the benchmarks (setup and workloads alike).
pub type Result<T> = std::result::Result<T, anyhow::Error>;

/// `1 MiB`, `64 KiB`, `1 GiB`: a byte count in binary units.
pub fn human_bytes(n: u64) -> String {
    for (unit, size) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if n >= size && n % size == 0 {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_the_largest_exact_unit() {
        assert_eq!(human_bytes(4 * KIB), "4 KiB");
        assert_eq!(human_bytes(GIB), "1 GiB");
        assert_eq!(human_bytes(1536 * KIB), "1536 KiB");
        assert_eq!(human_bytes(100), "100 B");
    }
}
