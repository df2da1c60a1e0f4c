//! The kernel's project-quota interface: `FS_IOC_FS[GS]ETXATTR` for a
//! directory's project id and `quotactl_fd(2)` with the XFS quota commands
//! (which ext4 also answers) for limits and counts. Every `unsafe` line of
//! the overlay2 driver is here.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `_IOR('X', 31, struct fsxattr)`.
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
/// `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
/// New entries in the directory take its project id.
const FS_XFLAG_PROJINHERIT: u32 = 0x0200;

/// `QCMD(Q_XGETQSTAT, PRJQUOTA)`.
const GET_STATE: libc::c_int = 0x5805 << 8 | 2;
/// `QCMD(Q_XSETQLIM, PRJQUOTA)`.
const SET_LIMIT: libc::c_int = 0x5804 << 8 | 2;
/// `QCMD(Q_XGETQUOTA, PRJQUOTA)`.
const GET_QUOTA: libc::c_int = 0x5803 << 8 | 2;
/// `FS_QUOTA_PDQ_ENFD`: project limits are enforced.
const PROJECT_ENFORCED: u16 = 1 << 5;
/// `FS_DQ_BSOFT | FS_DQ_BHARD`.
const BLOCK_LIMITS: u16 = 1 << 2 | 1 << 3;
/// Quota block unit (`BBSIZE`).
pub const BLOCK: u64 = 512;

/// `struct fsxattr`.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// `struct fs_qfilestat`.
#[repr(C)]
#[derive(Default)]
struct QFileStat {
    ino: u64,
    nblks: u64,
    nextents: u32,
}

/// `struct fs_quota_stat`, with room to spare.
#[repr(C)]
#[derive(Default)]
struct QuotaStat {
    version: i8,
    flags: u16,
    pad: i8,
    user: QFileStat,
    group: QFileStat,
    incore: u32,
    btimelimit: i32,
    itimelimit: i32,
    rtbtimelimit: i32,
    bwarnlimit: u16,
    iwarnlimit: u16,
    spare: [u64; 8],
}

/// `struct fs_disk_quota`.
#[repr(C)]
#[derive(Default)]
struct DiskQuota {
    version: i8,
    flags: i8,
    fieldmask: u16,
    id: u32,
    blk_hardlimit: u64,
    blk_softlimit: u64,
    ino_hardlimit: u64,
    ino_softlimit: u64,
    bcount: u64,
    icount: u64,
    itimer: i32,
    btimer: i32,
    iwarns: u16,
    bwarns: u16,
    timer_hi: [i8; 3],
    padding2: i8,
    rtb_hardlimit: u64,
    rtb_softlimit: u64,
    rtbcount: u64,
    rtbtimer: i32,
    rtbwarns: u16,
    padding3: i16,
    padding4: [u8; 8],
}

/// Runs `quotactl_fd(fd, cmd, id, addr)`.
fn quotactl<T>(on: &File, cmd: libc::c_int, id: u32, arg: &mut T) -> io::Result<()> {
    // SAFETY: `on` is an open descriptor; `arg` is a live, exclusively
    // borrowed `repr(C)` struct at least as large as the one `cmd` reads or
    // writes (see the struct definitions above).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            on.as_raw_fd(),
            cmd,
            id,
            arg as *mut T,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the filesystem holding `on` enforces project quotas.
pub fn projects_enforced(on: &File) -> bool {
    let mut stat = QuotaStat::default();
    quotactl(on, GET_STATE, 0, &mut stat).is_ok() && stat.flags & PROJECT_ENFORCED != 0
}

/// The project id of `dir`.
pub fn project_of(dir: &File) -> io::Result<u32> {
    let mut attr = FsXattr::default();
    // SAFETY: `dir` is open; FS_IOC_FSGETXATTR fills the `struct fsxattr`
    // that `attr` is.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSGETXATTR, &mut attr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr.projid)
}

/// Gives directory `dir` project `id`, inherited by what is made in it.
pub fn set_project(dir: &File, id: u32) -> io::Result<()> {
    let mut attr = FsXattr::default();
    // SAFETY: `dir` is open; FS_IOC_FSGETXATTR fills the `struct fsxattr`
    // that `attr` is.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSGETXATTR, &mut attr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    attr.projid = id;
    attr.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: as above; FS_IOC_FSSETXATTR only reads `attr`.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSSETXATTR, &attr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Project `id`'s block limit: `bytes` (0 = none), on the filesystem of `on`.
pub fn set_limit(on: &File, id: u32, bytes: u64) -> io::Result<()> {
    let blocks = bytes.div_ceil(BLOCK);
    let mut quota = DiskQuota {
        version: 1,
        flags: 2,
        fieldmask: BLOCK_LIMITS,
        id,
        blk_hardlimit: blocks,
        blk_softlimit: blocks,
        ..Default::default()
    };
    quotactl(on, SET_LIMIT, id, &mut quota)
}

/// Bytes and inodes charged to project `id`.
pub fn project_usage(on: &File, id: u32) -> io::Result<(u64, u64)> {
    let mut quota = DiskQuota::default();
    quotactl(on, GET_QUOTA, id, &mut quota)?;
    Ok((quota.bcount * BLOCK, quota.icount))
}
