//! The scale, concurrency, deep-stack and density workloads of `strata
//! bench`, each run once at a tiny size on vfs (a host directory: no loop
//! device or mkfs): they produce figures, and the figures are sane. No
//! timing is asserted.

use strata::bench::results::TargetResult;
use strata::bench::rig::{select_targets, Rig};
use strata::bench::{concurrency, deep, density, scale, MIB};
use strata_driver_api::testing::{require_root, skip};

fn vfs_rig(test: &str) -> Option<Rig> {
    if !require_root(test) {
        return None;
    }
    let target = select_targets(&["vfs".to_owned()]).pop()?;
    match Rig::new(&target) {
        Ok(rig) => Some(rig),
        Err(e) => {
            skip(test, &format!("vfs rig: {e:#}"));
            None
        }
    }
}

#[test]
fn scale_records_every_operation_at_every_count() {
    let Some(rig) = vfs_rig("scale_records_every_operation_at_every_count") else {
        return;
    };
    let mut result = TargetResult::default();
    let mut ticks = 0;
    scale::run(&rig, &[3, 12], 2, &mut result, || ticks += 1).expect("scale run");
    assert_eq!(
        ticks,
        12 + 2 * 2,
        "one tick per snapshot added and per round"
    );
    let rows = scale::rows(&result);
    assert_eq!(rows.len(), scale::OPS.len() * 2, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.n == 2 && r.median > 0.0 && r.p95 >= r.median));
    assert_eq!(scale::growth(&rows).len(), scale::OPS.len());
    // Rounds leave the count as they found it: base + 12 fillers.
    assert_eq!(rig.snapshots.records().expect("records").len(), 13);
}

#[test]
fn concurrent_prepares_all_return_through_the_socket() {
    let Some(rig) = vfs_rig("concurrent_prepares_all_return_through_the_socket") else {
        return;
    };
    let image = rig.file_image(4096).expect("image");
    let calls = concurrency::burst(&rig, &image, 8).expect("burst");
    assert_eq!(calls.len(), 8);
    assert!(calls.iter().all(|c| c.end_ns > c.start_ns));
    let s = concurrency::summarise(&calls).expect("summary");
    assert!(s.spread_ns >= 0.0 && s.spread_ns <= s.makespan_ns);
    assert!(s.p50_ns <= s.p99_ns);
    // The burst's snapshots are removed: only the image is left.
    assert_eq!(rig.snapshots.records().expect("records").len(), 1);
}

#[test]
fn deep_stack_lookup_finds_the_bottom_file() {
    let Some(rig) = vfs_rig("deep_stack_lookup_finds_the_bottom_file") else {
        return;
    };
    let stack = rig.layer_stack(3, 64 * 1024, || {}).expect("stack");
    for image in [&stack[0], &stack[2]] {
        let s = deep::mount_and_lookup(&rig, image).expect("lookup");
        assert!(s.mount_ns > 0.0 && s.lookup_ns > 0.0, "{s:?}");
    }
}

#[test]
fn density_charges_a_copy_per_vfs_container() {
    let test = "density_charges_a_copy_per_vfs_container";
    let Some(rig) = vfs_rig(test) else {
        return;
    };
    if let Err(e) = density::MemCgroup::new() {
        skip(test, &format!("{e:#}"));
        return;
    }
    let image = rig.file_image(4 * MIB).expect("image");
    let s = density::measure(&rig, &image, 2).expect("measure");
    // vfs copies the image into each container: two files, two copies
    // cached (the readers' cgroup sees nothing else).
    let ratio = s.cgroup_bytes as f64 / (4 * MIB) as f64;
    assert!((1.9..2.5).contains(&ratio), "{ratio} ({s:?})");
}
