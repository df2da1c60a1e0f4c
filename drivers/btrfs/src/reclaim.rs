//! The background thread that destroys pending qgroups ([`Pending`]) once
//! btrfs' cleaner has dropped their subvolumes, so `remove` never waits for
//! it. A pass runs [`FIRST_DELAY`] after a remove (a burst of removes shares
//! one), again with doubling delays while qgroups are left, and at start for
//! leftovers of earlier processes. A pass commits a transaction (to wake
//! the cleaner) only after one that reclaimed nothing. Errors are logged and retried the same
//! way. The thread is stopped and joined by [`Reclaimer::stop`] or on drop.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strata_driver_api::{Error, Result};

use crate::pending::Pending;

/// Delay of the first pass after a remove.
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
/// Longest delay between passes while qgroups are left.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct State {
    stop: bool,
    /// When the next pass is due (none: sleep until poked).
    due: Option<Instant>,
    /// A remove happened since the last pass: start the delays again.
    fresh: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a pass due at `at` unless one is due sooner.
    fn schedule(&self, at: Instant, fresh: bool) {
        let mut s = self.lock();
        s.due = Some(s.due.map_or(at, |d| d.min(at)));
        s.fresh |= fresh;
        self.wake.notify_all();
    }
}

/// The reclaim thread of one driver.
#[derive(Debug)]
pub struct Reclaimer {
    pending: Pending,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reclaimer {
    /// A stopped reclaimer of `pending`; [`Reclaimer::start`] starts it.
    pub fn new(pending: Pending) -> Self {
        Self {
            pending,
            shared: Arc::default(),
            thread: Mutex::new(None),
        }
    }

    /// Starts the thread (unless running), with a pass at once.
    pub fn start(&self) -> Result<()> {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_some() {
            return Ok(());
        }
        *self.shared.lock() = State {
            due: Some(Instant::now()),
            ..State::default()
        };
        let (shared, pending) = (Arc::clone(&self.shared), self.pending.clone());
        let handle = std::thread::Builder::new()
            .name("btrfs-reclaim".into())
            .spawn(move || run(&shared, &pending))
            .map_err(|e| Error::io("start the reclaim thread for", self.pending.file(), e))?;
        *thread = Some(handle);
        Ok(())
    }

    /// Asks for a pass soon: a remove recorded qgroups.
    pub fn poke(&self) {
        self.shared.schedule(Instant::now() + FIRST_DELAY, true);
    }

    /// Stops the thread and waits for it (its pass in progress ends first).
    pub fn stop(&self) {
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            self.shared.lock().stop = true;
            self.shared.wake.notify_all();
            if handle.join().is_err() {
                tracing::error!("the btrfs reclaim thread panicked");
            }
        }
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until a pass is due; `false` when asked to stop.
fn wait_due(shared: &Shared, delay: &mut Duration) -> bool {
    let mut s = shared.lock();
    loop {
        if s.stop {
            return false;
        }
        match s.due {
            Some(due) if due <= Instant::now() => {
                s.due = None;
                if std::mem::take(&mut s.fresh) {
                    *delay = FIRST_DELAY;
                }
                return true;
            }
            Some(due) => {
                let timeout = due.saturating_duration_since(Instant::now());
                s = shared
                    .wake
                    .wait_timeout(s, timeout)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            None => s = shared.wake.wait(s).unwrap_or_else(|p| p.into_inner()),
        }
    }
}

fn run(shared: &Shared, pending: &Pending) {
    let mut delay = FIRST_DELAY;
    // Commit only when the last pass got nowhere: while the filesystem is
    // busy, other work commits often enough to wake the cleaner.
    let mut commit = false;
    while wait_due(shared, &mut delay) {
        let pass = pending.pass(false, commit);
        commit = !matches!(&pass, Ok(p) if p.reclaimed > 0);
        match pass.map(|p| p.left) {
            Ok(left) if left.is_empty() => delay = FIRST_DELAY,
            Ok(left) => {
                tracing::debug!(left = left.len(), "qgroups still wait for btrfs' cleaner");
                shared.schedule(Instant::now() + delay, false);
                delay = (delay * 2).min(MAX_DELAY);
            }
            Err(e) => {
                tracing::warn!(error = %e, "destroying qgroups of removed subvolumes; will retry");
                shared.schedule(Instant::now() + delay, false);
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}
