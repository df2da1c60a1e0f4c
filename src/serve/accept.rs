//! Accepting connections without dying of them: an accept that fails for
//! lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) or because the peer
//! gave up (ECONNABORTED) is waited out and retried, so a burst of clients
//! over the file limit slows `strata serve` down instead of ending it; and
//! the soft file limit is raised to the hard one at start.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::time::Sleep;
use tokio_stream::Stream;

/// First wait after a failed accept; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// Longest wait between accept attempts while resources are short.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Connections of a listener as a stream for tonic, backing off on
/// transient accept errors instead of yielding them (tonic ends the server
/// on the first error it sees).
#[derive(Debug)]
pub struct Incoming {
    listener: UnixListener,
    backoff: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    /// Wraps `listener`.
    pub fn new(listener: UnixListener) -> Self {
        Self {
            listener,
            backoff: MIN_BACKOFF,
            sleep: None,
        }
    }
}

/// Whether an accept error says "not now" rather than "never".
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::EINTR
                | libc::EAGAIN
                | libc::EPROTO
        )
    )
}

impl Stream for Incoming {
    type Item = io::Result<UnixStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => self.sleep = None,
                }
            }
            match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, _))) => {
                    self.backoff = MIN_BACKOFF;
                    return Poll::Ready(Some(Ok(stream)));
                }
                Poll::Ready(Err(e)) if is_transient(&e) => {
                    let wait = self.backoff;
                    tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "accept failed; retrying");
                    self.backoff = (wait * 2).min(MAX_BACKOFF);
                    self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

/// Raises the soft limit on open files to the hard limit, so a server with
/// many clients is not held to a low default (often 1024). Returns the
/// (old, new) soft limit.
pub fn raise_nofile_limit() -> nix::Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, hard.max(soft)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_shortage_is_transient_other_errors_are_not() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ECONNABORTED,
        ] {
            assert!(
                is_transient(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK] {
            assert!(
                !is_transient(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }
}
