//! Qgroups of deleted subvolumes still to destroy, in `<home>/pending-qgroups`
//! (one subvolume id a line).
//!
//! btrfs refuses to destroy `0/<id>` until its cleaner has dropped the
//! deleted subvolume, which takes a transaction commit or more, so `remove`
//! only records the ids (durably, before deleting) and a pass destroys them
//! later (the driver's reclaim thread runs passes in the background). A
//! SIGKILL at any point leaves the ids recorded or nothing to do.
//!
//! Every change of the file holds the flock on `<home>/pending-qgroups.lock`
//! (threads and processes alike; a background pass skips its turn rather
//! than wait for it), and `remove` deletes its subvolumes under that lock,
//! so a pass never sees a recorded id whose subvolume is about to be
//! deleted. An id whose subvolume is still linked was recorded by a
//! remove that died before deleting: the pass drops it, since the store
//! removes that snapshot again and records it again.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use strata_driver_api::{Error, IoContext, Result};

use crate::{quota, sys};

/// Name of the file under the home.
pub const PENDING_FILE: &str = "pending-qgroups";
/// Name of its lock file under the home.
const LOCK_FILE: &str = "pending-qgroups.lock";

/// What one [`Pending::pass`] did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Ids still pending.
    pub left: Vec<u64>,
    /// Ids dropped from the file (destroyed, or of live subvolumes).
    pub reclaimed: usize,
}

/// The pending-qgroups file of one filesystem.
#[derive(Debug, Clone)]
pub struct Pending {
    file: PathBuf,
    lock: PathBuf,
    fs_root: PathBuf,
}

impl Pending {
    /// The file in `home` for the filesystem at `fs_root`.
    pub fn new(home: &Path, fs_root: &Path) -> Self {
        Self {
            file: home.join(PENDING_FILE),
            lock: home.join(LOCK_FILE),
            fs_root: fs_root.to_owned(),
        }
    }

    /// The file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The recorded ids. Needs no lock: the file is replaced by a rename.
    pub fn ids(&self) -> Result<Vec<u64>> {
        match fs::read_to_string(&self.file) {
            Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("read", &self.file, e)),
        }
    }

    /// Records `ids` durably, then runs `delete` still holding the lock.
    pub fn record_then<T>(&self, ids: &[u64], delete: impl FnOnce() -> Result<T>) -> Result<T> {
        let _lock = self.hold(true)?;
        let mut all = self.ids()?;
        let before = all.len();
        for id in ids {
            if !all.contains(id) {
                all.push(*id);
            }
        }
        if all.len() != before {
            self.write(&all)?;
        }
        delete()
    }

    /// One attempt at each recorded id, after a commit that wakes btrfs'
    /// cleaner when `commit` (else relying on the commits of other work);
    /// never waits for the cleaner, nor (unless `wait_lock`) for the lock.
    pub fn pass(&self, wait_lock: bool, commit: bool) -> Result<Pass> {
        let ids = self.ids()?;
        if ids.is_empty() {
            return Ok(Pass::default());
        }
        let dir = sys::open_dir(&self.fs_root).ctx("open", &self.fs_root)?;
        if commit {
            sys::sync(&dir).ctx("commit the transaction of", &self.fs_root)?;
        }
        let Some(_lock) = self.hold(wait_lock)? else {
            return Ok(Pass {
                left: ids,
                reclaimed: 0,
            });
        };
        let ids = self.ids()?;
        let mut left = Vec::new();
        for &id in &ids {
            let linked = sys::subvolume_linked(&dir, id)
                .map_err(|e| Error::io("look up subvolume", self.subvolume(id), e))?;
            if !linked && !quota::try_destroy(&dir, &self.fs_root, id)? {
                left.push(id);
            }
        }
        if left != ids {
            self.write(&left)?;
        }
        Ok(Pass {
            reclaimed: ids.len() - left.len(),
            left,
        })
    }

    /// Passes until none is left or `deadline`; returns the ids left.
    pub fn finish(&self, deadline: Instant) -> Result<Vec<u64>> {
        until_none_left(deadline, || Ok(self.pass(true, true)?.left))
    }

    fn subvolume(&self, id: u64) -> PathBuf {
        self.fs_root.join(format!("<subvolume {id}>"))
    }

    /// The lock; `None` when busy and not `wait`ing.
    fn hold(&self, wait: bool) -> Result<Option<Flock<File>>> {
        let file = strata_driver_api::private::private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)
            .ctx("open", &self.lock)?;
        let arg = if wait {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockExclusiveNonblock
        };
        match Flock::lock(file, arg) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if !wait => Ok(None),
            Err((_, errno)) => Err(Error::errno("lock", &self.lock, errno)),
        }
    }

    /// Replaces the file by `ids` (temp, fsync, rename, fsync of the home),
    /// or removes it when `ids` is empty.
    fn write(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() {
            return match fs::remove_file(&self.file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io("remove", &self.file, e))
                }
                _ => Ok(()),
            };
        }
        let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
        let tmp = self.file.with_extension("tmp");
        let mut f = strata_driver_api::private::create_private_file(&tmp)?;
        f.write_all(text.as_bytes()).ctx("write", &tmp)?;
        f.sync_all().ctx("fsync", &tmp)?;
        fs::rename(&tmp, &self.file).ctx("rename", &self.file)?;
        let home = self.file.parent().unwrap_or(Path::new("."));
        File::open(home)
            .and_then(|d| d.sync_all())
            .ctx("fsync", home)
    }
}

/// Runs `pass` (which returns the ids still left) until it leaves none or
/// `deadline` passes, pausing 5 ms, then twice as long each time up to
/// 200 ms; returns the ids left by the last pass.
pub fn until_none_left(
    deadline: Instant,
    mut pass: impl FnMut() -> Result<Vec<u64>>,
) -> Result<Vec<u64>> {
    let mut pause = Duration::from_millis(5);
    loop {
        let left = pass()?;
        if left.is_empty() || Instant::now() >= deadline {
            return Ok(left);
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
