//! Performs mount specs: bind, overlay (new mount API, so long lowerdir
//! chains fit), loop-backed filesystem images and plain block filesystems.
//! Nothing is left mounted or attached when a step fails.

use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use crate::{sys, Error, IoContext, Mount, Result};

/// A loop device attached by [`attach_loop`]. While this value lives, the
/// device is held open, so an autoclear device is not detached before it is
/// mounted.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    _handle: File,
}

/// Mounts each spec on `target` in order. If one fails, those already
/// mounted are unmounted again before the error is returned.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for (done, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..done {
                let _ = unmount(target);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// The options every mount Strata makes for itself carries: setuid bits,
/// file capabilities and device nodes of an image mean nothing there.
pub const HARDENED_OPTIONS: [&str; 2] = ["nosuid", "nodev"];

/// `mounts` with `nosuid` and `nodev` added to each spec's options (once).
pub fn hardened(mounts: &[Mount]) -> Vec<Mount> {
    with_options(mounts, &HARDENED_OPTIONS)
}

/// `mounts` with each of `extra` added to every spec's options unless the
/// spec has it already.
pub fn with_options(mounts: &[Mount], extra: &[&str]) -> Vec<Mount> {
    mounts
        .iter()
        .map(|m| {
            let mut m = m.clone();
            for o in extra {
                if !m.options.iter().any(|have| have == o) {
                    m.options.push((*o).to_owned());
                }
            }
            m
        })
        .collect()
}

/// [`HARDENED_OPTIONS`] as owned strings, for [`mount_fs`] calls.
pub fn hardened_options(mut options: Vec<String>) -> Vec<String> {
    for o in HARDENED_OPTIONS {
        if !options.iter().any(|have| have == o) {
            options.push(o.to_owned());
        }
    }
    options
}

/// Flags and data string split out of `mount -o` style options.
struct ParsedOptions {
    flags: MsFlags,
    data: Vec<String>,
    bind: bool,
    recursive: bool,
    use_loop: bool,
}

fn parse_options(options: &[String]) -> ParsedOptions {
    let mut p = ParsedOptions {
        flags: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
        recursive: false,
        use_loop: false,
    };
    for o in options {
        match o.as_str() {
            "ro" => p.flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "bind" => p.bind = true,
            "rbind" => {
                p.bind = true;
                p.recursive = true;
            }
            "loop" => p.use_loop = true,
            "nosuid" => p.flags |= MsFlags::MS_NOSUID,
            "nodev" => p.flags |= MsFlags::MS_NODEV,
            "noexec" => p.flags |= MsFlags::MS_NOEXEC,
            "noatime" => p.flags |= MsFlags::MS_NOATIME,
            "relatime" => p.flags |= MsFlags::MS_RELATIME,
            "sync" => p.flags |= MsFlags::MS_SYNCHRONOUS,
            other => p.data.push(other.to_owned()),
        }
    }
    p
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let opts = parse_options(&m.options);
    if m.fstype == "bind" || opts.bind {
        return mount_bind(Path::new(&m.source), target, &opts);
    }
    if m.fstype == "overlay" {
        return mount_overlay(target, &opts);
    }
    if opts.use_loop {
        let read_only = opts.flags.contains(MsFlags::MS_RDONLY);
        let dev = attach_loop(Path::new(&m.source), read_only, true)?;
        // The device stays attached while mounted; `dev` drops after mounting,
        // so a failed mount detaches it through autoclear.
        return mount_fs(&dev.path, target, &m.fstype, &opts_to_strings(&m.options));
    }
    mount_fs(Path::new(&m.source), target, &m.fstype, &m.options)
}

fn opts_to_strings(options: &[String]) -> Vec<String> {
    options.iter().filter(|o| *o != "loop").cloned().collect()
}

/// Mounts the filesystem on `source` (a block device) at `target`.
pub fn mount_fs(source: &Path, target: &Path, fstype: &str, options: &[String]) -> Result<()> {
    let opts = parse_options(options);
    let data = opts.data.join(",");
    nix::mount::mount(
        Some(source),
        target,
        Some(fstype),
        opts.flags,
        if data.is_empty() {
            None
        } else {
            Some(data.as_str())
        },
    )
    .map_err(|e| mount_error(fstype, source, target, e))
}

fn mount_error(fstype: &str, source: &Path, target: &Path, e: nix::errno::Errno) -> Error {
    Error::Io {
        op: "mount",
        path: target.to_path_buf(),
        source: std::io::Error::other(format!("{fstype} from {}: {e}", source.display())),
    }
}

fn mount_bind(source: &Path, target: &Path, opts: &ParsedOptions) -> Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if opts.recursive {
        flags |= MsFlags::MS_REC;
    }
    nix::mount::mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .map_err(|e| mount_error("bind", source, target, e))?;
    let extra = opts.flags & !MsFlags::MS_RDONLY;
    if opts.flags.contains(MsFlags::MS_RDONLY) || !extra.is_empty() {
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | opts.flags;
        if let Err(e) = nix::mount::mount(None::<&str>, target, None::<&str>, remount, None::<&str>)
        {
            let _ = unmount(target);
            return Err(mount_error("bind remount", source, target, e));
        }
    }
    Ok(())
}

