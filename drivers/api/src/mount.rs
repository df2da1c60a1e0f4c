//! Performs mount specs: bind, overlay (new mount API, so long lowerdir
//! chains fit), loop-backed filesystem images and plain block filesystems.
//! Nothing is left mounted or attached when a step fails. A loop mount
//! (a blockfile snapshot's image) mounts from the loop device already
//! attached to its file when there is one ([`BackingLock::attach_for_mount`]):
//! two processes mounting one image share one live filesystem.
//!
//! Also the drivers' backing files (a loop-backed filesystem, a thin pool's
//! files): [`attach_loop_once`] and [`mount_backing`] attach each to one
//! loop device per host, found by inode and serialised by [`BackingLock`];
//! [`release_backing`] takes it off the host again; [`backing_state`] and
//! [`detach_extra_loops`] serve `strata info` and `strata check`.

use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use nix::fcntl::{Flock, FlockArg};

use crate::{sys, BackingFile, Error, IoContext, Mount, Result};

/// A loop device attached by [`attach_loop`] or found or attached by
/// [`attach_loop_once`]. While this value lives, the device is held open,
/// so an autoclear device is not detached before it is mounted.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    /// Whether this call attached it (else it was attached already).
    pub attached: bool,
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
        // Under the file's lock until mounted: a process mounting the same
        // image now or later finds this device and mounts from it too.
        let lock = BackingLock::acquire(Path::new(&m.source), read_only)?;
        let dev = lock.attach_for_mount(read_only)?;
        // The device stays attached while mounted; `dev` drops after mounting,
        // so a failed mount detaches a device it attached through autoclear.
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
/// or this handle if nothing mounts it) goes away. For files a driver keeps
/// attached (backing filesystems, pool files) use [`attach_loop_once`].
pub fn attach_loop(file: &Path, read_only: bool, autoclear: bool) -> Result<LoopDevice> {
    let backing = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(file)
        .ctx("open loop backing file", file)?;
    attach_fd(file, &backing, read_only, autoclear)
}

fn attach_fd(file: &Path, backing: &File, read_only: bool, autoclear: bool) -> Result<LoopDevice> {
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
        match sys::loop_configure(&dev, backing, flags, name.as_os_str().as_bytes()) {
            Ok(()) => {
                return Ok(LoopDevice {
                    path,
                    attached: true,
                    _handle: dev,
                })
            }
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

/// Loop devices whose backing file is `file` (the same inode, see
/// [`BackingLock::loops`]); empty when `file` cannot be read.
pub fn loops_backed_by(file: &Path) -> Vec<PathBuf> {
    match std::fs::metadata(file) {
        Ok(m) => loops_with_identity(m.dev(), m.ino()),
        Err(_) => Vec::new(),
    }
}

/// Where block device `dev` (by device number, whatever its path) is mounted.
pub fn device_mount_points(dev: &Path) -> Result<Vec<PathBuf>> {
    let rdev = std::fs::metadata(dev).ctx("stat", dev)?.rdev();
    let want = format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").ctx("read", "/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut fields = l.split(' ');
            let numbers = fields.nth(2)?;
            let point = fields.nth(1)?;
            (numbers == want).then(|| PathBuf::from(unescape_mountinfo(point)))
        })
        .collect())
}

/// Where `file` is mounted through a loop device (any mount of any loop
/// device attached to it), for statfs of a filesystem image in use.
pub fn loop_mount_points(file: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(file).ctx("stat", file)?;
    let loops = loops_with_identity(meta.dev(), meta.ino());
    if loops.is_empty() {
        return Ok(Vec::new());
    }
    Ok(mount_table()?
        .into_iter()
        .filter(|m| loops.iter().any(|l| Path::new(&m.source) == l))
        .map(|m| m.point)
        .collect())
}

/// Every attached loop device (per sysfs) whose LOOP_GET_STATUS64 names the
/// file `(dev, ino)`. The sysfs path is only a hint: a renamed or deleted
/// and re-created file would fool it, the inode does not.
fn loops_with_identity(dev: u64, ino: u64) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let n: u32 = name.to_str()?.strip_prefix("loop")?.parse().ok()?;
            // Only attached devices have a backing_file.
            std::fs::metadata(e.path().join("loop/backing_file")).ok()?;
            let path = Path::new("/dev").join(&name);
            let handle = File::open(&path).ok()?;
            let st = sys::loop_get_status(&handle).ok()?;
            (st.device == dev && st.inode == ino).then_some((n, path))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Errors about loop-backed backing files.
