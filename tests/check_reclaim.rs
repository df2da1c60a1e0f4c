//! `strata check` reports what the btrfs driver still reclaims in the
//! background after removals (a note, not damage; the items in JSON and
//! with `--verbose`), and `check --repair` finishes it.

mod common;

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{strata, strata_ok};
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;
use strata_driver_api::testing::{require_program, require_root, ScratchDir};

/// Waits until a process blocks on the flock of `lock` (a `->` line of
/// `/proc/locks` naming its inode).
fn wait_for_a_waiter(lock: &Path) {
    let ino = std::fs::metadata(lock).expect("stat the lock").ino();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let locks = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
        let needle = format!(":{ino} ");
        if locks
            .lines()
            .any(|l| l.contains("->") && l.contains(&needle))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "check --repair never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pending_finding(json: &[u8]) -> Option<Value> {
    let report: Value = serde_json::from_slice(json).expect("check's JSON");
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["kind"] == "pending_reclaim")
        .cloned()
}

#[test]
fn check_reports_and_repair_finishes_pending_btrfs_reclaim() {
    let test = "check_reports_and_repair_finishes_pending_btrfs_reclaim";
    if !require_root(test) || !require_program(test, "mkfs.btrfs") {
        return;
    }
    let scratch = ScratchDir::new("check-reclaim");
    let root = scratch.path().join("store");
    strata_ok(
        &root,
        &[
            "--driver",
            "btrfs",
            "init",
            "--opt",
            "btrfs.size=1G",
            "--opt",
            "btrfs.qgroup_cleanup=strata",
        ],
    );
    let home = root.join("btrfs");
    // As removes leave them: ids of deleted subvolumes (whose qgroups do
    // not exist here, which counts as reclaimed).
    std::fs::write(
        home.join(strata_btrfs::pending::PENDING_FILE),
        "999901\n999902\n",
    )
    .expect("write pending ids");
    // As if another process were in its pass: the background threads of
    // the checks below skip their turn, so the ids stay pending.
    let lock_file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(home.join("pending-qgroups.lock"))
        .expect("open the lock");
    let lock = Flock::lock(lock_file, FlockArg::LockExclusive).expect("lock");

    let out = strata(&root, &["--format", "json", "check"]);
    assert!(
        out.status.success(),
        "pending reclaim is no damage: {out:?}"
    );
    let finding = pending_finding(&out.stdout).expect("a pending_reclaim finding");
    assert_eq!(finding["subject"], "btrfs");
    assert_eq!(finding["damage"], false);
    assert_eq!(
        finding["items"],
        serde_json::json!(["qgroup 0/999901", "qgroup 0/999902"])
    );
    let table = strata_ok(&root, &["check"]);
    assert!(
        table.contains("pending_reclaim") && table.contains("2 item(s)"),
        "{table}"
    );
    assert!(
        !table.contains("0/999901"),
        "items only with --verbose: {table}"
    );
    let verbose = strata_ok(&root, &["check", "--verbose"]);
    assert!(
        verbose.contains("qgroup 0/999901, qgroup 0/999902"),
        "{verbose}"
    );

    // --repair waits for the lock (its background thread does not): let
    // it go once it waits, so the repair, not that thread, finishes.
    let repair = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(&root)
        .args(["--format", "json", "check", "--repair"])
        .env("STRATA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check --repair");
    wait_for_a_waiter(&home.join("pending-qgroups.lock"));
    drop(lock);
    let out = repair.wait_with_output().expect("check --repair");
    assert!(out.status.success(), "check --repair: {out:?}");
    let finding = pending_finding(&out.stdout).expect("the finding, repaired");
    assert!(
        finding["repaired"]
            .as_str()
            .is_some_and(|r| r.starts_with("reclaimed qgroup 0/999901")),
        "{finding}"
    );
    assert!(!home.join(strata_btrfs::pending::PENDING_FILE).exists());
    let out = strata(&root, &["--format", "json", "check"]);
    assert!(
        pending_finding(&out.stdout).is_none(),
        "reclaim left after repair"
    );
    strata_ok(&root, &["release"]);
}
