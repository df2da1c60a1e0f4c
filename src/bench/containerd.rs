//! Strata against containerd's own snapshotters, side by side in one run,
//! both driven by the same client ([`GrpcSnapshotter`]) over their sockets,
//! samples interleaved. containerd's side is reached one of two ways
//! ([`Via`]): through a private containerd daemon (its snapshots service, so
//! its metadata store too, as every containerd client sees it; Remove there
//! is a metadata transaction and the backend's deletion is left to its
//! garbage collector), or served directly by `ctrd-snapshotter`
//! (contrib/bench/ctrd-snapshotter: containerd's snapshotter package behind
//! containerd's snapshots gRPC service, as a proxy plug-in serves one; every
//! call does the backend's work). Pairs: containerd `btrfs` vs strata
//! `btrfs` (each on its own fresh loop btrfs), containerd `overlayfs` vs
//! strata `overlay2` (both on the host filesystem) and containerd
//! `devmapper` vs strata `devmapper` (each on its own thin pool on loop
//! files; needs device-mapper, so in practice the VM of
//! `scripts/vm-test.sh --bench`).
//!
//! [`run`] measures, [`VsResults::write`] writes `containerd.json` and
//! `containerd.md` (`containerd-direct.*` when served directly). Where to
//! look: `daemon` starts the servers, `measure` times the rows.

mod daemon;
mod markdown;
mod measure;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use serde::Serialize;

use super::results::HostInfo;
use super::rig::{fs_type_name, Backing, BackingFs};
use super::stats::{median, p95, Comparison};
use super::{Result, GIB, MIB};
use crate::drivers::kernel_has_fs;
use crate::serve::GrpcSnapshotter;
use crate::snapshotter::SnapshotterExt;
use daemon::{
    containerd_version, direct_version, start_containerd, start_direct, start_strata,
    ContainerdDirs, Daemon, ThinPool,
};
use measure::Side;
use strata_driver_api::scratch::ScratchDir;

/// Sizes and sample counts of a comparison run.
#[derive(Debug, Clone, Serialize)]
pub struct VsPlan {
    /// `quick`, `full` or a caller's own name.
    pub name: String,
    /// Samples per row and side.
    pub samples: usize,
    /// Size of the file in the parent layer of the Prepare, Commit and Usage rows.
    pub small_parent: u64,
    /// Size of the file in the parent layer of the second Prepare row.
    pub large_parent: u64,
    /// Bytes written into a container before its commit is timed.
    pub commit_file: u64,
    /// Files in the active snapshot whose usage is timed.
    pub usage_files: usize,
}

impl VsPlan {
    /// 30 samples a row.
    pub fn full() -> Self {
        Self {
            name: "full".into(),
            samples: 30,
            small_parent: 10 * MIB,
            large_parent: GIB,
            commit_file: MIB,
            usage_files: 10_000,
        }
    }

    /// 10 samples a row, the same sizes.
    pub fn quick() -> Self {
        Self {
            name: "quick".into(),
            samples: 10,
            ..Self::full()
        }
    }
}

/// Environment variable naming the `ctrd-snapshotter` executable.
pub const CTRD_SNAPSHOTTER_ENV: &str = "STRATA_CTRD_SNAPSHOTTER";

/// How containerd's snapshotter is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Via {
    /// A private containerd daemon's snapshots service: its metadata store
    /// in between, Remove a metadata transaction, the backend's deletion
    /// left to its garbage collector.
    Daemon,
    /// containerd's snapshotter package served directly by this
    /// `ctrd-snapshotter` executable, as a proxy plug-in is: every call does
    /// the backend's work, Remove deletes for real.
    Direct {
        /// The executable.
        binary: PathBuf,
    },
}

impl Via {
    /// How the report names containerd's side of a pair.
    pub fn describe(&self, snapshotter: &str) -> String {
        match self {
            Via::Daemon => format!("containerd `{snapshotter}` through containerd's daemon"),
            Via::Direct { .. } => format!("containerd `{snapshotter}` served directly"),
        }
    }