#[derive(Debug, thiserror::Error)]
pub enum BackingError {
    /// The file is attached to several loop devices and more than one
    /// carries a mounted filesystem: two live instances of one filesystem.
    #[error("{file} is attached to loop devices {devices} and {mounted} carry mounted filesystems (two live instances of one filesystem); run `strata check`")]
    AttachedTwice {
        /// The backing file.
        file: PathBuf,
        /// Every loop device attached to it.
        devices: String,
        /// The devices mounted somewhere.
        mounted: String,
    },
    /// The mount point holds a mount that is not of the backing file.
    #[error("{mount_point} is mounted from {from}, not from a loop device of {file}; refusing to mount over it")]
    ForeignMount {
        /// The backing's mount point.
        mount_point: PathBuf,
        /// The source of what is mounted there.
        from: String,
        /// The backing file.
        file: PathBuf,
    },
    /// Something still uses the backing, so it cannot be released.
    #[error("cannot release {file}: {holders}")]
    Busy {
        /// The backing file.
        file: PathBuf,
        /// What still holds it (mounts, device-mapper devices, open files).
        holders: String,
    },
    /// A duplicate attachment that cannot be detached safely.
    #[error("cannot detach the extra loop devices of {file}: {reason}")]
    Unfixable {
        /// The backing file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<BackingError> for Error {
    fn from(e: BackingError) -> Self {
        Error::FailedPrecondition(e.to_string())
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
struct MountEntry {
    point: PathBuf,
    source: String,
}

fn mount_table() -> Result<Vec<MountEntry>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").ctx("read", "/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = unescape_mountinfo(left.split(' ').nth(4)?);
            let source = unescape_mountinfo(right.split(' ').nth(1)?);
            Some(MountEntry {
                point: PathBuf::from(point),
                source,
            })
        })
        .collect())
}

/// What holds the loop device `dev` apart from a mount at `except`: other
/// mounts of it and kernel holders (device-mapper tables), as phrases.
fn loop_users(dev: &Path, table: &[MountEntry], except: Option<&Path>) -> Vec<String> {
    let mut users: Vec<String> = table
        .iter()
        .filter(|m| Path::new(&m.source) == dev && Some(m.point.as_path()) != except)
        .map(|m| format!("{} is mounted at {}", dev.display(), m.point.display()))
        .collect();
    let name = dev.file_name().unwrap_or_default();
    if let Ok(holders) = std::fs::read_dir(Path::new("/sys/block").join(name).join("holders")) {
        for h in holders.flatten() {
            let dm_name = std::fs::read_to_string(h.path().join("dm/name"))
                .map(|n| format!(" ({})", n.trim()))
                .unwrap_or_default();
            users.push(format!(
                "{} is used by {}{dm_name}",
                dev.display(),
                h.file_name().to_string_lossy()
            ));
        }
    }
    users
}

/// Loop devices whose backing file (per sysfs) lies below `dir`, with it.
fn loop_files_below(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().as_bytes().starts_with(b"loop"))
        .filter_map(|e| {
            let file = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            let file = PathBuf::from(file.trim_end());
            file.starts_with(dir)
                .then(|| (Path::new("/dev").join(e.file_name()), file))
        })
        .collect()
}

