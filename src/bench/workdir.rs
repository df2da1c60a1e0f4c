//! Where `strata bench` puts its loop files and scratch filesystems: a work
//! dir under the store root (`<root>/bench-work`) when the root exists, else
//! `/var/tmp/strata-bench`; never `/tmp`, which is often a small tmpfs.

use std::path::{Path, PathBuf};

use strata_driver_api::scratch::ScratchDir;

use super::plan::Plan;
use super::{human_bytes, GIB};

/// The work dir used when the root does not exist (or none is given).
pub const FALLBACK_WORK_DIR: &str = "/var/tmp/strata-bench";

/// Environment variable naming the work dir when `--work-dir` is not given
/// (criterion benches have no flags; the VM's bench run points it at its
/// scratch disk).
pub const WORK_DIR_ENV: &str = "STRATA_BENCH_WORK_DIR";

/// [`WORK_DIR_ENV`] when set, else `<store_root>/bench-work` when
/// `store_root` is a directory, else [`FALLBACK_WORK_DIR`].
pub fn default_work_dir(store_root: Option<&Path>) -> PathBuf {
    if let Some(dir) = std::env::var_os(WORK_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match store_root {
        Some(root) if root.is_dir() => root.join("bench-work"),
        _ => PathBuf::from(FALLBACK_WORK_DIR),
    }
}

/// Drivers whose every layer is a full copy of its parent: their layer
/// stack holds the bottom file once per layer.
pub const WHOLE_COPY_DRIVERS: &[&str] = &["vfs"];

/// Bytes a run of `plan` over `drivers` writes at most at one time: each
/// rig lives alone, holding every image once and a full copy of each (vfs
/// copies an image per container; overlay2 copies the file up), the layer
/// stack's bottom file (once per layer for [`WHOLE_COPY_DRIVERS`]), and a
/// GiB for filesystem metadata, the usage workload and slack. Loop files
/// are sparse, so their apparent size does not count.
pub fn space_needed<'a>(plan: &Plan, drivers: impl IntoIterator<Item = &'a str>) -> u64 {
    let sizes = plan.all_image_sizes();
    let whole_copies = drivers.into_iter().any(|d| WHOLE_COPY_DRIVERS.contains(&d));
    let copies = if whole_copies {
        plan.max_depth() as u64
    } else {
        1
    };
    // The density step's image, plus one copy per container on vfs.
    let density_copies = if whole_copies {
        1 + plan.density_containers as u64
    } else {
        1
    };
    2 * sizes.iter().sum::<u64>()
        + copies * plan.read_size
        + density_copies * plan.density_file_size
        + GIB
}

/// Errors of preparing the work dir.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    /// The directory could not be made or inspected.
    #[error("bench work dir {path}: {source}")]
    Io {
        /// The work dir.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Not enough free space for the plan.
    #[error(
        "bench work dir {path}: {free} free, the {plan} plan needs about {needed} \
         (choose another with --work-dir)"
    )]
    NoSpace {
        /// The work dir.
        path: PathBuf,
        /// Free bytes (for an unprivileged user, as statvfs reports).
        free: String,
        /// What the plan needs.
        needed: String,
        /// The plan's name.
        plan: &'static str,
    },
    /// The work dir lies on a tmpfs (under /tmp or elsewhere).
    #[error("bench work dir {path} is on tmpfs: loop files there take memory; choose a disk-backed dir with --work-dir")]
    Tmpfs {
        /// The work dir.
        path: PathBuf,
    },
}

/// The work dir of one run: made if missing, checked for space; removed on
/// drop if it is empty then and this run made it (rigs remove what they
/// put in it as they go, on error and on interruption too).
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    made: bool,
}

