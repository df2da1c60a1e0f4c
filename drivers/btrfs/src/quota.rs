//! Quota groups: turning quotas on, per-snapshot limits, walk-free usage,
//! and removing a deleted subvolume's qgroup once btrfs has dropped it.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use strata_driver_api::{Error, IoContext};

use crate::config::{CleanupSetting, QuotaSetting};
use crate::error::BtrfsError;
use crate::sys::{self, QgroupInfo};

/// How long `release` waits for the cleaner to let go of pending qgroups.
pub const DROP_WAIT: Duration = Duration::from_secs(20);

/// Which accounting the filesystem runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaMode {
    /// Quotas off (or disabled by `btrfs.quota=off`): usage walks the tree.
    Off,
    /// Simple quotas: every extent is charged to the subvolume that wrote it.
    Simple,
    /// Full qgroups: shared/exclusive by back-reference walking.
    Full,
}

impl QuotaMode {
    /// How `usage` is answered, for `strata info`.
    pub fn describe(self) -> &'static str {
        match self {
            QuotaMode::Off => "walk of the subvolume (quotas off)",
            QuotaMode::Simple => "simple quotas: exclusive bytes of qgroup 0/<subvolid>",
            QuotaMode::Full => "qgroups: exclusive bytes of qgroup 0/<subvolid>",
        }
    }
}

/// Who destroys the qgroup of a removed subvolume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// btrfs' cleaner, when it has dropped the subvolume (Linux 6.10 and
    /// later): remove records nothing. A qgroup the kernel could not remove
    /// (simple quotas still charging it for extents shared elsewhere) is
    /// found by a scan ([`stale`]).
    Kernel,
    /// Strata: remove records the ids durably first and a background thread
    /// destroys them ([`crate::pending`]).
    Strata,
}

/// First kernel release whose cleaner removes a dropped subvolume's
/// level-0 qgroup itself.
pub const KERNEL_CLEANUP_SINCE: (u32, u32) = (6, 10);

impl Cleanup {
    /// What `setting` means on a kernel of `release` (`uname -r`).
    pub fn resolve(setting: CleanupSetting, release: &str) -> Self {
        match setting {
            CleanupSetting::Kernel => Cleanup::Kernel,
            CleanupSetting::Strata => Cleanup::Strata,
            CleanupSetting::Auto if kernel_version(release) >= Some(KERNEL_CLEANUP_SINCE) => {
                Cleanup::Kernel
            }
            CleanupSetting::Auto => Cleanup::Strata,
        }
    }

    /// For `strata info`.
    pub fn describe(self) -> &'static str {
        match self {
            Cleanup::Kernel => "by the kernel when it drops the subvolume",
            Cleanup::Strata => "by strata's background thread (ids recorded at remove)",
        }
    }
}

/// Major and minor of a kernel release such as `6.18.44-fc-v1147`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Level-0 qgroups whose subvolume is no longer linked: being dropped by
/// btrfs' cleaner, or dropped with the qgroup left behind. (The top level
/// `0/5` and any id below the first subvolume's are not considered.)
pub fn stale(dir: &File, root: &Path) -> strata_driver_api::Result<Vec<u64>> {
    let mut out = Vec::new();
    for id in sys::level0_qgroups(dir).ctx("list the qgroups of", root)? {
        if id >= sys::FIRST_SUBVOLUME_ID
            && !sys::subvolume_linked(dir, id)
                .map_err(|e| Error::io("look up", root.join(format!("<subvolume {id}>")), e))?
        {
            out.push(id);
        }
    }
    Ok(out)
}