    /// Stem of the output files: `containerd` or `containerd-direct`.
    pub fn file_stem(&self) -> &'static str {
        match self {
            Via::Daemon => "containerd",
            Via::Direct { .. } => "containerd-direct",
        }
    }
}

/// The `ctrd-snapshotter` executable: `$STRATA_CTRD_SNAPSHOTTER`, else
/// `ctrd-snapshotter` in the cargo target directory `strata_bin` was built
/// into (`target/debug/strata` → `target/ctrd-snapshotter`), else
/// `target/ctrd-snapshotter` under the current directory.
pub fn find_ctrd_snapshotter(strata_bin: &Path) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = strata_bin
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("ctrd-snapshotter"))
        .into_iter()
        .chain([PathBuf::from("target/ctrd-snapshotter")])
        .collect();
    locate_ctrd_snapshotter(
        std::env::var_os(CTRD_SNAPSHOTTER_ENV).map(PathBuf::from),
        &candidates,
    )
}

/// `named` if given (it must exist), else the first of `candidates` that does.
fn locate_ctrd_snapshotter(named: Option<PathBuf>, candidates: &[PathBuf]) -> Result<PathBuf> {
    if let Some(path) = named {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(anyhow!(
                "{CTRD_SNAPSHOTTER_ENV}={} is not a file",
                path.display()
            ))
        };
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(anyhow!(
        "no ctrd-snapshotter (looked at {}): build it with \
         scripts/build-ctrd-snapshotter.sh, or name it in {CTRD_SNAPSHOTTER_ENV}",
        looked.join(", ")
    ))
}

/// One comparison: a containerd snapshotter and the Strata driver it is set against.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    /// Name in the report and for `--drivers`.
    pub label: &'static str,
    /// containerd's snapshotter (`snapshotter` field of every request).
    pub containerd: &'static str,
    /// Strata's driver.
    pub strata: &'static str,
    /// Where each server's data lives (each side gets its own).
    pub backing: Backing,
}

impl Pair {
    /// Why the pair cannot run on this host, known before trying.
    pub fn unavailable(&self) -> Option<String> {
        if self.containerd == "overlayfs" && !kernel_has_fs("overlay") {
            return Some("the kernel has no overlayfs".into());
        }
        if self.containerd == "devmapper" {
            if !Path::new("/dev/mapper/control").exists() {
                return Some("no /dev/mapper/control: the kernel has no device-mapper".into());
            }
            if which("dmsetup").is_none() {
                return Some("dmsetup is not installed".into());
            }
        }
        self.backing.unavailable()
    }
}

/// Every pair.
pub fn all_pairs() -> Vec<Pair> {
    vec![
        Pair {
            label: "btrfs",
            containerd: "btrfs",
            strata: "btrfs",
            backing: Backing::Btrfs,
        },
        Pair {
            label: "overlay",
            containerd: "overlayfs",
            strata: "overlay2",
            backing: Backing::Host,
        },
        Pair {
            label: "devmapper",
            containerd: "devmapper",
            strata: "devmapper",
            backing: Backing::Host,
        },
    ]
}

/// The pairs named in `wanted` by label or either side's name (all when empty).
pub fn select_pairs(wanted: &[String]) -> Vec<Pair> {
    all_pairs()
        .into_iter()
        .filter(|p| {
            wanted.is_empty()
                || wanted
                    .iter()
                    .any(|w| [p.label, p.containerd, p.strata].contains(&w.as_str()))
        })
        .collect()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// n, median and p95 of one side's samples of a row (milliseconds).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Samples taken.
    pub n: usize,
    /// Median, ms.
    pub median_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// Every sample, ms, in the order taken.
    pub samples_ms: Vec<f64>,
}

