//! Sessions: which process owns a half-done operation.
//!
//! Every process that opens a store starts a session: a file
//! `<dir>/<id>` it holds an exclusive `flock` on until it exits (the kernel
//! drops the lock when the process dies, however it dies). Intent records,
//! scratch snapshots and scratch directories carry the session id; another
//! process finishes or undoes them only when their session is dead, that is
//! when its lock can be taken. A pid could be reused; a lock cannot outlive
//! its holder.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use strata_driver_api::{Error, IoContext, Result};

/// Suffix of a session file whose lock is being taken.
const STARTING: &str = ".starting";

/// A live session of this process.
#[derive(Debug)]
pub struct Session {
    id: String,
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Session {
    /// Starts a session under `dir` (made if missing). The file is locked
    /// under a temporary name and only then renamed to its id, so no other
    /// process ever sees the id's file unlocked while its owner lives.
    pub fn begin(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).ctx("mkdir", dir)?;
        let id = format!("{}-{:08x}", std::process::id(), random_u32());
        let path = dir.join(&id);
        let starting = dir.join(format!("{id}{STARTING}"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&starting)
            .ctx("create session file", &starting)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| Error::errno("lock session file", &starting, errno))?;
        std::fs::rename(&starting, &path).ctx("rename session file", &path)?;
        Ok(Self {
            id,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The session id, recorded on everything this process has in flight.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether session `id` (under the same directory) is still running.
    pub fn is_alive(&self, id: &str) -> bool {
        id == self.id || is_alive(&self.dir, id)
    }

    /// Ids of the sessions whose process is gone, their files removed.
    /// A file still being set up (its temporary name) is left alone unless
    /// it is older than a minute: its process died before it got its id.
    pub fn reap_dead(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut dead = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(STARTING) {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 60);
                if stale {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            if name != self.id && !is_alive(&self.dir, &name) {
                let _ = std::fs::remove_file(entry.path());
                dead.push(name);
            }
        }
        dead
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(&self.id));
    }
}

/// Whether the process of session `id` under `dir` still holds its lock.
/// A session whose file is gone ended (or never existed).
pub fn is_alive(dir: &Path, id: &str) -> bool {
    if id.is_empty() || id.contains('/') {
        return false;
    }
    let Ok(file) = File::open(dir.join(id)) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_released_on_drop) => false,
        Err(_) => true,
    }
}

fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    u32::from_ne_bytes(buf) ^ (strata_driver_api::now_ns() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_alive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = Session::begin(dir.path()).unwrap();
        let b = Session::begin(dir.path()).unwrap();
        assert!(b.is_alive(a.id()));
        let id = a.id().to_owned();
        drop(a);
        assert!(!b.is_alive(&id));
        assert!(!b.is_alive("no-such-session"));
        assert!(b.reap_dead().is_empty());
    }
}
