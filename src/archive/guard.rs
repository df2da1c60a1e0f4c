//! A reader between an untrusted tar stream and the `tar` crate's parser
//! that enforces size limits *before* anything is allocated or written.
//!
//! The `tar` crate reads a GNU long name, long link or PAX header into
//! memory whole, whatever size its header declares (the class of Go's
//! CVE-2022-2879), and expands a GNU sparse entry by handing out its holes
//! as zeros, byte by byte. The guard parses every header the way the
//! `tar` crate will (same size rules, same PAX `size` override, same
//! sparse extension blocks) and
//!
//! - refuses extension headers larger than [`ApplyLimits::max_header_bytes`];
//! - refuses a stream whose declared entry sizes (a sparse file counts its
//!   apparent size) or whose raw bytes exceed [`ApplyLimits::max_bytes`],
//!   at the header, before the entry is written;
//! - refuses more than [`ApplyLimits::max_trailing_bytes`] after the end of
//!   the archive (those bytes would only be kept in the layer's tar);
//! - optionally rewrites a GNU sparse entry into a regular entry holding
//!   only its data segments, and records the segment map for the applier,
//!   which writes the segments at their offsets and leaves the holes as
//!   holes: a 16 GiB sparse file costs what its data costs.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use tar::{GnuExtSparseHeader, GnuSparseHeader, Header};

use super::error::LimitExceeded;
use super::path::escape_name;

const BLOCK: u64 = 512;

/// Size limits for one layer tar.
#[derive(Debug, Clone)]
pub struct ApplyLimits {
    /// Largest GNU long name, GNU long link or PAX extended header, in
    /// bytes. Each is read into memory whole.
    pub max_header_bytes: u64,
    /// Largest expanded layer: the uncompressed tar stream and the sum of
    /// the sizes its entries declare (a sparse file counts its apparent
    /// size) must each stay within this.
    pub max_bytes: u64,
    /// How `max_bytes` is set, for messages (e.g. `the layer size limit
    /// (limits.layer_size)`).
    pub max_bytes_setting: String,
    /// Bytes allowed after the end-of-archive marker (tar writers pad to a
    /// 10 KiB record; anything much larger is only a way to make the kept
    /// tar big).
    pub max_trailing_bytes: u64,
}

/// Default for [`ApplyLimits::max_header_bytes`]: 1 MiB, as Go's
/// archive/tar after CVE-2022-2879.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 1 << 20;
/// Default for [`ApplyLimits::max_trailing_bytes`]: 1 MiB.
pub const DEFAULT_MAX_TRAILING_BYTES: u64 = 1 << 20;

impl Default for ApplyLimits {
    fn default() -> Self {
        ApplyLimits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_bytes: u64::MAX,
            max_bytes_setting: "the layer size limit".to_owned(),
            max_trailing_bytes: DEFAULT_MAX_TRAILING_BYTES,
        }
    }
}

/// The data segments of a GNU sparse entry the guard rewrote into a
/// regular one.
#[derive(Debug, Clone)]
pub(crate) struct SparseMap {
    /// Position of the (rewritten) header in the stream the parser sees,
    /// as `tar::Entry::raw_header_position` reports it.
    pub header_pos: u64,
    /// Apparent size of the file.
    pub real_size: u64,
    /// (offset, length) of each data segment, in file order; their data
    /// follow one another in the entry.
    pub segments: Vec<(u64, u64)>,
}

/// State the applier reads while the parser owns the guard.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    sparse: Option<SparseMap>,
}

impl Shared {
    /// The segment map of the entry whose header is at `header_pos`, if the
    /// guard rewrote it from a sparse entry.
    pub fn take_sparse(&mut self, header_pos: u64) -> Option<SparseMap> {
        match &self.sparse {
            Some(s) if s.header_pos == header_pos => self.sparse.take(),
            _ => None,
        }
    }
}

enum State {
    /// At a header boundary.
    Header,
    /// Inside an entry's data (including padding): bytes left.
    Data(u64),
    /// After the end-of-archive block.
    Trailing,
}

/// See the module docs.
pub(crate) struct Guard<R> {
    inner: R,
    limits: ApplyLimits,
    rewrite_sparse: bool,
    state: State,
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes handed to the parser so far.
    out_offset: u64,
    /// Bytes read from `inner` so far.
    consumed: u64,
    trailing: u64,
    declared: u64,
    pending_pax_size: Option<u64>,
    shared: Rc<RefCell<Shared>>,
}