impl WorkDir {
    /// Makes `path` if needed and checks it has room for `plan` over `drivers`.
    pub fn prepare<'a>(
        path: &Path,
        plan: &Plan,
        drivers: impl IntoIterator<Item = &'a str>,
    ) -> std::result::Result<Self, WorkDirError> {
        let io = |source| WorkDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        let made = !path.exists();
        std::fs::create_dir_all(path).map_err(io)?;
        let dir = Self {
            path: path.to_path_buf(),
            made,
        };
        for stale in remove_stale(path, |pid| {
            Path::new("/proc").join(pid.to_string()).exists()
        }) {
            eprintln!(
                "bench: removed {} (left by a run that was killed)",
                stale.display()
            );
        }
        if strata_driver_api::fs_type_name(path).is_ok_and(|t| t == "tmpfs") {
            return Err(WorkDirError::Tmpfs {
                path: dir.path.clone(),
            });
        }
        let st = nix::sys::statvfs::statvfs(path).map_err(|e| io(e.into()))?;
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        let needed = space_needed(plan, drivers);
        if free < needed {
            return Err(WorkDirError::NoSpace {
                path: dir.path.clone(),
                free: human_round(free),
                needed: human_round(needed),
                plan: plan.name,
            });
        }
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.made {
            // Only when empty: anything left is worth a look.
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// Removes the scratch dirs in `work_dir` whose owner process is not
/// `alive` (a run killed by SIGKILL or a second Ctrl-C): their mounts,
/// loop devices and device-mapper devices first, container mounts before
/// the loop filesystems under them. Returns what was removed.
pub fn remove_stale(work_dir: &Path, alive: impl Fn(u32) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return Vec::new();
    };
    let mut stale: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            ScratchDir::owner_pid(&e.file_name().to_string_lossy()).is_some_and(|pid| !alive(pid))
        })
        .map(|e| e.path())
        .collect();
    // Loop filesystems last: the container mounts of the other dirs sit on them.
    stale.sort_by_key(|p| p.to_string_lossy().contains("strata-test-loopfs-"));
    for p in &stale {
        drop(ScratchDir::adopt(p.clone()));
    }
    stale
}

/// A byte count rounded to a tenth of a GiB (or whole MiB below one GiB).
fn human_round(n: u64) -> String {
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else {
        human_bytes(n / super::MIB * super::MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_under_an_existing_root_else_var_tmp() {
        let root = tempfile::tempdir_in("/var/tmp").unwrap();
        assert_eq!(
            default_work_dir(Some(root.path())),
            root.path().join("bench-work")
        );
        let missing = root.path().join("missing");
        assert_eq!(
            default_work_dir(Some(&missing)),
            PathBuf::from(FALLBACK_WORK_DIR)
        );
        assert_eq!(default_work_dir(None), PathBuf::from(FALLBACK_WORK_DIR));
    }

    #[test]
    fn space_needed_counts_each_image_size_once() {
        let plan = Plan::quick();
        let needed = space_needed(&plan, ["btrfs"]);
        assert!(needed > 2 * GIB, "{needed}");
        let mut bigger = plan.clone();
        bigger.image_sizes.push(4 * GIB);
        assert_eq!(space_needed(&bigger, ["btrfs"]), needed + 8 * GIB);
    }

    #[test]
    fn space_needed_counts_a_whole_copy_stack_per_layer() {
        let plan = Plan::full();
        let layers = plan.max_depth() as u64 * plan.read_size;
        let containers = plan.density_containers as u64 * plan.density_file_size;
        assert_eq!(
            space_needed(&plan, ["btrfs", "vfs"]),
            space_needed(&plan, ["btrfs"]) - plan.read_size + layers + containers
        );
    }

    #[test]
    fn prepare_refuses_a_plan_bigger_than_the_disk_and_names_the_dir() {
        let base = tempfile::tempdir_in("/var/tmp").unwrap();
        let dir = base.path().join("work");
        let mut plan = Plan::quick();
        plan.image_sizes.push(1 << 60);
        let err = WorkDir::prepare(&dir, &plan, ["btrfs"])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains("needs about"), "{err}");
        assert!(!dir.exists(), "the dir it made is removed again");
    }

    #[test]
    fn a_killed_runs_loop_filesystem_is_removed() {
        const TEST: &str = "workdir::a_killed_runs_loop_filesystem_is_removed";
        if !strata_driver_api::testing::require_root(TEST) {
            return;
        }
        let base = tempfile::tempdir_in("/var/tmp").unwrap();
        let work = base.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let containers = ScratchDir::new_in(&work, "bench-containers");
        // As a SIGKILL leaves it: mounted, its loop device attached.
        std::mem::forget(
            strata_driver_api::scratch::LoopFs::new_in(&work, "ext4", 64 << 20, &[]).unwrap(),
        );
        assert!(!strata_driver_api::scratch::loops_below(&work).is_empty());
        let me = std::process::id();
        let removed = remove_stale(&work, |pid| pid != me);
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(strata_driver_api::scratch::loops_below(&work).is_empty());
        assert!(removed.iter().all(|p| !p.exists()), "{removed:?}");
        assert!(
            remove_stale(&work, |_| true).is_empty(),
            "live runs are left alone"
        );
        drop(containers);
    }

    #[test]
    fn prepare_makes_the_dir_and_removes_it_when_empty() {
        let base = tempfile::tempdir_in("/var/tmp").unwrap();
        let dir = base.path().join("work");
        let work = WorkDir::prepare(&dir, &Plan::quick(), ["btrfs"]).unwrap();
        assert!(dir.is_dir());
        drop(work);
        assert!(!dir.exists());
    }
}