/// Mounts overlayfs through fsopen/fsconfig, adding lower directories one by
/// one (`lowerdir+`, kernel 6.8+) so no page-size limit applies; falls back
/// to mount(2) with one option string on older kernels.
fn mount_overlay(target: &Path, opts: &ParsedOptions) -> Result<()> {
    match mount_overlay_new_api(target, opts) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => {
            let data = opts.data.join(",");
            nix::mount::mount(
                Some("overlay"),
                target,
                Some("overlay"),
                opts.flags,
                Some(data.as_str()),
            )
            .map_err(|e| mount_error("overlay", Path::new("overlay"), target, e))
        }
        Err(e) => Err(mount_error(
            "overlay",
            Path::new("overlay"),
            target,
            errno_of(&e),
        )),
    }
}

fn errno_of(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn mount_overlay_new_api(target: &Path, opts: &ParsedOptions) -> std::io::Result<()> {
    let fs = sys::fsopen("overlay")?;
    for item in &opts.data {
        match item.split_once('=') {
            Some(("lowerdir", dirs)) => {
                for dir in dirs.split(':') {
                    sys::fsconfig_set(&fs, "lowerdir+", Some(dir))?;
                }
            }
            Some((key, value)) => sys::fsconfig_set(&fs, key, Some(value))?,
            None => sys::fsconfig_set(&fs, item, None)?,
        }
    }
    let mut attr = 0;
    for (flag, bit) in [
        (MsFlags::MS_RDONLY, sys::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, sys::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, sys::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, sys::MOUNT_ATTR_NOEXEC),
    ] {
        if opts.flags.contains(flag) {
            attr |= bit;
        }
    }
    let mnt = sys::fsmount(&fs, attr)?;
    sys::move_mount(&mnt, target)
}

/// Unmounts `target`, retrying while busy, then detaching lazily. Not being
/// mounted is not an error.
pub fn unmount(target: &Path) -> Result<()> {
    for attempt in 0..20 {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) if attempt < 19 => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(nix::errno::Errno::EBUSY) => {
                return nix::mount::umount2(target, MntFlags::MNT_DETACH)
                    .ctx("umount (lazy)", target)
            }
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT)
                if !is_mountpoint(target)? =>
            {
                return Ok(())
            }
            Err(e) => return Err(Error::errno("umount", target, e)),
        }
    }
    Ok(())
}

/// Unmounts `target` only if nothing uses it: `Ok(false)` when busy (left
/// mounted, never detached lazily). For backing filesystems that other
/// mounts may still depend on.
pub fn try_unmount(target: &Path) -> Result<bool> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EBUSY) => Ok(false),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT)
            if !is_mountpoint(target)? =>
        {
            Ok(true)
        }
        Err(e) => Err(Error::errno("umount", target, e)),
    }
}

/// Unmounts every mount at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) -> Result<()> {
    let mut points: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        unmount(&p)?;
    }
    Ok(())
}

/// Mount points of this mount namespace, from `/proc/self/mountinfo`.
pub fn mount_points() -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").ctx("read", "/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect())
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Whether `path` is a mount point.
pub fn is_mountpoint(path: &Path) -> Result<bool> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(mount_points()?.contains(&path))
}

/// Attaches `file` to a free loop device with LOOP_CONFIGURE. With
/// `autoclear`, the device detaches itself when its last user (the mount,
/// or this handle if nothing mounts it) goes away.
pub fn attach_loop(file: &Path, read_only: bool, autoclear: bool) -> Result<LoopDevice> {
    let backing = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(file)
        .ctx("open loop backing file", file)?;
    let control = File::open("/dev/loop-control").ctx("open", "/dev/loop-control")?;
    let mut flags = 0;
    if read_only {
        flags |= sys::LO_FLAGS_READ_ONLY;
    }
    if autoclear {
        flags |= sys::LO_FLAGS_AUTOCLEAR;
    }
    let name = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    for _ in 0..16 {
        let n = sys::loop_get_free(&control).ctx("LOOP_CTL_GET_FREE", "/dev/loop-control")?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)
            .ctx("open loop device", &path)?;
        match sys::loop_configure(&dev, &backing, flags, name.as_os_str().as_bytes()) {
            Ok(()) => return Ok(LoopDevice { path, _handle: dev }),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => return Err(Error::io("LOOP_CONFIGURE", &path, e)),
        }
    }
    Err(Error::io(
        "attach loop device",
        file,
        std::io::Error::other("every free loop device was taken by someone else"),
    ))
}

/// Detaches the loop device `dev`. A device with nothing attached is fine.
pub fn detach_loop(dev: &Path) -> Result<()> {
    let handle = File::open(dev).ctx("open loop device", dev)?;
    match sys::loop_clear(&handle) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(()),
        Err(e) => Err(Error::io("LOOP_CLR_FD", dev, e)),
    }
}

/// Loop devices whose backing file is `file` (from sysfs).
pub fn loops_backed_by(file: &Path) -> Vec<PathBuf> {
    let want = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().as_bytes().starts_with(b"loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .map(|b| Path::new(b.trim_end()) == want)
                .unwrap_or(false)
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect()
}

/// Runs an external command (mkfs, resize2fs, ...), returning its stdout or
/// an [`Error::Command`] carrying its status and stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let line = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| Error::Command {
        command: line.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: line,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
