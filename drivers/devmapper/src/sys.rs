//! Every kernel call of the driver: device-mapper ioctls on
//! `/dev/mapper/control` (through the `devicemapper` crate, no libdevmapper),
//! device nodes, and the one loop ioctl the api crate lacks.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use devicemapper::{DevId, DmFlags, DmName, DmOptions, DM};
use nix::errno::Errno;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::error::{errno_of, DmError, Result};
use crate::units::Sectors;

/// Path of the device-mapper control node.
pub const CONTROL: &str = "/dev/mapper/control";

/// One target line: start sector, length in sectors, target type, parameters.
pub type TableLine = (Sectors, Sectors, String, String);

/// Whether a device-mapper device exists and is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// No device of that name.
    Missing,
    /// The device exists without a live table (half set up, or suspended
    /// before its first resume).
    Dead,
    /// The device has a live table.
    Live {
        /// The live table was loaded read-only.
        read_only: bool,
    },
}

/// A handle on the device-mapper control device.
pub struct Dm {
    dm: DM,
}

impl std::fmt::Debug for Dm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dm")
    }
}

fn name(n: &str) -> Result<&DmName> {
    DmName::new(n).map_err(|source| DmError::Ioctl {
        op: "name",
        device: n.to_owned(),
        source,
    })
}

fn ioctl<'a>(
    op: &'static str,
    device: &'a str,
) -> impl FnOnce(devicemapper::DmError) -> DmError + 'a {
    move |source| DmError::Ioctl {
        op,
        device: device.to_owned(),
        source,
    }
}

impl Dm {
    /// Opens `/dev/mapper/control`.
    pub fn open() -> Result<Self> {
        let dm = DM::new().map_err(ioctl("open", CONTROL))?;
        Ok(Self { dm })
    }

    /// Whether `n` exists and has a live table (is usable).
    pub fn is_live(&self, n: &str) -> Result<bool> {
        Ok(matches!(self.presence(n)?, Presence::Live { .. }))
    }

    /// Whether `n` exists, and whether its live table is read-only.
    pub fn presence(&self, n: &str) -> Result<Presence> {
        match self.dm.device_info(&DevId::Name(name(n)?)) {
            Ok(info) if info.flags().contains(DmFlags::DM_ACTIVE_PRESENT) => Ok(Presence::Live {
                read_only: info.flags().contains(DmFlags::DM_READONLY),
            }),
            Ok(_) => Ok(Presence::Dead),
            Err(e) if errno_of(&e) == Some(Errno::ENXIO) => Ok(Presence::Missing),
            Err(e) => Err(ioctl("info", n)(e)),
        }
    }

    /// Creates device `n` with `table` and resumes it; returns its node. A
    /// half-made device is removed again on failure.
    pub fn create(&self, n: &str, table: &[TableLine], read_only: bool) -> Result<PathBuf> {
        let id = DevId::Name(name(n)?);
        self.dm
            .device_create(name(n)?, None, DmOptions::private())
            .map_err(ioctl("create", n))?;
        let made = self.load(n, table, read_only).and_then(|()| self.resume(n));
        if let Err(e) = made {
            let _ = self.dm.device_remove(&id, DmOptions::private());
            return Err(e);
        }
        self.node(n)
    }

    /// Loads `table` into the inactive slot of `n`.
    pub fn load(&self, n: &str, table: &[TableLine], read_only: bool) -> Result<()> {
        let mut options = DmOptions::private();
        if read_only {
            options = options.set_flags(DmFlags::DM_READONLY);
        }
        let raw: Vec<(u64, u64, String, String)> = table
            .iter()
            .map(|(start, len, kind, params)| (start.0, len.0, kind.clone(), params.clone()))
            .collect();
        self.dm
            .table_load(&DevId::Name(name(n)?), &raw, options)
            .map_err(ioctl("load table", n))?;
        Ok(())
    }

    /// Suspends `n` (flushing outstanding I/O).
    pub fn suspend(&self, n: &str) -> Result<()> {
        let options = DmOptions::private().set_flags(DmFlags::DM_SUSPEND);
        self.dm
            .device_suspend(&DevId::Name(name(n)?), options)
            .map_err(ioctl("suspend", n))?;
        Ok(())
    }

    /// Resumes `n`, making a loaded inactive table live.
    pub fn resume(&self, n: &str) -> Result<()> {
        self.dm
            .device_suspend(&DevId::Name(name(n)?), DmOptions::private())
            .map_err(ioctl("resume", n))?;
        Ok(())
    }

    /// Removes `n`, retrying while it is busy with a growing backoff; with
    /// `deferred`, a still-busy device is left for the kernel to remove when
    /// its last user closes it (returns `Ok(false)` then). A missing device
    /// is fine.
    pub fn remove(&self, n: &str, deferred: bool) -> Result<bool> {
        let id = DevId::Name(name(n)?);
        let mut delay = Duration::from_millis(50);
        for attempt in 0..4 {
            match self.dm.device_remove(&id, DmOptions::private()) {
                Ok(_) => {
                    remove_node(n);
                    return Ok(true);
                }
                Err(e) if errno_of(&e) == Some(Errno::ENXIO) => {
                    remove_node(n);
                    return Ok(true);
                }
                Err(e) if errno_of(&e) == Some(Errno::EBUSY) && attempt < 3 => {
                    std::thread::sleep(delay);
                    delay *= 4;
                }
                Err(e) if errno_of(&e) == Some(Errno::EBUSY) && deferred => break,
                Err(e) => return Err(ioctl("remove", n)(e)),
            }
        }
        let options = DmOptions::private().set_flags(DmFlags::DM_DEFERRED_REMOVE);
        self.dm
            .device_remove(&id, options)
            .map_err(ioctl("deferred remove", n))?;
        Ok(false)
    }

