//! The baseline: the same writes as `copy_up` into a same-sized file in a
//! plain directory of each backing filesystem, bind-mounted as a volume.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use criterion::BenchmarkId;
use strata::bench::workloads::Volume;
use strata::bench::{human_bytes, GIB, KIB, MIB};

fn main() {
    if !common::can_run("volume") {
        return;
    }
    let mut c = common::criterion();
    let backings: BTreeSet<_> = common::targets()
        .iter()
        .filter(|t| t.unavailable().is_none())
        .map(|t| t.backing)
        .collect();
    for backing in backings {
        let fs = match backing.make("volume") {
            Ok(fs) => fs,
            Err(e) => {
                eprintln!("SKIP volume/{}: {e:#}", backing.as_str());
                continue;
            }
        };
        let volume = Volume::new(
            &fs.path.join("volume"),
            &fs.scratch.path().join("volume-mnt"),
        )
        .expect("volume bind mount");
        let mut group = c.benchmark_group(format!("volume/{}", backing.as_str()));
        for size in [MIB, 64 * MIB, GIB] {
            let file = volume.file(size).expect("volume file");
            group.measurement_time(if size >= GIB {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(2)
            });
            for write in [4 * KIB, 64 * KIB, MIB] {
                let id = format!("{}/{}", human_bytes(size), human_bytes(write));
                group.bench_function(BenchmarkId::new("first", &id), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| {
                                common::dur(
                                    volume.write(&file, write).expect("volume sample").total_ns,
                                )
                            })
                            .sum()
                    })
                });
                group.bench_function(BenchmarkId::new("second", &id), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| {
                                common::dur(
                                    volume.write(&file, write).expect("volume sample").second_ns,
                                )
                            })
                            .sum()
                    })
                });
            }
        }
        group.finish();
        drop(volume);
    }
    c.final_summary();
}