impl<R: Read> Guard<R> {
    /// Wraps `inner`. With `rewrite_sparse`, GNU sparse entries are handed
    /// on as regular entries of their data and their maps recorded in
    /// [`Guard::shared`].
    pub fn new(inner: R, limits: ApplyLimits, rewrite_sparse: bool) -> Self {
        Guard {
            inner,
            limits,
            rewrite_sparse,
            state: State::Header,
            out: Vec::new(),
            out_pos: 0,
            out_offset: 0,
            consumed: 0,
            trailing: 0,
            declared: 0,
            pending_pax_size: None,
            shared: Rc::new(RefCell::new(Shared::default())),
        }
    }

    /// Where the applier finds sparse maps.
    pub fn shared(&self) -> Rc<RefCell<Shared>> {
        self.shared.clone()
    }

    fn count(&mut self, n: usize) -> io::Result<()> {
        self.consumed += n as u64;
        if self.consumed > self.limits.max_bytes {
            return Err(limit(LimitExceeded {
                what: "uncompressed layer tar".to_owned(),
                size: self.consumed,
                limit: self.limits.max_bytes,
                setting: self.limits.max_bytes_setting.clone(),
                exact: false,
            }));
        }
        Ok(())
    }

    /// Reads up to `buf.len()` bytes, fewer only at end of stream.
    fn read_full(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    self.count(k)?;
                    n += k;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn header(&mut self, block: [u8; 512]) -> io::Result<()> {
        let pos = self.out_offset;
        if super::zeros::is_zero(&block) {
            // The parser stops at the first zero block.
            self.queue(&block);
            self.state = State::Trailing;
            return Ok(());
        }
        let h = Header::from_byte_slice(&block);
        let kind = h.entry_type();
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        let extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        let Ok(mut size) = h.entry_size() else {
            // The parser refuses this header; hand it over as is.
            self.queue(&block);
            self.state = State::Data(0);
            return Ok(());
        };
        // The parser applies a PAX `size` to the next non-extension header;
        // recognized long names/links and PAX headers keep it pending, any
        // other header (a global header, an unrecognized extension, an
        // entry) is handed out as an entry and consumes it.
        let continues = recognized
            && (kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions());
        let pending = if continues {
            None
        } else {
            self.pending_pax_size.take()
        };
        if !extension {
            if let Some(s) = pending {
                size = s;
            }
        }
        let padded = size
            .checked_add(BLOCK - 1)
            .map(|s| s & !(BLOCK - 1))
            .ok_or_else(|| {
                io::Error::other(format!("tar header at offset {pos}: size overflow"))
            })?;
        if extension {
            let what = if kind.is_gnu_longname() {
                "GNU long name"
            } else if kind.is_gnu_longlink() {
                "GNU long link name"
            } else if kind.is_pax_local_extensions() {
                "PAX extended header"
            } else {
                "PAX global header"
            };
            if size > self.limits.max_header_bytes {
                return Err(limit(LimitExceeded {
                    what: format!("{what} at offset {pos} of the layer tar"),
                    size,
                    limit: self.limits.max_header_bytes,
                    setting: "the tar header size limit".to_owned(),
                    exact: true,
                }));
            }
            self.queue(&block);
            if kind.is_pax_local_extensions() && recognized {
                // Read it now to learn a `size` record, as the parser will.
                let mut data = vec![0u8; padded as usize];
                let n = self.read_full(&mut data)?;
                data.truncate(n);
                let body = &data[..n.min(size as usize)];
                self.pending_pax_size = pax_size(body);
                self.queue(&data);
                self.state = State::Data(0);
            } else {
                self.state = State::Data(padded);
            }
            return Ok(());
        }
        let mut apparent = size;
        let mut rewritten = None;
        if kind.is_gnu_sparse() {
            if let Some(gnu) = h.as_gnu() {
                let real = gnu
                    .real_size()
                    .map_err(|_| bad(pos, "malformed sparse real size"))?;
                let mut segments = Vec::new();
                let mut ext_blocks = Vec::new();
                add_segments(&gnu.sparse, &mut segments, pos)?;
                let mut extended = gnu.is_extended();
                let mut map_bytes = 0u64;
                while extended {
                    // The map is held in memory: cap it like a header.
                    map_bytes += BLOCK;
                    if map_bytes > self.limits.max_header_bytes {
                        return Err(limit(LimitExceeded {
                            what: format!(
                                "sparse map of entry {} at offset {pos} of the layer tar",
                                escape_name(&h.path_bytes())
                            ),
                            size: map_bytes,
                            limit: self.limits.max_header_bytes,
                            setting: "the tar header size limit".to_owned(),
                            exact: false,
                        }));
                    }
                    let mut ext = GnuExtSparseHeader::new();
                    let n = self.read_full(ext.as_mut_bytes())?;
                    if n < 512 {
                        return Err(bad(pos, "sparse extension block cut short"));
                    }
                    add_segments(ext.sparse(), &mut segments, pos)?;
                    extended = ext.is_extended();
                    ext_blocks.extend_from_slice(ext.as_bytes());
                }
                check_segments(&segments, size, real, pos)?;
                apparent = real;
                if self.rewrite_sparse {
                    let mut nh = h.clone();
                    nh.set_entry_type(tar::EntryType::Regular);
                    if let Some(g) = nh.as_gnu_mut() {
                        g.isextended[0] = 0;
                        for s in g.sparse.iter_mut() {
                            s.offset = [0; 12];
                            s.numbytes = [0; 12];
                        }
                    }
                    nh.set_cksum();
                    rewritten = Some((nh, segments));
                } else {
                    self.queue(&block);
                    self.queue(&ext_blocks);
                }
            }
        }
        self.declared = self.declared.saturating_add(apparent);
        if self.declared > self.limits.max_bytes {
            let name = escape_name(&h.path_bytes());
            return Err(limit(LimitExceeded {
                what: format!(
                    "entry {name} (at offset {pos}, declaring {apparent} bytes): entries of the layer tar"
                ),
                size: self.declared,
                limit: self.limits.max_bytes,
                setting: self.limits.max_bytes_setting.clone(),
                exact: false,
            }));
        }
        match rewritten {
            Some((nh, segments)) => {
                self.queue(nh.as_bytes());
                self.shared.borrow_mut().sparse = Some(SparseMap {
                    header_pos: pos,
                    real_size: apparent,
                    segments,
                });
            }
            None if !kind.is_gnu_sparse() || h.as_gnu().is_none() => self.queue(&block),
            None => {}
        }
        self.state = State::Data(padded);
        Ok(())
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.out_pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.out_pos);
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                if self.out_pos == self.out.len() {
                    self.out.clear();
                    self.out_pos = 0;
                }
                self.out_offset += n as u64;
                return Ok(n);
            }
            match self.state {
                State::Data(0) => self.state = State::Header,
                State::Data(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut buf[..want])?;
                    self.count(n)?;
                    self.state = State::Data(left - n as u64);
                    self.out_offset += n as u64;
                    return Ok(n);
                }
                State::Header => {
                    let mut block = [0u8; 512];
                    let n = self.read_full(&mut block)?;
                    if n == 0 {
                        return Ok(0);
                    }
                    if n < 512 {
                        // A cut-short header: the parser reports it.
                        self.queue(&block[..n]);
                        self.state = State::Trailing;
                        continue;
                    }
                    self.header(block)?;
                }
                State::Trailing => {
                    let n = self.inner.read(buf)?;
                    self.count(n)?;
                    self.trailing += n as u64;
                    if self.trailing > self.limits.max_trailing_bytes {
                        return Err(limit(LimitExceeded {
                            what: "data after the end of the layer tar".to_owned(),
                            size: self.trailing,
                            limit: self.limits.max_trailing_bytes,
                            setting: "the trailing data limit".to_owned(),
                            exact: false,
                        }));
                    }
                    self.out_offset += n as u64;
                    return Ok(n);
                }
            }
        }
    }
}

