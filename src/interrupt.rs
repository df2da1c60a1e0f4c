//! Stopping a command at its next safe point after SIGINT, SIGTERM or SIGHUP.
//!
//! [`install`] registers signal handlers that only set a process-wide flag
//! (and remember which signal it was); a second signal ends the process at
//! once with `128 + signal`. Long operations call [`check`] at their safe
//! points (between layers, per tar entry, per file of a walk, between the
//! steps of create/mount/commit/rm/rmi) and wrap their streams in
//! [`Reader`] and [`Writer`], which check per chunk. A positive check
//! returns [`Interrupted`], which flows through the operations' ordinary
//! rollback paths; each rollback adds what it undid
//! ([`crate::StoreError::undone`]), and the CLI turns the result into one
//! line on stderr and the exit status [`Interrupted::exit_code`].
//!
//! Without [`install`] (the library used from another program, `strata
//! serve`, tests) nothing ever sets the flag and every check passes.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

/// The signals that stop a command.
pub const SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

struct State {
    /// Set by the first signal.
    requested: Arc<AtomicBool>,
    /// Which signal, stored before `requested` is set.
    signal: Arc<AtomicUsize>,
}

static STATE: LazyLock<State> = LazyLock::new(|| State {
    requested: Arc::new(AtomicBool::new(false)),
    signal: Arc::new(AtomicUsize::new(0)),
});

/// Registers the handlers for [`SIGNALS`]: the first signal sets the flag,
/// a second one exits the process at once with `128 + signal`.
pub fn install() -> io::Result<()> {
    for sig in SIGNALS {
        // Handlers run in registration order: the shutdown fires only when
        // an earlier signal already set the flag.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, STATE.requested.clone())?;
        signal_hook::flag::register_usize(sig, STATE.signal.clone(), sig as usize)?;
        signal_hook::flag::register(sig, STATE.requested.clone())?;
    }
    Ok(())
}

/// The signal that asked this process to stop, if one did.
pub fn requested() -> Option<i32> {
    if STATE.requested.load(Ordering::SeqCst) {
        Some(STATE.signal.load(Ordering::SeqCst) as i32)
    } else {
        None
    }
}

/// Records a stop request as if `signal` had arrived (for callers that
/// learn of a stop some other way, and for tests).
pub fn request(signal: i32) {
    STATE.signal.store(signal as usize, Ordering::SeqCst);
    STATE.requested.store(true, Ordering::SeqCst);
}

/// A safe point: `Err` once a stop was requested.
pub fn check() -> Result<(), Interrupted> {
    match requested() {
        Some(signal) => Err(Interrupted::new(signal)),
        None => Ok(()),
    }
}

/// [`check`] as an `io::Error` carrying [`Interrupted`], for readers and
/// writers.
pub fn check_io() -> io::Result<()> {
    check().map_err(io::Error::other)
}

/// Whether an `io::Error` carries [`Interrupted`].
pub fn is_interrupted_io(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Interrupted>())
}

/// A signal stopped the operation at a safe point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}", signal_name(*.signal))]
pub struct Interrupted {
    /// The signal number.
    pub signal: i32,
    /// What the rollback paths undid, innermost first, for the one line
    /// the CLI prints.
    pub undone: Vec<String>,
}

impl Interrupted {
    /// An interruption by `signal` with nothing undone yet.
    pub fn new(signal: i32) -> Self {
        Self {
            signal,
            undone: Vec::new(),
        }
    }

    /// The conventional exit status: `128 + signal` (130 for SIGINT).
    pub fn exit_code(&self) -> i32 {
        128 + self.signal
    }
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// A reader that fails with [`Interrupted`] at the first read after a stop
/// request (a blocking read returns first, then the next one fails).
pub struct Reader<R>(pub R);

impl<R: Read> Read for Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        check_io()?;
        self.0.read(buf)
    }
}

/// A writer that fails with [`Interrupted`] at the first write after a stop
/// request.
pub struct Writer<W>(pub W);

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        check_io()?;
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(Interrupted::new(libc::SIGINT).exit_code(), 130);
        assert_eq!(Interrupted::new(libc::SIGTERM).exit_code(), 143);
        assert_eq!(Interrupted::new(libc::SIGHUP).exit_code(), 129);
        assert_eq!(
            Interrupted::new(libc::SIGINT).to_string(),
            "interrupted by SIGINT"
        );
    }

    #[test]
    fn io_errors_carry_the_interruption() {
        let e = io::Error::other(Interrupted::new(libc::SIGTERM));
        assert!(is_interrupted_io(&e));
        assert!(!is_interrupted_io(&io::Error::other("disk on fire")));
    }
}
