//! Crash points for tests: with `STRATA_FAILPOINT=<name>` set, the process
//! kills itself with SIGKILL when it reaches [`failpoint`]`(name)`, leaving
//! whatever state a power cut at that point would. Several names may be
//! given, separated by commas. With `STRATA_FAILPOINT_STOP=<name>` it stops
//! itself there instead (SIGSTOP), so a test can run another process at
//! that point and then let it go on (SIGCONT). The variables are read
//! once; when they are unset a failpoint costs one atomic load.

use std::sync::OnceLock;

/// Environment variable naming the failpoint(s) to die at.
pub const FAILPOINT_ENV: &str = "STRATA_FAILPOINT";

/// Environment variable naming the failpoint(s) to stop at.
pub const FAILPOINT_STOP_ENV: &str = "STRATA_FAILPOINT_STOP";

static ARMED: OnceLock<Option<Vec<String>>> = OnceLock::new();
static STOPS: OnceLock<Option<Vec<String>>> = OnceLock::new();

/// The names listed in environment variable `var`, if any.
fn names(var: &str) -> Option<Vec<String>> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

/// Dies with SIGKILL if `name` is armed through [`FAILPOINT_ENV`]; stops
/// (SIGSTOP) if it is armed through [`FAILPOINT_STOP_ENV`].
pub fn failpoint(name: &str) {
    let armed = ARMED.get_or_init(|| names(FAILPOINT_ENV));
    if armed.as_ref().is_some_and(|n| n.iter().any(|n| n == name)) {
        tracing::warn!(failpoint = name, "failpoint reached: killing the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    let stops = STOPS.get_or_init(|| names(FAILPOINT_STOP_ENV));
    if stops.as_ref().is_some_and(|n| n.iter().any(|n| n == name)) {
        tracing::warn!(failpoint = name, "failpoint reached: stopping the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}
