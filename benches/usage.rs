//! Usage latency on a container with 10,000 files.

mod common;

use strata::bench::{workloads, MIB};

fn main() {
    if !common::can_run("usage") {
        return;
    }
    let mut c = common::criterion();
    for rig in common::rigs() {
        let container = match rig
            .file_image(MIB)
            .and_then(|image| workloads::usage_container(&rig, &image, 10_000))
        {
            Ok(container) => container,
            Err(e) => {
                eprintln!("SKIP usage/{}: {e:#}", rig.target.label);
                continue;
            }
        };
        c.bench_function(&format!("usage/{}/10000-files", rig.target.label), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        common::dur(workloads::usage(&rig, &container.key).expect("usage sample"))
                    })
                    .sum()
            })
        });
        drop(container);
    }
    c.final_summary();
}
