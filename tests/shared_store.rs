//! One store, many users: while `strata serve` runs and a gRPC client loops
//! prepare → commit → remove on it, every CLI verb works on the same root;
//! reads (`images`, `ps`, `info`) answer while a long `load` runs and never
//! wait for it; 16 CLI processes and 16 gRPC clients at once finish with no
//! error; afterwards `check` is clean and nothing is left. Latencies are
//! printed (`SHARED ...` lines), not asserted. The devmapper case runs in
//! the VM tier.
//!
//! `STRATA_SHARED_LOAD_MB` sets the size of the archive loaded in the
//! background (default 96).

mod common;
mod reliability;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use reliability::*;
use strata::snapshotter::{Snapshotter, SnapshotterExt};
use strata_driver_api::{Labels, SnapshotKey};

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(f64::NAN)
}

/// Runs `strata ARGS` and returns how long it took; panics on failure.
fn timed(root: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = strata(root, args);
    assert!(
        out.status.success(),
        "strata {args:?} failed while the store was shared: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Loops prepare → commit → remove through `server` until `stop`.
fn busy_client(server: &Server, stop: &AtomicBool, ops: &AtomicUsize, tag: &str) {
    let sn = server.client();
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        let active = SnapshotKey(format!("{tag}-{round}-active"));
        let layer = SnapshotKey(format!("{tag}-{round}-layer"));
        sn.prepare(&active, None, Labels::new())
            .unwrap_or_else(|e| panic!("prepare {active}: {e}"));
        sn.commit(&layer, &active, Labels::new())
            .unwrap_or_else(|e| panic!("commit {layer}: {e}"));
        sn.remove(&layer)
            .unwrap_or_else(|e| panic!("remove {layer}: {e}"));
        ops.fetch_add(3, Ordering::Relaxed);
        round += 1;
    }
}

/// Makes `<scratch>/big.tar`, a saved image of `mb` MiB, and returns it.
fn big_archive(root: &Path, scratch: &Path, mb: u64) -> std::path::PathBuf {
    let rootfs = scratch.join("big-rootfs.tar");
    big_tar(&rootfs, mb << 20);
    strata_ok(root, &["import", rootfs.to_str().unwrap(), "big:1"]);
    let archive = scratch.join("big.tar");
    strata_ok(root, &["save", "big:1", "-o", archive.to_str().unwrap()]);
    strata_ok(root, &["rmi", "big:1"]);
    std::fs::remove_file(rootfs).unwrap();
    archive
}

/// Reads while `load` runs: each must finish while the load still runs.
fn reads_during_load(root: &Path, archive: &Path) -> Vec<Duration> {
    let mut load = command(root, &["load", "-i", archive.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn load");
    let mut samples = Vec::new();
    while load.try_wait().unwrap().is_none() {
        for verb in [&["images"][..], &["ps"], &["info"]] {
            let took = timed(root, verb);
            if load.try_wait().unwrap().is_none() {
                samples.push(took);
            }
        }
    }
    assert!(load.wait().unwrap().success(), "the background load failed");
    assert!(
        !samples.is_empty(),
        "no read finished while the load ran: reads waited for it"
    );
    samples
}

/// Every CLI verb, one after another, on the served store.
fn every_verb(root: &Path, scratch: &Path) -> Vec<Duration> {
    let mut reads = Vec::new();
    let id = last_line(&strata_ok(root, &["create", "--name", "web", "base"]));
    let path = last_line(&strata_ok(root, &["mount", "web"]));
    std::fs::write(Path::new(&path).join("served"), "yes\n").unwrap();
    for verb in [
        &["images"][..],
        &["ps"],
        &["info"],
        &["inspect", "web"],
        &["history", "base"],
        &["diff", "web"],
    ] {
        reads.push(timed(root, verb));
    }
    strata_ok(root, &["commit", "web", "served:1"]);
    strata_ok(root, &["umount", "web"]);
    let exported = scratch.join("web.tar");
    strata_ok(root, &["export", "web", "-o", exported.to_str().unwrap()]);
    let saved = scratch.join("served.tar");
    strata_ok(root, &["save", "served:1", "-o", saved.to_str().unwrap()]);
    strata_ok(root, &["rm", &id]);
    strata_ok(root, &["rmi", "served:1"]);
    strata_ok(root, &["load", "-i", saved.to_str().unwrap()]);
    strata_ok(root, &["tag", "served:1", "served:2"]);
    strata_ok(root, &["rmi", "served:2"]);
    strata_ok(root, &["rmi", "served:1"]);
    check_clean(root, &[], "check on the served store");
    reads
}

/// 16 CLI processes and 16 gRPC clients at once.
fn crowd(root: &Path, server: &Server) -> usize {
    let errors = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for c in 0..16 {
            let errors = &errors;
            s.spawn(move || {
                let sn = server.client();
                for r in 0..3 {
                    let active = SnapshotKey(format!("crowd{c}-{r}"));
                    let layer = SnapshotKey(format!("crowd{c}-{r}-layer"));
                    let ok = sn.prepare(&active, None, Labels::new()).is_ok()
                        && sn.commit(&layer, &active, Labels::new()).is_ok()
                        && sn.remove(&layer).is_ok();
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let children: Vec<_> = (0..16)
            .map(|i| {
                let name = format!("p{i}");
                let args: Vec<&str> = match i % 4 {
                    0 => vec!["create", "--name", &name, "base"],
                    1 => vec!["images"],
                    2 => vec!["ps"],
                    _ => vec!["info"],
                };
                command(root, &args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            if !out.status.success() {
                eprintln!("crowd: {}", String::from_utf8_lossy(&out.stderr));
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    for i in (0..16).step_by(4) {
        strata_ok(root, &["rm", &format!("p{i}")]);
    }
    errors.into_inner()
}

fn share(driver: &str) {
    let test = format!("shared_store::{driver}");
    let Some((scratch, root)) = scratch_store(&test, driver, &[]) else {
        return;
    };
    let base = scratch.path().join("base.tar");
    busybox_rootfs_tar(&base, "base\n");
    strata_ok(&root, &["import", base.to_str().unwrap(), "base"]);
    let mb = std::env::var("STRATA_SHARED_LOAD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    let archive = big_archive(&root, scratch.path(), mb);
    let quiet_images = timed(&root, &["images"]);

    let server = Server::start(&root, &scratch.path().join("strata.sock"));
    let (stop, ops) = (AtomicBool::new(false), AtomicUsize::new(0));
    let (mut during_load, mut during_serve, crowd_errors) = std::thread::scope(|s| {
        let busy = s.spawn(|| busy_client(&server, &stop, &ops, "busy"));
        let during_load = reads_during_load(&root, &archive);
        let during_serve = every_verb(&root, scratch.path());
        let crowd_errors = crowd(&root, &server);
        stop.store(true, Ordering::Relaxed);
        busy.join().expect("the busy gRPC client failed");
        (during_load, during_serve, crowd_errors)
    });
    assert_eq!(crowd_errors, 0, "16 CLI + 16 gRPC clients at once");
    let left = server.client().list(&[]).unwrap();
    server.stop();
    strata_ok(&root, &["rmi", "big:1"]);
    strata_ok(&root, &["rmi", "base"]);
    check_clean(&root, &[], &format!("{test}: store not clean"));
    eprintln!(
        "SHARED {driver}: images alone {:.1} ms; reads while a {mb} MiB load ran: median {:.1} ms ({} reads); \
         reads while serve busy: median {:.1} ms; {} gRPC ops in the background; {} snapshots in the store at the end",
        quiet_images.as_secs_f64() * 1e3,
        median_ms(&mut during_load),
        during_load.len(),
        median_ms(&mut during_serve),
        ops.load(Ordering::Relaxed),
        left.len(),
    );
}

#[test]
fn serve_and_cli_share_one_store_vfs() {
    share("vfs");
}

#[test]
fn serve_and_cli_share_one_store_overlay2() {
    share("overlay2");
}

#[test]
fn serve_and_cli_share_one_store_btrfs() {
    share("btrfs");
}

#[test]
fn serve_and_cli_share_one_store_blockfile() {
    share("blockfile");
}

#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn serve_and_cli_share_one_store_devmapper() {
    share("devmapper");
}

/// Two strata processes mounting one blockfile container at once (a `cp`
/// out of it holds a scratch mount while `strata mount` makes the
/// persistent one) share one loop device: a second loop device of the
/// same writable image, mounted too, is a second live instance of its
/// filesystem, which corrupts it.
#[test]
fn blockfile_container_mounted_by_two_processes_is_attached_once() {
    let test = "shared_store::blockfile_attached_once";
    let Some((scratch, root)) = scratch_store(test, "blockfile", &[]) else {
        return;
    };
    let base = scratch.path().join("base.tar");
    busybox_rootfs_tar(&base, "base\n");
    strata_ok(&root, &["import", base.to_str().unwrap(), "base"]);
    strata_ok(&root, &["create", "--name", "web", "base"]);
    let big = scratch.path().join("big");
    std::fs::write(&big, vec![7u8; 4 << 20]).unwrap();
    strata_ok(&root, &["cp", big.to_str().unwrap(), "web:/big"]);

    // Nobody reads its stdout: it blocks with the container mounted.
    let mut copy = command(&root, &["cp", "web:/big", "-"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cp");
    let scratch_mounts = root.join("tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    while mounts_below(&scratch_mounts).is_empty() {
        assert!(Instant::now() < deadline, "cp never mounted web");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mounted = strata(&root, &["mount", "web"]);
    let twice = files_attached_twice(&root);
    let _ = copy.kill();
    let _ = copy.wait();
    assert!(
        mounted.status.success(),
        "mount web while cp has it mounted: {}",
        String::from_utf8_lossy(&mounted.stderr)
    );
    assert_eq!(
        twice,
        Vec::new(),
        "web's image attached to two loop devices, both mounted"
    );
    strata_ok(&root, &["umount", "web"]);
    strata_ok(&root, &["rm", "web"]);
    strata_ok(&root, &["rmi", "base"]);
    check_clean(&root, &[], &format!("{test}: store not clean"));
}
