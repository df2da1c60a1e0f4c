//! `strata init`, and opening a store that must already exist.
//!
//! Every verb but `init` (and `bench`, which makes stores of its own) opens
//! the store with [`open_existing`], which creates nothing on a root without
//! a store. [`init`] creates one; when that fails (an unknown driver, a bad
//! option, mkfs failing) it removes everything it made: new entries under
//! the root, the root itself and any parent directory it had to create,
//! after unmounting what is mounted beneath them and detaching loop devices
//! backed by files in them.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use strata_driver_api::mount::{detach_loop, loops_backed_by, unmount_below};

use crate::error::{Result, StoreError};
use crate::store::StoreConfig;
use crate::Store;

/// Opens the store at `root`, failing with [`StoreError::NotInitialized`]
/// (and creating nothing) when there is none. `driver` other than `auto`
/// must match the driver the store was created with.
pub fn open_existing(root: &Path, driver: &str) -> Result<Store> {
    let config =
        StoreConfig::load(root)?.ok_or_else(|| StoreError::NotInitialized(root.to_path_buf()))?;
    if driver != "auto" && driver != config.driver {
        return Err(StoreError::DriverMismatch {
            root: root.to_path_buf(),
            existing: config.driver,
        });
    }
    Store::open(root)
}

/// What existed before `init` touched anything.
struct Before {
    /// The topmost directory `init` will create (the root or an ancestor),
    /// if any.
    created_top: Option<PathBuf>,
    /// Names in the root before, when it existed.
    entries: HashSet<OsString>,
    /// Whether a store was there already (then nothing is ever removed).
    had_store: bool,
}

impl Before {
    fn look(root: &Path) -> Result<Self> {
        let mut created_top = None;
        let mut dir = Some(root);
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if d.exists() {
                break;
            }
            created_top = Some(d.to_path_buf());
            dir = d.parent();
        }
        let mut entries = HashSet::new();
        if created_top.is_none() {
            let rd =
                std::fs::read_dir(root).map_err(|e| StoreError::io("read directory", root, e))?;
            for e in rd {
                let e = e.map_err(|e| StoreError::io("read directory", root, e))?;
                entries.insert(e.file_name());
            }
        }
        let had_store = StoreConfig::load(root)?.is_some();
        let foreign: Vec<String> = entries
            .iter()
            .filter(|n| n.as_os_str() != "lost+found")
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        if !had_store && !foreign.is_empty() {
            // A store makes its root root-only and owns everything in it:
            // never take over a directory that holds something else.
            return Err(StoreError::Invalid(format!(
                "{} is not empty ({} and {} more) and holds no Strata store: give init a new or empty directory",
                root.display(),
                foreign[0],
                foreign.len() - 1
            )));
        }
        Ok(Self {
            created_top,
            had_store,
            entries,
        })
    }

    /// Removes what a failed init made under `root`, unless a store is
    /// there now (another process's `init` won the race: its store stays).
    fn clean_up(&self, root: &Path) {
        if self.had_store || matches!(StoreConfig::load(root), Ok(Some(_)) | Err(_)) {
            return;
        }
        let made: Vec<PathBuf> = match &self.created_top {
            Some(top) => vec![top.clone()],
            None => match std::fs::read_dir(root) {
                Ok(rd) => rd
                    .flatten()
                    .filter(|e| !self.entries.contains(&e.file_name()))
                    .map(|e| e.path())
                    .collect(),
                Err(_) => Vec::new(),
            },
        };
        for path in made {
            if let Err(e) = unmount_below(&path) {
                tracing::warn!(path = %path.display(), error = %e, "unmounting after a failed init");
            }
            for file in files_below(&path) {
                for dev in loops_backed_by(&file) {
                    if let Err(e) = detach_loop(&dev) {
                        tracing::warn!(dev = %dev.display(), error = %e, "detaching after a failed init");
                    }
                }
            }
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed {
                tracing::warn!(path = %path.display(), error = %e, "removing after a failed init");
            }
        }
    }
}

/// Regular files at or below `path` (not following symlinks or crossing
/// into mounts, which are gone by then).
fn files_below(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_file() {
            out.push(p);
        } else if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                todo.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    out
}

/// Creates a store at `root` with `driver` (`auto` picks one), or opens the
/// existing one if it already uses that driver. On failure everything it
/// created is removed again.
pub fn init(root: &Path, driver: &str, options: BTreeMap<String, String>) -> Result<Store> {
    let before = Before::look(root)?;
    crate::interrupt::check()?;
    // Once the store exists, finishing is shorter than undoing: no check
    // after this point.
    Store::init(root, driver, options).map_err(|e| {
        if before.had_store {
            return e;
        }
        before.clean_up(root);
        e.undone(format!("nothing left at {}", root.display()))
    })
}
