//! Tier 4: a real containerd and `ctr` driving `strata serve` as a proxy
//! snapshotter. containerd runs on private sockets with its root and state
//! under a scratch directory and the CRI plug-in disabled; the image is a
//! one-layer busybox OCI layout built by the test.

mod containerd_support;

use std::path::Path;
use std::time::{Duration, Instant};

use containerd_support::image::write_busybox_image;
use containerd_support::{prerequisites, Containerd, Strata};
use strata::serve::GrpcSnapshotter;
use strata::snapshotter::SnapshotterExt;
use strata_driver_api::testing::{skip, ScratchDir};
use strata_driver_api::Kind;

const IMAGE: &str = "docker.io/strata/busybox:test";

/// Snapshot names in the strata store (as containerd stored them) that end in `suffix`.
fn strata_names(socket: &Path, suffix: &str) -> Vec<(String, Kind)> {
    let client = GrpcSnapshotter::connect(socket).expect("connect to strata");
    client
        .list(&[])
        .expect("list strata snapshots")
        .into_iter()
        .filter(|i| i.name.as_str().ends_with(suffix))
        .map(|i| (i.name.0, i.kind))
        .collect()
}

/// Waits (containerd's GC removes backend snapshots asynchronously).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_with_driver(driver: &str) {
    let test = format!("containerd_{driver}");
    if !prerequisites(&test) {
        return;
    }
    let scratch = ScratchDir::new(&format!("ctrd-{driver}"));
    let strata_socket = scratch.path().join("strata.sock");
    let mut strata = match Strata::start(&scratch.path().join("root"), driver, &strata_socket) {
        Ok(s) => s,
        Err(reason) => return skip(&test, &reason),
    };
    let ctrd = Containerd::start(&scratch.path().join("containerd"), &strata_socket, driver);

    let tar = scratch.path().join("busybox-oci.tar");
    let image = write_busybox_image(&tar, IMAGE);
    let tar = tar.to_str().expect("utf-8 path");
    ctrd.ctr_ok(&["images", "import", "--snapshotter", "strata", tar]);
    // The unpacked layer is a committed snapshot named by its chain id.
    let layer = strata_names(&strata_socket, &image.chain_id);
    assert!(
        layer.iter().any(|(_, k)| *k == Kind::Committed),
        "no committed layer {} in strata: {layer:?}",
        image.chain_id
    );

    let out = ctrd.ctr_ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "strata",
        IMAGE,
        "t",
        "/bin/sh",
        "-c",
        "echo ok",
    ]);
    assert_eq!(out.trim(), "ok", "container output");
    wait_until("container snapshot removed from strata", || {
        strata_names(&strata_socket, "/t").is_empty()
    });

    snapshot_commands(&ctrd, &strata_socket, &image.chain_id);
    drop(ctrd);
    strata.stop();
    assert!(!strata_socket.exists(), "strata left its socket behind");
}

/// `ctr snapshot ls / prepare / usage / rm` against the strata snapshotter.
fn snapshot_commands(ctrd: &Containerd, strata_socket: &Path, chain_id: &str) {
    let snap = |args: &[&str]| {
        let mut all = vec!["snapshot", "--snapshotter", "strata"];
        all.extend_from_slice(args);
        ctrd.ctr_ok(&all)
    };
    let ls = snap(&["ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with(chain_id) && l.contains("Committed")),
        "ctr snapshot ls lacks the layer:\n{ls}"
    );
    snap(&["prepare", "probe", chain_id]);
    let ls = snap(&["ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("probe ") && l.contains("Active")),
        "ctr snapshot ls lacks probe:\n{ls}"
    );
    let in_strata = strata_names(strata_socket, "/probe");
    assert!(
        matches!(in_strata.as_slice(), [(name, Kind::Active)] if name.starts_with(&format!("{}/", ctrd.namespace))),
        "probe in strata: {in_strata:?}"
    );
    let usage = snap(&["usage", "probe"]);
    assert!(
        usage.lines().any(|l| l.starts_with("probe")),
        "usage output:\n{usage}"
    );
    snap(&["rm", "probe"]);
    assert!(!snap(&["ls"]).lines().any(|l| l.starts_with("probe ")));
    wait_until("probe removed from strata by containerd's GC", || {
        strata_names(strata_socket, "/probe").is_empty()
    });
}

#[test]
fn containerd_vfs() {
    run_with_driver("vfs");
}

#[test]
fn containerd_overlay2() {
    run_with_driver("overlay2");
}

#[test]
fn containerd_btrfs() {
    run_with_driver("btrfs");
}

#[test]
fn containerd_blockfile() {
    run_with_driver("blockfile");
}
