//! Helpers of the reliability tests (crash, concurrency, hygiene, data):
//! stores per driver, killing strata processes, and leak detection.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use strata_driver_api::testing::{require_root, skip, ScratchDir};

use crate::common::*;

/// Drivers whose crash and hygiene tests run on this host (devmapper runs
/// in the VM tier).
pub const HOST_DRIVERS: &[&str] = &["vfs", "overlay2", "btrfs", "blockfile"];

/// A `strata` command for the store at `root`.
pub fn command(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--root")
        .arg(root)
        .args(args)
        .env("STRATA_LOG", "error");
    cmd.env_remove("STRATA_FAILPOINT");
    cmd
}

/// Creates a store with `driver`; `false` (after a loud skip) when this
/// build does not know the driver yet.
pub fn init_store(test: &str, root: &Path, driver: &str, options: &[&str]) -> bool {
    let mut args = vec!["--driver", driver, "init"];
    for o in options {
        args.extend(["--opt", o]);
    }
    let out = strata(root, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unknown driver") {
        skip(
            test,
            &format!("driver {driver} is not registered in this build"),
        );
        return false;
    }
    assert!(out.status.success(), "init {driver}: {stderr}");
    true
}

/// A fresh scratch directory named after `test` with a store of `driver`
/// (and `options`) at `<scratch>/store`; `None` after a visible skip (not
/// root, or the driver is not in this build). Dropping the scratch
/// directory removes the store with whatever it left mounted.
pub fn scratch_store(test: &str, driver: &str, options: &[&str]) -> Option<(ScratchDir, PathBuf)> {
    if !require_root(test) {
        return None;
    }
    let scratch = ScratchDir::new(&test.replace("::", "-"));
    let root = scratch.path().join("store");
    init_store(test, &root, driver, options).then_some((scratch, root))
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Exited with this code.
    Exited(i32),
    /// Died of SIGKILL.
    Killed,
    /// Died of SIGINT before its handler was installed.
    Interrupted,
}

impl End {
    /// Whether a SIGINT stopped the command (exit 130, or the default action).
    pub fn interrupted(self) -> bool {
        matches!(self, End::Exited(130) | End::Interrupted)
    }
}

fn end_of(status: ExitStatus) -> End {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(9) => End::Killed,
        Some(2) => End::Interrupted,
        Some(s) => panic!("strata died of signal {s}"),
        None => End::Exited(status.code().unwrap_or(-1)),
    }
}

/// Runs `cmd` with failpoint `name` armed.
pub fn run_at_failpoint(mut cmd: Command, name: &str) -> End {
    cmd.env("STRATA_FAILPOINT", name)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    end_of(cmd.status().expect("run strata"))
}

