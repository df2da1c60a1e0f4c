//! The interrupt loop, per driver (devmapper in the VM tier): SIGKILL at
//! every failpoint, then SIGINT and SIGKILL at random moments of import,
//! load, create, mount, umount, commit, save, export, rm, rmi, untag
//! (rmi of one of two tags), tag, rename, system prune and release. After each
//! signal, *ordinary commands first* (`images`, `ps`, then a container of
//! every image, mounted, must show the image's content): they finish or
//! undo what the interrupted process left. Then `check --data`, `check
//! --repair`, and `check` must be clean, with no mount, loop device,
//! snapshot, scratch file or partial output left. After every step no file
//! is attached to two loop devices; every 20 steps a loop-backed btrfs is
//! released and `btrfs check --readonly` must pass.
//!
//! `STRATA_CRASH_KILLS=N` and `STRATA_CRASH_INTERRUPTS=N` set the SIGKILLs
//! and SIGINTs that must land per driver (default 20 each), spread over
//! `STRATA_CRASH_SHARDS` stores worked on at once (default 1).
//! `STRATA_CRASH_SEED` replays a run.

mod common;
mod reliability;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use reliability::*;
use strata_driver_api::testing::require_root;

/// The operations a kill lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Import,
    Create,
    Mount,
    Umount,
    Rm,
    RmMounted,
    Rmi,
    Untag,
    Commit,
    Load,
    Save,
    Export,
    Tag,
    Rename,
    Prune,
    Release,
}

const OPS: &[Op] = &[
    Op::Save,
    Op::Export,
    Op::Import,
    Op::Create,
    Op::Mount,
    Op::Umount,
    Op::Rm,
    Op::RmMounted,
    Op::Rmi,
    Op::Untag,
    Op::Commit,
    Op::Load,
    Op::Tag,
    Op::Rename,
    Op::Prune,
    Op::Release,
];

/// Every failpoint with an operation that reaches it.
const FAILPOINTS: &[(&str, Op)] = &[
    ("snapshots.create.recorded", Op::Import),
    ("snapshots.create.stored", Op::Import),
    ("layer.prepared", Op::Import),
    ("layer.applied", Op::Import),
    ("snapshots.commit.recorded", Op::Import),
    ("snapshots.commit.stored", Op::Import),
    ("layer.committed", Op::Import),
    ("import.layer_done", Op::Import),
    ("snapshots.create.recorded", Op::Create),
    ("snapshots.create.stored", Op::Create),
    ("container.create.prepared", Op::Create),
    ("container.mount.mounted", Op::Mount),
    ("container.umount.unmounted", Op::Umount),
    ("snapshots.remove.recorded", Op::Rm),
    ("snapshots.remove.stored", Op::Rm),
    ("container.rm.removed", Op::Rm),
    ("container.umount.unmounted", Op::RmMounted),
    ("container.rm.removed", Op::RmMounted),
    ("meta.rmi.tags_removed", Op::Rmi),
    ("image.rmi.deleted", Op::Rmi),
    ("snapshots.remove.recorded", Op::Rmi),
    ("snapshots.remove.stored", Op::Rmi),
    ("image.rmi.layer_removed", Op::Rmi),
    ("meta.untag.tag_removed", Op::Untag),
    ("snapshots.create.recorded", Op::Commit),
    ("layer.applied", Op::Commit),
    ("snapshots.commit.recorded", Op::Commit),
    ("layer.committed", Op::Commit),
    ("commit.layer_done", Op::Commit),
    ("layer.prepared", Op::Load),
    ("layer.applied", Op::Load),
    ("snapshots.commit.stored", Op::Load),
    ("layer.committed", Op::Load),
];

struct Harness {
    root: PathBuf,
    tars: PathBuf,
    /// Image reference -> the /etc/motd its containers must show.
    expected: BTreeMap<String, String>,
    serial: usize,
    rng: Rng,
    /// Typical duration of each op, for random kill times.
    durations: BTreeMap<&'static str, Duration>,
    kills: usize,
    interrupts: usize,
    completed: usize,
    /// Problems `check --data` found after the ordinary commands, by kind.
    found: BTreeMap<String, usize>,
    /// Problems repaired, by kind.
    repaired: BTreeMap<String, usize>,
    /// Where `save` and `export` write.
    outputs: PathBuf,
    steps: usize,
}

