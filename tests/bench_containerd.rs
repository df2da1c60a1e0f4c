//! Smoke test of `strata bench --containerd`: one sample a side of every row
//! against containerd's snapshotters, both through a private containerd and
//! served directly by ctrd-snapshotter (scripts/build-ctrd-snapshotter.sh),
//! for each pair this host can run; checks the section and the JSON are
//! written with sane (positive, finite) figures. Timings themselves are not
//! judged.

mod containerd_support;

use std::path::Path;

use containerd_support::prerequisites;
use strata::bench::containerd::{
    find_ctrd_snapshotter, run, select_pairs, PairResult, Summary, Via, VsPlan,
};
use strata::bench::{KIB, MIB};
use strata_driver_api::testing::{require_root, skip, ScratchDir};

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

/// How the test reaches containerd's side; None (after a visible skip)
/// when this host cannot.
fn via(test: &str, direct: bool, strata: &Path) -> Option<Via> {
    if !direct {
        return prerequisites(test).then_some(Via::Daemon);
    }
    if !require_root(test) {
        return None;
    }
    match find_ctrd_snapshotter(strata) {
        Ok(binary) => Some(Via::Direct { binary }),
        Err(e) => {
            skip(test, &format!("{e:#}"));
            None
        }
    }
}

fn smoke(pair: &str, direct: bool) {
    let test = format!(
        "bench_containerd_{}{pair}",
        if direct { "direct_" } else { "" }
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_strata"));
    let Some(via) = via(&test, direct, bin) else {
        return;
    };
    let scratch = ScratchDir::new(&format!("vs-ctrd-{pair}"));
    let work = scratch.path().join("work");
    let results = run(
        &tiny_plan(),
        &select_pairs(&[pair.to_owned()]),
        &via,
        bin,
        &work,
    );
    assert_eq!(results.via, via);
    assert!(results.containerd_version.is_some(), "{results:?}");
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
    let served = if direct {
        "served directly"
    } else {
        "through containerd's daemon"
    };
    let heading = format!(
        "### {pair}: containerd `{}` {served} vs strata `{}`",
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
    let json_name = if direct {
        "containerd-direct.json"
    } else {
        "containerd.json"
    };
    assert_eq!(md_path, scratch.path().join(json_name).with_extension("md"));
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.path().join(json_name)).expect("read json"),
    )
    .expect("the JSON parses");
    assert_eq!(
        json["via"]["kind"],
        if direct { "direct" } else { "daemon" }
    );
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
    smoke("btrfs", false);
}

#[test]
fn bench_containerd_overlay() {
    smoke("overlay", false);
}

/// Needs device-mapper: runs in the VM tier.
#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn bench_containerd_devmapper() {
    smoke("devmapper", false);
}

#[test]
fn bench_containerd_direct_btrfs() {
    smoke("btrfs", true);
}

#[test]
fn bench_containerd_direct_overlay() {
    smoke("overlay", true);
}