/// Runs `cmd` and SIGKILLs it after `after` unless it ended first.
pub fn run_and_kill(mut cmd: Command, after: Duration) -> End {
    let mut child: Child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strata");
    let deadline = Instant::now() + after;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return end_of(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return end_of(child.wait().expect("wait"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Runs `cmd` and sends it `signal` after `after` unless it ended first;
/// returns how it ended and its stderr.
pub fn run_and_signal(
    mut cmd: Command,
    after: Duration,
    signal: nix::sys::signal::Signal,
) -> (End, String) {
    let mut child: Child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    let deadline = Instant::now() + after;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = nix::sys::signal::kill(pid, signal);
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let out = child.wait_with_output().expect("wait");
    (
        end_of(out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Files under `dir` attached to more than one loop device: two live
/// instances of one filesystem, the way a btrfs store gets destroyed.
pub fn files_attached_twice(dir: &Path) -> Vec<(PathBuf, Vec<PathBuf>)> {
    let mut by_file: std::collections::BTreeMap<PathBuf, Vec<PathBuf>> = Default::default();
    for dev in loops_below(dir) {
        let name = dev.file_name().unwrap().to_string_lossy().into_owned();
        let backing = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
            .unwrap_or_default();
        by_file
            .entry(PathBuf::from(backing.trim_end()))
            .or_default()
            .push(dev);
    }
    by_file.into_iter().filter(|(_, d)| d.len() > 1).collect()
}

/// Runs `check` (with extra args) and returns (exit code, stdout).
pub fn check(root: &Path, args: &[&str]) -> (i32, String) {
    let mut full = vec!["check"];
    full.extend_from_slice(args);
    let out = strata(root, &full);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.stderr.is_empty() && !args.contains(&"json") {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    (out.status.code().unwrap_or(-1), text)
}

/// Every tag of every image in the store, as `strata images` lists them.
pub fn image_tags(root: &Path) -> Vec<String> {
    json(root, &["images"])
        .as_array()
        .expect("images is a list")
        .iter()
        .flat_map(|i| i["tags"].as_array().expect("tags is a list").clone())
        .map(|t| t.as_str().expect("a tag is a string").to_owned())
        .collect()
}

/// Runs `check` (with extra args), asserts it exits 0 (`what` and the
/// report name the failure) and returns its report.
#[track_caller]
pub fn check_clean(root: &Path, args: &[&str], what: &str) -> String {
    let (code, out) = check(root, args);
    assert_eq!(code, 0, "{what}:\n{out}");
    out
}

/// Loop devices whose backing file lies under `dir`.
pub fn loops_below(dir: &Path) -> Vec<PathBuf> {
    strata_driver_api::testing::loops_below(dir)
}

/// Asserts that nothing but the driver's backing is left under the store:
/// no mount other than the backing's own mount point, no loop device other
/// than the backing files' (which stay set up between commands, until
/// `strata release`), and each backing file on at most one loop device.
pub fn assert_no_leaks(root: &Path, when: &str) {
    assert_eq!(
        stray_mounts_below(root),
        Vec::<String>::new(),
        "mounts left under {} {when}",
        root.display()
    );
    let backing = backing_of(root);
    for (file, devices, _) in &backing {
        assert!(
            devices.len() <= 1,
            "{} attached to {devices:?} {when}",
            file.display()
        );
    }
    let allowed: Vec<&PathBuf> = backing.iter().flat_map(|(_, d, _)| d).collect();
    let stray: Vec<PathBuf> = loops_below(root)
        .into_iter()
        .filter(|d| !allowed.contains(&d))
        .collect();
    assert_eq!(
        stray,
        Vec::<PathBuf>::new(),
        "loop devices left under {} {when}",
        root.display()
    );
}

/// A small xorshift generator: tests print the seed so a run can be replayed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `STRATA_CRASH_SEED` or the clock.
    pub fn new() -> Self {
        let seed = std::env::var("STRATA_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| strata::now_ns() | 1);
        eprintln!("random seed {seed} (replay with STRATA_CRASH_SEED={seed})");
        Self(seed)
    }

    /// Next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// JSON of a listing.
pub fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["--format", "json"];
    full.extend_from_slice(args);
    serde_json::from_str(&strata_ok(root, &full)).expect("json listing")
}

/// Incompressible bytes for filling disks.
struct Noise {
    state: u64,
    left: u64,
}

impl std::io::Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for b in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A tar holding `/etc/motd` and one incompressible file of `bytes`.
pub fn big_tar(path: &Path, bytes: u64) {
    let mut b = tar::Builder::new(std::fs::File::create(path).expect("create tar"));
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(bytes);
    h.set_mtime(1_700_000_000);
    b.append_data(
        &mut h,
        "big",
        Noise {
            state: 0x9e37_79b9_7f4a_7c15,
            left: bytes,
        },
    )
    .expect("append big");
    b.finish().expect("finish tar");
}

/// Free bytes of the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    s.blocks_available() as u64 * s.fragment_size() as u64
}

/// A tar of one layer: `etc/motd` (when given) and `layer-N` of `bytes`
/// incompressible bytes drawn from `seed`.
pub fn noise_layer_tar(path: &Path, n: usize, bytes: u64, seed: u64, motd: Option<&str>) {
    let mut b = tar::Builder::new(std::fs::File::create(path).expect("create tar"));
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(1_700_000_000);
    b.append_data(&mut dir, "etc", std::io::empty())
        .expect("append etc");
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(bytes);
    h.set_mtime(1_700_000_000);
    let noise = Noise {
        state: seed | 1,
        left: bytes,
    };
    b.append_data(&mut h, format!("layer-{n}"), noise)
        .expect("append noise");
    if let Some(motd) = motd {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(motd.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "etc/motd", motd.as_bytes())
            .expect("append motd");
    }
    b.finish().expect("finish tar");
}

/// Writes an uncompressed OCI archive at `out` of one image `reference`
/// with `layers` layers of `bytes` incompressible bytes each (distinct for
/// each `seed`), the last one holding `etc/motd` = `motd`. Scratch files go
/// to `out`'s directory and are removed.
pub fn multi_layer_archive(
    out: &Path,
    reference: &str,
    layers: usize,
    bytes: u64,
    seed: u64,
    motd: &str,
) {
    use sha2::Digest as _;
    let dir = out.parent().expect("archive directory");
    let mut paths = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..layers {
        let path = dir.join(format!(
            ".layer-{seed}-{i}-{}.tar",
            out.file_name().unwrap().to_string_lossy()
        ));
        let last = i + 1 == layers;
        noise_layer_tar(
            &path,
            i,
            bytes,
            seed.wrapping_mul(31).wrapping_add(i as u64),
            last.then_some(motd),
        );
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(&path).unwrap(), &mut hasher).unwrap();
        diff_ids.push(format!("sha256:{:x}", hasher.finalize()));
        paths.push(path);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": (0..layers).map(|i| serde_json::json!({"created_by": format!("layer {i}")})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let image = strata::image::ImageToSave {
        tags: vec![reference.to_owned()],
        config,
        layers: paths.clone(),
    };
    let opts = strata::image::SaveOptions {
        gzip: false,
        temp_dir: dir.to_path_buf(),
    };
    strata::image::write_oci_archive(std::fs::File::create(out).unwrap(), &[image], &opts)
        .expect("write the archive");
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

/// The bit of signal `sig` in a `/proc/PID/status` mask line (`SigCgt`,
/// `ShdPnd`, ...) of process `pid`; `None` once the process is gone.
fn proc_mask_has(pid: u32, field: &str, sig: i32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let mask = u64::from_str_radix(line[field.len()..].trim(), 16).ok()?;
    Some(mask & (1 << (sig - 1)) != 0)
}

/// How a signalled run of strata ended.
#[derive(Debug)]
pub struct Signalled {
    /// Exit code (`None` if a signal killed it).
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub killed_by: Option<i32>,
    /// Whether the signals were sent (`false`: it ended first).
    pub sent: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Time from the first signal to its end.
    pub after_signal: Duration,
}

impl Signalled {
    /// Non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Spawns `cmd`, waits until it has installed its signal handlers (SIGINT,
/// SIGTERM, SIGHUP and `signals` caught, per `/proc/PID/status`), waits
/// `after`, then sends `signals`.
/// With `stopped`, the process is stopped while all of them are sent and
/// continued afterwards, so they are all pending at once (a second signal
/// before the process ran on); without, each is sent once the one before
/// was delivered. Returns how it ended.
pub fn signal_when_ready(
    mut cmd: Command,
    after: Duration,
    signals: &[i32],
    stopped: bool,
) -> Signalled {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::io::Read as _;
    use std::os::unix::process::ExitStatusExt;
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    let pid = child.id();
    let npid = Pid::from_raw(pid as i32);
    // Drain the pipes in threads, so a chatty child never blocks.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let ready_by = Instant::now() + Duration::from_secs(30);
    let mut sent = false;
    let mut sent_at = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        let ready = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
            .iter()
            .chain(signals)
            .all(|&sig| proc_mask_has(pid, "SigCgt:", sig) == Some(true));
        if !ready {
            assert!(
                Instant::now() < ready_by,
                "strata never installed its signal handlers"
            );
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let deadline = Instant::now() + after;
        while Instant::now() < deadline && child.try_wait().expect("wait").is_none() {
            std::thread::sleep(Duration::from_micros(200));
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if stopped {
            let _ = kill(npid, Signal::SIGSTOP);
        }
        sent_at = Instant::now();
        for (i, &sig) in signals.iter().enumerate() {
            if i > 0 && !stopped {
                // The previous signal must have been delivered (its handler
                // ran), or a repeat of it would merge with it.
                let prev = signals[i - 1];
                while proc_mask_has(pid, "ShdPnd:", prev) == Some(true) {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            let signal = Signal::try_from(sig).expect("a signal");
            if kill(npid, signal).is_ok() {
                sent = true;
            }
        }
        if stopped {
            let _ = kill(npid, Signal::SIGCONT);
        }
        break;
    }
    let status = child.wait().expect("wait");
    let after_signal = sent_at.elapsed();
    Signalled {
        code: status.code(),
        killed_by: status.signal(),
        sent,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
        after_signal,
    }
}

/// Regular files, symlinks and mount points under `<root>/tmp` (scratch
/// files, scratch mounts): an interrupted or finished command leaves none.
pub fn leftovers_in_tmp(root: &Path) -> Vec<PathBuf> {
    let tmp = root.join("tmp");
    let mut out: Vec<PathBuf> = mounts_below(&tmp).into_iter().map(PathBuf::from).collect();
    let mut todo = vec![tmp];
    while let Some(dir) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                _ => out.push(e.path()),
            }
        }
    }
    out
}

/// Asserts that the store is at rest: nothing under `<root>/tmp`, no mount
/// under `<root>/containers` that `ps` does not record, and no snapshot
/// that is not an image's layer or a container's (no scratch snapshot, no
/// unused layer). Runs only ordinary commands, not `check`.
pub fn assert_at_rest(root: &Path, when: &str) {
    assert_eq!(
        leftovers_in_tmp(root),
        Vec::<PathBuf>::new(),
        "scratch files or mounts left under {}/tmp {when}",
        root.display()
    );
    let ps = json(root, &["ps"]);
    let mut recorded: Vec<String> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["mounted_at"].as_str().map(str::to_owned))
        .collect();
    recorded.sort();
    let mut mounted = mounts_below(&root.join("containers"));
    mounted.sort();
    assert_eq!(mounted, recorded, "container mounts vs records {when}");
    let snapshots = json(root, &["snapshots"]);
    for s in snapshots.as_array().unwrap() {
        let owner = s["owner"].as_str().unwrap_or("");
        assert!(
            owner.starts_with("image ") || owner.starts_with("container "),
            "snapshot {} owned by {owner:?} left {when}",
            s["key"]
        );
    }
}

/// A `strata serve` child process, killed if a test fails while it runs.
pub struct Server {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Server {
    /// Starts `strata serve` on `socket` and waits until it listens.
    pub fn start(root: &Path, socket: &Path) -> Self {
        Self::start_command(
            command(root, &["serve", "--socket", socket.to_str().unwrap()]),
            socket,
        )
    }

    /// Starts `cmd`, a `strata serve` on `socket` (perhaps run through a
    /// wrapper that execs it, such as `prlimit`), and waits until it listens.
    pub fn start_command(mut cmd: Command, socket: &Path) -> Self {
        let child = cmd
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

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// A gRPC client of it.
    pub fn client(&self) -> strata::serve::GrpcSnapshotter {
        strata::serve::GrpcSnapshotter::connect(&self.socket).expect("connect to strata serve")
    }

    /// SIGTERM, then the exit status must be success and the socket gone.
    pub fn stop(mut self) {
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
