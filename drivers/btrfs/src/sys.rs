//! Every btrfs ioctl the driver issues itself, for what libbtrfsutil lacks:
//! quota control, qgroup limits and removal, and reading qgroup numbers from
//! the quota tree. Each `unsafe` block states why it is sound; callers stay
//! safe. Structures follow `<linux/btrfs.h>` and `<linux/btrfs_tree.h>`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

const BTRFS_IOCTL_MAGIC: u8 = 0x94;

/// `BTRFS_SUPER_MAGIC` as `statfs` reports it.
pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

/// `BTRFS_QUOTA_CTL_ENABLE`: full qgroup accounting (backref walking).
pub const QUOTA_CTL_ENABLE: u64 = 1;
/// `BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA` (Linux 6.7+): owner-based accounting.
pub const QUOTA_CTL_ENABLE_SIMPLE: u64 = 4;

const ROOT_TREE_OBJECTID: u64 = 1;
const QUOTA_TREE_OBJECTID: u64 = 8;
const ROOT_ITEM_KEY: u32 = 132;
const ROOT_BACKREF_KEY: u32 = 144;
const ROOT_REF_KEY: u32 = 156;
const QGROUP_STATUS_KEY: u32 = 240;
const QGROUP_INFO_KEY: u32 = 242;

/// `BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT`: numbers need a rescan.
pub const QGROUP_STATUS_FLAG_INCONSISTENT: u64 = 1 << 2;
/// `BTRFS_QGROUP_STATUS_FLAG_SIMPLE_MODE`: simple quotas are on.
pub const QGROUP_STATUS_FLAG_SIMPLE_MODE: u64 = 1 << 3;