impl Harness {
    fn tar(&mut self) -> (PathBuf, String) {
        self.serial += 1;
        let motd = format!("image {}\n", self.serial);
        let path = self.tars.join(format!("img-{}.tar", self.serial));
        busybox_rootfs_tar(&path, &motd);
        (path, motd)
    }

    /// Sets up what `op` works on and returns its command plus the image
    /// reference it may add or remove.
    fn prepare(&mut self, op: Op) -> (std::process::Command, Option<(String, String)>) {
        let root = self.root.clone();
        let container = |h: &mut Self, mounted: bool| {
            let id = last_line(&strata_ok(&h.root, &["create", "base"]));
            if mounted {
                strata_ok(&h.root, &["mount", &id]);
            }
            id
        };
        match op {
            Op::Import => {
                let (tar, motd) = self.tar();
                let reference = format!("crash/img-{}:latest", self.serial);
                let cmd = command(&root, &["import", tar.to_str().unwrap(), &reference]);
                (cmd, Some((reference, motd)))
            }
            Op::Create => (command(&root, &["create", "base"]), None),
            Op::Mount => {
                let id = container(self, false);
                (command(&root, &["mount", &id]), None)
            }
            Op::Umount => {
                let id = container(self, true);
                (command(&root, &["umount", &id]), None)
            }
            Op::Rm => {
                let id = container(self, false);
                (command(&root, &["rm", &id]), None)
            }
            Op::RmMounted => {
                let id = container(self, true);
                (command(&root, &["rm", "--force", &id]), None)
            }
            Op::Rmi => {
                let (tar, motd) = self.tar();
                let reference = format!("crash/img-{}:latest", self.serial);
                strata_ok(&root, &["import", tar.to_str().unwrap(), &reference]);
                self.expected.insert(reference.clone(), motd.clone());
                (
                    command(&root, &["rmi", &reference]),
                    Some((reference, motd)),
                )
            }
            Op::Untag => {
                let (tar, motd) = self.tar();
                let reference = format!("crash/img-{}:latest", self.serial);
                let second = format!("crash/img-{}:second", self.serial);
                strata_ok(&root, &["import", tar.to_str().unwrap(), &reference]);
                strata_ok(&root, &["tag", &reference, &second]);
                self.expected.insert(reference, motd.clone());
                (command(&root, &["rmi", &second]), Some((second, motd)))
            }
            Op::Commit => {
                self.serial += 1;
                let motd = format!("committed {}\n", self.serial);
                let id = container(self, true);
                let path = self
                    .root
                    .join("containers")
                    .join(&id)
                    .join("rootfs/etc/motd");
                std::fs::write(path, &motd).unwrap();
                strata_ok(&root, &["umount", &id]);
                let reference = format!("crash/img-{}:latest", self.serial);
                (
                    command(&root, &["commit", &id, &reference]),
                    Some((reference, motd)),
                )
            }
            Op::Load => {
                let (tar, motd) = self.tar();
                let reference = format!("crash/img-{}:latest", self.serial);
                let archive = self.tars.join(format!("img-{}.oci.tar", self.serial));
                oci_archive(&tar, &reference, &archive);
                let cmd = command(&root, &["load", "-i", archive.to_str().unwrap()]);
                (cmd, Some((reference, motd)))
            }
            Op::Save => {
                let out = self.outputs.join("saved.tar");
                (
                    command(&root, &["save", "base", "-o", out.to_str().unwrap()]),
                    None,
                )
            }
            Op::Export => {
                let id = container(self, false);
                let out = self.outputs.join("exported.tar");
                (
                    command(&root, &["export", &id, "-o", out.to_str().unwrap()]),
                    None,
                )
            }
            Op::Tag => {
                self.serial += 1;
                let reference = format!("crash/tag-{}:latest", self.serial);
                let motd = self.expected["base:latest"].clone();
                (
                    command(&root, &["tag", "base", &reference]),
                    Some((reference, motd)),
                )
            }
            Op::Rename => {
                self.serial += 1;
                let id = container(self, false);
                let name = format!("renamed-{}", self.serial);
                (command(&root, &["rename", &id, &name]), None)
            }
            Op::Prune => {
                container(self, false);
                container(self, false);
                (command(&root, &["system", "prune"]), None)
            }
            Op::Release => (command(&root, &["release"]), None),
        }
    }

