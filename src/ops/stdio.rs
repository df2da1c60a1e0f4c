//! `-` as a file name: standard input for `load -i -` and `import -`
//! (standard output is [`crate::ops::output::PartialOutput`]'s).

use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::{Result, StoreError};
use crate::Store;

/// Whether `path` is `-`, the name of standard input or output.
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Copies standard input into a private temporary file in the store's
/// scratch area, for readers that need to seek (an image archive). At most
/// `max_bytes` are taken: more fails, naming the limit. The file is removed
/// when the returned handle is dropped (also on an error or a signal).
pub fn spool_stdin(store: &Store, max_bytes: u64) -> Result<tempfile::NamedTempFile> {
    let dir = store.temp_dir("stdin")?;
    let mut spool = tempfile::Builder::new()
        .prefix("stdin-")
        .tempfile_in(&dir)
        .map_err(|e| StoreError::io("create a temporary file in", &dir, e))?;
    let mut input = crate::interrupt::Reader(io::stdin().lock()).take(max_bytes.saturating_add(1));
    let copied = io::copy(&mut input, spool.as_file_mut())
        .map_err(|e| StoreError::io("copy standard input to", spool.path(), e))?;
    if copied > max_bytes {
        return Err(StoreError::Invalid(format!(
            "standard input: more than {max_bytes} bytes, the image size limit (limits.image_size / STRATA_LIMIT_IMAGE_SIZE)"
        )));
    }
    spool
        .as_file_mut()
        .flush()
        .map_err(|e| StoreError::io("write", spool.path(), e))?;
    Ok(spool)
}
