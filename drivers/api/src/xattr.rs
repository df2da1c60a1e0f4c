//! Extended attributes, read and copied whole: the one reader behind the
//! vfs driver's tree copy and the layer tar writer.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{sys, Error, Result};

/// Setting one extended attribute failed.
#[derive(Debug, thiserror::Error)]
#[error("set xattr {name} on {path}: {source}")]
pub struct SetXattrError {
    /// The attribute's name.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Every extended attribute of `path` (a final symlink not followed) as
/// `(name, value)`, sorted by name. A filesystem without xattr support has
/// none; an attribute removed while reading is left out.
pub fn read_all(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let cpath = cstring(path.as_os_str().as_bytes())?;
    let names = match sys::list_xattrs(&cpath) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
        other => other?,
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if let Some(value) = sys::get_xattr(&cpath, &cstring(name)?)? {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Copies every extended attribute of `src` onto `dst` (neither following a
/// final symlink). A failure to set one names it, `dst` and `driver`, and
/// keeps the OS error as its source.
pub fn copy_all(driver: &'static str, src: &Path, dst: &Path) -> Result<()> {
    let attrs = read_all(src).map_err(|e| Error::io("read xattrs", src, e))?;
    let cdst = cstring(dst.as_os_str().as_bytes()).map_err(|e| Error::io("set xattr", dst, e))?;
    for (name, value) in attrs {
        let set = cstring(&name).and_then(|cname| sys::set_xattr(&cdst, &cname, &value));
        set.map_err(|source| {
            let name = String::from_utf8_lossy(&name).into_owned();
            let path = dst.to_owned();
            Error::driver(driver, SetXattrError { name, path, source })
        })?;
    }
    Ok(())
}
