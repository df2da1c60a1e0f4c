//! The two servers of a pair, each a child process on its own socket: on
//! containerd's side either a private containerd (own config, root, state
//! and sockets; CRI off) whose snapshots service fronts its built-in
//! snapshotters, or `ctrd-snapshotter` serving one of them directly; on
//! Strata's, `strata serve` over a fresh store. Also the thin pool
//! containerd's devmapper snapshotter needs, made with dmsetup on loop files.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use strata_driver_api::mount::{attach_loop, run, LoopDevice};

use crate::bench::{Result, GIB, KIB, MIB};

/// How long a server may take to listen on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Size of each thin device containerd's devmapper snapshotter makes
/// (`base_image_size`), on both ways of reaching it.
const BASE_IMAGE_SIZE: &str = "10GB";

/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// A server process, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    what: String,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with its output in `log` and waits until `socket` accepts
    /// connections.
    pub fn spawn(what: &str, cmd: &mut Command, log: &Path, socket: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(
                out.try_clone()
                    .with_context(|| format!("dup {}", log.display()))?,
            )
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawn {what}"))?;
        let mut me = Self {
            child,
            what: what.to_owned(),
            log: log.to_owned(),
        };
        me.wait_for(socket)?;
        Ok(me)
    }

    fn wait_for(&mut self, socket: &Path) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while UnixStream::connect(socket).is_err() {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on {}:\n{}",
                    self.what,
                    socket.display(),
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {} within {:?}:\n{}",
                    self.what,
                    socket.display(),
                    START_TIMEOUT,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The lines of the server's log that contain `needle` (the last 20).
    pub fn log_lines_with(&self, needle: &str) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("bench: {} ignored SIGTERM; killing it", self.what);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `containerd --version`'s version field (`1.6.20~ds1`), if it runs.
pub fn containerd_version() -> Option<String> {
    let out = Command::new("containerd").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| text.split_whitespace().nth(2).map(str::to_owned))
        .flatten()
}

/// Where a private containerd keeps everything.
#[derive(Debug, Clone)]
pub struct ContainerdDirs {
    /// Its root (`root` in the config): the snapshotters' data lives below.
    pub root: PathBuf,
    /// Its state directory, config, log and sockets.
    pub run: PathBuf,
}

impl ContainerdDirs {
    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.run.join("ctrd.sock")
    }
}

/// Starts containerd in `dirs`, its devmapper plug-in on `pool` if given.
/// Garbage collection keeps containerd's defaults: what a stock install does.
pub fn start_containerd(dirs: &ContainerdDirs, pool: Option<&ThinPool>) -> Result<Daemon> {
    let config = dirs.run.join("config.toml");
    std::fs::write(&config, config_toml(dirs, pool))
        .with_context(|| format!("write {}", config.display()))?;
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(&config);
    without_udev(&mut cmd);
    Daemon::spawn(
        "containerd",
        &mut cmd,
        &dirs.run.join("containerd.log"),
        &dirs.socket(),
    )
}

fn config_toml(dirs: &ContainerdDirs, pool: Option<&ThinPool>) -> String {
    let socket = dirs.socket();
    let mut text = format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[metrics]
  address = ""
"#,
        root = dirs.root.display(),
        state = dirs.run.join("state").display(),
        socket = socket.display(),
    );
    if let Some(pool) = pool {
        text += &format!(
            r#"
[plugins."io.containerd.snapshotter.v1.devmapper"]
  pool_name = "{name}"
  base_image_size = "{BASE_IMAGE_SIZE}"
"#,
            name = pool.name
        );
    }
    text
}