impl Summary {
    fn of(samples: Vec<f64>) -> Self {
        Self {
            n: samples.len(),
            median_ms: median(&samples).unwrap_or(f64::NAN),
            p95_ms: p95(&samples).unwrap_or(f64::NAN),
            samples_ms: samples,
        }
    }
}

/// One operation measured on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// Stable key (`prepare`, `commit`, `remove_committed`, ...).
    pub key: String,
    /// What the report calls it.
    pub name: String,
    /// containerd's side.
    pub containerd: Summary,
    /// Strata's side.
    pub strata: Summary,
    /// Strata's median ÷ containerd's (below 1: Strata is faster).
    pub ratio: f64,
    /// The ratio's bootstrap 95% interval and noise flag (None without
    /// samples on both sides).
    pub comparison: Option<Comparison>,
}

impl RowResult {
    /// A row from each side's samples (`[containerd, strata]`).
    pub fn new(key: &str, name: &str, [containerd, strata]: [Vec<f64>; 2]) -> Self {
        let comparison = Comparison::new(&strata, &containerd);
        let (containerd, strata) = (Summary::of(containerd), Summary::of(strata));
        Self {
            key: key.into(),
            name: name.into(),
            ratio: strata.median_ms / containerd.median_ms,
            containerd,
            strata,
            comparison,
        }
    }
}

/// Everything one pair measured.
#[derive(Debug, Clone, Serialize)]
pub struct PairResult {
    /// The pair.
    pub pair: Pair,
    /// What each side's data lives on (`btrfs`, `ext4`, ...).
    pub fstype: Option<String>,
    /// Why it did not run.
    pub skipped: Option<String>,
    /// What failed while it ran (rows measured before stay).
    pub errors: Vec<String>,
    /// The rows, in the order measured.
    pub rows: Vec<RowResult>,
}

impl PairResult {
    /// The row with `key`.
    pub fn row(&self, key: &str) -> Option<&RowResult> {
        self.rows.iter().find(|r| r.key == key)
    }
}

/// A whole comparison run.
#[derive(Debug, Clone, Serialize)]
pub struct VsResults {
    /// The host.
    pub host: HostInfo,
    /// How containerd's side was reached.
    pub via: Via,
    /// The containerd version of that side: `containerd --version`'s, or
    /// the one `ctrd-snapshotter` was built from.
    pub containerd_version: Option<String>,
    /// `debug` or `release`: how the strata running the run was built (the
    /// CLI serves with its own executable).
    pub strata_build: &'static str,
    /// What was measured.
    pub plan: VsPlan,
    /// One entry per pair asked for.
    pub pairs: Vec<PairResult>,
}

/// A server of a pair; fields drop in order: client, process, pool, data.
struct Server {
    client: GrpcSnapshotter,
    _daemon: Daemon,
    _run: ScratchDir,
    _pool: Option<ThinPool>,
    backing: BackingFs,
}

impl Server {
    fn side(&self) -> Side<'_> {
        Side {
            snapshotter: &self.client,
            mounts: self.backing.scratch.path().join("mnt"),
            data: self.backing.path.clone(),
        }
    }
}

/// A directory for a daemon's sockets and log, under /run: unix socket
/// paths must stay below 108 bytes, which a work dir nested in a test's
/// scratch dir overruns.
fn run_dir() -> ScratchDir {
    ScratchDir::new_in(Path::new("/run"), "bench")
}

/// containerd's side, its root on a fresh backing of the pair's kind.
fn containerd_server(pair: &Pair, via: &Via, work_dir: &Path) -> Result<Server> {
    let backing = pair
        .backing
        .make_in(work_dir, &format!("vs-ctrd-{}", pair.label))?;
    let pool = match pair.containerd {
        "devmapper" => Some(ThinPool::create(backing.scratch.path())?),
        _ => None,
    };
    let run = run_dir();
    let root = backing.path.join("containerd");
    let (daemon, client) = match via {
        Via::Daemon => through_daemon(pair, root, run.path(), pool.as_ref())?,
        Via::Direct { binary } => {
            let daemon = start_direct(binary, pair.containerd, &root, run.path(), pool.as_ref())?;
            let client = GrpcSnapshotter::connect(&run.path().join("ctrd.sock"))?;
            (daemon, client)
        }
    };
    Ok(Server {
        client,
        _daemon: daemon,
        _run: run,
        _pool: pool,
        backing,
    })
}

