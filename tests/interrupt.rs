//! Signals: SIGINT (and SIGTERM, SIGHUP) during `load`, `import`, `create`,
//! `mount`, `commit`, `save`, `export`, `rm`, `rmi` and `cp` (a container's
//! file to the host) stop the command at
//! its next safe point. Each interrupted run must exit 128+signal with one
//! `interrupted: ...` line, leave its effect either wholly undone or wholly
//! done (as the line says), no partial output file, nothing under
//! `<root>/tmp`, no stray mount or snapshot; ordinary commands then work
//! and `check` is clean. A second signal exits at once, and `check
//! --repair` finishes what it left. Also: no verb but `init` creates a
//! store, and a failed `init` leaves nothing behind.
//!
//! `STRATA_INTERRUPT_DRIVERS` (default: every driver) narrows the drivers.

mod common;
mod reliability;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use reliability::*;
use strata_driver_api::testing::ScratchDir;

/// The verbs a signal lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Load,
    Import,
    Create,
    Mount,
    Commit,
    Save,
    Export,
    Rm,
    Rmi,
    Cp,
}

const VERBS: &[Verb] = &[
    Verb::Load,
    Verb::Import,
    Verb::Create,
    Verb::Mount,
    Verb::Commit,
    Verb::Save,
    Verb::Export,
    Verb::Rm,
    Verb::Rmi,
    Verb::Cp,
];

/// Layers and bytes per layer of the generated archives: tens of MB, so a
/// command is mid-work when the signal comes.
const LAYERS: usize = 4;
const LAYER_BYTES: u64 = 8 << 20;

/// How an interrupted run ended, by its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// `interrupted: ... undone`: the command's effect must be absent.
    Undone,
    /// `interrupted: ... finished`, or it ended before the signal: the
    /// effect must be present.
    Done,
}

/// Whether a verb's change is in the store (or on disk).
type Effect = Box<dyn Fn(&Bench) -> bool>;

struct Bench {
    root: PathBuf,
    files: PathBuf,
    serial: u64,
    /// The container that mount, commit and export work on.
    work: String,
}

impl Bench {
    fn ok(&self, args: &[&str]) -> String {
        strata_ok(&self.root, args)
    }

    fn images(&self) -> Vec<String> {
        image_tags(&self.root)
    }

    fn containers(&self) -> Vec<serde_json::Value> {
        json(&self.root, &["ps"]).as_array().unwrap().clone()
    }

    fn mounted(&self, id: &str) -> bool {
        self.containers()
            .iter()
            .any(|c| c["id"] == id && !c["mounted_at"].is_null())
    }

    fn out_dir(&self) -> PathBuf {
        self.files.join("out")
    }

