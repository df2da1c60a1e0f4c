//! Smoke test of `strata bench --containerd`: one sample a side of every row
//! against a private containerd, for each pair this host can run; checks the
//! section and the JSON are written with sane (positive, finite) figures.
//! Timings themselves are not judged.

mod containerd_support;

use std::path::Path;

use containerd_support::prerequisites;
use strata::bench::containerd::{run, select_pairs, PairResult, Summary, VsPlan};
use strata::bench::{KIB, MIB};
use strata_driver_api::testing::{skip, ScratchDir};

const ROWS: [&str; 6] = [
    "prepare",
    "prepare_large",
    "commit",
    "remove_committed",
    "remove_active",
    "usage",
];

fn tiny_plan() -> VsPlan {
    VsPlan {
        name: "smoke".into(),
        samples: 1,
        small_parent: MIB,
        large_parent: 4 * MIB,
        commit_file: 64 * KIB,
        usage_files: 1_200,
    }
}

fn assert_sane(pair: &str, row: &str, side: &str, s: &Summary) {
    assert_eq!(s.n, 1, "{pair} {row} {side}: {s:?}");
    for v in [s.median_ms, s.p95_ms] {
        assert!(v.is_finite() && v > 0.0, "{pair} {row} {side}: {s:?}");
    }
}

fn check_pair(p: &PairResult) {
    let label = p.pair.label;
    assert!(p.errors.is_empty(), "{label} failed: {:?}", p.errors);
    let keys: Vec<&str> = p.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ROWS, "{label}: rows");
    for r in &p.rows {
        assert_sane(label, &r.key, "containerd", &r.containerd);
        assert_sane(label, &r.key, "strata", &r.strata);
        assert!(r.ratio.is_finite() && r.ratio > 0.0, "{label} {r:?}");
    }
}

fn smoke(pair: &str) {
    let test = format!("bench_containerd_{pair}");
    if !prerequisites(&test) {
        return;
    }
    let scratch = ScratchDir::new(&format!("vs-ctrd-{pair}"));
    let bin = Path::new(env!("CARGO_BIN_EXE_strata"));
    let work = scratch.path().join("work");
    let results = run(&tiny_plan(), &select_pairs(&[pair.to_owned()]), bin, &work);
    let [p] = results.pairs.as_slice() else {
        panic!("expected one pair: {results:?}");
    };
    if let Some(reason) = &p.skipped {
        return skip(&test, reason);
    }
    check_pair(p);

    let md_path = results.write(scratch.path()).expect("write the report");
    let md = std::fs::read_to_string(&md_path).expect("read containerd.md");
    assert!(
        md.starts_with("## Against containerd's own snapshotters"),
        "{md}"
    );
    let heading = format!(
        "### {pair}: containerd `{}` vs strata `{}`",
        p.pair.containerd, p.pair.strata
    );
    assert!(md.contains(&heading), "{md}");
    for name in [
        "| Prepare (1 MiB parent) | 1 |",
        "| Prepare (4 MiB parent) | 1 |",
        "| Commit (64 KiB written on a 1 MiB parent) | 1 |",
        "| Remove (committed) | 1 |",
        "| Remove (untouched active) | 1 |",
        "| Usage (1,200 files) | 1 |",
    ] {
        assert!(md.contains(name), "no row {name:?} in\n{md}");
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.path().join("containerd.json")).expect("read json"),
    )
    .expect("containerd.json parses");
    let rows = json["pairs"][0]["rows"].as_array().expect("rows in json");
    assert_eq!(rows.len(), ROWS.len());
    assert!(
        rows.iter().all(|r| r["strata"]["samples_ms"][0]
            .as_f64()
            .is_some_and(|v| v > 0.0)),
        "{json}"
    );
}

#[test]
fn bench_containerd_btrfs() {
    smoke("btrfs");
}

#[test]
fn bench_containerd_overlay() {
    smoke("overlay");
}

/// Needs device-mapper (the VM tier): skips visibly elsewhere.
#[test]
fn bench_containerd_devmapper() {
    smoke("devmapper");
}
