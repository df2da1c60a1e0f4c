//! Copy-up: open(O_WRONLY) + first write + fsync into a file of the image
//! layer, in a fresh container per iteration (set up outside the timing),
//! and a second write (steady state). Every driver × file size × write size.

mod common;

use std::time::Duration;

use criterion::BenchmarkId;
use strata::bench::rig::Rig;
use strata::bench::workloads::{self, WriteSample};
use strata::bench::{human_bytes, GIB, KIB, MIB};
use strata_driver_api::SnapshotKey;

/// Runs `iters` copy-ups of `write` bytes, each in a fresh container on
/// `image`, and sums the part of each sample that `timed` picks.
fn copy_ups(
    rig: &Rig,
    image: &SnapshotKey,
    write: u64,
    iters: u64,
    timed: fn(&WriteSample) -> f64,
) -> Duration {
    (0..iters)
        .map(|_| {
            let sample = workloads::copy_up(rig, image, write).expect("copy-up sample");
            common::dur(timed(&sample))
        })
        .sum()
}

fn main() {
    if !common::can_run("copy_up") {
        return;
    }
    let mut c = common::criterion();
    for rig in common::rigs() {
        let mut group = c.benchmark_group(format!("copy_up/{}", rig.target.label));
        for size in [MIB, 64 * MIB, GIB] {
            let image = match rig.file_image(size) {
                Ok(image) => image,
                Err(e) => {
                    eprintln!(
                        "SKIP copy_up/{} {}: {e:#}",
                        rig.target.label,
                        human_bytes(size)
                    );
                    continue;
                }
            };
            group.measurement_time(if size >= GIB {
                Duration::from_secs(20)
            } else {
                Duration::from_secs(3)
            });
            for write in [4 * KIB, 64 * KIB, MIB] {
                let id = format!("{}/{}", human_bytes(size), human_bytes(write));
                if !common::works(&format!("copy_up/{}/{id}", rig.target.label), || {
                    workloads::copy_up(&rig, &image, write)
                }) {
                    continue;
                }
                group.bench_function(BenchmarkId::new("first", &id), |b| {
                    b.iter_custom(|iters| copy_ups(&rig, &image, write, iters, |s| s.total_ns))
                });
                // The steady state hardly depends on the file size; the 1 GiB
                // case would cost a full copy-up per iteration for nothing.
                if size < GIB {
                    group.bench_function(BenchmarkId::new("second", &id), |b| {
                        b.iter_custom(|iters| copy_ups(&rig, &image, write, iters, |s| s.second_ns))
                    });
                }
            }
        }
        group.finish();
    }
    c.final_summary();
}
