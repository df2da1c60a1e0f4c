//! Reflinks (`FICLONE`): the one implementation vfs (per file) and
//! blockfile (per image) share.

use std::fs::File;
use std::io;

/// Makes `dst` share all of `src`'s data blocks. Fails with an error
/// [`is_unsupported`] recognises where the filesystem cannot reflink.
pub fn clone_file(src: &File, dst: &File) -> io::Result<()> {
    crate::sys::ficlone(src, dst)
}

/// Whether an error from [`clone_file`] means "this filesystem cannot
/// reflink these files" (copy instead), as opposed to a real I/O failure.
pub fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EXDEV | libc::EINVAL | libc::ENOTTY | libc::ENOSYS)
    )
}
