//! Every raw syscall and ioctl of the api crate: loop devices and the new
//! mount API. Each `unsafe` block states why it is sound; callers stay safe.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
/// Loop flag: read-only device.
pub const LO_FLAGS_READ_ONLY: u32 = 1;
/// Loop flag: detach when the last user closes the device.
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

impl LoopInfo64 {
    fn zeroed() -> Self {
        Self {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

/// `struct loop_config` from `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Asks `/dev/loop-control` for a free loop device number.
pub fn loop_get_free(control: &File) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and only returns an int;
    // the fd is valid for the duration of the call because we borrow `control`.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as u32)
}

/// Binds `backing` to the loop device `dev` in one LOOP_CONFIGURE call.
pub fn loop_configure(dev: &File, backing: &File, flags: u32, name: &[u8]) -> io::Result<()> {
    let mut file_name = [0u8; LO_NAME_SIZE];
    let len = name.len().min(LO_NAME_SIZE - 1);
    file_name[..len].copy_from_slice(&name[..len]);
    let config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: LoopInfo64 {
            lo_flags: flags,
            lo_file_name: file_name,
            ..LoopInfo64::zeroed()
        },
        reserved: [0; 8],
    };
    // SAFETY: `config` is a fully initialised `struct loop_config` that lives
    // across the call; the kernel only reads it. Both fds are borrowed, so valid.
    let rc = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &config as *const LoopConfig,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a loop device is bound to, from LOOP_GET_STATUS64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopStatus {
    /// `st_dev` of the backing file (the kernel's `new_encode_dev`, as `stat`).
    pub device: u64,
    /// Inode number of the backing file.
    pub inode: u64,
    /// `LO_FLAGS_*`.
    pub flags: u32,
}

/// Reads the backing file's identity of the loop device `dev`; ENXIO when
/// nothing is attached.
pub fn loop_get_status(dev: &File) -> io::Result<LoopStatus> {
    let mut info = LoopInfo64::zeroed();
    // SAFETY: `info` is a valid, writable `struct loop_info64` that outlives
    // the call; the kernel writes at most its size. The fd is borrowed.
    let rc = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_GET_STATUS64 as _,
            &mut info as *mut LoopInfo64,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(LoopStatus {
        device: info.lo_device,
        inode: info.lo_inode,
        flags: info.lo_flags,
    })
}

/// Detaches whatever backs the loop device `dev`.
pub fn loop_clear(dev: &File) -> io::Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument; the fd is borrowed and valid.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
/// Mount attribute: read-only.
pub const MOUNT_ATTR_RDONLY: libc::c_uint = 1;
/// Mount attribute: setuid/setgid bits and file capabilities are ignored.
pub const MOUNT_ATTR_NOSUID: libc::c_uint = 2;
/// Mount attribute: device nodes cannot be opened.
pub const MOUNT_ATTR_NODEV: libc::c_uint = 4;
/// Mount attribute: nothing can be executed.
pub const MOUNT_ATTR_NOEXEC: libc::c_uint = 8;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string holds a NUL byte"))
}

fn owned_fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative return of fsopen/fsmount is a new fd that nothing
    // else owns; wrapping it transfers ownership so it is closed exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// `fsopen(2)`: a filesystem context for `fstype`.
pub fn fsopen(fstype: &str) -> io::Result<OwnedFd> {
    let name = cstring(fstype)?;
    // SAFETY: `name` is a valid NUL-terminated string for the whole call.
    let rc = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    owned_fd(rc)
}

/// `fsconfig(FSCONFIG_SET_STRING)` or, with no value, `FSCONFIG_SET_FLAG`.
pub fn fsconfig_set(fs: &OwnedFd, key: &str, value: Option<&str>) -> io::Result<()> {
    let key = cstring(key)?;
    let value = value.map(cstring).transpose()?;
    let (cmd, ptr) = match &value {
        Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
        None => (FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: the fd is borrowed and open; key and value are NUL-terminated
    // strings alive for the call (value null only for SET_FLAG, as required).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.as_ptr(),
            ptr,
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fsconfig(FSCONFIG_CMD_CREATE)` then `fsmount(2)`: a detached mount.
pub fn fsmount(fs: &OwnedFd, attr: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: CMD_CREATE takes no key or value; the fd is borrowed and open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain integer arguments and a borrowed, open fd.
    let rc = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attr) };
    owned_fd(rc)
}

/// `move_mount(2)`: attaches a detached mount at `target`.
pub fn move_mount(mnt: &OwnedFd, target: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let empty = c"";
    // SAFETY: both strings are NUL-terminated and alive for the call; the
    // mount fd is borrowed and open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(dst, FICLONE, src)`: `dst` shares all of `src`'s blocks.
pub(crate) fn ficlone(src: &std::fs::File, dst: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open for the duration of the call
    // (borrowed `File`s); FICLONE takes the source descriptor by value and
    // touches no memory of ours.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The NUL-separated names of the extended attributes of `path` (a final
/// symlink not followed).
pub fn list_xattrs(path: &CStr) -> io::Result<Vec<u8>> {
    loop {
        // SAFETY: `path` is NUL-terminated; a null buffer with size 0 asks
        // only for the needed size.
        let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` is a live, writable buffer of exactly the length passed.
        let got = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

/// The value of extended attribute `name` of `path` (a final symlink not
/// followed); `None` when it is gone.
pub fn get_xattr(path: &CStr, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    loop {
        // SAFETY: both strings are NUL-terminated; a null buffer with size 0
        // asks only for the needed size.
        let size =
            unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENODATA) => Ok(None),
                _ => Err(err),
            };
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` is a live, writable buffer of exactly the length
        // passed; both strings are NUL-terminated.
        let got = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

/// Sets extended attribute `name` of `path` (a final symlink not followed).
pub fn set_xattr(path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and `value` is readable for
    // its length.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `FIEMAP_FLAG_SYNC`: flush dirty data before mapping.
const FIEMAP_FLAG_SYNC: u32 = 0x1;
/// `FIEMAP_EXTENT_LAST`: the last extent of the file.
const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// `FIEMAP_EXTENT_DELALLOC`: dirty data not yet given blocks on disk.
const FIEMAP_EXTENT_DELALLOC: u32 = 0x4;
/// `FIEMAP_EXTENT_SHARED`: the extent's blocks are shared with another file.
const FIEMAP_EXTENT_SHARED: u32 = 0x2000;
/// Extents fetched per ioctl call.
const FIEMAP_BATCH: usize = 256;

/// `struct fiemap` (linux/fiemap.h) without its flexible array.
#[repr(C)]
#[derive(Default)]
struct FiemapHeader {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
}

/// `struct fiemap_extent` (linux/fiemap.h).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct FiemapExtent {
    fe_logical: u64,
    fe_physical: u64,
    fe_length: u64,
    fe_reserved64: [u64; 2],
    fe_flags: u32,
    fe_reserved: [u32; 3],
}

/// A `struct fiemap` followed by room for [`FIEMAP_BATCH`] extents.
#[repr(C)]
struct FiemapBuf {
    header: FiemapHeader,
    extents: [FiemapExtent; FIEMAP_BATCH],
}

/// `FS_IOC_FIEMAP` = `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: libc::c_ulong =
    nix::request_code_readwrite!(b'f', 11, std::mem::size_of::<FiemapHeader>()) as libc::c_ulong;

/// One mapped extent of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the file, bytes.
    pub logical: u64,
    /// Offset on the device, bytes.
    pub physical: u64,
    /// Length, bytes.
    pub length: u64,
    /// Whether the filesystem reports the blocks as shared with another file.
    pub shared: bool,
    /// Whether the data is in delayed allocation: written to the page cache,
    /// not yet to the disk (only seen without `flush`).
    pub delalloc: bool,
}

/// Every extent of `file`, after flushing its dirty pages when `flush`
/// (`FIEMAP_FLAG_SYNC`); without it, nothing is written by asking.
pub fn fiemap(file: &File, flush: bool) -> io::Result<Vec<Extent>> {
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut buf = FiemapBuf {
            header: FiemapHeader {
                fm_start: start,
                fm_length: u64::MAX - start,
                fm_flags: if flush { FIEMAP_FLAG_SYNC } else { 0 },
                fm_extent_count: FIEMAP_BATCH as u32,
                ..FiemapHeader::default()
            },
            extents: [FiemapExtent::default(); FIEMAP_BATCH],
        };
        // SAFETY: `buf` is a live, properly aligned `struct fiemap` with room
        // for `fm_extent_count` extents after the header, which is all the
        // kernel writes; the descriptor is open while `file` is borrowed.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut buf) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mapped = (buf.header.fm_mapped_extents as usize).min(FIEMAP_BATCH);
        let extents = &buf.extents[..mapped];
        out.extend(extents.iter().map(|e| Extent {
            logical: e.fe_logical,
            physical: e.fe_physical,
            length: e.fe_length,
            shared: e.fe_flags & FIEMAP_EXTENT_SHARED != 0,
            delalloc: e.fe_flags & FIEMAP_EXTENT_DELALLOC != 0,
        }));
        match extents.last() {
            Some(last) if last.fe_flags & FIEMAP_EXTENT_LAST == 0 => {
                start = last.fe_logical + last.fe_length;
            }
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod fiemap_tests {
    use super::*;

    #[test]
    fn fiemap_header_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<FiemapHeader>(), 32);
        assert_eq!(std::mem::size_of::<FiemapExtent>(), 56);
        assert_eq!(FS_IOC_FIEMAP, 0xC020_660B);
    }
}
