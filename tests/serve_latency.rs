//! Per-call latency of Prepare/Commit/Remove through the gRPC socket next
//! to the same calls in-process, on a vfs store. Prints figures; run with
//! `cargo test --release --test serve_latency -- --ignored --nocapture`.

mod serve_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serve_support as common;
use strata::snapshotter::Snapshotter;
use strata_driver_api::testing::{require_root, ScratchDir};
use strata_driver_api::{Labels, SnapshotKey};

const ROUNDS: usize = 300;

#[derive(Default)]
struct Samples {
    prepare: Vec<Duration>,
    commit: Vec<Duration>,
    remove: Vec<Duration>,
    stat: Vec<Duration>,
}

fn timed<T>(into: &mut Vec<Duration>, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    into.push(start.elapsed());
    out
}

fn make_base(s: &dyn Snapshotter, tag: &str) -> SnapshotKey {
    let base = SnapshotKey::from(format!("{tag}-base"));
    let k0 = SnapshotKey::from(format!("{tag}-base-active"));
    s.prepare(&k0, None, Labels::new()).unwrap();
    s.commit(&base, &k0, Labels::new()).unwrap();
    base
}

/// One round: prepare on the committed base, stat it, commit it, remove the
/// committed layer.
fn round(s: &dyn Snapshotter, tag: &str, base: &SnapshotKey, i: usize, out: &mut Samples) {
    let key = SnapshotKey::from(format!("{tag}/ns/{i}/active"));
    let name = SnapshotKey::from(format!("{tag}/ns/{i}/layer"));
    timed(&mut out.prepare, || {
        s.prepare(&key, Some(base), Labels::new()).unwrap()
    });
    timed(&mut out.stat, || s.stat(&key).unwrap());
    timed(&mut out.commit, || {
        s.commit(&name, &key, Labels::new()).unwrap()
    });
    timed(&mut out.remove, || s.remove(&name).unwrap());
}

fn stats(v: &mut [Duration]) -> String {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = v.iter().map(|d| us(*d)).sum::<f64>() / v.len() as f64;
    format!(
        "median {:7.0} us  mean {:7.0} us  p95 {:7.0} us",
        us(v[v.len() / 2]),
        mean,
        us(v[v.len() * 95 / 100])
    )
}

#[test]
#[ignore = "measurement: prints figures, asserts nothing about speed"]
fn latency_socket_vs_in_process() {
    if !require_root("latency_socket_vs_in_process") {
        return;
    }
    let scratch = ScratchDir::new("serve-latency");
    let store = common::vfs_store(&scratch);
    let (client, server) = common::served(&scratch, Arc::clone(&store));
    let local_base = make_base(store.as_ref(), "local");
    let grpc_base = make_base(&client, "grpc");
    let (mut local, mut remote) = (Samples::default(), Samples::default());
    // Interleaved, so load and store growth affect both sides alike.
    for i in 0..ROUNDS {
        round(store.as_ref(), "local", &local_base, i, &mut local);
        round(&client, "grpc", &grpc_base, i, &mut remote);
    }
    drop(client);
    server.stop().unwrap();
    println!("vfs store, {ROUNDS} interleaved rounds, empty snapshots on an empty committed base");
    for (op, l, r) in [
        ("prepare", &mut local.prepare, &mut remote.prepare),
        ("commit", &mut local.commit, &mut remote.commit),
        ("remove", &mut local.remove, &mut remote.remove),
        ("stat", &mut local.stat, &mut remote.stat),
    ] {
        println!("{op:8} in-process: {}", stats(l));
        println!("{op:8} socket:     {}", stats(r));
    }
}