/// A host-wide exclusive lock on a backing file: `flock` on the file
/// itself, so every process that attaches, mounts, detaches or repairs it
/// through this module takes turns, whatever store or driver instance it
/// comes from. Held until dropped.
///
/// Backing loop devices are attached **without autoclear**: they stay
/// until [`release_backing`] detaches them under this lock. With autoclear
/// the kernel would detach a device the moment its last mount went away
/// (an unmount by anyone, outside the lock), so a device just found by a
/// lookup could vanish, or be reused for another file, before it was
/// mounted. A device found attached with autoclear by an older version is
/// still safe to reuse: the lookup and the mount go through a held-open
/// handle ([`LoopDevice`]), which keeps it attached.
#[derive(Debug)]
pub struct BackingLock {
    _lock: Flock<File>,
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl BackingLock {
    /// Opens `file` (read-write unless `read_only`) and waits for its lock.
    pub fn acquire(file: &Path, read_only: bool) -> Result<Self> {
        let handle = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_CLOEXEC)
            .open(file)
            .ctx("open backing file", file)?;
        let locked = Flock::lock(handle, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::errno("flock", file, e))?;
        let meta = locked.metadata().ctx("stat", file)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            _lock: locked,
            path: file.to_path_buf(),
        })
    }

    /// Loop devices attached to this very file (matched by device and inode
    /// through LOOP_GET_STATUS64), lowest number first.
    pub fn loops(&self) -> Vec<PathBuf> {
        loops_with_identity(self.dev, self.ino)
    }

    /// Opens `dev` and checks it is still attached to this file.
    fn open_existing(&self, dev: &Path) -> Result<LoopDevice> {
        let handle = File::open(dev).ctx("open loop device", dev)?;
        let st = sys::loop_get_status(&handle).ctx("LOOP_GET_STATUS64", dev)?;
        if st.device != self.dev || st.inode != self.ino {
            return Err(Error::io(
                "reuse loop device",
                dev,
                std::io::Error::other(format!(
                    "no longer attached to {} (detached behind the lock)",
                    self.path.display()
                )),
            ));
        }
        Ok(LoopDevice {
            path: dev.to_path_buf(),
            attached: false,
            _handle: handle,
        })
    }

    /// Attaches a new loop device through a handle of its own. Never the
    /// lock's handle: the loop device keeps the open file it was given for
    /// as long as it exists, and with it that file's `flock`, so every
    /// later process would wait for the lock forever.
    fn attach_new(&self, read_only: bool, autoclear: bool) -> Result<LoopDevice> {
        let backing = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)
            .ctx("open backing file", &self.path)?;
        let meta = backing.metadata().ctx("stat", &self.path)?;
        if meta.dev() != self.dev || meta.ino() != self.ino {
            return Err(Error::io(
                "attach loop device",
                &self.path,
                std::io::Error::other("the file was replaced while its lock was held"),
            ));
        }
        let dev = attach_fd(&self.path, &backing, read_only, autoclear)?;
        crate::failpoint("backing.attached");
        Ok(dev)
    }

    /// The loop device of this file: the one already attached, or a new
    /// one (no autoclear) when there is none. When several are attached,
    /// the one carrying mounts or holders is used (the first when none
    /// does); two carrying mounts is [`BackingError::AttachedTwice`].
    pub fn attach_once(&self, read_only: bool) -> Result<LoopDevice> {
        self.attach_once_with(read_only, false)
    }

    /// The loop device to mount this file (a filesystem image) from for
    /// one mount: the one already attached, so every mount of the image
    /// on the host shares one device and one live filesystem, or a new one
    /// with autoclear (it goes with its last mount) when there is none.
    pub fn attach_for_mount(&self, read_only: bool) -> Result<LoopDevice> {
        self.attach_once_with(read_only, true)
    }

    /// [`BackingLock::attach_once`], attaching a new device with `autoclear`.
    fn attach_once_with(&self, read_only: bool, autoclear: bool) -> Result<LoopDevice> {
        let loops = self.loops();
        match loops.len() {
            0 => self.attach_new(read_only, autoclear),
            1 => self.open_existing(&loops[0]),
            _ => {
                let table = mount_table()?;
                let used: Vec<&PathBuf> = loops
                    .iter()
                    .filter(|d| !loop_users(d, &table, None).is_empty())
                    .collect();
                if used.len() > 1 {
                    return Err(BackingError::AttachedTwice {
                        file: self.path.clone(),
                        devices: join(loops.iter()),
                        mounted: join(used.into_iter()),
                    }
                    .into());
                }
                let chosen = used.first().copied().unwrap_or(&loops[0]);
                tracing::warn!(
                    file = %self.path.display(),
                    devices = %join(loops.iter()),
                    using = %chosen.display(),
                    "backing file attached to several loop devices; `strata check --repair` detaches the extra ones"
                );
                self.open_existing(chosen)
            }
        }
    }
}