/// A private containerd with `root`, and a client of its snapshots service
/// naming the pair's snapshotter, checked usable.
fn through_daemon(
    pair: &Pair,
    root: PathBuf,
    run: &Path,
    pool: Option<&ThinPool>,
) -> Result<(Daemon, GrpcSnapshotter)> {
    let dirs = ContainerdDirs {
        root,
        run: run.to_path_buf(),
    };
    let daemon = start_containerd(&dirs, pool)?;
    let namespace = format!("strata-bench-{}", std::process::id());
    let client = GrpcSnapshotter::connect_containerd(&dirs.socket(), pair.containerd, &namespace)?;
    // A snapshotter plug-in that failed to load answers every call with an error.
    client.list(&[]).map_err(|e| {
        anyhow!(
            "containerd's {} snapshotter is not usable: {e}\n{}",
            pair.containerd,
            daemon.log_lines_with(&format!("snapshotter.v1.{}", pair.containerd))
        )
    })?;
    Ok((daemon, client))
}

/// `strata serve` over a fresh store on a fresh backing of the pair's kind.
fn strata_server(pair: &Pair, strata_bin: &Path, work_dir: &Path) -> Result<Server> {
    let backing = pair
        .backing
        .make_in(work_dir, &format!("vs-strata-{}", pair.label))?;
    let run = run_dir();
    let daemon = start_strata(
        strata_bin,
        &backing.path.join("strata"),
        pair.strata,
        run.path(),
    )?;
    let client = GrpcSnapshotter::connect(&run.path().join("strata.sock"))?;
    Ok(Server {
        client,
        _daemon: daemon,
        _run: run,
        _pool: None,
        backing,
    })
}

/// Runs `plan` over `pairs`, containerd's side reached `via`; `strata_bin`
/// is the `strata` executable to serve with; loop files and scratch
/// filesystems go under `work_dir`. A pair that cannot run is skipped with
/// the reason; one that fails keeps the rows it measured and the error.
pub fn run(
    plan: &VsPlan,
    pairs: &[Pair],
    via: &Via,
    strata_bin: &Path,
    work_dir: &Path,
) -> VsResults {
    let started = std::time::Instant::now();
    let (containerd_version, missing) = match via {
        Via::Daemon => (
            containerd_version(),
            "containerd is not installed (or does not run)".to_owned(),
        ),
        Via::Direct { binary } => (
            direct_version(binary),
            format!("{} does not run", binary.display()),
        ),
    };
    let mut results = VsResults {
        host: HostInfo::current(),
        via: via.clone(),
        containerd_version: containerd_version.clone(),
        strata_build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        plan: plan.clone(),
        pairs: Vec::new(),
    };
    for pair in pairs {
        let mut result = PairResult {
            pair: pair.clone(),
            fstype: None,
            skipped: None,
            errors: Vec::new(),
            rows: Vec::new(),
        };
        let unavailable = match &containerd_version {
            None => Some(missing.clone()),
            Some(_) => pair.unavailable(),
        };
        if let Some(reason) = unavailable {
            eprintln!("bench: skipping {}: {reason}", pair.label);
            result.skipped = Some(reason);
        } else {
            run_pair(plan, pair, via, strata_bin, work_dir, &mut result);
        }
        results.pairs.push(result);
    }
    results.host.duration_s = started.elapsed().as_secs_f64();
    results
}

