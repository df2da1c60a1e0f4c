//! Concurrency: two strata processes on one store (the second waits for the
//! lock with a clear message, or refuses after the timeout, and nothing is
//! corrupted); many CLI processes at once; many threads driving the
//! in-process snapshotter, and many gRPC clients driving a `strata serve`
//! process, without errors or leaks. The devmapper cases run in the VM tier.

mod common;
mod reliability;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reliability::*;
use strata::serve::GrpcSnapshotter;
use strata_driver_api::testing::{require_root, skip, ScratchDir};
use strata_driver_api::{Labels, SnapshotKey, Snapshotter, SnapshotterExt};

fn store_with_base(test: &str, scratch: &ScratchDir, driver: &str) -> Option<std::path::PathBuf> {
    let root = scratch.path().join("store");
    if !init_store(test, &root, driver, &[]) {
        return None;
    }
    let tar = scratch.path().join("base.tar");
    busybox_rootfs_tar(&tar, "base\n");
    strata_ok(&root, &["import", tar.to_str().unwrap(), "base"]);
    Some(root)
}

/// Holds the store lock from this process for `hold`, in a thread.
fn hold_lock(root: &Path, hold: Duration) -> std::thread::JoinHandle<()> {
    let lock =
        strata::store::StoreLock::acquire(root, Duration::from_secs(5)).expect("take the lock");
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        drop(lock);
    })
}

#[test]
fn a_second_process_waits_for_the_lock_and_says_so() {
    if !require_root("concurrency::waits") {
        return;
    }
    let scratch = ScratchDir::new("conc-wait");
    let Some(root) = store_with_base("concurrency::waits", &scratch, "vfs") else {
        return;
    };
    let holder = hold_lock(&root, Duration::from_millis(1500));
    let started = Instant::now();
    let out = command(&root, &["create", "--name", "waited", "base"])
        .env("STRATA_LOCK_WAIT", "20")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the waiting process failed: {stderr}");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it did not wait"
    );
    assert!(
        stderr.contains("waiting for the store lock")
            && stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    holder.join().unwrap();
    assert_eq!(check(&root, &[]).0, 0);
    strata_ok(&root, &["rm", "waited"]);
}

