//! Test fixtures: loud skips, and (re-exported from [`crate::scratch`])
//! tagged scratch directories and loop-backed filesystems.

/// Environment variable that turns every skip into a failure (set in CI).
pub const STRICT_ENV: &str = "STRATA_TEST_STRICT";

/// Environment variable naming a file every skip is appended to, so the
/// runner (`scripts/test.sh`) can list the skips in its summary.
pub const SKIP_LOG_ENV: &str = "STRATA_SKIP_LOG";

/// Reports that `test` cannot run here. Panics when [`STRICT_ENV`] is `1`,
/// so CI never passes by skipping. Otherwise the line goes straight to the
/// process's stderr (past the test harness's output capture, so it shows
/// even though the test "passes") and to [`SKIP_LOG_ENV`]'s file.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    if std::env::var(STRICT_ENV).as_deref() == Ok("1") {
        panic!("{test} cannot run ({reason}) and {STRICT_ENV}=1 forbids skipping");
    }
    let line = format!("*** SKIP {test}: {reason} ***\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV) {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// Whether we run as root; skips `test` otherwise.
pub fn require_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skip(test, "needs root");
    }
    root
}

/// Whether `program` is on PATH; skips `test` otherwise.
pub fn require_program(test: &str, program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        skip(test, &format!("{program} is not installed"));
    }
    found
}

pub use crate::scratch::{loops_below, LoopFs, ScratchDir};

/// Bytes of the file at `path` written to the page cache but not yet to
/// its disk (delayed-allocation extents; reading does not flush them).
pub fn unwritten_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let extents = crate::sys::fiemap(&std::fs::File::open(path)?, false)?;
    Ok(extents
        .iter()
        .filter(|e| e.delalloc)
        .map(|e| e.length)
        .sum())
}
