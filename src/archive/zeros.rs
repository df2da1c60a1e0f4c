//! Recognising zero blocks, so sparse files and zero-filled data become holes.

/// Size of the blocks compared at once.
const BLOCK: usize = 4096;

/// Whether `bytes` are all zero: a `memcmp` against a zero block, fast
/// even in a debug build (the bombs this guards against are gigabytes of
/// zeros).
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    bytes.chunks(BLOCK).all(|c| c == &ZEROS[..c.len()])
}
