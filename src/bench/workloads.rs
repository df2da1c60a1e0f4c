//! One sample of each workload. Setup happens outside the timed region;
//! every function returns what it measured and leaves the rig as it found
//! it (containers made for a sample are removed).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::snapshotter::Snapshotter;
use anyhow::Context;
use serde::Serialize;
use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::{Labels, Mount, SnapshotKey};

use super::rig::{pattern, sync_fs, write_file, Rig};
use super::Result;

/// Nanoseconds since `t`.
fn ns_since(t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64
}

/// One copy-up (or volume) sample.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WriteSample {
    /// `open(O_WRONLY)` of the existing file (overlayfs copies up here).
    pub open_ns: f64,
    /// The first write plus fsync.
    pub write_ns: f64,
    /// `open_ns + write_ns`: the figure compared with the volume.
    pub total_ns: f64,
    /// A second write of the same size just after the first, plus fsync: steady state.
    pub second_ns: f64,
    /// The container's own bytes after the first write, and how they were
    /// counted (None for volumes).
    pub own_bytes: Option<OwnBytes>,
}

/// Bytes a container's copy of a file takes that nothing else shares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum OwnBytes {
    /// Bytes in the file's extents that FIEMAP does not flag shared
    /// (`FIEMAP_EXTENT_SHARED`): a reflinked or snapshotted copy counts
    /// only what was rewritten.
    Unshared(f64),
    /// Growth of the driver's usage accounting over the first write: used
    /// where the file lives in a filesystem image on a block device
    /// (blockfile, devmapper), whose extents say nothing about the backing,
    /// or where FIEMAP is not available.
    UsageDelta(f64),
}

/// Opens `path` for writing, writes `size` bytes at offset 0 and fsyncs (timed),
/// calls `between` (untimed), then writes `size` bytes at offset `size` and
/// fsyncs (timed).
fn timed_writes(
    path: &Path,
    size: u64,
    between: impl FnOnce() -> Result<()>,
) -> Result<WriteSample> {
    let buf = &pattern()[..size as usize];
    // Flush the filesystem under test, then the host filesystem holding
    // loop files: a loop device's flush writes back its whole backing file,
    // so leftover dirty data there would land in the timed fsync.
    sync_fs(path)?;
    sync_fs(&std::env::temp_dir())?;
    let t0 = Instant::now();
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    let open_ns = ns_since(t0);
    let t1 = Instant::now();
    f.write_all_at(buf, 0)
        .with_context(|| format!("write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    let write_ns = ns_since(t1);
    between()?;
    let t2 = Instant::now();
    f.write_all_at(buf, size)
        .with_context(|| format!("write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    let second_ns = ns_since(t2);
    Ok(WriteSample {
        open_ns,
        write_ns,
        total_ns: open_ns + write_ns,
        second_ns,
        own_bytes: None,
    })
}

/// Copy-up: in a fresh container on `image` (holding `/data`), open the
/// file for writing and write `write_size` bytes, then a second write.
pub fn copy_up(rig: &Rig, image: &SnapshotKey, write_size: u64) -> Result<WriteSample> {
    let c = rig.container(Some(image))?;
    let path = c.root()?.join("data");
    let in_image = in_block_image(&rig.snapshots.mounts(&c.key)?);
    let before = rig.snapshots.usage(&c.key)?.size as f64;
    let mut own = None;
    let mut sample = timed_writes(&path, write_size, || {
        let after = rig.snapshots.usage(&c.key)?.size as f64;
        own = Some(match unshared_bytes(&path, in_image)? {
            Some(n) => OwnBytes::Unshared(n as f64),
            None => OwnBytes::UsageDelta(after - before),
        });
        Ok(())
    })?;
    sample.own_bytes = own;
    drop(c);
    Ok(sample)
}

/// Whether a container with `mounts` is a filesystem image of its own: a
/// mount of an image file (blockfile) or of a device-mapper device
/// (devmapper). Bind, overlay and btrfs subvolume mounts are not: their
/// files' extents are on the backing filesystem itself.
pub fn in_block_image(mounts: &[Mount]) -> bool {
    mounts.iter().any(|m| {
        let source = Path::new(&m.source);
        let real = source
            .canonicalize()
            .unwrap_or_else(|_| source.to_path_buf());
        m.fstype != "bind"
            && (real.is_file() || real.starts_with("/dev/mapper") || real.starts_with("/dev/dm-"))
    })
}

/// Bytes of `path` in extents not shared with another file, by FIEMAP;
/// None when the file lives in a block device image (`in_image`) or when
/// the filesystem does not support FIEMAP.
pub fn unshared_bytes(path: &Path, in_image: bool) -> Result<Option<u64>> {
    if in_image {
        return Ok(None);
    }
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    match strata_driver_api::fiemap::fiemap(&f, true) {
        Ok(extents) => Ok(Some(
            extents.iter().filter(|e| !e.shared).map(|e| e.length).sum(),
        )),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("FIEMAP {}", path.display())),
    }
}

/// A plain directory on a backing filesystem, bind-mounted elsewhere as a
/// container volume would be, holding one file per size.
pub struct Volume {
    dir: PathBuf,
    mount_point: PathBuf,
}

impl Volume {
    /// Makes `dir` (on the backing) and bind-mounts it at `mount_point`.
    pub fn new(dir: &Path, mount_point: &Path) -> Result<Self> {
        for d in [dir, mount_point] {
            std::fs::create_dir_all(d).with_context(|| format!("mkdir {}", d.display()))?;
        }
        let spec = Mount {
            fstype: "bind".into(),
            source: dir.display().to_string(),
            options: vec!["rbind".into()],
        };
        mount_all(&[spec], mount_point)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            mount_point: mount_point.to_path_buf(),
        })
    }

    /// Writes the file of `size` bytes the samples overwrite; returns its
    /// path through the bind mount.
    pub fn file(&self, size: u64) -> Result<PathBuf> {
        let path = self.mount_point.join(format!("data-{size}"));
        if !path.exists() {
            write_file(&path, size)?;
            sync_fs(&path)?;
        }
        Ok(path)
    }

    /// One volume sample: the same writes as [`copy_up`] into `file`.
    pub fn write(&self, file: &Path, write_size: u64) -> Result<WriteSample> {
        timed_writes(file, write_size, || Ok(()))
    }

    /// The directory on the backing filesystem.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.mount_point) {
            eprintln!(
                "bench: unmounting volume {}: {e}",
                self.mount_point.display()
            );
        }
    }
}