    /// Sends `msg` to sector 0 of `n` (a pool).
    pub fn message(&self, n: &str, msg: &str) -> Result<()> {
        self.dm
            .target_msg(&DevId::Name(name(n)?), None, msg)
            .map_err(|source| DmError::Message {
                pool: n.to_owned(),
                message: msg.to_owned(),
                source,
            })?;
        Ok(())
    }

    /// Status parameters of the first target of `n`.
    pub fn status(&self, n: &str) -> Result<String> {
        self.first_line(n, DmOptions::private(), "status")
    }

    /// Table parameters of the first target of `n`.
    pub fn table(&self, n: &str) -> Result<String> {
        let options = DmOptions::private().set_flags(DmFlags::DM_STATUS_TABLE);
        self.first_line(n, options, "table")
    }

    fn first_line(&self, n: &str, options: DmOptions, op: &'static str) -> Result<String> {
        let (_, lines) = self
            .dm
            .table_status(&DevId::Name(name(n)?), options)
            .map_err(ioctl(op, n))?;
        lines
            .into_iter()
            .next()
            .map(|l| l.3)
            .ok_or_else(|| DmError::State {
                device: n.to_owned(),
                message: format!("{op}: no table loaded"),
            })
    }

    /// Names of every device-mapper device.
    pub fn list(&self) -> Result<Vec<String>> {
        let devices = self.dm.list_devices().map_err(ioctl("list", CONTROL))?;
        Ok(devices.into_iter().map(|(n, _, _)| n.to_string()).collect())
    }

    /// `/dev/mapper/<n>`, made with mknod when no udev made it (inside
    /// containers, or hosts without device-mapper udev rules).
    pub fn node(&self, n: &str) -> Result<PathBuf> {
        let info = self
            .dm
            .device_info(&DevId::Name(name(n)?))
            .map_err(ioctl("info", n))?;
        let dev = info.device();
        let path = Path::new("/dev/mapper").join(n);
        let want = makedev(u64::from(dev.major), u64::from(dev.minor));
        for _ in 0..20 {
            if let Ok(meta) = std::fs::metadata(&path) {
                use std::os::unix::fs::MetadataExt;
                if meta.file_type().is_block_device() && meta.rdev() == want {
                    return Ok(path);
                }
                let _ = std::fs::remove_file(&path);
                break;
            }
            if !udev_running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        match mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), want) {
            Ok(()) | Err(Errno::EEXIST) => Ok(path),
            Err(e) => Err(strata_driver_api::Error::errno("mknod", &path, e).into()),
        }
    }
}

fn udev_running() -> bool {
    Path::new("/run/udev/control").exists()
}

/// Removes `/dev/mapper/<n>` if it is left over (udev removes its own).
fn remove_node(n: &str) {
    let path = Path::new("/dev/mapper").join(n);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_block_device()) {
        let _ = std::fs::remove_file(&path);
    }
}

/// Whether device-mapper thin provisioning can be used here: the control
/// node opens and the thin-pool target is loaded or loadable as a module.
pub fn dm_thin_available() -> bool {
    let Ok(dm) = DM::new() else {
        return false;
    };
    if let Ok(targets) = dm.list_versions() {
        if targets.iter().any(|(t, ..)| t == "thin-pool") {
            return true;
        }
    }
    let Ok(release) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = release.release().to_string_lossy().into_owned();
    let dir = Path::new("/lib/modules").join(release);
    std::fs::read_to_string(dir.join("modules.dep"))
        .map(|deps| deps.lines().any(|l| l.contains("/dm-thin-pool.ko")))
        .unwrap_or(false)
}

nix::ioctl_none_bad!(loop_set_capacity_raw, 0x4C07);

/// Makes loop device `dev` pick up the new size of its backing file
/// (LOOP_SET_CAPACITY).
pub fn loop_set_capacity(dev: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = File::open(dev).map_err(|e| strata_driver_api::Error::io("open", dev, e))?;
    // SAFETY: LOOP_SET_CAPACITY takes no argument; the fd is a valid open
    // loop device for the duration of the call.
    unsafe { loop_set_capacity_raw(file.as_raw_fd()) }
        .map_err(|e| strata_driver_api::Error::errno("LOOP_SET_CAPACITY", dev, e))?;
    Ok(())
}

/// Size of block device `dev` (from sysfs).
pub fn device_sectors(dev: &Path) -> Result<Sectors> {
    let real = std::fs::canonicalize(dev)
        .map_err(|e| strata_driver_api::Error::io("canonicalize", dev, e))?;
    let base = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sys = Path::new("/sys/class/block").join(&base).join("size");
    let sectors = std::fs::read_to_string(&sys)
        .map_err(|e| strata_driver_api::Error::io("read", &sys, e))?
        .trim()
        .parse::<u64>()
        .map_err(|e| crate::error::record_err(&sys, e))?;
    Ok(Sectors(sectors))
}