    /// Sets up `verb`'s input and returns its command, plus a check of its
    /// effect (`true` when the command's change is in the store or on disk).
    fn prepare(&mut self, verb: Verb) -> (Command, Effect) {
        self.serial += 1;
        let n = self.serial;
        let root = self.root.clone();
        match verb {
            Verb::Load => {
                let archive = self.files.join(format!("load-{n}.tar"));
                let reference = format!("int/load-{n}:1");
                multi_layer_archive(
                    &archive,
                    &reference,
                    LAYERS,
                    LAYER_BYTES,
                    1000 + n,
                    "load\n",
                );
                let cmd = command(&root, &["load", "-i", archive.to_str().unwrap()]);
                (
                    cmd,
                    Box::new(move |b: &Bench| b.images().contains(&reference)),
                )
            }
            Verb::Import => {
                let tar = self.files.join(format!("import-{n}.tar"));
                noise_layer_tar(
                    &tar,
                    0,
                    LAYERS as u64 * LAYER_BYTES,
                    2000 + n,
                    Some("import\n"),
                );
                let reference = format!("int/import-{n}:1");
                let cmd = command(&root, &["import", tar.to_str().unwrap(), &reference]);
                (
                    cmd,
                    Box::new(move |b: &Bench| b.images().contains(&reference)),
                )
            }
            Verb::Create => {
                let before = self.containers().len();
                let cmd = command(&root, &["create", "int/big:1"]);
                (
                    cmd,
                    Box::new(move |b: &Bench| b.containers().len() > before),
                )
            }
            Verb::Mount => {
                let id = self.work.clone();
                if self.mounted(&id) {
                    self.ok(&["umount", &id]);
                }
                let cmd = command(&root, &["mount", &id]);
                (cmd, Box::new(move |b: &Bench| b.mounted(&id)))
            }
            Verb::Commit => {
                let id = self.work.clone();
                if self.mounted(&id) {
                    self.ok(&["umount", &id]);
                }
                let reference = format!("int/commit-{n}:1");
                let cmd = command(&root, &["commit", &id, &reference]);
                (
                    cmd,
                    Box::new(move |b: &Bench| b.images().contains(&reference)),
                )
            }
            Verb::Save => {
                let out = self.out_dir().join(format!("save-{n}.tar"));
                let cmd = command(
                    &root,
                    &[
                        "save",
                        "--uncompressed",
                        "int/big:1",
                        "-o",
                        out.to_str().unwrap(),
                    ],
                );
                (cmd, Box::new(move |_: &Bench| out.exists()))
            }
            Verb::Export => {
                let out = self.out_dir().join(format!("export-{n}.tar"));
                let cmd = command(&root, &["export", &self.work, "-o", out.to_str().unwrap()]);
                (cmd, Box::new(move |_: &Bench| out.exists()))
            }
            Verb::Cp => {
                let out = self.out_dir().join(format!("cp-{n}"));
                let src = format!("{}:/changed", self.work);
                let cmd = command(&root, &["cp", &src, out.to_str().unwrap()]);
                (cmd, Box::new(move |_: &Bench| out.exists()))
            }
            Verb::Rm => {
                let id = last_line(&self.ok(&["create", "int/big:1"]));
                self.ok(&["mount", &id]);
                let cmd = command(&root, &["rm", "--force", &id]);
                (
                    cmd,
                    Box::new(move |b: &Bench| !b.containers().iter().any(|c| c["id"] == id)),
                )
            }
            Verb::Rmi => {
                let tar = self.files.join(format!("rmi-{n}.tar"));
                noise_layer_tar(&tar, 0, 2 * LAYER_BYTES, 3000 + n, Some("rmi\n"));
                let reference = format!("int/rmi-{n}:1");
                self.ok(&["import", tar.to_str().unwrap(), &reference]);
                let _ = std::fs::remove_file(&tar);
                let cmd = command(&root, &["rmi", &reference]);
                (
                    cmd,
                    Box::new(move |b: &Bench| !b.images().contains(&reference)),
                )
            }
        }
    }

    /// Ordinary commands work: a container on the big image shows its
    /// motd, and goes again.
    fn ordinary_commands_work(&self, when: &str) {
        let id = last_line(&self.ok(&["create", "int/big:1"]));
        let path = last_line(&self.ok(&["mount", &id]));
        let motd = std::fs::read_to_string(Path::new(&path).join("etc/motd"))
            .unwrap_or_else(|e| panic!("reading motd {when}: {e}"));
        assert_eq!(motd, "big\n", "motd of a new container {when}");
        self.ok(&["rm", "--force", &id]);
        self.ok(&["images"]);
    }