fn limit(e: LimitExceeded) -> io::Error {
    io::Error::other(e)
}

fn bad(pos: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("tar header at offset {pos}: {what}"),
    )
}

/// The `size` record of a PAX header, read as the `tar` crate reads it.
fn pax_size(body: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(body) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse().ok();
    }
    None
}

fn add_segments(blocks: &[GnuSparseHeader], out: &mut Vec<(u64, u64)>, pos: u64) -> io::Result<()> {
    for b in blocks {
        if b.is_empty() {
            continue;
        }
        let off = b
            .offset()
            .map_err(|_| bad(pos, "malformed sparse offset"))?;
        let len = b
            .length()
            .map_err(|_| bad(pos, "malformed sparse length"))?;
        out.push((off, len));
    }
    Ok(())
}

/// Segments in order, not overlapping, inside the real size, and their
/// lengths adding up to the data stored.
fn check_segments(segments: &[(u64, u64)], stored: u64, real: u64, pos: u64) -> io::Result<()> {
    let mut cur = 0u64;
    let mut sum = 0u64;
    for &(off, len) in segments {
        if off < cur {
            return Err(bad(pos, "out of order or overlapping sparse segments"));
        }
        cur = off
            .checked_add(len)
            .ok_or_else(|| bad(pos, "sparse segment overflows"))?;
        sum = sum
            .checked_add(len)
            .ok_or_else(|| bad(pos, "sparse segment overflows"))?;
    }
    if cur > real {
        return Err(bad(pos, "sparse segments run past the file's size"));
    }
    if sum != stored {
        return Err(bad(pos, "sparse segments do not add up to the data stored"));
    }
    Ok(())
}