const QGROUP_LIMIT_MAX_EXCL: u64 = 1 << 1;

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_ioctl_qgroup_create_args`.
#[repr(C)]
struct QgroupCreateArgs {
    create: u64,
    qgroupid: u64,
}

/// `struct btrfs_qgroup_limit`.
#[repr(C)]
struct QgroupLimit {
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `struct btrfs_ioctl_qgroup_limit_args`.
#[repr(C)]
struct QgroupLimitArgs {
    qgroupid: u64,
    lim: QgroupLimit,
}

/// `struct btrfs_ioctl_search_key`.
#[repr(C)]
#[derive(Default)]
struct SearchKey {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: u64,
    unused2: u64,
    unused3: u64,
    unused4: u64,
}

const SEARCH_BUF_SIZE: usize = 4096 - std::mem::size_of::<SearchKey>();

/// `struct btrfs_ioctl_search_args`.
#[repr(C)]
struct SearchArgs {
    key: SearchKey,
    buf: [u8; SEARCH_BUF_SIZE],
}

/// `struct btrfs_ioctl_search_header`, read from the result buffer.
const SEARCH_HEADER_SIZE: usize = 32;

/// The raw ioctl wrappers nix generates (unsafe; used only in this file).
mod ioctls {
    #![allow(missing_docs)]
    use super::{QgroupCreateArgs, QgroupLimitArgs, QuotaCtlArgs, SearchArgs, BTRFS_IOCTL_MAGIC};

    nix::ioctl_none!(ioc_sync, BTRFS_IOCTL_MAGIC, 8);
    nix::ioctl_readwrite!(ioc_tree_search, BTRFS_IOCTL_MAGIC, 17, SearchArgs);
    nix::ioctl_readwrite!(ioc_quota_ctl, BTRFS_IOCTL_MAGIC, 40, QuotaCtlArgs);
    nix::ioctl_write_ptr!(ioc_qgroup_create, BTRFS_IOCTL_MAGIC, 42, QgroupCreateArgs);
    nix::ioctl_read!(ioc_qgroup_limit, BTRFS_IOCTL_MAGIC, 43, QgroupLimitArgs);
    nix::ioctl_none!(ioc_quota_rescan_wait, BTRFS_IOCTL_MAGIC, 46);
}
use ioctls::*;

/// One qgroup's numbers from its `BTRFS_QGROUP_INFO_KEY` item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QgroupInfo {
    /// Bytes referenced by the qgroup's subvolume.
    pub referenced: u64,
    /// Bytes referenced only by it.
    pub exclusive: u64,
}

/// Opens a directory of the filesystem as the fd the ioctls need.
pub fn open_dir(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Whether `path` lives on a btrfs filesystem.
pub fn is_btrfs(path: &Path) -> io::Result<bool> {
    let st = nix::sys::statfs::statfs(path).map_err(io::Error::from)?;
    Ok(st.filesystem_type().0 as i64 == BTRFS_SUPER_MAGIC)
}

/// Commits the current transaction (`BTRFS_IOC_SYNC`), so qgroup numbers are
/// up to date when read.
pub fn sync(dir: &File) -> io::Result<()> {
    // SAFETY: BTRFS_IOC_SYNC takes no argument; `dir` is a valid open fd for
    // the whole call.
    unsafe { ioc_sync(dir.as_raw_fd()) }.map_err(io::Error::from)?;
    Ok(())
}

/// Enables quotas with `cmd` ([`QUOTA_CTL_ENABLE`] or [`QUOTA_CTL_ENABLE_SIMPLE`]).
pub fn quota_enable(dir: &File, cmd: u64) -> io::Result<()> {
    let mut args = QuotaCtlArgs { cmd, status: 0 };
    // SAFETY: `args` is a properly laid out btrfs_ioctl_quota_ctl_args that
    // lives across the call; `dir` is a valid fd.
    unsafe { ioc_quota_ctl(dir.as_raw_fd(), &mut args) }.map_err(io::Error::from)?;
    Ok(())
}

/// Waits for a running qgroup rescan to finish.
pub fn quota_rescan_wait(dir: &File) -> io::Result<()> {
    // SAFETY: QUOTA_RESCAN_WAIT takes no argument; `dir` is a valid fd.
    unsafe { ioc_quota_rescan_wait(dir.as_raw_fd()) }.map_err(io::Error::from)?;
    Ok(())
}

/// Limits the exclusive bytes of qgroup `qgroupid` to `bytes`.
pub fn qgroup_limit_exclusive(dir: &File, qgroupid: u64, bytes: u64) -> io::Result<()> {
    let mut args = QgroupLimitArgs {
        qgroupid,
        lim: QgroupLimit {
            flags: QGROUP_LIMIT_MAX_EXCL,
            max_rfer: 0,
            max_excl: bytes,
            rsv_rfer: 0,
            rsv_excl: 0,
        },
    };
    // SAFETY: `args` is a properly laid out btrfs_ioctl_qgroup_limit_args the
    // kernel only reads (the _IOR direction is historical); it outlives the call.
    unsafe { ioc_qgroup_limit(dir.as_raw_fd(), &mut args) }.map_err(io::Error::from)?;
    Ok(())
}

/// Destroys qgroup `qgroupid`. Fails with `EBUSY` while it still accounts
/// bytes and `ENOENT` when it does not exist.
pub fn qgroup_destroy(dir: &File, qgroupid: u64) -> io::Result<()> {
    let args = QgroupCreateArgs {
        create: 0,
        qgroupid,
    };
    // SAFETY: `args` is a properly laid out btrfs_ioctl_qgroup_create_args
    // that outlives the call; `dir` is a valid fd.
    unsafe { ioc_qgroup_create(dir.as_raw_fd(), &args) }.map_err(io::Error::from)?;
    Ok(())
}

/// Items of type `typ` under `objectid` in tree `tree_id` with offsets in
/// `offsets`, as `(offset, item bytes)` pairs, via `BTRFS_IOC_TREE_SEARCH`.
/// Fails with `ENOENT` when the tree does not exist (quota tree: quotas off).
fn tree_search(
    dir: &File,
    tree_id: u64,
    objectid: u64,
    typ: u32,
    offsets: std::ops::RangeInclusive<u64>,
) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut min_offset = *offsets.start();
    loop {
        let mut args = SearchArgs {
            key: SearchKey {
                tree_id,
                min_objectid: objectid,
                max_objectid: objectid,
                min_offset,
                max_offset: *offsets.end(),
                min_transid: 0,
                max_transid: u64::MAX,
                min_type: typ,
                max_type: typ,
                nr_items: 4096,
                ..SearchKey::default()
            },
            buf: [0; SEARCH_BUF_SIZE],
        };
        // SAFETY: `args` is a properly laid out btrfs_ioctl_search_args (4096
        // bytes) that outlives the call; the kernel writes at most
        // SEARCH_BUF_SIZE bytes of results into `buf`.
        unsafe { ioc_tree_search(dir.as_raw_fd(), &mut args) }.map_err(io::Error::from)?;
        let n = args.key.nr_items;
        if n == 0 {
            return Ok(out);
        }
        let mut pos = 0usize;
        let mut last = min_offset;
        for _ in 0..n {
            let h = &args.buf[pos..pos + SEARCH_HEADER_SIZE];
            let offset = le_u64(&h[16..24]);
            let len = u32::from_ne_bytes([h[28], h[29], h[30], h[31]]) as usize;
            let start = pos + SEARCH_HEADER_SIZE;
            out.push((offset, args.buf[start..start + len].to_vec()));
            pos = start + len;
            last = offset;
        }
        if last >= *offsets.end() {
            return Ok(out);
        }
        min_offset = last + 1;
    }
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Flags of the quota status item, or `None` when quotas are disabled.
pub fn quota_status_flags(dir: &File) -> io::Result<Option<u64>> {
    match tree_search(dir, QUOTA_TREE_OBJECTID, 0, QGROUP_STATUS_KEY, 0..=0) {
        Ok(items) => Ok(items
            .first()
            .filter(|(_, item)| item.len() >= 24)
            .map(|(_, item)| le_u64(&item[16..24]))),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Numbers of level-0 qgroup `0/<subvolid>`, `None` if it does not exist.
pub fn qgroup_info(dir: &File, subvolid: u64) -> io::Result<Option<QgroupInfo>> {
    let items = tree_search(
        dir,
        QUOTA_TREE_OBJECTID,
        0,
        QGROUP_INFO_KEY,
        subvolid..=subvolid,
    )?;
    Ok(items
        .first()
        .filter(|(_, i)| i.len() >= 40)
        .map(|(_, i)| QgroupInfo {
            referenced: le_u64(&i[8..16]),
            exclusive: le_u64(&i[24..32]),
        }))
}

/// Ids of every level-0 qgroup (`0/<subvolid>`).
pub fn level0_qgroups(dir: &File) -> io::Result<Vec<u64>> {
    match tree_search(
        dir,
        QUOTA_TREE_OBJECTID,
        0,
        QGROUP_INFO_KEY,
        0..=(1u64 << 48) - 1,
    ) {
        Ok(items) => Ok(items.into_iter().map(|(o, _)| o).collect()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Ids of the subvolumes directly inside subvolume `subvolid` (its
/// `ROOT_REF` items in the root tree).
pub fn child_subvolumes(dir: &File, subvolid: u64) -> io::Result<Vec<u64>> {
    let items = tree_search(
        dir,
        ROOT_TREE_OBJECTID,
        subvolid,
        ROOT_REF_KEY,
        0..=u64::MAX,
    )?;
    Ok(items.into_iter().map(|(o, _)| o).collect())
}

/// `BTRFS_FIRST_FREE_OBJECTID` as a tree id: the first subvolume's id (the
/// top level is 5).
pub const FIRST_SUBVOLUME_ID: u64 = 256;

/// Whether subvolume `subvolid` is still linked into a directory (has a
/// `ROOT_BACKREF` item in the root tree): deleting a subvolume unlinks it at
/// once, long before btrfs' cleaner drops its tree.
pub fn subvolume_linked(dir: &File, subvolid: u64) -> io::Result<bool> {
    root_tree_has(dir, subvolid, ROOT_BACKREF_KEY)
}

/// Whether subvolume `subvolid`'s tree still exists (has a `ROOT_ITEM` in
/// the root tree): true while btrfs' cleaner has yet to drop a deleted one.
pub fn subvolume_tree_exists(dir: &File, subvolid: u64) -> io::Result<bool> {
    root_tree_has(dir, subvolid, ROOT_ITEM_KEY)
}

/// Whether the root tree holds an item of type `key` for subvolume
/// `subvolid` (any offset).
fn root_tree_has(dir: &File, subvolid: u64, key: u32) -> io::Result<bool> {
    let items = tree_search(dir, ROOT_TREE_OBJECTID, subvolid, key, 0..=u64::MAX)?;
    Ok(!items.is_empty())
}

/// `BTRFS_INODE_ITEM_KEY`.
const INODE_ITEM_KEY: u32 = 1;
/// `BTRFS_FIRST_FREE_OBJECTID`: the first inode number of a subvolume.
const FIRST_FREE_OBJECTID: u64 = 256;

/// Inode items of subvolume tree `tree_id` whose inode was created or
/// changed in a transaction after `since` (0: every inode). The search
/// passes `since + 1` as `min_transid`, so the kernel skips every tree block
/// not rewritten since: the cost follows what changed, not the tree's size.
pub fn changed_inodes(dir: &File, tree_id: u64, since: u64) -> io::Result<u64> {
    let mut count = 0;
    let mut from = (FIRST_FREE_OBJECTID, 0u32, 0u64);
    loop {
        let mut args = SearchArgs {
            key: SearchKey {
                tree_id,
                min_objectid: from.0,
                max_objectid: u64::MAX,
                min_type: from.1,
                max_type: u32::from(u8::MAX),
                min_offset: from.2,
                max_offset: u64::MAX,
                min_transid: if since == 0 { 0 } else { since + 1 },
                max_transid: u64::MAX,
                nr_items: 4096,
                ..SearchKey::default()
            },
            buf: [0; SEARCH_BUF_SIZE],
        };
        // SAFETY: as in `tree_search`: a 4096-byte btrfs_ioctl_search_args
        // that outlives the call; the kernel fills at most `buf`.
        unsafe { ioc_tree_search(dir.as_raw_fd(), &mut args) }.map_err(io::Error::from)?;
        let n = args.key.nr_items;
        if n == 0 {
            return Ok(count);
        }
        let mut pos = 0usize;
        for _ in 0..n {
            let h = &args.buf[pos..pos + SEARCH_HEADER_SIZE];
            let objectid = le_u64(&h[8..16]);
            let offset = le_u64(&h[16..24]);
            let typ = u32::from_ne_bytes([h[24], h[25], h[26], h[27]]);
            let len = u32::from_ne_bytes([h[28], h[29], h[30], h[31]]) as usize;
            let item = &args.buf[pos + SEARCH_HEADER_SIZE..pos + SEARCH_HEADER_SIZE + len];
            // btrfs_inode_item: generation, then transid (last change).
            if typ == INODE_ITEM_KEY && item.len() >= 16 && le_u64(&item[8..16]) > since {
                count += 1;
            }
            pos += SEARCH_HEADER_SIZE + len;
            from = match (offset.checked_add(1), typ < u32::from(u8::MAX)) {
                (Some(next), _) => (objectid, typ, next),
                (None, true) => (objectid, typ + 1, 0),
                (None, false) => match objectid.checked_add(1) {
                    Some(next) => (next, 0, 0),
                    None => return Ok(count),
                },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_structs_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<SearchKey>(), 104);
        assert_eq!(std::mem::size_of::<SearchArgs>(), 4096);
        assert_eq!(std::mem::size_of::<QgroupLimitArgs>(), 48);
        assert_eq!(std::mem::size_of::<QuotaCtlArgs>(), 16);
    }
}