    /// Removes what earlier rounds added, so the store stays small.
    fn tidy(&self) {
        for tag in self.images() {
            if tag.starts_with("int/") && tag != "int/big:1" {
                self.ok(&["rmi", &tag]);
            }
        }
        for c in self.containers() {
            let id = c["id"].as_str().unwrap();
            if id != self.work {
                self.ok(&["rm", "--force", id]);
            }
        }
        let _ = std::fs::remove_dir_all(self.out_dir());
        std::fs::create_dir_all(self.out_dir()).unwrap();
        for e in std::fs::read_dir(&self.files).unwrap().flatten() {
            if e.file_type().unwrap().is_file() && e.file_name() != "big.tar" {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Load => "load",
        Verb::Import => "import",
        Verb::Create => "create",
        Verb::Mount => "mount",
        Verb::Commit => "commit",
        Verb::Save => "save",
        Verb::Export => "export",
        Verb::Rm => "rm",
        Verb::Rmi => "rmi",
        Verb::Cp => "cp",
    }
}

/// Checks one signalled run: exit status, the one line, the effect against
/// the line, no partial output, a store at rest, ordinary commands, check.
fn assert_interrupted(
    b: &Bench,
    verb: Verb,
    run: &Signalled,
    effect: &dyn Fn(&Bench) -> bool,
    signal: i32,
    when: &str,
) -> Outcome {
    // A signal that lands after the command's last check (while the
    // process exits) finds nothing to stop: it ends normally.
    let outcome = if !run.sent || (run.code == Some(0) && run.stderr_lines().is_empty()) {
        assert_eq!(
            run.code,
            Some(0),
            "{when}: ended before the signal but failed: {}",
            run.stderr
        );
        Outcome::Done
    } else {
        assert_eq!(
            run.code,
            Some(128 + signal),
            "{when}: exit status (killed by {:?}); stderr:\n{}",
            run.killed_by,
            run.stderr
        );
        let lines = run.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "{when}: want one line on stderr, got:\n{}",
            run.stderr
        );
        let line = lines[0];
        let prefix = format!("interrupted: {} ", verb_name(verb));
        assert!(line.starts_with(&prefix), "{when}: line {line:?}");
        if line.contains(" undone") {
            Outcome::Undone
        } else {
            assert!(line.contains(" finished"), "{when}: line {line:?}");
            Outcome::Done
        }
    };
    assert_eq!(
        effect(b),
        outcome == Outcome::Done,
        "{when}: the effect does not match {outcome:?} ({})",
        run.stderr.trim()
    );
    let partial: Vec<_> = std::fs::read_dir(b.out_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.contains("partial"))
        .collect();
    assert!(
        partial.is_empty(),
        "{when}: partial output left: {partial:?}"
    );
    assert_at_rest(&b.root, when);
    b.ordinary_commands_work(when);
    check_clean(&b.root, &[], &format!("{when}: check is not clean"));
    outcome
}

fn drivers() -> Vec<String> {
    std::env::var("STRATA_INTERRUPT_DRIVERS")
        .unwrap_or_else(|_| [HOST_DRIVERS, &["devmapper"]].concat().join(","))
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn setup(test: &str, driver: &str) -> Option<(ScratchDir, Bench)> {
    let (scratch, root) = scratch_store(test, driver, &[])?;
    let files = scratch.path().join("files");
    std::fs::create_dir_all(files.join("out")).unwrap();
    let big = files.join("big.tar");
    multi_layer_archive(&big, "int/big:1", LAYERS, LAYER_BYTES, 1, "big\n");
    strata_ok(&root, &["load", "-i", big.to_str().unwrap()]);
    let work = last_line(&strata_ok(
        &root,
        &["create", "--name", "work", "int/big:1"],
    ));
    let path = last_line(&strata_ok(&root, &["mount", &work]));
    // A change worth committing and exporting.
    std::fs::write(Path::new(&path).join("changed"), vec![7u8; 16 << 20]).unwrap();
    strata_ok(&root, &["umount", &work]);
    let bench = Bench {
        root,
        files,
        serial: 0,
        work,
    };
    Some((scratch, bench))
}

fn interrupt_every_verb(driver: &str) {
    let test = format!("interrupt::{driver}");
    let Some((_scratch, mut b)) = setup(&test, driver) else {
        return;
    };
    let started = Instant::now();
    let mut counts = std::collections::BTreeMap::<(&str, Outcome), usize>::new();
    for &verb in VERBS {
        // How long the verb takes, uninterrupted (and that it works).
        let (cmd, effect) = b.prepare(verb);
        let t = Instant::now();
        let run = signal_when_ready(cmd, Duration::from_secs(3600), &[], false);
        let typical = t.elapsed();
        assert_eq!(run.code, Some(0), "{verb:?} uninterrupted: {}", run.stderr);
        assert!(effect(&b), "{verb:?} uninterrupted had no effect");
        b.tidy();
        for (i, fraction) in [0.0, 0.3, 0.6, 0.9].into_iter().enumerate() {
            let (cmd, effect) = b.prepare(verb);
            let after = typical.mul_f64(fraction);
            let when = format!(
                "{driver}: SIGINT {after:?} into {} (typically {typical:?})",
                verb_name(verb)
            );
            let run = signal_when_ready(cmd, after, &[libc::SIGINT], false);
            let outcome = assert_interrupted(&b, verb, &run, &*effect, libc::SIGINT, &when);
            if i == 0 && typical > Duration::from_millis(300) {
                // A signal right at the start lands before the first
                // irreversible step, so the verb undoes. (A verb of a few
                // milliseconds may be past it by the time this test, on a
                // loaded machine, gets to send the signal.)
                assert_eq!(outcome, Outcome::Undone, "{when}: {}", run.stderr);
            }
            *counts.entry((verb_name(verb), outcome)).or_default() += 1;
            b.tidy();
        }
    }
    // SIGTERM and SIGHUP stop a command the same way, with their own status.
    for signal in [libc::SIGTERM, libc::SIGHUP] {
        let (cmd, effect) = b.prepare(Verb::Load);
        let when = format!("{driver}: signal {signal} into load");
        let run = signal_when_ready(cmd, Duration::ZERO, &[signal], false);
        assert_eq!(
            assert_interrupted(&b, Verb::Load, &run, &*effect, signal, &when),
            Outcome::Undone
        );
        b.tidy();
    }
    eprintln!(
        "INTERRUPT {driver}: {counts:?} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn interrupt_vfs() {
    if drivers().iter().any(|d| d == "vfs") {
        interrupt_every_verb("vfs");
    }
}

#[test]
fn interrupt_btrfs() {
    if drivers().iter().any(|d| d == "btrfs") {
        interrupt_every_verb("btrfs");
    }
}

#[test]
fn interrupt_overlay2() {
    if drivers().iter().any(|d| d == "overlay2") {
        interrupt_every_verb("overlay2");
    }
}

#[test]
fn interrupt_blockfile() {
    if drivers().iter().any(|d| d == "blockfile") {
        interrupt_every_verb("blockfile");
    }
}

/// dm-thin is missing on hosts like the CI builder: the VM tier runs this.
#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn interrupt_devmapper() {
    if drivers().iter().any(|d| d == "devmapper") {
        interrupt_every_verb("devmapper");
    }
}

/// A second signal while the first is still being handled ends the process
/// at once (no orderly line); the next `check --repair` finishes what it
/// left, after which the store is clean and works.
#[test]
fn second_signal_exits_at_once() {
    let Some((_scratch, mut b)) = setup("interrupt::second_signal", "vfs") else {
        return;
    };
    for verb in [Verb::Load, Verb::Import, Verb::Export] {
        let (cmd, _effect) = b.prepare(verb);
        // Both signals are pending together when the process runs on: the
        // second is handled before any safe point can be reached.
        let run = signal_when_ready(
            cmd,
            Duration::from_millis(50),
            &[libc::SIGINT, libc::SIGHUP],
            true,
        );
        assert!(run.sent, "{verb:?} ended before the signals");
        assert!(
            matches!(run.code, Some(130) | Some(129)),
            "{verb:?}: second signal: status {:?}, stderr:\n{}",
            run.code,
            run.stderr
        );
        assert!(
            !run.stderr.contains("interrupted:"),
            "{verb:?}: the second signal should exit before any orderly stop:\n{}",
            run.stderr
        );
        assert!(
            run.after_signal < Duration::from_secs(2),
            "{verb:?}: took {:?} to exit",
            run.after_signal
        );
        check_clean(
            &b.root,
            &["--repair"],
            &format!("{verb:?}: check --repair after a second signal"),
        );
        check_clean(&b.root, &[], &format!("{verb:?}: check after repair"));
        b.ordinary_commands_work(&format!("after a second signal in {verb:?}"));
        b.tidy();
    }
}

/// Ctrl-C twice, the second once the first was delivered: the process
/// exits 130 at once (or, if its rollback won the race, with its one
/// orderly line), and the store is clean after the next command.
#[test]
fn ctrl_c_twice_exits_130() {
    let Some((_scratch, mut b)) = setup("interrupt::ctrl_c_twice", "vfs") else {
        return;
    };
    for verb in [Verb::Load, Verb::Import, Verb::Save] {
        // An idle machine finishes a save in well under 100 ms: signal
        // sooner until the signals land mid-command.
        let mut delays = [100, 30, 5, 0].into_iter();
        let run = loop {
            let delay = delays.next().expect("delays");
            let (cmd, _effect) = b.prepare(verb);
            let run = signal_when_ready(
                cmd,
                Duration::from_millis(delay),
                &[libc::SIGINT, libc::SIGINT],
                false,
            );
            if run.sent || delay == 0 {
                break run;
            }
            b.tidy();
        };
        assert!(run.sent, "{verb:?} ended before the signals");
        assert_eq!(run.code, Some(130), "{verb:?}: {}", run.stderr);
        let lines = run.stderr_lines();
        assert!(
            lines.is_empty() || (lines.len() == 1 && lines[0].starts_with("interrupted: ")),
            "{verb:?}: {}",
            run.stderr
        );
        assert!(
            run.after_signal < Duration::from_secs(2),
            "{verb:?}: took {:?} to exit",
            run.after_signal
        );
        b.ok(&["images"]);
        check_clean(
            &b.root,
            &[],
            &format!("{verb:?}: check after the next command"),
        );
        b.ordinary_commands_work(&format!("after Ctrl-C twice in {verb:?}"));
        b.tidy();
    }
}

/// Every verb but `init` (and `bench`) on a root without a store fails
/// with the message and creates nothing: not the root, not a file in an
/// existing empty root.
#[test]
fn verbs_on_a_missing_root_create_nothing() {
    let scratch = ScratchDir::new("interrupt-missing-root");
    let file = scratch.path().join("in.tar");
    busybox_rootfs_tar(&file, "x\n");
    let f = file.to_str().unwrap();
    let out = scratch.path().join("out.tar");
    let o = out.to_str().unwrap();
    let socket = scratch.path().join("sock/strata.sock");
    let s = socket.to_str().unwrap();
    let verbs: &[&[&str]] = &[
        &["info"],
        &["images"],
        &["ps"],
        &["import", f, "a:1"],
        &["load", "-i", f],
        &["save", "a:1", "-o", o],
        &["tag", "a:1", "b:1"],
        &["rmi", "a:1"],
        &["history", "a:1"],
        &["create", "a:1"],
        &["inspect", "c"],
        &["mount", "c"],
        &["umount", "c"],
        &["diff", "c"],
        &["commit", "c", "b:1"],
        &["export", "c", "-o", o],
        &["rm", "c"],
        &["check"],
        &["check", "--repair"],
        &["snapshots"],
        &["snapshots", "tree"],
        &["snapshots", "usage"],
        &["serve", "--socket", s],
    ];
    let empty = scratch.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for root in [scratch.path().join("missing/store"), empty.clone()] {
        for args in verbs {
            for driver in ["auto", "vfs"] {
                let mut full = vec!["--driver", driver];
                full.extend_from_slice(args);
                let run = strata(&root, &full);
                let stderr = String::from_utf8_lossy(&run.stderr);
                assert_eq!(
                    run.status.code(),
                    Some(1),
                    "{args:?} on {}: {stderr}",
                    root.display()
                );
                let want = format!("no Strata store at {} (run strata init)", root.display());
                assert!(stderr.contains(&want), "{args:?}: {stderr}");
                assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
            }
        }
        if root == empty {
            assert_eq!(
                std::fs::read_dir(&root).unwrap().count(),
                0,
                "files made in {}",
                root.display()
            );
        } else {
            assert!(
                !scratch.path().join("missing").exists(),
                "{} was created",
                root.display()
            );
        }
    }
    assert!(!out.exists() && !socket.parent().unwrap().exists());
}

/// A failed `init` (unknown driver, bad option) leaves nothing it did not
/// find; `init` on an existing store says so and succeeds with its driver.
#[test]
fn failed_init_leaves_nothing() {
    let scratch = ScratchDir::new("interrupt-init");
    let missing = scratch.path().join("a/b/store");
    let empty = scratch.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("keep"), "mine").unwrap();
    let mut cases: Vec<Vec<&str>> = vec![
        vec!["--driver", "nosuch", "init"],
        vec!["--driver", "vfs", "init", "--opt", "notkeyvalue"],
    ];
    if nix::unistd::geteuid().is_root() {
        cases.push(vec!["--driver", "btrfs", "init", "--opt", "btrfs.size=1M"]);
        cases.push(vec!["--driver", "btrfs", "init", "--opt", "btrfs.nope=1"]);
    }
    for root in [&missing, &empty] {
        for args in &cases {
            let run = strata(root, args);
            assert_eq!(run.status.code(), Some(1), "{args:?} should fail");
            if root == &missing {
                assert!(
                    !scratch.path().join("a").exists(),
                    "{args:?} left {}",
                    root.display()
                );
            } else {
                let names: Vec<_> = std::fs::read_dir(root)
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                assert_eq!(names, ["keep"], "{args:?} left files in {}", root.display());
            }
            assert_eq!(
                loops_below(scratch.path()),
                Vec::<PathBuf>::new(),
                "{args:?}"
            );
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let before = mode(&empty);
    let err = strata_err(&empty, &["--driver", "vfs", "init"]);
    assert!(
        err.contains("is not empty"),
        "init took over a used directory: {err}"
    );
    assert_eq!(
        mode(&empty),
        before,
        "a refused init changed the directory's mode"
    );
    assert!(empty.join("keep").exists());

    let fresh = scratch.path().join("fresh");
    std::fs::create_dir_all(fresh.join("lost+found")).unwrap();
    let first = strata_ok(&fresh, &["--driver", "vfs", "init"]);
    assert!(first.contains("uses driver vfs"), "{first}");
    let again = strata_ok(&fresh, &["--driver", "vfs", "init"]);
    assert!(again.contains("exists and uses driver vfs"), "{again}");
    let err = strata_err(&fresh, &["--driver", "overlay2", "init"]);
    assert!(err.contains("already uses driver vfs"), "{err}");
}
