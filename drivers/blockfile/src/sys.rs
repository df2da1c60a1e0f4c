//! Kernel interface of the blockfile driver: SEEK_DATA/SEEK_HOLE, and
//! FIEMAP through the api crate's. It has no `unsafe` code.

use std::fs::File;
use std::io;

pub use strata_driver_api::fiemap::Extent;

/// Every allocated extent of `file`, after flushing its dirty pages.
pub fn fiemap(file: &File) -> io::Result<Vec<Extent>> {
    strata_driver_api::fiemap::fiemap(file, true)
}

/// The next data region at or after `offset`: `Some((data_start, hole_start))`,
/// or `None` past the last data (SEEK_DATA/SEEK_HOLE).
pub fn next_data(file: &File, offset: u64) -> io::Result<Option<(u64, u64)>> {
    use nix::unistd::{lseek, Whence};
    let off = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let data = match lseek(file, off, Whence::SeekData) {
        Ok(d) => d,
        Err(nix::errno::Errno::ENXIO) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let hole = lseek(file, data, Whence::SeekHole)?;
    Ok(Some((data as u64, hole as u64)))
}
