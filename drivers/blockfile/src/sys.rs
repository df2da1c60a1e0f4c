//! Kernel interface of the blockfile driver: the FIEMAP ioctl,
//! SEEK_DATA/SEEK_HOLE. Every `unsafe`
//! line of the crate is here.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `FIEMAP_FLAG_SYNC`: flush dirty data before mapping.
const FIEMAP_FLAG_SYNC: u32 = 0x1;
/// `FIEMAP_EXTENT_LAST`: the last extent of the file.
const FIEMAP_EXTENT_LAST: u32 = 0x1;
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
}

/// Every allocated extent of `file` (after flushing its dirty pages).
pub fn fiemap(file: &File) -> io::Result<Vec<Extent>> {
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut buf = FiemapBuf {
            header: FiemapHeader {
                fm_start: start,
                fm_length: u64::MAX - start,
                fm_flags: FIEMAP_FLAG_SYNC,
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
        }));
        match extents.last() {
            Some(last) if last.fe_flags & FIEMAP_EXTENT_LAST == 0 => {
                start = last.fe_logical + last.fe_length;
            }
            _ => return Ok(out),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiemap_header_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<FiemapHeader>(), 32);
        assert_eq!(std::mem::size_of::<FiemapExtent>(), 56);
        assert_eq!(FS_IOC_FIEMAP, 0xC020_660B);
    }
}
