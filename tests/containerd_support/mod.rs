//! Fixtures for the containerd tests: a private containerd, the `strata serve`
//! binary, and a one-layer busybox OCI image built here.
#![allow(dead_code)]

pub mod image;

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Prefix of the namespaces the tests' containerd objects live in. Each
/// containerd gets its own namespace because runc's state directory
/// (/run/containerd/runc/NAMESPACE/ID) is shared by every containerd on the host.
pub const NAMESPACE_PREFIX: &str = "strata-test";

/// Waits until `path` accepts connections.
pub fn wait_for_socket(path: &Path, what: &str, child: Option<&mut Child>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut child = child;
    while UnixStream::connect(path).is_err() {
        if let Some(c) = child.as_deref_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!(
                    "{what} exited before listening on {}: {status}",
                    path.display()
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Stops `child` with SIGTERM (SIGKILL after `grace`); returns its status.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok();
    None
}

/// `strata --root R serve --socket S` as a child process.
pub struct Strata {
    child: Child,
    log: PathBuf,
}

impl Strata {
    /// Creates a store of `driver` at `root` and serves it on `socket`.
    /// `Err` holds why the driver cannot run here (the caller skips).
    pub fn start(root: &Path, driver: &str, socket: &Path) -> Result<Self, String> {
        let bin = env!("CARGO_BIN_EXE_strata");
        let root_arg = root.to_str().expect("utf-8 root");
        let init = Command::new(bin)
            .args(["--root", root_arg, "--driver", driver, "init"])
            .output()
            .expect("run strata init");
        if !init.status.success() {
            return Err(format!(
                "strata init --driver {driver}: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            ));
        }
        let log = root.with_extension("serve.log");
        let out = fs::File::create(&log).expect("create serve log");
        let mut child = Command::new(bin)
            .args(["--root", root_arg, "serve", "--socket"])
            .arg(socket)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .spawn()
            .expect("spawn strata serve");
        wait_for_socket(socket, "strata serve", Some(&mut child));
        Ok(Self { child, log })
    }

    /// Stops the server as systemd would (SIGTERM) and checks it went cleanly.
    pub fn stop(&mut self) {
        let status = terminate(&mut self.child, Duration::from_secs(20));
        assert!(
            matches!(status, Some(s) if s.success()),
            "strata serve did not exit cleanly on SIGTERM ({status:?}):\n{}",
            tail(&self.log)
        );
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(20));
    }
}

/// A private containerd: own config, root, state and sockets under `dir`,
/// CRI disabled, `strata` as a proxy snapshotter.
pub struct Containerd {
    child: Child,
    /// The containerd namespace this test uses.
    pub namespace: String,
    /// Its gRPC socket.
    pub socket: PathBuf,
    log: PathBuf,
}

impl Containerd {
    /// Starts containerd in `dir` with the proxy plug-in at `strata_socket`.
    pub fn start(dir: &Path, strata_socket: &Path, tag: &str) -> Self {
        let namespace = format!("{NAMESPACE_PREFIX}-{tag}-{}", std::process::id());
        let config = config_toml(dir, &dir.join("ctrd.sock"), strata_socket);
        Self::start_with(dir, &config, namespace)
    }

    /// Starts containerd in `dir` with its CRI plug-in on, Strata as the
    /// CRI's snapshotter and `pause_image` as the sandbox image; the
    /// namespace is CRI's own, `k8s.io`.
    pub fn start_cri(dir: &Path, strata_socket: &Path, pause_image: &str) -> Self {
        let base = config_toml(dir, &dir.join("ctrd.sock"), strata_socket);
        let config = base.replace("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n", "")
            + &cri_toml(dir, pause_image);
        Self::start_with(dir, &config, "k8s.io".to_owned())
    }

    /// containerd's root directory (`root` in its config).
    pub fn root_of(dir: &Path) -> PathBuf {
        dir.join("root")
    }

    fn start_with(dir: &Path, config_text: &str, namespace: String) -> Self {
        fs::create_dir_all(dir).expect("mkdir containerd dir");
        let socket = dir.join("ctrd.sock");
        let config = dir.join("config.toml");
        fs::write(&config, config_text).expect("write config");
        let log = dir.join("containerd.log");
        let out = fs::File::create(&log).expect("create containerd log");
        let mut child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .spawn()
            .expect("spawn containerd");
        wait_for_socket(&socket, "containerd", Some(&mut child));
        let me = Self {
            child,
            namespace,
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !me.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd not ready:\n{}",
                tail(&me.log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    /// Runs `ctr -a SOCK -n NAMESPACE ARGS..` in the test's namespace.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", &self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// Runs ctr, panics (with containerd's log) on failure, returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}\n{}\n--- containerd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// containerd's log (for failure messages).
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // A failed test may leave a task: kill it so its shim exits too.
        let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", "t"]);
        let _ = self.ctr(&["tasks", "rm", "-f", "t"]);
        let _ = self.ctr(&["containers", "rm", "t"]);
        terminate(&mut self.child, Duration::from_secs(20));
        // runc's per-namespace state directory outlives containerd; it is
        // empty once the task is gone (remove_dir leaves it otherwise).
        let _ = fs::remove_dir(Path::new(RUNC_STATE).join(&self.namespace));
    }
}

/// Where the runc shim keeps container state (one directory per namespace).
const RUNC_STATE: &str = "/run/containerd/runc";

/// The CRI plug-in's part of the config: Strata for images and containers,
/// a local pause image, runc, snapshot usage collected every second, no
/// AppArmor (not every host has a parser for containerd's profile), and
/// OOM scores no lower than containerd's own (a sandboxed host may forbid
/// lowering them, as for the pause container's -998).
fn cri_toml(dir: &Path, pause_image: &str) -> String {
    let d = dir.display();
    format!(
        r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  stats_collect_period = 1
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "strata"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
"#
    )
}

fn config_toml(dir: &Path, socket: &Path, strata_socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 1
  schedule_delay = "0s"

[proxy_plugins.strata]
  type = "snapshot"
  address = "{strata}"
"#,
        socket = socket.display(),
        strata = strata_socket.display(),
    )
}

/// Whether a containerd test can run: root, containerd with runc and its
/// shim, and busybox-static for the test images (a visible skip otherwise).
pub fn prerequisites(test: &str) -> bool {
    use strata_driver_api::testing::{require_program, require_root, skip};
    if !require_root(test) {
        return false;
    }
    for program in ["containerd", "ctr", "runc", "containerd-shim-runc-v2"] {
        if !require_program(test, program) {
            return false;
        }
    }
    if !Path::new(image::BUSYBOX).is_file() {
        skip(test, "busybox-static (/bin/busybox) is not installed");
        return false;
    }
    true
}