/// Create latency: one `prepare` on `image` (the container is removed
/// afterwards, untimed, when the home is on the host filesystem).
pub fn create(rig: &Rig, image: &SnapshotKey) -> Result<f64> {
    let key = rig.fresh_key("create");
    let t = Instant::now();
    rig.snapshots.prepare(&key, Some(image), Labels::new())?;
    let ns = ns_since(t);
    if rig.target.backing == super::rig::Backing::Host {
        rig.snapshots.remove(&key)?;
    }
    Ok(ns)
}

/// Commit and remove latency: a container on `image` gets a 1 MiB file
/// (untimed); then its commit and the removal of the committed layer are timed.
pub fn commit_remove(rig: &Rig, image: &SnapshotKey) -> Result<(f64, f64)> {
    let c = rig.container(Some(image))?;
    write_file(&c.root()?.join("new-file"), super::MIB)?;
    let key = c.into_key()?;
    let name = rig.fresh_key("committed");
    let t = Instant::now();
    rig.snapshots.commit(&name, &key, Labels::new())?;
    let commit_ns = ns_since(t);
    let t = Instant::now();
    rig.snapshots.remove(&name)?;
    Ok((commit_ns, ns_since(t)))
}

/// Fills a fresh container on `image` with `files` small files for the usage workload.
pub fn usage_container<'r>(
    rig: &'r Rig,
    image: &SnapshotKey,
    files: usize,
) -> Result<super::rig::Container<'r>> {
    let c = rig.container(Some(image))?;
    let root = c.root()?.to_path_buf();
    write_small_files(&root, files)?;
    super::rig::sync_fs(&root)?;
    Ok(c)
}

