//! A rig: one driver on its own freshly made backing filesystem, a metadata
//! database of its own, and helpers that build images directly through the
//! [`Snapshotter`] (prepare, write files, commit; no tar involved).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::snapshotter::{Snapshots, Snapshotter};
use anyhow::Context;
use serde::Serialize;
use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::scratch::{LoopFs, ScratchDir};
use strata_driver_api::{Driver, Labels, Mount, SnapshotKey};

use super::{Result, GIB};
use crate::drivers::{kernel_has_fs, open_driver, DRIVER_NAMES};

/// Apparent size of each loop-backed filesystem (sparse: only what is
/// written takes space).
pub const LOOP_SIZE: u64 = 24 * GIB;

/// The filesystem a driver's home (and the volume it is compared with) lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// A directory on the filesystem of the work dir.
    Host,
    /// A fresh loop-mounted btrfs.
    Btrfs,
    /// A fresh loop-mounted xfs with `reflink=1`.
    Xfs,
}

impl Backing {
    /// Short name used in labels and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Backing::Host => "host",
            Backing::Btrfs => "btrfs",
            Backing::Xfs => "xfs",
        }
    }

    /// Why this backing cannot be made here, if it cannot.
    pub fn unavailable(self) -> Option<String> {
        match self {
            Backing::Host => None,
            Backing::Btrfs if !kernel_has_fs("btrfs") => Some("the kernel has no btrfs".into()),
            Backing::Xfs if !kernel_has_fs("xfs") => Some("the kernel has no xfs".into()),
            _ => None,
        }
    }

    /// Makes a fresh filesystem of this kind under the default work dir.
    pub fn make(self, tag: &str) -> Result<BackingFs> {
        self.make_in(&super::workdir::default_work_dir(None), tag)
    }

    /// Makes a fresh filesystem of this kind; its loop file, mount point
    /// and host-side scratch space go under `work_dir`.
    pub fn make_in(self, work_dir: &Path, tag: &str) -> Result<BackingFs> {
        if let Some(reason) = self.unavailable() {
            anyhow::bail!(reason);
        }
        std::fs::create_dir_all(work_dir)
            .with_context(|| format!("mkdir {}", work_dir.display()))?;
        let (fs, mkfs): (Option<LoopFs>, &[&str]) = match self {
            Backing::Host => (None, &[]),
            Backing::Btrfs => (
                Some(LoopFs::new_in(work_dir, "btrfs", LOOP_SIZE, &[])?),
                &[],
            ),
            Backing::Xfs => (
                Some(LoopFs::new_in(
                    work_dir,
                    "xfs",
                    LOOP_SIZE,
                    &["-m", "reflink=1"],
                )?),
                &["-m", "reflink=1"],
            ),
        };
        let scratch = ScratchDir::new_in(work_dir, &format!("bench-{tag}"));
        let path = fs
            .as_ref()
            .map_or_else(|| scratch.path().join("data"), |f| f.path().to_path_buf());
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        let info = BackingInfo {
            kind: self,
            fstype: fs_type_name(&path),
            mkfs_args: mkfs.iter().map(|s| s.to_string()).collect(),
            loop_size: fs.as_ref().map(|_| LOOP_SIZE),
        };
        Ok(BackingFs {
            path,
            info,
            _fs: fs,
            scratch,
        })
    }
}

/// What a backing filesystem is, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct BackingInfo {
    /// The kind asked for.
    pub kind: Backing,
    /// The filesystem type found at the path (`ext4`, `xfs`, `btrfs`, ...).
    pub fstype: String,
    /// Extra mkfs arguments.
    pub mkfs_args: Vec<String>,
    /// Apparent size of the loop file, if loop-backed.
    pub loop_size: Option<u64>,
}

/// A backing filesystem made for one rig; dropping it unmounts and deletes it.
pub struct BackingFs {
    /// Directory on the backing filesystem that the rig may use.
    pub path: PathBuf,
    /// Its description.
    pub info: BackingInfo,
    _fs: Option<LoopFs>,
    /// Host-side scratch space (mount points, metadata database).
    pub scratch: ScratchDir,
}

/// Name of the filesystem type of `path`, `unknown` when statfs fails.
pub fn fs_type_name(path: &Path) -> String {
    strata_driver_api::fs_type_name(path).unwrap_or_else(|_| "unknown".into())
}

/// One column of the comparison: a driver with its backing and options.
#[derive(Debug, Clone, Serialize)]
pub struct BenchTarget {
    /// Name in the report (`overlay2-xfs` for overlay2 on a reflink xfs).
    pub label: String,
    /// Driver name in the registry.
    pub driver: String,
    /// Where its home lives.
    pub backing: Backing,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Where its loop files and scratch filesystems go (`strata bench --work-dir`).
    #[serde(skip)]
    pub work_dir: PathBuf,
}

