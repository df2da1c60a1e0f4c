//! The few raw syscalls the applier needs that nix does not wrap the way we
//! need them. Every `unsafe` block is here, each with its `SAFETY:` comment.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` (relative, `/`-separated) beneath the directory `root`,
/// resolving every component as if `root` were `/`: `..` and absolute
/// symlinks cannot climb out, and magic links (`/proc/self/fd/*`) are
/// refused. `flags` are `open(2)` flags; `O_CLOEXEC` is always added.
pub fn open_in_root(root: BorrowedFd<'_>, path: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = if path.is_empty() { &b"."[..] } else { path };
    let cpath = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: `cpath` is a valid NUL-terminated string and `how` a fully
        // initialised `open_how` that outlive the call; the size passed is
        // that of the struct. The kernel only reads both.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                cpath.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) });
        }
        let err = io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced the in-root resolution; retry.
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
    }
}

/// Sets an extended attribute on the inode behind `fd`, which may be an
/// `O_PATH` descriptor of any file type (including a symlink). Goes through
/// `/proc/self/fd/N`, which names the inode itself, not a path.
pub fn set_xattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let proc = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both strings are valid and NUL-terminated, `value` is a live
    // slice whose pointer and length are passed together; the kernel only
    // reads them.
    let ret = unsafe {
        libc::setxattr(
            proc.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the permission bits of the inode behind `fd`, an `O_PATH`
/// descriptor, through `/proc/self/fd/N` (which names the inode itself, so
/// nothing is resolved by name). A symlink is refused (`ELOOP`): its mode
/// means nothing, and only a swap after the entry was made can put one here.
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let st = nix::sys::stat::fstat(fd)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    std::fs::set_permissions(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        std::fs::Permissions::from_mode(mode),
    )
}

/// Reads the extended attributes of `name` in the directory `dir` (without
/// following `name` if it is a symlink), sorted by name. The directory is
/// reached through `/proc/self/fd/N`, its descriptor, not a host path.
pub fn read_xattrs_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if name.is_empty() || name.contains(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    strata_driver_api::xattr::read_all(Path::new(std::ffi::OsStr::from_bytes(&path)))
}

/// Opens the directory `name` in `dir` for reading, refusing to follow a
/// symlink (`ELOOP`) or open a non-directory (`ENOTDIR`).
pub fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::openat(
        dir,
        name,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?)
}

/// Lists the entries of the open directory `dir` as (name, is a directory),
/// without `.` and `..`, not following symlinks, sorted by name.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, bool)>> {
    let mut out = strata_driver_api::tree::list_dir(dir)?;
    out.sort();
    Ok(out)
}

/// Builds a `dev_t` from major and minor numbers.
pub fn makedev(major: u32, minor: u32) -> libc::dev_t {
    libc::makedev(major, minor)
}
