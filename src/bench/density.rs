//! Density: page cache taken when many containers of one image read the
//! same file. overlayfs reads the lower file itself, so every container
//! shares one cached copy; a block driver's containers each read their own
//! filesystem (btrfs snapshot, ext4 image), so each caches its own copy.
//!
//! Method: the containers are prepared and mounted, caches are dropped,
//! then one reader process per container (`cat FILE > /dev/null`) runs in
//! a fresh memory cgroup made for the measurement; the page cache charged
//! to that cgroup (`file` in cgroup v2's `memory.stat`, `cache` in v1's)
//! is the growth, divided by the file size. Unlike the host's `Cached`,
//! it is not moved by other processes; the host-wide `Cached - Shmem`
//! delta over the same span is recorded beside it, as it also counts page
//! cache the kernel charges to no cgroup of ours (a loop device reading
//! its backing file on cgroup v1).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use strata_driver_api::SnapshotKey;

use super::rig::Rig;
use super::workloads::drop_caches;
use super::Result;

/// Workload name of density series in the results.
pub const WORKLOAD: &str = "density";

/// What one measurement found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DensitySample {
    /// Page cache charged to the readers' cgroup (bytes).
    pub cgroup_bytes: u64,
    /// Change of the host's `Cached - Shmem` over the reads (bytes; may be
    /// negative when other processes free cache meanwhile).
    pub host_delta_bytes: i64,
}

/// A memory cgroup made for one measurement and removed on drop. Its name
/// (`strata-bench-density-PID`) says who made it, so a crash leaves
/// something recognisable.
pub struct MemCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemCgroup {
    /// Makes the cgroup under the memory controller's hierarchy (v2 when it
    /// offers the memory controller, else v1's `memory` hierarchy).
    pub fn new() -> Result<Self> {
        let v2_root = Path::new("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(v2_root.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
        let root = if v2 {
            v2_root.to_path_buf()
        } else {
            v2_root.join("memory")
        };
        if !root.join("memory.stat").exists() {
            bail!(
                "no memory cgroup controller at {} (cgroup v2 with memory enabled, or v1's memory hierarchy)",
                root.display()
            );
        }
        let dir = root.join(format!("strata-bench-density-{}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(Self { dir, v2 })
    }

    /// Runs `cat FILE > /dev/null` inside this cgroup and waits for it.
    pub fn read_file(&self, file: &Path) -> Result<()> {
        let procs = self.dir.join("cgroup.procs");
        let status = Command::new("sh")
            .args([
                "-c",
                "echo $$ > \"$1\" && exec cat -- \"$2\" > /dev/null",
                "sh",
            ])
            .arg(&procs)
            .arg(file)
            .status()
            .with_context(|| format!("running a reader of {}", file.display()))?;
        if !status.success() {
            bail!(
                "reading {} in {} failed: {status}",
                file.display(),
                self.dir.display()
            );
        }
        Ok(())
    }

    /// Page cache charged to this cgroup (bytes).
    pub fn file_bytes(&self) -> Result<u64> {
        let path = self.dir.join("memory.stat");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let field = if self.v2 { "file" } else { "cache" };
        stat_field(&text, field).with_context(|| format!("no {field} in {}", path.display()))
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("bench: removing cgroup {}: {e}", self.dir.display());
        }
    }
}

/// The value of `field` in a `memory.stat` text (`NAME VALUE` lines).
pub fn stat_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(' ')?;
        (name == field).then(|| value.trim().parse().ok())?
    })
}

/// `Cached - Shmem` from a `/proc/meminfo` text (bytes): page cache of
/// files, without tmpfs and shared memory.
pub fn file_cache_bytes(meminfo: &str) -> Option<u64> {
    let kib = |field: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some((kib("Cached")?.saturating_sub(kib("Shmem")?)) * 1024)
}

fn host_file_cache() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("read /proc/meminfo")?;
    file_cache_bytes(&text).context("no Cached or Shmem in /proc/meminfo")
}

/// Mounts `containers` containers of `image` (whose `/data` is the file)
/// and has each read `/data` once, cold; see the module comment.
pub fn measure(rig: &Rig, image: &SnapshotKey, containers: usize) -> Result<DensitySample> {
    let mounted = (0..containers)
        .map(|_| rig.container(Some(image)))
        .collect::<Result<Vec<_>>>()?;
    let cgroup = MemCgroup::new()?;
    drop_caches()?;
    let before = host_file_cache()?;
    for c in &mounted {
        cgroup.read_file(&c.root()?.join("data"))?;
    }
    let after = host_file_cache()?;
    let cgroup_bytes = cgroup.file_bytes()?;
    drop(mounted);
    Ok(DensitySample {
        cgroup_bytes,
        host_delta_bytes: after as i64 - before as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memory_stat_and_meminfo_fields() {
        let stat = "anon 4096\nfile 268435456\nkernel 0\nfile_mapped 0\n";
        assert_eq!(stat_field(stat, "file"), Some(268_435_456));
        assert_eq!(stat_field(stat, "cache"), None);
        let v1 = "cache 8192\nrss 0\ntotal_cache 16384\n";
        assert_eq!(stat_field(v1, "cache"), Some(8192));
        let meminfo = "MemTotal:       24684544 kB\nCached:          9000 kB\nSwapCached:      0 kB\nShmem:           1000 kB\n";
        assert_eq!(file_cache_bytes(meminfo), Some(8000 * 1024));
        assert_eq!(file_cache_bytes("Cached: 1 kB\n"), None);
    }
}
