//! Compression detection by magic bytes.

use std::io::{self, BufRead, BufReader, Read};

/// Compression of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Detects the compression from the first bytes of a stream.
pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Peeks at least `n` bytes (fewer at end of stream) without consuming them.
pub(crate) fn peek<R: Read>(r: &mut BufReader<R>, n: usize) -> io::Result<Vec<u8>> {
    // BufReader only refills when empty, so read what it has; the magic
    // numbers are tiny and the buffer is 8 KiB, so one fill suffices unless
    // the underlying reader returns short reads at the very start.
    let buf = r.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

/// Wraps `reader` in the decompressor its magic bytes call for (gzip, zstd,
/// or none). Concatenated gzip members are read as one stream.
pub fn decompress<'a, R: Read + Send + 'a>(reader: R) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut r = BufReader::new(reader);
    let head = peek(&mut r, 4)?;
    Ok(match detect_compression(&head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Compression::None => Box::new(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn round_trips_each_kind() {
        let data = b"hello layer".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        for input in [data.clone(), gz, zs] {
            let mut out = Vec::new();
            decompress(&input[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let data = vec![7u8; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let cut = &gz[..gz.len() / 2];
        let mut out = Vec::new();
        assert!(decompress(cut).unwrap().read_to_end(&mut out).is_err());
    }
}
