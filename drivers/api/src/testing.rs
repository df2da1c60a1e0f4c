//! Test fixtures: loud skips, and (re-exported from [`crate::scratch`])
//! tagged scratch directories and loop-backed filesystems.

/// Environment variable that turns every skip into a failure (set in CI).
pub const STRICT_ENV: &str = "STRATA_TEST_STRICT";

/// Reports that `test` cannot run here. Prints loudly; panics instead when
/// [`STRICT_ENV`] is `1`, so CI never passes by skipping.
pub fn skip(test: &str, reason: &str) {
    if std::env::var(STRICT_ENV).as_deref() == Ok("1") {
        panic!("{test} cannot run ({reason}) and {STRICT_ENV}=1 forbids skipping");
    }
    eprintln!("\n*** SKIP {test}: {reason} ***\n");
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

pub use crate::scratch::{LoopFs, ScratchDir};