fn run_pair(
    plan: &VsPlan,
    pair: &Pair,
    via: &Via,
    strata_bin: &Path,
    work_dir: &Path,
    result: &mut PairResult,
) {
    eprintln!(
        "bench: {} vs strata {} ({} samples)",
        via.describe(pair.containerd),
        pair.strata,
        plan.samples
    );
    let servers = containerd_server(pair, via, work_dir)
        .with_context(|| format!("starting {}", via.describe(pair.containerd)))
        .and_then(|c| {
            Ok((
                c,
                strata_server(pair, strata_bin, work_dir).context("starting strata")?,
            ))
        });
    let (ctrd, strata) = match servers {
        Ok(s) => s,
        Err(e) => {
            // The host can run the pair (checked before): a server that
            // does not start is a failure, not a reason to skip.
            eprintln!("bench: {} failed: {e:#}", pair.label);
            result.errors.push(format!("{e:#}"));
            return;
        }
    };
    result.fstype = Some(fs_type_name(&strata.backing.path));
    let sides = [ctrd.side(), strata.side()];
    let outcome = measure::rows(plan, &sides, |row| {
        eprintln!(
            "bench:   {}: containerd {:.2} ms, strata {:.2} ms ({:.2}x)",
            row.name, row.containerd.median_ms, row.strata.median_ms, row.ratio
        );
        result.rows.push(row);
    });
    if let Err(e) = outcome {
        eprintln!("bench: {} failed: {e:#}", pair.label);
        result.errors.push(format!("{e:#}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_selected_by_label_or_either_name() {
        let labels = |w: &[&str]| -> Vec<&str> {
            let wanted: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            select_pairs(&wanted).iter().map(|p| p.label).collect()
        };
        assert_eq!(labels(&[]), ["btrfs", "overlay", "devmapper"]);
        assert_eq!(labels(&["overlay2"]), ["overlay"]);
        assert_eq!(
            labels(&["overlayfs", "devmapper"]),
            ["overlay", "devmapper"]
        );
        assert!(labels(&["vfs"]).is_empty());
    }

    #[test]
    fn ctrd_snapshotter_is_the_named_one_or_the_first_that_exists() {
        let scratch = ScratchDir::new("find-ctrd-snapshotter");
        let [first, second] = ["a", "b"].map(|n| scratch.path().join(n));
        let candidates = [first.clone(), second.clone()];
        let missing = locate_ctrd_snapshotter(None, &candidates).unwrap_err();
        assert!(
            format!("{missing}").contains("scripts/build-ctrd-snapshotter.sh"),
            "{missing}"
        );
        std::fs::write(&second, "").unwrap();
        assert_eq!(locate_ctrd_snapshotter(None, &candidates).unwrap(), second);
        std::fs::write(&first, "").unwrap();
        assert_eq!(locate_ctrd_snapshotter(None, &candidates).unwrap(), first);
        let named = scratch.path().join("elsewhere");
        assert!(locate_ctrd_snapshotter(Some(named.clone()), &candidates).is_err());
        std::fs::write(&named, "").unwrap();
        assert_eq!(
            locate_ctrd_snapshotter(Some(named.clone()), &candidates).unwrap(),
            named
        );
    }

    #[test]
    fn each_way_names_its_side_and_files() {
        let direct = Via::Direct {
            binary: "/x".into(),
        };
        assert_eq!(direct.file_stem(), "containerd-direct");
        assert_eq!(Via::Daemon.file_stem(), "containerd");
        assert!(direct.describe("btrfs").contains("served directly"));
        assert!(Via::Daemon.describe("btrfs").contains("daemon"));
    }

    #[test]
    fn row_ratio_is_strata_over_containerd_medians() {
        let row = RowResult::new(
            "prepare",
            "Prepare",
            [vec![4.0, 8.0, 6.0], vec![3.0, 1.0, 2.0]],
        );
        assert_eq!(row.containerd.median_ms, 6.0);
        assert_eq!(row.strata.median_ms, 2.0);
        assert!((row.ratio - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(row.strata.n, 3);
    }
}