/// `ctrd-snapshotter --version`: the containerd version it was built from.
pub fn direct_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("-version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Starts `bin` (contrib/bench/ctrd-snapshotter) serving containerd's
/// `snapshotter` package with its data in `root`, on `run_dir/ctrd.sock`;
/// devmapper's on `pool` with the daemon side's base image size.
pub fn start_direct(
    bin: &Path,
    snapshotter: &str,
    root: &Path,
    run_dir: &Path,
    pool: Option<&ThinPool>,
) -> Result<Daemon> {
    let socket = run_dir.join("ctrd.sock");
    let mut cmd = Command::new(bin);
    cmd.args(["-snapshotter", snapshotter])
        .arg("-root")
        .arg(root)
        .arg("-socket")
        .arg(&socket);
    if let Some(pool) = pool {
        cmd.args(["-pool", &pool.name, "-base-size", BASE_IMAGE_SIZE]);
    }
    without_udev(&mut cmd);
    Daemon::spawn(
        &format!("ctrd-snapshotter ({snapshotter})"),
        &mut cmd,
        &run_dir.join("ctrd-snapshotter.log"),
        &socket,
    )
}

/// `strata --root ROOT --driver DRIVER init`, then `strata --root ROOT serve`
/// on `run/strata.sock`.
pub fn start_strata(bin: &Path, root: &Path, driver: &str, run_dir: &Path) -> Result<Daemon> {
    let init = Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(["--driver", driver, "init"])
        .output()
        .with_context(|| format!("run {} init", bin.display()))?;
    if !init.status.success() {
        bail!(
            "strata init --driver {driver} at {}: {}",
            root.display(),
            String::from_utf8_lossy(&init.stderr).trim()
        );
    }
    let socket = run_dir.join("strata.sock");
    Daemon::spawn(
        "strata serve",
        Command::new(bin)
            .arg("--root")
            .arg(root)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "warn"),
        &run_dir.join("strata-serve.log"),
        &socket,
    )
}

/// With no udev running (containers, the VM tier's guest), libdevmapper is
/// told to make the `/dev/mapper` nodes itself (`DM_DISABLE_UDEV`), for
/// `cmd` and the dmsetup calls it makes (containerd's devmapper plug-in
/// runs dmsetup); otherwise it leaves them to udev and none appear.
fn without_udev(cmd: &mut Command) {
    if !Path::new("/run/udev/control").exists() {
        cmd.env("DM_DISABLE_UDEV", "1");
    }
}

/// A thin pool on two sparse loop files, laid out as Strata's devmapper
/// driver lays out its own (100 GiB of data, 64 KiB blocks, 48 bytes of
/// metadata per block). Its name carries the process id and its files live
/// in the caller's scratch directory, whose cleanup removes the pool and
/// every thin device on it, after a crash too.
#[derive(Debug)]
pub struct ThinPool {
    /// Its device-mapper name.
    pub name: String,
    _data: LoopDevice,
    _meta: LoopDevice,
}

impl ThinPool {
    /// Makes the pool's files in `dir` and the pool `strata-bench-ctrd-PID-pool`.
    pub fn create(dir: &Path) -> Result<Self> {
        const DATA: u64 = 100 * GIB;
        const BLOCK_SECTORS: u64 = 128;
        let meta_size = ((DATA / (64 * KIB)) * 48).max(2 * MIB).div_ceil(4 * KIB) * 4 * KIB;
        let data = sparse_loop(&dir.join("ctrd-pool-data.img"), DATA)?;
        let meta = sparse_loop(&dir.join("ctrd-pool-meta.img"), meta_size)?;
        let name = format!("strata-bench-ctrd-{}-pool", std::process::id());
        let table = format!(
            "0 {} thin-pool {} {} {BLOCK_SECTORS} 0 1 error_if_no_space",
            DATA / 512,
            meta.path.display(),
            data.path.display()
        );
        let mut cmd = Command::new("dmsetup");
        cmd.args(["create", &name, "--table", &table])
            .stdin(Stdio::null());
        without_udev(&mut cmd);
        run(&mut cmd).with_context(|| format!("dmsetup create {name}"))?;
        Ok(Self {
            name,
            _data: data,
            _meta: meta,
        })
    }
}

/// A sparse file of `size` bytes attached to a loop device that detaches
/// itself once its last user (the pool) lets go.
fn sparse_loop(path: &Path, size: u64) -> Result<LoopDevice> {
    let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    f.set_len(size)
        .with_context(|| format!("truncate {}", path.display()))?;
    drop(f);
    Ok(attach_loop(path, false, true)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_dirs_and_the_pool_only_when_given() {
        let dirs = ContainerdDirs {
            root: "/b/root".into(),
            run: "/r".into(),
        };
        let plain = config_toml(&dirs, None);
        assert!(plain.contains("root = \"/b/root\""));
        assert!(plain.contains("address = \"/r/ctrd.sock\""));
        assert!(!plain.contains("devmapper"));
        assert!(plain.parse::<toml::Table>().is_ok(), "{plain}");
    }
}
