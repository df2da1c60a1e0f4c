//! Per-call latency of Prepare, Commit, Remove (committed) and Remove
//! (untouched active) through `strata serve` on a loop-backed btrfs store,
//! driven by the proxy client: the figures of issue #16's btrfs rows.
//! Prints n, median and p95; asserts nothing about speed. Run with
//! `cargo test --test btrfs_serve_latency -- --ignored --nocapture`
//! (`STRATA_LATENCY_SAMPLES` sets the samples per row, default 30;
//! `STRATA_LATENCY_BASELINE=/path/to/strata` serves a second store with
//! that binary, interleaved, for before/after figures).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata::serve::GrpcSnapshotter;
use strata::snapshotter::Snapshotter;
use strata_driver_api::testing::{require_program, require_root, ScratchDir};
use strata_driver_api::{Labels, SnapshotKey};

/// `strata serve` as a child process, stopped (SIGTERM, then waited for)
/// and its store released when dropped, also when the test panics.
struct Server {
    child: Child,
    strata: std::path::PathBuf,
    root: std::path::PathBuf,
}

impl Server {
    fn start(strata: &Path, root: &Path, socket: &Path) -> Self {
        let child = Command::new(strata)
            .arg("--root")
            .arg(root)
            .args(["serve", "--socket"])
            .arg(socket)
            .env("STRATA_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn strata serve");
        Self {
            child,
            strata: strata.to_owned(),
            root: root.to_owned(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let _ = Command::new(&self.strata)
            .arg("--root")
            .arg(&self.root)
            .arg("release")
            .output();
    }
}

fn connect(socket: &Path) -> GrpcSnapshotter {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(c) = GrpcSnapshotter::connect(socket) {
            return c;
        }
        assert!(Instant::now() < deadline, "strata serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn timed(into: &mut Vec<Duration>, f: impl FnOnce()) {
    let start = Instant::now();
    f();
    into.push(start.elapsed());
}

fn line(op: &str, v: &mut [Duration]) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p95 = v[((v.len() * 95).div_ceil(100)).saturating_sub(1)];
    format!(
        "{op:26} n={:3}  median {:8.3} ms  p95 {:8.3} ms",
        v.len(),
        ms(v[v.len() / 2]),
        ms(p95)
    )
}

/// One served store and its samples.
struct Rig {
    label: String,
    client: GrpcSnapshotter,
    _server: Server,
    base: SnapshotKey,
    rows: [Vec<Duration>; 4],
}

const ROWS: [&str; 4] = [
    "Prepare",
    "Commit",
    "Remove (committed)",
    "Remove (untouched active)",
];

impl Rig {
    fn new(label: &str, strata: &Path, scratch: &ScratchDir) -> Self {
        let root = scratch.path().join(format!("{label}/store"));
        let init = Command::new(strata)
            .arg("--root")
            .arg(&root)
            .args(["--driver", "btrfs", "init", "--opt", "btrfs.size=4G"])
            .env("STRATA_LOG", "warn")
            .output()
            .expect("run strata init");
        assert!(init.status.success(), "init: {init:?}");
        let socket = scratch.path().join(format!("{label}/strata.sock"));
        let server = Server::start(strata, &root, &socket);
        let client = connect(&socket);
        let base = SnapshotKey::from("base");
        client
            .prepare(&"base-active".into(), None, Labels::new())
            .expect("prepare base");
        client
            .commit(&base, &"base-active".into(), Labels::new())
            .expect("commit base");
        Self {
            label: label.to_owned(),
            client,
            _server: server,
            base,
            rows: Default::default(),
        }
    }

    /// Prepare, commit and remove a layer; prepare and remove an untouched
    /// container snapshot.
    fn round(&mut self, i: usize) {
        let (c, base) = (&self.client, &self.base);
        let (active, layer, idle) = (
            SnapshotKey::from(format!("active-{i}")),
            SnapshotKey::from(format!("layer-{i}")),
            SnapshotKey::from(format!("idle-{i}")),
        );
        let [prepare, commit, rm_committed, rm_active] = &mut self.rows;
        timed(prepare, || {
            c.prepare(&active, Some(base), Labels::new())
                .expect("prepare");
        });
        timed(commit, || {
            c.commit(&layer, &active, Labels::new()).expect("commit");
        });
        timed(rm_committed, || c.remove(&layer).expect("remove committed"));
        c.prepare(&idle, Some(base), Labels::new())
            .expect("prepare idle");
        timed(rm_active, || c.remove(&idle).expect("remove active"));
    }
}

#[test]
#[ignore = "measurement: prints figures, asserts nothing about speed"]
fn btrfs_calls_through_strata_serve() {
    let test = "btrfs_calls_through_strata_serve";
    if !require_root(test) || !require_program(test, "mkfs.btrfs") {
        return;
    }
    let samples: usize = std::env::var("STRATA_LATENCY_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let scratch = ScratchDir::new("btrfs-serve-latency");
    let mut rigs = vec![Rig::new(
        "this",
        Path::new(env!("CARGO_BIN_EXE_strata")),
        &scratch,
    )];
    if let Some(other) = std::env::var_os("STRATA_LATENCY_BASELINE") {
        rigs.push(Rig::new("baseline", Path::new(&other), &scratch));
    }
    // Interleaved, in turns of order, so the host's load affects every
    // binary alike.
    for i in 0..samples {
        for rig in &mut rigs {
            rig.round(i);
        }
        rigs.reverse();
    }
    rigs.sort_by(|a, b| b.label.cmp(&a.label));
    for mut rig in rigs {
        println!(
            "{}: btrfs (loop file) through strata serve, {samples} samples per row",
            rig.label
        );
        for (op, v) in ROWS.iter().zip(&mut rig.rows) {
            assert_eq!(v.len(), samples, "{op}: every sample recorded");
            assert!(v.iter().all(|d| !d.is_zero()), "{op}: a zero duration");
            println!("  {}", line(op, v));
        }
    }
}