#[test]
fn a_second_process_refuses_after_the_timeout_and_changes_nothing() {
    if !require_root("concurrency::refuses") {
        return;
    }
    let scratch = ScratchDir::new("conc-refuse");
    let Some(root) = store_with_base("concurrency::refuses", &scratch, "vfs") else {
        return;
    };
    let before = strata_ok(&root, &["--format", "json", "images"]);
    let db = std::fs::read(root.join("metadata.redb")).unwrap();
    let holder = hold_lock(&root, Duration::from_secs(4));
    let out = command(&root, &["rmi", "base"])
        .env("STRATA_LOCK_WAIT", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rmi ran while the store was locked");
    assert!(
        stderr.contains("is locked by another strata process")
            && stderr.contains(&format!("pid {}", std::process::id())),
        "unclear refusal: {stderr}"
    );
    assert_eq!(
        std::fs::read(root.join("metadata.redb")).unwrap(),
        db,
        "the refused process wrote the database"
    );
    holder.join().unwrap();
    assert_eq!(strata_ok(&root, &["--format", "json", "images"]), before);
    assert_eq!(check(&root, &[]).0, 0);
}

#[test]
fn many_cli_processes_at_once_serialise_cleanly() {
    if !require_root("concurrency::cli") {
        return;
    }
    let scratch = ScratchDir::new("conc-cli");
    let Some(root) = store_with_base("concurrency::cli", &scratch, "vfs") else {
        return;
    };
    let mut tars = Vec::new();
    for i in 0..3 {
        let tar = scratch.path().join(format!("img{i}.tar"));
        busybox_rootfs_tar(&tar, &format!("img {i}\n"));
        tars.push(tar);
    }
    let mut children = Vec::new();
    for i in 0..8 {
        let name = format!("c{i}");
        children.push(
            command(&root, &["create", "--name", &name, "base"])
                .env("STRATA_LOCK_WAIT", "120")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    for (i, tar) in tars.iter().enumerate() {
        let reference = format!("img{i}");
        children.push(
            command(&root, &["import", tar.to_str().unwrap(), &reference])
                .env("STRATA_LOCK_WAIT", "120")
                .spawn()
                .unwrap(),
        );
        children.push(
            command(&root, &["ps"])
                .env("STRATA_LOCK_WAIT", "120")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let ops = children.len();
    for mut c in children {
        assert!(
            c.wait().unwrap().success(),
            "a concurrent strata process failed"
        );
    }
    assert_eq!(json(&root, &["ps"]).as_array().unwrap().len(), 8);
    assert_eq!(json(&root, &["images"]).as_array().unwrap().len(), 4);
    let (code, out) = check(&root, &["--data"]);
    assert_eq!(code, 0, "{out}");
    eprintln!("CONCURRENCY cli: {ops} strata processes at once on one store");
}

/// Threads × iterations of prepare, stat, mounts, commit, view, usage,
/// walk and remove through one in-process snapshotter.
fn hammer(driver: &str) {
    let test = format!("concurrency::threads_{driver}");
    if !require_root(&test) {
        return;
    }
    let scratch = ScratchDir::new(&format!("conc-threads-{driver}"));
    let root = scratch.path().join("store");
    let store = match strata::Store::init(&root, driver, Default::default()) {
        Ok(s) => s,
        Err(e) if e.to_string().contains("unknown driver") => {
            return skip(&test, &format!("driver {driver} is not registered"))
        }
        Err(e) => panic!("open {driver}: {e}"),
    };
    let sn = Arc::clone(store.snapshots());
    sn.prepare(&"base-active".into(), None, Labels::new())
        .unwrap();
    sn.commit(&"base".into(), &"base-active".into(), Labels::new())
        .unwrap();
    let threads = 6;
    let rounds = 25;
    let ops = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let sn = &sn;
            let ops = &ops;
            s.spawn(move || {
                for r in 0..rounds {
                    let active = SnapshotKey(format!("t{t}-r{r}-active"));
                    let layer = SnapshotKey(format!("t{t}-r{r}-layer"));
                    let view = SnapshotKey(format!("t{t}-r{r}-view"));
                    sn.prepare(&active, Some(&"base".into()), Labels::new())
                        .unwrap();
                    sn.stat(&active).unwrap();
                    sn.mounts(&active).unwrap();
                    sn.commit(&layer, &active, Labels::new()).unwrap();
                    sn.view(&view, Some(&layer), Labels::new()).unwrap();
                    sn.usage(&layer).unwrap();
                    sn.list(&[]).unwrap();
                    sn.remove(&view).unwrap();
                    sn.remove(&layer).unwrap();
                    ops.fetch_add(9, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(
        sn.list(&[]).unwrap().len(),
        1,
        "snapshots left besides base"
    );
    assert!(
        sn.incomplete().unwrap().is_empty(),
        "half-done operations left"
    );
    assert!(sn.orphans().unwrap().is_empty(), "orphan storage left");
    let report = strata::check::check(&store, Default::default()).unwrap();
    assert!(!report.damaged(), "{:?}", report.remaining);
    sn.remove(&"base".into()).unwrap();
    drop(sn);
    drop(store);
    assert_no_leaks(&root, "after the threads");
    eprintln!(
        "CONCURRENCY {driver}: {} snapshotter operations from {threads} threads",
        ops.into_inner()
    );
}

#[test]
fn threads_hammer_the_snapshotter_vfs() {
    hammer("vfs");
}

#[test]
fn threads_hammer_the_snapshotter_overlay2() {
    hammer("overlay2");
}

#[test]
fn threads_hammer_the_snapshotter_btrfs() {
    hammer("btrfs");
}

#[test]
fn threads_hammer_the_snapshotter_blockfile() {
    hammer("blockfile");
}

#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn threads_hammer_the_snapshotter_devmapper() {
    hammer("devmapper");
}

/// A `strata serve` child process, killed if a test fails while it runs.
struct Server {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Server {
    fn start(root: &Path, socket: &Path) -> Self {
        let child = command(root, &["serve", "--socket", socket.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn strata serve");
        let server = Self {
            child,
            socket: socket.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "strata serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn client(&self) -> GrpcSnapshotter {
        GrpcSnapshotter::connect(&self.socket).expect("connect to strata serve")
    }

    /// SIGTERM, then the exit status must be success and the socket gone.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "strata serve exited with {status}");
        assert!(!self.socket.exists(), "socket left behind");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Clients × rounds of prepare, stat, mounts, commit, view, usage, list and
/// remove through one `strata serve` process; afterwards the server stops
/// cleanly and the store holds nothing but what the test left.
fn serve_hammer(driver: &str) {
    let test = format!("concurrency::serve_{driver}");
    if !require_root(&test) {
        return;
    }
    let scratch = ScratchDir::new(&format!("conc-serve-{driver}"));
    let root = scratch.path().join("store");
    if !init_store(&test, &root, driver, &[]) {
        return;
    }
    let server = Server::start(&root, &scratch.path().join("strata.sock"));
    let admin = server.client();
    admin
        .prepare(&"base-active".into(), None, Labels::new())
        .unwrap();
    admin
        .commit(&"base".into(), &"base-active".into(), Labels::new())
        .unwrap();
    let clients = 8;
    let rounds = 10;
    let ops = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for c in 0..clients {
            let (server, ops) = (&server, &ops);
            s.spawn(move || {
                let sn = server.client();
                for r in 0..rounds {
                    let active = SnapshotKey(format!("c{c}-r{r}-active"));
                    let layer = SnapshotKey(format!("c{c}-r{r}-layer"));
                    let view = SnapshotKey(format!("c{c}-r{r}-view"));
                    sn.prepare(&active, Some(&"base".into()), Labels::new())
                        .unwrap_or_else(|e| panic!("prepare {active}: {e}"));
                    sn.stat(&active).unwrap();
                    assert!(!sn.mounts(&active).unwrap().is_empty());
                    sn.commit(&layer, &active, Labels::new())
                        .unwrap_or_else(|e| panic!("commit {layer}: {e}"));
                    sn.view(&view, Some(&layer), Labels::new()).unwrap();
                    sn.usage(&layer).unwrap();
                    sn.list(&[]).unwrap();
                    sn.remove(&view)
                        .unwrap_or_else(|e| panic!("remove {view}: {e}"));
                    sn.remove(&layer)
                        .unwrap_or_else(|e| panic!("remove {layer}: {e}"));
                    ops.fetch_add(9, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let left: Vec<_> = admin
        .list(&[])
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(left, vec![SnapshotKey::from("base")], "snapshots left");
    admin.remove(&"base".into()).unwrap();
    drop(admin);
    server.stop();
    let (code, out) = check(&root, &[]);
    assert_eq!(code, 0, "{test}: store not clean after serving:\n{out}");
    assert_eq!(json(&root, &["info"])["snapshots"], 0);
    assert_no_leaks(&root, "after strata serve stopped");
    eprintln!(
        "CONCURRENCY serve {driver}: {} gRPC operations from {clients} clients",
        ops.into_inner()
    );
}

#[test]
fn serve_clients_hammer_the_socket_vfs() {
    serve_hammer("vfs");
}

#[test]
fn serve_clients_hammer_the_socket_overlay2() {
    serve_hammer("overlay2");
}

#[test]
fn serve_clients_hammer_the_socket_btrfs() {
    serve_hammer("btrfs");
}

#[test]
fn serve_clients_hammer_the_socket_blockfile() {
    serve_hammer("blockfile");
}

#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn serve_clients_hammer_the_socket_devmapper() {
    serve_hammer("devmapper");
}
