//! Crash points for tests: with `STRATA_FAILPOINT=<name>` set, the process
//! kills itself with SIGKILL when it reaches [`failpoint`]`(name)`, leaving
//! whatever state a power cut at that point would. Several names may be
//! given, separated by commas. The variable is read once; when it is unset a
//! failpoint costs one atomic load.

use std::sync::OnceLock;

/// Environment variable naming the failpoint(s) to die at.
pub const FAILPOINT_ENV: &str = "STRATA_FAILPOINT";

static ARMED: OnceLock<Option<Vec<String>>> = OnceLock::new();

/// Dies with SIGKILL if `name` is armed through [`FAILPOINT_ENV`].
pub fn failpoint(name: &str) {
    let armed = ARMED.get_or_init(|| {
        std::env::var(FAILPOINT_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
    });
    if let Some(names) = armed {
        if names.iter().any(|n| n == name) {
            tracing::warn!(failpoint = name, "failpoint reached: killing the process");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}
