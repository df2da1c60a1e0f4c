//! `strata bench` at its edges: a work dir on tmpfs is refused before
//! anything is made, and Ctrl-C mid-run leaves no loop device, mount or
//! file behind in the work dir. (The full quick run is scripts/bench-check.sh.)

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mounts_below;
use strata_driver_api::scratch::loops_below;
use strata_driver_api::testing::{require_root, skip, ScratchDir};

fn bench(out: &Path, work: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(["bench", "--quick", "--out"])
        .arg(out)
        .arg("--work-dir")
        .arg(work)
        .args(extra)
        .env("STRATA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn ctrl_c_mid_run_cleans_the_work_dir() {
    const TEST: &str = "bench_cli::ctrl_c_mid_run_cleans_the_work_dir";
    if !require_root(TEST) {
        return;
    }
    if !strata::drivers::kernel_has_fs("xfs") {
        return skip(TEST, "the kernel has no xfs");
    }
    let scratch = ScratchDir::new_in(Path::new("/var/tmp"), "bench-cli");
    let work = scratch.path().join("work");
    let mut child = bench(
        &scratch.path().join("out"),
        &work,
        &["--drivers", "overlay2-xfs"],
    )
    .spawn()
    .expect("run strata bench");
    // Wait until the run holds a loop-mounted xfs in the work dir.
    let started = Instant::now();
    while loops_below(&work).is_empty() && started.elapsed() < Duration::from_secs(120) {
        assert!(child.try_wait().unwrap().is_none(), "bench ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !loops_below(&work).is_empty(),
        "no loop device in {}",
        work.display()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(loops_below(&work), Vec::<std::path::PathBuf>::new());
    assert_eq!(mounts_below(&work), Vec::<String>::new());
    assert!(!work.exists(), "the work dir it made is removed");
}

#[test]
fn a_tmpfs_work_dir_is_refused_by_name() {
    const TEST: &str = "bench_cli::a_tmpfs_work_dir_is_refused_by_name";
    if !require_root(TEST) {
        return;
    }
    let scratch = ScratchDir::new_in(Path::new("/var/tmp"), "bench-cli-small");
    let small = scratch.path().join("small");
    std::fs::create_dir(&small).unwrap();
    // A 64 MiB tmpfs: refused as tmpfs, before any room check.
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    if !ok.success() {
        return skip(TEST, "cannot mount a tmpfs");
    }
    let out = bench(&scratch.path().join("out"), &small.join("w"), &[])
        .output()
        .unwrap();
    let _ = Command::new("umount").arg(&small).status();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&small.join("w").display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("tmpfs"), "{stderr}");
}