impl BenchTarget {
    fn new(label: &str, driver: &str, backing: Backing, options: &[(&str, &str)]) -> Self {
        Self {
            label: label.into(),
            driver: driver.into(),
            backing,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            work_dir: super::workdir::default_work_dir(None),
        }
    }

    /// Why this target cannot run on this host, known before trying to open it.
    pub fn unavailable(&self) -> Option<String> {
        if self.driver == "devmapper" && !Path::new("/dev/mapper/control").exists() {
            return Some("no /dev/mapper/control: the kernel has no device-mapper".into());
        }
        if self.driver == "overlay2" && !kernel_has_fs("overlay") {
            return Some("the kernel has no overlayfs".into());
        }
        self.backing.unavailable()
    }
}

/// Every target: each registered driver on the backing that suits it, plus
/// overlay2 on a reflink xfs beside overlay2 on the host filesystem. A
/// driver added to the registry joins with a host-directory home and
/// default options.
pub fn all_targets() -> Vec<BenchTarget> {
    let mut out = Vec::new();
    for &name in DRIVER_NAMES {
        match name {
            "btrfs" => out.push(BenchTarget::new("btrfs", name, Backing::Btrfs, &[])),
            "blockfile" => out.push(BenchTarget::new(
                "blockfile",
                name,
                Backing::Xfs,
                &[("blockfile.size", "4G")],
            )),
            "overlay2" => {
                out.push(BenchTarget::new("overlay2", name, Backing::Host, &[]));
                out.push(BenchTarget::new("overlay2-xfs", name, Backing::Xfs, &[]));
            }
            other => out.push(BenchTarget::new(other, other, Backing::Host, &[])),
        }
    }
    out
}

/// The targets whose label or driver name is in `wanted` (all when empty).
pub fn select_targets(wanted: &[String]) -> Vec<BenchTarget> {
    all_targets()
        .into_iter()
        .filter(|t| wanted.is_empty() || wanted.iter().any(|w| *w == t.label || *w == t.driver))
        .collect()
}

/// A driver on its own backing filesystem with its own snapshot store.
pub struct Rig {
    /// The snapshotter over the driver (dropped first, before the backing);
    /// shared so that a server can answer for it over a socket.
    pub snapshots: Arc<Snapshots<Box<dyn Driver>>>,
    /// What runs here.
    pub target: BenchTarget,
    /// The driver's status lines, for the report.
    pub status: Vec<(String, String)>,
    counter: AtomicU64,
    /// The filesystem under the driver's home.
    pub backing: BackingFs,
}

impl Rig {
    /// Makes the backing and opens the driver on it.
    pub fn new(target: &BenchTarget) -> Result<Self> {
        if let Some(reason) = target.unavailable() {
            anyhow::bail!(reason);
        }
        let backing = target.backing.make_in(&target.work_dir, &target.label)?;
        let home = backing.path.join(&target.driver);
        std::fs::create_dir_all(&home).with_context(|| format!("mkdir {}", home.display()))?;
        let driver = open_driver(&target.driver, &home, &target.options)
            .with_context(|| format!("opening driver {} on {}", target.driver, home.display()))?;
        let db = crate::db::Database::open(&backing.scratch.path().join("metadata.db"))?;
        let snapshots = Arc::new(Snapshots::open(driver, Arc::new(db))?);
        let status = snapshots.driver().status();
        Ok(Self {
            snapshots,
            target: target.clone(),
            status,
            counter: AtomicU64::new(0),
            backing,
        })
    }

    /// A key not used before in this rig.
    pub fn fresh_key(&self, prefix: &str) -> SnapshotKey {
        SnapshotKey(format!(
            "{prefix}-{}",
            self.counter.fetch_add(1, Ordering::SeqCst)
        ))
    }

    /// A fresh empty mount point on the host.
    fn fresh_mount_point(&self) -> Result<PathBuf> {
        let dir = self
            .backing
            .scratch
            .path()
            .join("mnt")
            .join(self.counter.fetch_add(1, Ordering::SeqCst).to_string());
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(dir)
    }