fn join<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> String {
    paths
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns the loop device `file` is attached to, attaching it (without
/// autoclear) only when no loop device has it yet. Serialised host-wide by
/// [`BackingLock`], so two processes racing attach it once.
pub fn attach_loop_once(file: &Path, read_only: bool) -> Result<LoopDevice> {
    BackingLock::acquire(file, read_only)?.attach_once(read_only)
}

/// Mounts the filesystem in `file` at `mount_point`, once per host: if it
/// is mounted there already (from the file's loop device) nothing is done;
/// otherwise it is mounted from the loop device already attached to
/// `file` (which may carry the live filesystem mounted elsewhere, e.g. a
/// leftover scratch mount: the kernel then hands out the same superblock),
/// and only when there is none is a loop device attached. Never a second
/// loop device while one exists. Returns the loop device.
pub fn mount_backing(
    file: &Path,
    mount_point: &Path,
    fstype: &str,
    options: &[String],
) -> Result<PathBuf> {
    let lock = BackingLock::acquire(file, false)?;
    let point = std::fs::canonicalize(mount_point).ctx("canonicalize", mount_point)?;
    let loops = lock.loops();
    if let Some(top) = mount_table()?.into_iter().rev().find(|m| m.point == point) {
        let source = PathBuf::from(&top.source);
        if loops.contains(&source) {
            return Ok(source);
        }
        return Err(BackingError::ForeignMount {
            mount_point: point,
            from: top.source,
            file: file.to_path_buf(),
        }
        .into());
    }
    let dev = lock.attach_once(false)?;
    if let Err(e) = mount_fs(&dev.path, &point, fstype, options) {
        if dev.attached {
            let path = dev.path.clone();
            drop(dev);
            let _ = detach_loop(&path);
        }
        return Err(e);
    }
    Ok(dev.path.clone())
}

/// Unmounts `mount_point` (when given and mounted from `file`) and detaches
/// every loop device of `file`, under [`BackingLock`]. Refuses, changing
/// nothing, with [`BackingError::Busy`] naming what still holds it: another
/// mount of its filesystem, a device-mapper table on its loop device, or
/// open files below the mount point. A file that does not exist, or is not
/// attached, is released already.
pub fn release_backing(file: &Path, mount_point: Option<&Path>) -> Result<()> {
    if !file.exists() {
        return Ok(());
    }
    let lock = BackingLock::acquire(file, true)?;
    let loops = lock.loops();
    let point = mount_point.map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
    let table = mount_table()?;
    let mut holders: Vec<String> = loops
        .iter()
        .flat_map(|d| loop_users(d, &table, point.as_deref()))
        .collect();
    if let Some(point) = &point {
        holders.extend(
            loop_files_below(point)
                .into_iter()
                .map(|(dev, file)| format!("{} has {} open", dev.display(), file.display())),
        );
    }
    if !holders.is_empty() {
        return Err(BackingError::Busy {
            file: file.to_path_buf(),
            holders: holders.join("; "),
        }
        .into());
    }
    if let Some(point) = &point {
        let ours = |m: &MountEntry| {
            &m.point == point && loops.iter().any(|d| d.as_os_str() == m.source.as_str())
        };
        while mount_table()?.iter().any(ours) {
            if !try_unmount(point)? {
                return Err(BackingError::Busy {
                    file: file.to_path_buf(),
                    holders: format!(
                        "files are open below {} (see `fuser -vm {}`)",
                        point.display(),
                        point.display()
                    ),
                }
                .into());
            }
        }
    }
    for dev in &loops {
        detach_loop(dev)?;
    }
    let left = lock.loops();
    if !left.is_empty() {
        return Err(BackingError::Busy {
            file: file.to_path_buf(),
            holders: format!(
                "{} still open by a process (detached when it closes it)",
                join(left.iter())
            ),
        }
        .into());
    }
    Ok(())
}

/// Detaches the loop devices of `file` beyond the one in use (mounted or
/// held), under [`BackingLock`]; when none is in use the lowest-numbered
/// one stays. Returns the devices detached. Fails with
/// [`BackingError::Unfixable`] when more than one carries a mount.
pub fn detach_extra_loops(file: &Path) -> Result<Vec<PathBuf>> {
    let lock = BackingLock::acquire(file, true)?;
    let loops = lock.loops();
    let table = mount_table()?;
    let used: Vec<(&PathBuf, Vec<String>)> = loops
        .iter()
        .map(|d| (d, loop_users(d, &table, None)))
        .filter(|(_, u)| !u.is_empty())
        .collect();
    if used.len() > 1 {
        return Err(BackingError::Unfixable {
            file: file.to_path_buf(),
            reason: format!(
                "{}: two live instances of one filesystem; unmount them all, detach all but one \
                 device, and check the filesystem (btrfs check, xfs_repair) before using it again",
                used.iter()
                    .flat_map(|(_, u)| u.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
        .into());
    }
    let keep = used.first().map(|(d, _)| *d).or(loops.first()).cloned();
    let mut detached = Vec::new();
    for dev in loops.iter().filter(|d| Some(*d) != keep.as_ref()) {
        detach_loop(dev)?;
        detached.push(dev.clone());
    }
    Ok(detached)
}

/// What the kernel holds of a backing file right now (for `strata info`
/// and `strata check`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackingState {
    /// The backing file.
    pub file: PathBuf,
    /// Loop devices attached to it (more than one is damage).
    pub loop_devices: Vec<PathBuf>,
    /// Where the driver mounts it, if it mounts it.
    pub mount_point: Option<PathBuf>,
    /// Whether it is mounted there from one of its loop devices.
    pub mounted: bool,
    /// Other mounts of its filesystem and kernel holders of its devices.
    pub users: Vec<String>,
}

/// Reads the [`BackingState`] of `backing` (no lock taken: a snapshot).
pub fn backing_state(backing: &BackingFile) -> Result<BackingState> {
    let loop_devices = loops_backed_by(&backing.file);
    let table = mount_table()?;
    let point = backing
        .mount_point
        .as_ref()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    let mounted = point.as_ref().is_some_and(|p| {
        table.iter().any(|m| {
            &m.point == p
                && loop_devices
                    .iter()
                    .any(|d| d.as_os_str() == m.source.as_str())
        })
    });
    let users = loop_devices
        .iter()
        .flat_map(|d| loop_users(d, &table, point.as_deref()))
        .collect();
    Ok(BackingState {
        file: backing.file.clone(),
        loop_devices,
        mount_point: backing.mount_point.clone(),
        mounted,
        users,
    })
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
