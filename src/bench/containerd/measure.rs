//! The timed rows of a pair. Both sides are [`Snapshotter`]s reached through
//! the same gRPC client; each sample is taken on one side, then on the
//! other (which side goes first alternates), so noise on the host hits both.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::{Labels, SnapshotKey};

use super::{RowResult, VsPlan};
use crate::bench::rig::{sync_fs, write_file};
use crate::bench::workloads::write_small_files;
use crate::bench::{human_bytes, Result};
use crate::snapshotter::Snapshotter;

/// Label that makes containerd's garbage collector keep a snapshot no lease
/// or image refers to; sent to both sides so the requests are the same.
const GC_ROOT: (&str, &str) = ("containerd.io/gc.root", "strata-bench");

/// One server of a pair as the rows see it.
pub struct Side<'a> {
    /// Its client.
    pub snapshotter: &'a dyn Snapshotter,
    /// Host directory for mount points.
    pub mounts: PathBuf,
    /// A filesystem path of its data, flushed before timing starts.
    pub data: PathBuf,
}

fn labels() -> Labels {
    Labels::from([(GC_ROOT.0.to_owned(), GC_ROOT.1.to_owned())])
}

fn key(name: String) -> SnapshotKey {
    SnapshotKey(name)
}

/// Milliseconds `f` took.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// A snapshot's mounts mounted on a fresh directory; unmounted on drop.
struct Mounted(PathBuf);

impl Mounted {
    fn new(side: &Side<'_>, snapshot: &SnapshotKey) -> Result<Self> {
        let mounts = side.snapshotter.mounts(snapshot)?;
        let dir = side.mounts.join(snapshot.0.replace('/', "_"));
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        mount_all(&mounts, &dir)
            .with_context(|| format!("mounting {snapshot} at {}", dir.display()))?;
        Ok(Self(dir))
    }

    fn root(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = sync_fs(&self.0).and_then(|()| Ok(unmount(&self.0)?)) {
            eprintln!("bench: unmounting {}: {e:#}", self.0.display());
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Prepares `active` on `parent`, lets `fill` write into its root, unmounts.
fn prepare_filled(
    side: &Side<'_>,
    active: &SnapshotKey,
    parent: Option<&SnapshotKey>,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    side.snapshotter.prepare(active, parent, labels())?;
    let mounted = Mounted::new(side, active)?;
    fill(mounted.root())
}

/// A committed layer `name` holding `/data`, a file of `size` bytes.
fn layer(side: &Side<'_>, name: &str, size: u64) -> Result<SnapshotKey> {
    let active = key(format!("{name}-active"));
    prepare_filled(side, &active, None, |root| {
        write_file(&root.join("data"), size)
    })?;
    let name = key(name.to_owned());
    side.snapshotter.commit(&name, &active, labels())?;
    Ok(name)
}

/// An active snapshot on `parent` holding `files` 100-byte files, 1,000 a directory.
fn many_files(side: &Side<'_>, parent: &SnapshotKey, files: usize) -> Result<SnapshotKey> {
    let active = key("usage".to_owned());
    prepare_filled(side, &active, Some(parent), |root| {
        write_small_files(root, files)
    })?;
    Ok(active)
}

/// `10,000`: a count with thousands separated.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs `sample(i, s, side)` (sample `i` on side number `s`) for every
/// sample on both sides, alternating which side goes first; returns each
/// side's figures for each of the `N` outputs.
fn interleave<const N: usize>(
    samples: usize,
    sides: &[Side<'_>; 2],
    mut sample: impl FnMut(usize, usize, &Side<'_>) -> Result<[f64; N]>,
) -> Result<[[Vec<f64>; 2]; N]> {
    let mut out: [[Vec<f64>; 2]; N] = std::array::from_fn(|_| [Vec::new(), Vec::new()]);
    for i in 0..samples {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for s in order {
            let figures = sample(i, s, &sides[s])?;
            for (row, v) in out.iter_mut().zip(figures) {
                row[s].push(v);
            }
        }
    }
    Ok(out)
}

/// Builds the fixtures on both sides, then measures every row; rows are
/// handed to `done` as they finish, so a failure keeps the earlier ones.
pub fn rows(plan: &VsPlan, sides: &[Side<'_>; 2], mut done: impl FnMut(RowResult)) -> Result<()> {
    let mut small = Vec::new();
    let mut large = Vec::new();
    let mut busy = Vec::new();
    for side in sides {
        small.push(layer(side, "parent-small", plan.small_parent)?);
        large.push(layer(side, "parent-large", plan.large_parent)?);
        busy.push(many_files(side, &small[small.len() - 1], plan.usage_files)?);
        sync_fs(&side.data)?;
    }
    let n = plan.samples;

    let [prepare] = interleave(n, sides, |i, s, side| {
        let parent = &small[s];
        let t = timed(|| {
            side.snapshotter
                .prepare(&key(format!("prepare-{i}")), Some(parent), labels())?;
            Ok(())
        })?;
        Ok([t])
    })?;
    let small_label = human_bytes(plan.small_parent);
    done(RowResult::new(
        "prepare",
        &format!("Prepare ({small_label} parent)"),
        prepare,
    ));

    let [prepare_large] = interleave(n, sides, |i, s, side| {
        let parent = &large[s];
        let t = timed(|| {
            side.snapshotter
                .prepare(&key(format!("prepare-large-{i}")), Some(parent), labels())?;
            Ok(())
        })?;
        Ok([t])
    })?;
    done(RowResult::new(
        "prepare_large",
        &format!("Prepare ({} parent)", human_bytes(plan.large_parent)),
        prepare_large,
    ));

    let [commit, remove] = interleave(n, sides, |i, s, side| {
        let active = key(format!("commit-{i}"));
        let parent = &small[s];
        prepare_filled(side, &active, Some(parent), |root| {
            write_file(&root.join("new-file"), plan.commit_file)
        })?;
        let name = key(format!("committed-{i}"));
        let c = timed(|| Ok(side.snapshotter.commit(&name, &active, labels())?))?;
        let r = timed(|| Ok(side.snapshotter.remove(&name)?))?;
        Ok([c, r])
    })?;
    done(RowResult::new(
        "commit",
        &format!(
            "Commit ({} written on a {small_label} parent)",
            human_bytes(plan.commit_file)
        ),
        commit,
    ));
    done(RowResult::new(
        "remove_committed",
        "Remove (committed)",
        remove,
    ));

    let [remove_active] = interleave(n, sides, |i, _, side| {
        let t = timed(|| Ok(side.snapshotter.remove(&key(format!("prepare-{i}")))?))?;
        Ok([t])
    })?;
    done(RowResult::new(
        "remove_active",
        "Remove (untouched active)",
        remove_active,
    ));

    let [usage] = interleave(n, sides, |_, s, side| {
        let t = timed(|| {
            side.snapshotter.usage(&busy[s])?;
            Ok(())
        })?;
        Ok([t])
    })?;
    done(RowResult::new(
        "usage",
        &format!("Usage ({} files)", thousands(plan.usage_files)),
        usage,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(0), "0");
    }
}
