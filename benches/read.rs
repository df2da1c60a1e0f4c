//! Cold sequential read of a file at the bottom of a 128-layer stack
//! against a 1-layer image (page cache dropped before each read).

mod common;

use criterion::{BenchmarkId, Throughput};
use strata::bench::{workloads, MIB};

const SIZE: u64 = 64 * MIB;

fn main() {
    if !common::can_run("read") {
        return;
    }
    let mut c = common::criterion();
    for rig in common::rigs() {
        let stack = match rig.layer_stack(128, SIZE, || {}) {
            Ok(stack) => stack,
            Err(e) => {
                eprintln!("SKIP read/{}: {e:#}", rig.target.label);
                continue;
            }
        };
        let mut group = c.benchmark_group(format!("read/{}", rig.target.label));
        group.throughput(Throughput::Bytes(SIZE));
        for depth in [1usize, 128] {
            let image = &stack[depth - 1];
            group.bench_function(BenchmarkId::new("layers", depth), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| common::dur(workloads::read(&rig, image).expect("read sample").ns))
                        .sum()
                })
            });
        }
        group.finish();
    }
    c.final_summary();
}