/// Writes `files` 100-byte files under `root`, 1,000 a directory
/// (`dir-N/f-M`): the tree whose usage is timed.
pub fn write_small_files(root: &Path, files: usize) -> Result<()> {
    for dir in 0..files.div_ceil(1000) {
        let d = root.join(format!("dir-{dir}"));
        std::fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
        for i in 0..1000.min(files - dir * 1000) {
            std::fs::write(d.join(format!("f-{i}")), &pattern()[..100])
                .with_context(|| format!("write in {}", d.display()))?;
        }
    }
    Ok(())
}

/// Usage latency: one `usage` call on `key`.
pub fn usage(rig: &Rig, key: &SnapshotKey) -> Result<f64> {
    let t = Instant::now();
    rig.snapshots.usage(key)?;
    Ok(ns_since(t))
}

/// Drops the page cache (after a sync) so reads come from the device.
pub fn drop_caches() -> Result<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("writing /proc/sys/vm/drop_caches")
}

/// One cold sequential read.
#[derive(Debug, Clone, Copy)]
pub struct ReadSample {
    /// Bytes read.
    pub bytes: u64,
    /// Time taken.
    pub ns: f64,
}

impl ReadSample {
    /// Bytes per second.
    pub fn throughput(&self) -> f64 {
        self.bytes as f64 * 1e9 / self.ns.max(1.0)
    }
}

/// Reads `/bottom` in a fresh container on `image` sequentially in 1 MiB
/// blocks, after dropping caches.
pub fn read(rig: &Rig, image: &SnapshotKey) -> Result<ReadSample> {
    let c = rig.container(Some(image))?;
    let path = c.root()?.join("bottom");
    drop_caches()?;
    let t = Instant::now();
    let mut f = File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let mut buf = vec![0u8; super::MIB as usize];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let ns = ns_since(t);
    // The file first: an open file keeps the container's filesystem busy,
    // and a thin device under a lazily detached mount cannot be removed.
    drop(f);
    drop(c);
    Ok(ReadSample { bytes: total, ns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_driver_api::testing::{require_root, skip};

    fn mount(fstype: &str, source: &str) -> Mount {
        Mount {
            fstype: fstype.into(),
            source: source.into(),
            options: Vec::new(),
        }
    }

    #[test]
    fn image_files_and_dm_devices_are_block_images() {
        let image = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        let image = image.path().to_str().unwrap();
        assert!(in_block_image(&[mount("ext4", image)]));
        assert!(in_block_image(&[mount("xfs", "/dev/mapper/strata-thin-7")]));
        assert!(!in_block_image(&[mount("bind", image)]));
        assert!(!in_block_image(&[mount("overlay", "overlay")]));
        assert!(!in_block_image(&[mount("btrfs", "/dev/loop3")]));
    }

    /// A 1 MiB file reflinked on xfs, then 4 KiB of the clone rewritten:
    /// only that block is the clone's own (the old usage-growth figure
    /// would not tell a clone from a copy).
    #[test]
    fn unshared_bytes_count_only_rewritten_blocks_of_a_reflink() {
        const TEST: &str = "unshared_bytes_count_only_rewritten_blocks_of_a_reflink";
        if !require_root(TEST) {
            return;
        }
        if !crate::drivers::kernel_has_fs("xfs") {
            return skip(TEST, "the kernel has no xfs");
        }
        let work = tempfile::tempdir_in("/var/tmp").unwrap();
        let fs = strata_driver_api::scratch::LoopFs::new_in(
            work.path(),
            "xfs",
            super::super::GIB,
            &["-m", "reflink=1"],
        )
        .unwrap();
        let src = fs.path().join("src");
        super::super::rig::write_file(&src, super::super::MIB).unwrap();
        let dst = fs.path().join("dst");
        let clone = File::create(&dst).unwrap();
        strata_driver_api::reflink::clone_file(&File::open(&src).unwrap(), &clone).unwrap();
        assert_eq!(unshared_bytes(&dst, false).unwrap(), Some(0));
        clone.write_all_at(&pattern()[..4096], 0).unwrap();
        clone.sync_all().unwrap();
        assert_eq!(unshared_bytes(&dst, false).unwrap(), Some(4096));
        assert_eq!(
            unshared_bytes(&dst, true).unwrap(),
            None,
            "in an image: fall back"
        );
    }
}
