//! Commit latency of a container holding a new 1 MiB file, and remove
//! latency of the committed layer.

mod common;

use strata::bench::{workloads, MIB};

fn main() {
    if !common::can_run("commit_remove") {
        return;
    }
    let mut c = common::criterion();
    for rig in common::rigs() {
        let image = match rig.file_image(10 * MIB) {
            Ok(image) => image,
            Err(e) => {
                eprintln!("SKIP commit_remove/{}: {e:#}", rig.target.label);
                continue;
            }
        };
        let mut group = c.benchmark_group(format!("commit_remove/{}", rig.target.label));
        group.bench_function("commit", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        common::dur(
                            workloads::commit_remove(&rig, &image)
                                .expect("commit sample")
                                .0,
                        )
                    })
                    .sum()
            })
        });
        group.bench_function("remove", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        common::dur(
                            workloads::commit_remove(&rig, &image)
                                .expect("remove sample")
                                .1,
                        )
                    })
                    .sum()
            })
        });
        group.finish();
    }
    c.final_summary();
}
