//! Deep stacks: mounting a container of an image of many layers, and
//! looking up a file that only the bottom layer holds, against a one-layer
//! image. Reuses the layer stack the create step builds
//! ([`super::rig::Rig::layer_stack`]; `/bottom` is in layer 1).
//!
//! The container is prepared untimed; then the mount of its mounts is
//! timed; caches are dropped; then the lookup is timed: `stat` of
//! `/bottom`, open, and a 4 KiB read. On overlayfs the cold lookup visits
//! every layer above the bottom one.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::{Labels, SnapshotKey};

use super::rig::{Backing, Rig};
use super::workloads::drop_caches;
use super::{Result, KIB};
use crate::snapshotter::Snapshotter;

/// Workload name of deep-stack series in the results.
pub const WORKLOAD: &str = "deep";

/// One sample.
#[derive(Debug, Clone, Copy)]
pub struct LookupSample {
    /// Mounting the container's root (ns).
    pub mount_ns: f64,
    /// Cold `stat` + open + 4 KiB read of `/bottom` (ns).
    pub lookup_ns: f64,
}

/// A prepared container mounted at a directory of its own; unmounted on
/// drop, and removed when the rig's home is on the host filesystem (as
/// [`super::rig::Container`] does).
struct Mounted<'a> {
    rig: &'a Rig,
    key: SnapshotKey,
    target: Option<PathBuf>,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            if let Err(e) = unmount(&target) {
                eprintln!("bench: unmounting {}: {e}", target.display());
            }
            let _ = std::fs::remove_dir(&target);
        }
        if self.rig.target.backing == Backing::Host {
            if let Err(e) = self.rig.snapshots.remove(&self.key) {
                eprintln!("bench: removing {}: {e}", self.key);
            }
        }
    }
}

/// One sample on a fresh container of `image`.
pub fn mount_and_lookup(rig: &Rig, image: &SnapshotKey) -> Result<LookupSample> {
    let key = rig.fresh_key("deep");
    let mounts = rig.snapshots.prepare(&key, Some(image), Labels::new())?;
    let mut c = Mounted {
        rig,
        key,
        target: None,
    };
    let target = rig.backing.scratch.path().join("deep-mnt").join(&c.key.0);
    std::fs::create_dir_all(&target).with_context(|| format!("mkdir {}", target.display()))?;
    let t = Instant::now();
    mount_all(&mounts, &target)
        .with_context(|| format!("mounting {} at {}", c.key, target.display()))?;
    let mount_ns = t.elapsed().as_nanos() as f64;
    c.target = Some(target.clone());
    drop_caches()?;
    let path = target.join("bottom");
    let mut buf = vec![0u8; 4 * KIB as usize];
    let t = Instant::now();
    std::fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
    File::open(&path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .with_context(|| format!("read {}", path.display()))?;
    let lookup_ns = t.elapsed().as_nanos() as f64;
    drop(c);
    Ok(LookupSample {
        mount_ns,
        lookup_ns,
    })
}
