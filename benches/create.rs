//! Container create (prepare) latency: 10 MiB and 1 GiB one-layer images,
//! and 1, 16, 128 and 500-layer images.

mod common;

use std::time::Duration;

use criterion::BenchmarkId;
use strata::bench::{human_bytes, workloads, GIB, MIB};

fn main() {
    if !common::can_run("create") {
        return;
    }
    let mut c = common::criterion();
    for rig in common::rigs() {
        let mut group = c.benchmark_group(format!("create/{}", rig.target.label));
        for size in [10 * MIB, GIB] {
            let image = match rig.file_image(size) {
                Ok(image) => image,
                Err(e) => {
                    eprintln!(
                        "SKIP create/{} {}: {e:#}",
                        rig.target.label,
                        human_bytes(size)
                    );
                    continue;
                }
            };
            group.measurement_time(if size >= GIB {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(2)
            });
            group.bench_function(BenchmarkId::new("image", human_bytes(size)), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            common::dur(workloads::create(&rig, &image).expect("create sample"))
                        })
                        .sum()
                })
            });
        }
        group.measurement_time(Duration::from_secs(2));
        let stack = match rig.layer_stack(500, MIB, || {}) {
            Ok(stack) => stack,
            Err(e) => {
                eprintln!("SKIP create/{} layers: {e:#}", rig.target.label);
                continue;
            }
        };
        for depth in [1usize, 16, 128, 500] {
            let image = &stack[depth - 1];
            group.bench_function(BenchmarkId::new("layers", depth), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            common::dur(workloads::create(&rig, image).expect("create sample"))
                        })
                        .sum()
                })
            });
        }
        group.finish();
    }
    c.final_summary();
}
