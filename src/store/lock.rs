//! The store lock: one strata process per store. A second one waits a
//! little, then refuses with the holder's pid.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Result, StoreError};

/// Held for as long as the store is open.
pub struct StoreLock {
    _lock: Flock<File>,
}

impl StoreLock {
    /// Takes `<root>/lock`, waiting up to `wait` for another process to let go.
    pub fn acquire(root: &Path, wait: Duration) -> Result<Self> {
        let path = root.join("lock");
        let started = Instant::now();
        let mut told = false;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| StoreError::io("open", &path, e))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    let _ = lock.set_len(0);
                    let _ = lock.rewind();
                    let _ = write!(lock, "{}", std::process::id());
                    return Ok(Self { _lock: lock });
                }
                Err((mut file, _)) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = match holder.trim() {
                        "" => String::new(),
                        pid => format!(" (pid {pid})"),
                    };
                    if started.elapsed() >= wait {
                        return Err(StoreError::Locked {
                            root: root.to_path_buf(),
                            holder,
                        });
                    }
                    if !told {
                        eprintln!("waiting for the store lock on {} held by another strata process{holder}", root.display());
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