/// Turns quotas on as `setting` asks unless the filesystem already has them
/// (its mode is then kept), waits for a full-qgroup rescan, and returns the
/// mode in force.
pub fn open(dir: &File, root: &Path, setting: QuotaSetting) -> Result<QuotaMode, BtrfsError> {
    if setting == QuotaSetting::Off {
        return Ok(QuotaMode::Off);
    }
    let err = |op, e| BtrfsError::Qgroup {
        op,
        subvolid: 0,
        path: root.to_owned(),
        source: e,
    };
    if sys::quota_status_flags(dir)
        .map_err(|e| err("read status", e))?
        .is_none()
    {
        let simple = match setting {
            QuotaSetting::Qgroups => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
            _ => sys::quota_enable(dir, sys::QUOTA_CTL_ENABLE_SIMPLE),
        };
        match simple {
            Ok(()) => {}
            Err(e)
                if setting != QuotaSetting::Simple
                    && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) =>
            {
                sys::quota_enable(dir, sys::QUOTA_CTL_ENABLE).map_err(|e| err("enable", e))?;
            }
            Err(e) => return Err(err("enable simple quotas", e)),
        }
    }
    let flags = sys::quota_status_flags(dir)
        .map_err(|e| err("read status", e))?
        .unwrap_or(0);
    if flags & sys::QGROUP_STATUS_FLAG_SIMPLE_MODE != 0 {
        return Ok(QuotaMode::Simple);
    }
    match sys::quota_rescan_wait(dir) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(err("rescan wait", e)),
    }
    Ok(QuotaMode::Full)
}

/// Up-to-date numbers of `0/<subvolid>`: commits the transaction first, since
/// qgroups are accounted at commit. `None` when the numbers cannot be trusted
/// (no qgroup, or the filesystem marked them inconsistent).
pub fn read(dir: &File, root: &Path, subvolid: u64) -> Result<Option<QgroupInfo>, BtrfsError> {
    let err = |op, e| BtrfsError::Qgroup {
        op,
        subvolid,
        path: root.to_owned(),
        source: e,
    };
    sys::sync(dir).map_err(|e| err("sync before reading", e))?;
    let flags = sys::quota_status_flags(dir)
        .map_err(|e| err("read status", e))?
        .unwrap_or(sys::QGROUP_STATUS_FLAG_INCONSISTENT);
    if flags & sys::QGROUP_STATUS_FLAG_INCONSISTENT != 0 {
        return Ok(None);
    }
    sys::qgroup_info(dir, subvolid).map_err(|e| err("read", e))
}

/// Sets the exclusive-bytes limit of `0/<subvolid>`.
pub fn limit(dir: &File, root: &Path, subvolid: u64, bytes: u64) -> Result<(), BtrfsError> {
    sys::qgroup_limit_exclusive(dir, subvolid, bytes).map_err(|e| BtrfsError::Qgroup {
        op: "limit",
        subvolid,
        path: root.to_owned(),
        source: e,
    })
}

/// Destroys `0/<subvolid>` of a deleted subvolume, one attempt. btrfs
/// refuses (`EBUSY`) until its cleaner has dropped the subvolume and a
/// commit has accounted it; returns whether the qgroup is gone (newer
/// kernels remove it themselves when dropping the subvolume).
pub fn try_destroy(dir: &File, root: &Path, subvolid: u64) -> Result<bool, BtrfsError> {
    match sys::qgroup_destroy(dir, subvolid) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
        Err(e) => Err(BtrfsError::Qgroup {
            op: "destroy",
            subvolid,
            path: root.to_owned(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_cleanup_follows_the_kernel_release() {
        let auto = CleanupSetting::Auto;
        assert_eq!(Cleanup::resolve(auto, "6.18.44-fc-v1147"), Cleanup::Kernel);
        assert_eq!(Cleanup::resolve(auto, "6.10.0"), Cleanup::Kernel);
        assert_eq!(Cleanup::resolve(auto, "7.0-rc1"), Cleanup::Kernel);
        assert_eq!(Cleanup::resolve(auto, "6.9.12-arch1"), Cleanup::Strata);
        assert_eq!(Cleanup::resolve(auto, "6.1.0-57-amd64"), Cleanup::Strata);
        assert_eq!(Cleanup::resolve(auto, "weird"), Cleanup::Strata);
        assert_eq!(
            Cleanup::resolve(CleanupSetting::Strata, "6.18.0"),
            Cleanup::Strata
        );
        assert_eq!(
            Cleanup::resolve(CleanupSetting::Kernel, "6.1.0"),
            Cleanup::Kernel
        );
    }
}