    /// No file under the store is attached to two loop devices.
    fn assert_attached_once(&self, what: &str) {
        let twice = files_attached_twice(&self.root);
        assert!(twice.is_empty(), "after {what}: attached twice: {twice:?}");
    }

    /// `save`/`export` left either their complete output or nothing.
    fn assert_no_partial_output(&self, what: &str) {
        let names: Vec<String> = std::fs::read_dir(&self.outputs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in &names {
            assert!(
                name == "saved.tar" || name == "exported.tar",
                "partial output {name} left after {what}"
            );
            std::fs::remove_file(self.outputs.join(name)).unwrap();
        }
    }

    /// Every 20 steps on a loop-backed btrfs store: release the backing
    /// and run `btrfs check --readonly` on its image.
    fn fsck_btrfs(&mut self, what: &str) {
        self.steps += 1;
        let image = self.root.join("btrfs/btrfs.img");
        if self.steps % 20 != 0 || !image.exists() {
            return;
        }
        strata_ok(&self.root, &["release"]);
        let out = std::process::Command::new("btrfs")
            .args(["check", "--readonly"])
            .arg(&image)
            .output()
            .expect("run btrfs check");
        assert!(
            out.status.success(),
            "btrfs check --readonly after {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The images present, by tag.
    fn present_images(&self) -> Vec<String> {
        image_tags(&self.root)
    }

    /// Every reference the op could have added or removed is either
    /// listed on its image and resolvable, or neither: a tag is never left
    /// pointing at a removed image, nor listed by an image it no longer
    /// names (`rmi` and untag each change the tags and the image in one
    /// transaction).
    fn assert_tags_whole(&self, present: &[String], what: &str) {
        for reference in self.expected.keys() {
            let listed = present.contains(reference);
            let resolves = strata(&self.root, &["history", reference]).status.success();
            assert_eq!(
                listed, resolves,
                "after {what}: tag {reference} listed by an image: {listed}, resolves: {resolves}"
            );
        }
    }

    /// Counts the findings of a `check --format json` report into `into`.
    fn count_findings(out: &str, into: &mut BTreeMap<String, usize>, repaired_only: bool) {
        let report: serde_json::Value = serde_json::from_str(out).expect("check json");
        for f in report["findings"].as_array().unwrap() {
            if !repaired_only || !f["repaired"].is_null() {
                *into
                    .entry(f["kind"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }

    /// Ordinary commands first, then the checks and the repair, then every
    /// invariant; returns to the base state (image `base` only, no container).
    fn recover(&mut self, what: &str, maybe: Option<(String, String)>) {
        self.assert_attached_once(what);
        if let Some((reference, motd)) = maybe {
            self.expected.insert(reference, motd);
        }
        json(&self.root, &["ps"]);
        let present = self.present_images();
        self.assert_tags_whole(&present, what);
        self.assert_attached_once(what);
        assert!(
            present.contains(&"base:latest".to_owned()),
            "image base lost after {what}: {present:?}"
        );
        for reference in &present {
            let motd = self
                .expected
                .get(reference)
                .unwrap_or_else(|| panic!("unexpected image {reference} after {what}"));
            let id = last_line(&strata_ok(&self.root, &["create", reference]));
            let path = last_line(&strata_ok(&self.root, &["mount", &id]));
            let seen =
                std::fs::read_to_string(Path::new(&path).join("etc/motd")).unwrap_or_default();
            assert_eq!(
                &seen, motd,
                "image {reference} shows the wrong content after {what}"
            );
            strata_ok(&self.root, &["rm", "--force", &id]);
        }
        // One pass finds (data included) and repairs: every finding counts as
        // found, the repaired ones also as repaired, and unrepaired damage
        // (a corrupted file among them) fails here.
        let (code, out) = check(&self.root, &["--data", "--repair", "--format", "json"]);
        Self::count_findings(&out, &mut self.found, false);
        // The ordinary commands undid a mount the dead process never
        // recorded: it marked its intent first.
        let report: serde_json::Value = serde_json::from_str(&out).expect("check json");
        let unrecorded: Vec<&serde_json::Value> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "unrecorded_mount")
            .collect();
        assert!(
            unrecorded.is_empty(),
            "ordinary commands after {what} left an unrecorded mount: {unrecorded:?}"
        );
        assert_eq!(
            code, 0,
            "check --data --repair after {what} left damage:\n{out}"
        );
        Self::count_findings(&out, &mut self.repaired, true);
        check_clean(
            &self.root,
            &[],
            &format!("check after repair of {what} is not clean"),
        );
        for c in json(&self.root, &["ps"]).as_array().unwrap() {
            strata_ok(&self.root, &["rm", "--force", c["id"].as_str().unwrap()]);
        }
        for reference in present.iter().filter(|r| *r != "base:latest") {
            strata_ok(&self.root, &["rmi", reference]);
        }
        self.expected.retain(|r, _| r == "base:latest");
        check_clean(
            &self.root,
            &[],
            &format!("check after cleanup of {what} is not clean"),
        );
        let containers = self.root.join("containers");
        assert_eq!(
            mounts_below(&containers),
            Vec::<String>::new(),
            "container mounts left after {what}"
        );
        let scratch: Vec<_> = std::fs::read_dir(self.root.join("tmp"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert_eq!(scratch, Vec::<PathBuf>::new(), "scratch left after {what}");
        self.assert_no_partial_output(what);
        self.assert_attached_once(what);
        self.fsck_btrfs(what);
    }

    fn note(&mut self, end: End, what: &str) {
        match end {
            End::Killed => self.kills += 1,
            e if e.interrupted() => self.interrupts += 1,
            End::Exited(0) => self.completed += 1,
            other => panic!("{what}: strata ended {other:?}"),
        }
    }

    /// Times each op once, unkilled (also proves each works).
    fn calibrate(&mut self) {
        for &op in OPS {
            let (mut cmd, maybe) = self.prepare(op);
            let started = Instant::now();
            let status = cmd
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run strata");
            assert!(status.success(), "{op:?} failed without a kill");
            self.durations.insert(name(op), started.elapsed());
            self.recover(&format!("an uninterrupted {op:?}"), maybe);
        }
    }
}

/// Writes a one-layer OCI archive of `layer` tagged `reference`.
fn oci_archive(layer: &Path, reference: &str, out: &Path) {
    use sha2::Digest as _;
    let bytes = std::fs::read(layer).unwrap();
    let diff_id = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "crash test"}],
    }))
    .unwrap();
    let image = strata::image::ImageToSave {
        tags: vec![reference.to_owned()],
        config,
        layers: vec![layer.to_path_buf()],
    };
    let opts = strata::image::SaveOptions {
        gzip: false,
        temp_dir: out.parent().unwrap().to_path_buf(),
    };
    strata::image::write_oci_archive(std::fs::File::create(out).unwrap(), &[image], &opts).unwrap();
}

fn name(op: Op) -> &'static str {
    match op {
        Op::Import => "import",
        Op::Create => "create",
        Op::Mount => "mount",
        Op::Umount => "umount",
        Op::Rm => "rm",
        Op::RmMounted => "rm --force",
        Op::Rmi => "rmi",
        Op::Untag => "rmi of one of two tags",
        Op::Commit => "commit",
        Op::Load => "load",
        Op::Save => "save",
        Op::Export => "export",
        Op::Tag => "tag",
        Op::Rename => "rename",
        Op::Prune => "system prune",
        Op::Release => "release",
    }
}

fn wanted(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one shard of the loop survived.
#[derive(Default)]
struct Survived {
    kills: usize,
    at_failpoints: usize,
    interrupts: usize,
    completed: usize,
    found: BTreeMap<String, usize>,
    repaired: BTreeMap<String, usize>,
    pruned: usize,
}

impl Survived {
    fn add(&mut self, other: Survived) {
        self.kills += other.kills;
        self.at_failpoints += other.at_failpoints;
        self.interrupts += other.interrupts;
        self.completed += other.completed;
        self.pruned += other.pruned;
        for (into, from) in [
            (&mut self.found, other.found),
            (&mut self.repaired, other.repaired),
        ] {
            for (kind, n) in from {
                *into.entry(kind).or_default() += n;
            }
        }
    }
}

/// The loop for `driver`, split over `STRATA_CRASH_SHARDS` stores that run
/// at once (default one): under the VM's emulated CPU one store keeps one
/// vCPU busy, so two shards on two vCPUs land twice the signals in the same
/// time. Shard 0 also kills at every failpoint.
fn crash(driver: &str) {
    let test = format!("crash::{driver}");
    if !require_root(&test) {
        return;
    }
    let shards = wanted("STRATA_CRASH_SHARDS", 1).max(1);
    let kills = wanted("STRATA_CRASH_KILLS", 20);
    let interrupts = wanted("STRATA_CRASH_INTERRUPTS", 20);
    let started = Instant::now();
    let mut total = Survived::default();
    let quotas = split_signals(kills, interrupts, shards);
    std::thread::scope(|scope| {
        let handles: Vec<_> = quotas
            .into_iter()
            .enumerate()
            .map(|(i, (k, s))| {
                let test = test.clone();
                scope.spawn(move || shard(&test, driver, i, k, s))
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(Some(survived)) => total.add(survived),
                Ok(None) => {}
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    eprintln!(
        "CRASH {driver}: {} SIGKILLs ({} at failpoints) and {} SIGINTs survived over {shards} store(s), {} ops finished before their signal; found after ordinary commands {:?}; repaired {:?}; {} unused layers pruned at the end, {:.1} s",
        total.kills,
        total.at_failpoints,
        total.interrupts,
        total.completed,
        total.found,
        total.repaired,
        total.pruned,
        started.elapsed().as_secs_f64()
    );
}

/// Splits the random SIGKILLs and SIGINTs over `shards` stores so that each
/// takes about as many steps: shard 0 also takes one step per failpoint.
fn split_signals(kills: usize, interrupts: usize, shards: usize) -> Vec<(usize, usize)> {
    let steps = kills + interrupts + FAILPOINTS.len();
    let per_shard = steps.div_ceil(shards);
    let mut left = (kills, interrupts);
    (0..shards)
        .map(|i| {
            let room = if i == 0 {
                per_shard.saturating_sub(FAILPOINTS.len())
            } else {
                per_shard
            };
            let (k, s) = if i + 1 == shards {
                left
            } else {
                let k = left.0.min(room.div_ceil(2));
                let s = left.1.min(room - k);
                (left.0.min(room - s), s)
            };
            left = (left.0 - k, left.1 - s);
            (k, s)
        })
        .collect()
}

/// One store's loop: the failpoint kills (shard 0), then `kills` SIGKILLs and
/// `interrupts` SIGINTs at random moments; `None` when the store could not be
/// made (a visible skip).
fn shard(
    test: &str,
    driver: &str,
    index: usize,
    kills: usize,
    interrupts: usize,
) -> Option<Survived> {
    let (scratch, root) = scratch_store(&format!("{test}-{index}"), driver, &[])?;
    let tars = scratch.path().join("tars");
    let outputs = scratch.path().join("outputs");
    std::fs::create_dir_all(&tars).unwrap();
    std::fs::create_dir_all(&outputs).unwrap();
    let base = tars.join("base.tar");
    busybox_rootfs_tar(&base, "base image\n");
    strata_ok(&root, &["import", base.to_str().unwrap(), "base"]);
    let mut h = Harness {
        root: root.clone(),
        tars,
        expected: [("base:latest".to_owned(), "base image\n".to_owned())].into(),
        serial: 0,
        rng: Rng::new(),
        durations: BTreeMap::new(),
        kills: 0,
        interrupts: 0,
        completed: 0,
        found: BTreeMap::new(),
        repaired: BTreeMap::new(),
        outputs,
        steps: 0,
    };
    h.calibrate();
    let failpoints = if index == 0 { FAILPOINTS } else { &[] };
    for &(point, op) in failpoints {
        let (cmd, maybe) = h.prepare(op);
        let end = run_at_failpoint(cmd, point);
        assert_eq!(
            end,
            End::Killed,
            "{} never reached failpoint {point}",
            name(op)
        );
        let what = format!("a kill at {point} in {}", name(op));
        h.note(end, &what);
        h.recover(&what, maybe);
    }
    let at_failpoints = h.kills;
    let kills = kills + at_failpoints;
    let mut attempts = 0;
    while h.kills < kills || h.interrupts < interrupts {
        attempts += 1;
        assert!(
            attempts < (kills + interrupts) * 4,
            "too few random signals landed: {} kills, {} interrupts of {attempts}",
            h.kills,
            h.interrupts
        );
        let signal = if h.kills >= kills || (h.interrupts < interrupts && attempts % 2 == 0) {
            Signal::SIGINT
        } else {
            Signal::SIGKILL
        };
        let op = OPS[h.rng.below(OPS.len() as u64) as usize];
        let typical = h.durations[name(op)].as_micros() as u64;
        let after = Duration::from_micros(h.rng.below(typical + typical / 4 + 1));
        let (cmd, maybe) = h.prepare(op);
        let (end, stderr) = run_and_signal(cmd, after, signal);
        let what = format!("{signal} {after:?} into {} ({stderr})", name(op));
        h.note(end, &what);
        h.recover(&what, maybe);
    }
    strata_ok(&root, &["rmi", "base"]);
    let out = check_clean(
        &root,
        &["--repair", "--prune", "--format", "json"],
        "final prune",
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pruned = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "unused_layer" && !f["repaired"].is_null())
        .count();
    assert_eq!(
        json(&root, &["info"])["snapshots"],
        0,
        "snapshots left after rmi and prune"
    );
    check_clean(&root, &[], "final check");
    assert_no_leaks(&root, "at the end");
    Some(Survived {
        kills: h.kills,
        at_failpoints,
        interrupts: h.interrupts,
        completed: h.completed,
        found: h.found,
        repaired: h.repaired,
        pruned,
    })
}

#[test]
fn signals_split_evenly_over_shards() {
    let fp = FAILPOINTS.len();
    assert_eq!(split_signals(200, 200, 1), vec![(200, 200)]);
    let two = split_signals(200, 200, 2);
    assert_eq!(two.iter().map(|q| q.0).sum::<usize>(), 200);
    assert_eq!(two.iter().map(|q| q.1).sum::<usize>(), 200);
    let steps: Vec<usize> = two.iter().map(|q| q.0 + q.1).collect();
    assert!((steps[0] + fp).abs_diff(steps[1]) <= 1, "{two:?}");
    let lopsided = split_signals(3, 100, 3);
    assert_eq!(lopsided.iter().map(|q| q.0).sum::<usize>(), 3);
    assert_eq!(lopsided.iter().map(|q| q.1).sum::<usize>(), 100);
}

#[test]
fn crash_vfs() {
    crash("vfs");
}

#[test]
fn crash_overlay2() {
    crash("overlay2");
}

#[test]
fn crash_btrfs() {
    crash("btrfs");
}

#[test]
fn crash_blockfile() {
    crash("blockfile");
}

/// dm-thin is missing on hosts like the CI builder: the VM tier runs this
/// (`STRATA_VM_PACKAGES=strata scripts/vm-test.sh --ignored crash_devmapper`).
#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn crash_devmapper() {
    crash("devmapper");
}