    /// Prepares a container on `parent` and mounts it.
    pub fn container(&self, parent: Option<&SnapshotKey>) -> Result<Container<'_>> {
        let key = self.fresh_key("c");
        let mounts = self.snapshots.prepare(&key, parent, Labels::new())?;
        let mut c = Container {
            rig: self,
            key,
            mount_point: None,
        };
        c.mount(&mounts)?;
        Ok(c)
    }

    /// Builds one layer on `parent`: prepare, mount, `fill` the root, sync,
    /// unmount, commit. Returns the committed name.
    pub fn layer(
        &self,
        parent: Option<&SnapshotKey>,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<SnapshotKey> {
        let c = self.container(parent)?;
        fill(c.root()?)?;
        let name = self.fresh_key("layer");
        c.commit(&name)?;
        Ok(name)
    }

    /// A one-layer image holding `/data`, a file of `size` bytes.
    pub fn file_image(&self, size: u64) -> Result<SnapshotKey> {
        let image = self.layer(None, |root| write_file(&root.join("data"), size))?;
        sync_fs(&self.backing.path)?;
        Ok(image)
    }

    /// A stack of `depth` layers: the bottom one holds `/bottom` (`bottom_size`
    /// bytes), each one above a small file of its own. Returns the top of
    /// each prefix: element `i` is the image of depth `i + 1`.
    pub fn layer_stack(
        &self,
        depth: usize,
        bottom_size: u64,
        mut tick: impl FnMut(),
    ) -> Result<Vec<SnapshotKey>> {
        let mut tops: Vec<SnapshotKey> = Vec::with_capacity(depth);
        for level in 0..depth {
            let top = self.layer(tops.last(), |root| {
                if level == 0 {
                    write_file(&root.join("bottom"), bottom_size)
                } else {
                    write_file(&root.join(format!("layer-{level}")), 4096)
                }
            })?;
            tops.push(top);
            tick();
        }
        sync_fs(&self.backing.path)?;
        Ok(tops)
    }
}

impl Drop for Rig {
    /// Removes every snapshot when the home is on the host filesystem (a
    /// loop-backed home disappears with its filesystem), then releases the driver.
    fn drop(&mut self) {
        if self.target.backing == Backing::Host {
            if let Ok(mut records) = self.snapshots.records() {
                records.sort_by_key(|(_, r)| std::cmp::Reverse(r.id));
                for (key, _) in records {
                    let _ = self.snapshots.remove(&key);
                }
            }
        }
        if let Err(e) = self.snapshots.driver().release() {
            eprintln!("bench: releasing driver {}: {e}", self.target.label);
        }
    }
}

/// An active snapshot of a rig, mounted; unmounted on drop, and removed
/// then when the rig's home is on the host filesystem.
pub struct Container<'a> {
    rig: &'a Rig,
    /// Its key.
    pub key: SnapshotKey,
    mount_point: Option<PathBuf>,
}

impl Container<'_> {
    fn mount(&mut self, mounts: &[Mount]) -> Result<()> {
        let target = self.rig.fresh_mount_point()?;
        mount_all(mounts, &target)
            .with_context(|| format!("mounting {} at {}", self.key, target.display()))?;
        self.mount_point = Some(target);
        Ok(())
    }

    /// The merged root, while mounted.
    pub fn root(&self) -> Result<&Path> {
        self.mount_point
            .as_deref()
            .context("container is not mounted")
    }

    /// Unmounts the merged root (idempotent).
    pub fn unmount(&mut self) -> Result<()> {
        if let Some(target) = self.mount_point.take() {
            unmount(&target)?;
            let _ = std::fs::remove_dir(&target);
        }
        Ok(())
    }

    /// Syncs, unmounts and commits the container as `name`.
    pub fn commit(mut self, name: &SnapshotKey) -> Result<()> {
        if let Some(root) = &self.mount_point {
            sync_fs(root)?;
        }
        self.unmount()?;
        let key = std::mem::take(&mut self.key.0).into();
        self.rig.snapshots.commit(name, &key, Labels::new())?;
        Ok(())
    }

    /// Syncs and unmounts; the snapshot stays and the caller owns its key.
    pub fn into_key(mut self) -> Result<SnapshotKey> {
        if let Some(root) = &self.mount_point {
            sync_fs(root)?;
        }
        self.unmount()?;
        Ok(std::mem::take(&mut self.key.0).into())
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("bench: unmounting {}: {e}", self.key);
        }
        // On a loop-backed home the snapshot is left for the filesystem to
        // take with it: removing it costs time unrelated to the sample (btrfs
        // waits for its cleaner to drop the subvolume before its qgroup goes).
        if !self.key.0.is_empty() && self.rig.target.backing == Backing::Host {
            if let Err(e) = self.rig.snapshots.remove(&self.key) {
                eprintln!("bench: removing {}: {e}", self.key);
            }
        }
    }
}

/// Flushes the filesystem holding `path` (syncfs).
pub fn sync_fs(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    nix::unistd::syncfs(&f).with_context(|| format!("syncfs {}", path.display()))?;
    Ok(())
}

/// One MiB of incompressible, non-zero bytes (xorshift), reused for every write.
pub fn pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..super::MIB / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect()
    })
}

/// Writes a file of `size` bytes of [`pattern`] data and fsyncs it.
pub fn write_file(path: &Path, size: u64) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let buf = pattern();
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])
            .with_context(|| format!("write {}", path.display()))?;
        left -= n as u64;
    }
    f.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    Ok(())
}
