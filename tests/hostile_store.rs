//! Hostile images against the store itself (issue 18, points 1, 6 and 8),
//! per driver (devmapper in the VM tier):
//!
//! - a local user cannot read or write anything of the store: the root is
//!   0700, every file Strata makes 0600, every directory 0700, and an
//!   unprivileged user (uid 65534 through `setpriv`) fails to read layer
//!   tars, loop files, the database and image files, and to write into
//!   committed layers, even with the root's barrier opened;
//! - setuid binaries, file capabilities and device nodes of an image do
//!   nothing in Strata's mounts (`nosuid,nodev`), and do work when the user
//!   opts in with `strata mount --suid --dev` (proving the attempt is real);
//! - `strata serve` keeps serving through EMFILE and raises its soft limit;
//! - a layer entry owned by uid 4294967295 is refused;
//! - the same image has the same merged content on every driver, with an
//!   opaque whiteout at the root and a path through a lower layer's symlink;
//! - a store on a full disk still opens for `check` and `images`.
//!
//! Needs root; skips otherwise.

mod common;
mod reliability;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reliability::*;
use strata::image::{write_oci_archive, ImageToSave, SaveOptions};
use strata::serve::GrpcSnapshotter;
use strata::snapshotter::Snapshotter;
use strata_driver_api::testing::{require_program, require_root, LoopFs, ScratchDir};
use strata_driver_api::Labels;

/// The unprivileged user the attacks run as.
const NOBODY: &str = "65534";

/// Store options per driver: small loop files.
fn driver_options(driver: &str) -> Vec<&'static str> {
    match driver {
        "btrfs" => vec!["btrfs.size=128M", "btrfs.quota=off"],
        "blockfile" => vec!["blockfile.size=64M", "blockfile.backing_size=512M"],
        "devmapper" => vec!["dm.basesize=64M", "dm.data_size=512M"],
        _ => Vec::new(),
    }
}

fn can_run(test: &str, driver: &str) -> bool {
    let tool = match driver {
        "btrfs" => "mkfs.btrfs",
        "blockfile" => "mkfs.xfs",
        _ => "setpriv",
    };
    require_root(test)
        && require_program(test, "setpriv")
        && require_program(test, "prlimit")
        && require_program(test, tool)
}

/// A store with `driver` at `<dir>/store`.
fn new_store(test: &str, dir: &Path, driver: &str) -> Option<PathBuf> {
    let root = dir.join("store");
    init_store(test, &root, driver, &driver_options(driver)).then_some(root)
}

/// Runs `sh -c script sh ARGS...` as uid/gid 65534 without groups.
fn as_nobody(script: &str, args: &[PathBuf]) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// The hostile image of point 1.

/// What the hostile image is built around: a loop device with a known
/// first sector (its node goes into the image, mode 0666).
struct Bait {
    _scratch: ScratchDir,
    _device: strata_driver_api::mount::LoopDevice,
    rdev: u64,
}

const SUPERBLOCK_MAGIC: &[u8] = b"STRATA-RAW-SUPERBLOCK-0123456789";
const SECRET: &[u8] = b"image secret, mode 0600";

impl Bait {
    fn new() -> Self {
        let scratch = ScratchDir::new("hostile-bait");
        let file = scratch.path().join("disk.img");
        let mut data = SUPERBLOCK_MAGIC.to_vec();
        data.resize(1 << 20, 0);
        fs::write(&file, &data).unwrap();
        let device = strata_driver_api::mount::attach_loop(&file, true, true).expect("attach loop");
        let rdev = fs::metadata(&device.path).unwrap().rdev();
        Bait {
            _scratch: scratch,
            _device: device,
            rdev,
        }
    }
}

/// `security.capability` (vfs_cap_data revision 2) granting
/// CAP_DAC_READ_SEARCH, permitted and effective.
fn dac_read_search_capability() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes()); // revision 2, effective
    v.extend_from_slice(&(1u32 << 2).to_le_bytes()); // permitted[0]: CAP_DAC_READ_SEARCH
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable[0]
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted[1]
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable[1]
    v
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// A rootfs tar with a setuid-root `cat`, a `cat` with a file capability,
/// a 0666 block device node of `bait`, a 0600 secret and a 1777 /tmp.
fn hostile_rootfs(path: &Path, bait: &Bait) {
    let cat = fs::read("/bin/cat").expect("read /bin/cat");
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for (dir, mode) in [("bin", 0o755), ("dev", 0o755), ("tmp", 0o1777)] {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    let mut h = header(tar::EntryType::Regular, 0o4755, cat.len() as u64);
    b.append_data(&mut h, "bin/suidcat", &cat[..]).unwrap();
    let cap = dac_read_search_capability();
    b.append_pax_extensions([("SCHILY.xattr.security.capability", &cap[..])])
        .unwrap();
    let mut h = header(tar::EntryType::Regular, 0o755, cat.len() as u64);
    b.append_data(&mut h, "bin/capcat", &cat[..]).unwrap();
    let mut h = header(tar::EntryType::Block, 0o666, 0);
    h.set_device_major(nix::sys::stat::major(bait.rdev) as u32)
        .unwrap();
    h.set_device_minor(nix::sys::stat::minor(bait.rdev) as u32)
        .unwrap();
    b.append_data(&mut h, "dev/disk", std::io::empty()).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o600, SECRET.len() as u64);
    b.append_data(&mut h, "secret", SECRET).unwrap();
    b.into_inner().unwrap().flush().unwrap();
}

/// Regular files and directories under `dir` (not following symlinks).
fn walk(dir: &Path, files: &mut Vec<PathBuf>, dirs: &mut Vec<PathBuf>) {
    dirs.push(dir.to_owned());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            walk(&p, files, dirs);
        } else if m.is_file() {
            files.push(p);
        }
    }
}

/// As uid 65534: tries to read every regular file and to create a file in
/// every directory under `root`; returns what succeeded.
fn nobody_reaches(root: &Path) -> Vec<String> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    walk(root, &mut files, &mut dirs);
    assert!(!files.is_empty(), "nothing under {}", root.display());
    let script = r#"
        mode=read
        for p in "$@"; do
            if [ "$p" = "--dirs--" ]; then mode=write; continue; fi
            if [ $mode = read ]; then
                cat "$p" >/dev/null 2>&1 && echo "read $p"
            else
                (echo pwned > "$p/.strata-pwned") 2>/dev/null && echo "wrote $p/.strata-pwned"
            fi
        done
        true
    "#;
    let mut args = files;
    args.push(PathBuf::from("--dirs--"));
    args.extend(dirs);
    let out = as_nobody(script, &args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Mount options (the per-mount ones, field 6 of mountinfo) of every mount
/// at or below `dir`.
fn mount_options_below(dir: &Path) -> Vec<(String, String)> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Path::new(f[4])
                .starts_with(dir)
                .then(|| (f[4].to_owned(), f[5].to_owned()))
        })
        .collect()
}

/// A root-only file (0600, owned by root) that uid 65534 can reach but not
/// read: what the setuid and capability binaries try to read (not
/// /etc/shadow, whose permissions a VM's shared root may not enforce).
fn root_only_secret(dir: &Path) -> PathBuf {
    let secret = dir.join("root-only-secret");
    fs::write(&secret, b"only root may read this").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let mut p = dir.to_owned();
    loop {
        // Reachable: every directory above it can be traversed.
        assert!(mode(&p) & 0o001 != 0, "{} is not traversable", p.display());
        if !p.pop() || p.as_os_str().is_empty() {
            break;
        }
    }
    let plain = as_nobody(r#"cat "$1" >/dev/null 2>&1"#, std::slice::from_ref(&secret));
    assert!(
        !plain.status.success(),
        "uid {NOBODY} reads a 0600 root file without any help: the test cannot tell"
    );
    secret
}

/// The three image attacks against a mounted rootfs, as uid 65534:
/// (setuid cat read `secret`, capability cat read it, device read).
fn attacks(rootfs: &Path, secret: &Path) -> (bool, bool, Option<Vec<u8>>) {
    let run = |bin: &str| {
        as_nobody(
            r#""$1" "$2" >/dev/null 2>&1"#,
            &[rootfs.join(bin), secret.to_owned()],
        )
        .status
        .success()
    };
    let script = format!(r#"head -c {} "$1""#, SUPERBLOCK_MAGIC.len());
    let dev = as_nobody(&script, &[rootfs.join("dev/disk")]);
    let read = dev.status.success().then_some(dev.stdout);
    (run("bin/suidcat"), run("bin/capcat"), read)
}

/// Opens the directories from `root` down to `rootfs` for traversal (0711),
/// returning what to restore.
fn open_path(root: &Path, rootfs: &Path) -> Vec<(PathBuf, u32)> {
    let mut saved = Vec::new();
    let mut p = rootfs.parent().unwrap().to_owned();
    loop {
        saved.push((p.clone(), mode(&p)));
        chmod(&p, 0o711);
        if p == root {
            break;
        }
        p = p.parent().unwrap().to_owned();
    }
    saved
}

fn restore(saved: &[(PathBuf, u32)]) {
    for (p, m) in saved {
        chmod(p, *m);
    }
}

fn local_user_cannot_become_root(driver: &str) {
    let test = format!("hostile_store::local_user_{driver}");
    if !can_run(&test, driver) {
        return;
    }
    let scratch = ScratchDir::new(&format!("hostile-perm-{driver}"));
    let secret = root_only_secret(scratch.path());
    let Some(root) = new_store(&test, scratch.path(), driver) else {
        return;
    };
    let bait = Bait::new();
    let tar = scratch.path().join("hostile.tar");
    hostile_rootfs(&tar, &bait);
    strata_ok(&root, &["import", tar.to_str().unwrap(), "hostile"]);
    let id = last_line(&strata_ok(&root, &["create", "hostile"]));
    let rootfs = PathBuf::from(last_line(&strata_ok(&root, &["mount", &id])));

    // The permission model: root 0700, Strata's own files 0600 or 0400.
    assert_eq!(mode(&root), 0o700, "{test}: store root");
    let mut own_files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    let tars: Vec<PathBuf> = fs::read_dir(root.join("layer-tars"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(!tars.is_empty(), "{test}: no kept layer tar");
    own_files.extend(tars);
    let (mut all_files, mut all_dirs) = (Vec::new(), Vec::new());
    walk(&root.join(driver), &mut all_files, &mut all_dirs);
    let loop_files: Vec<PathBuf> = all_files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "img"))
        .collect();
    if matches!(driver, "btrfs" | "blockfile") {
        assert!(!loop_files.is_empty(), "{test}: no loop file found");
    }
    own_files.extend(loop_files);
    assert!(
        own_files.iter().any(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("metadata.")),
        "{test}: no database among {own_files:?}"
    );
    for f in &own_files {
        assert_eq!(
            mode(f) & 0o077,
            0,
            "{test}: {} is mode {:o}",
            f.display(),
            mode(f)
        );
    }

    // Every mount under the root is nosuid,nodev (container and backing).
    let mounts = mount_options_below(&root);
    assert!(
        mounts.iter().any(|(p, _)| Path::new(p) == rootfs),
        "{test}: {mounts:?}"
    );
    for (point, opts) in &mounts {
        let opts: Vec<&str> = opts.split(',').collect();
        assert!(
            opts.contains(&"nosuid") && opts.contains(&"nodev"),
            "{test}: {point} is mounted {opts:?}"
        );
    }

    // As uid 65534: no file readable, no directory writable. With the
    // root's barrier, then without it (what Strata made inside is private
    // on its own: a committed layer's /tmp is 1777 in the image).
    let reached = nobody_reaches(&root);
    assert!(reached.is_empty(), "{test}: {reached:?}");
    chmod(&root, 0o711);
    let reached = nobody_reaches(&root);
    chmod(&root, 0o700);
    assert!(reached.is_empty(), "{test}: root opened: {reached:?}");

    // The image's setuid binary, file capability and device node do
    // nothing through the container mount, even when its path is opened.
    let saved = open_path(&root, &rootfs);
    let (suid, cap, dev) = attacks(&rootfs, &secret);
    restore(&saved);
    assert!(!suid, "{test}: setuid cat read a root-only file");
    assert!(
        !cap,
        "{test}: cat with CAP_DAC_READ_SEARCH read a root-only file"
    );
    assert!(dev.is_none(), "{test}: the device node was readable");

    // Opting in makes them work: the attempts above were real ones.
    strata_ok(&root, &["umount", &id]);
    let rootfs = PathBuf::from(last_line(&strata_ok(
        &root,
        &["mount", "--suid", "--dev", &id],
    )));
    let saved = open_path(&root, &rootfs);
    let (suid, cap, dev) = attacks(&rootfs, &secret);
    restore(&saved);
    assert!(suid, "{test}: control: setuid cat failed with --suid");
    assert!(cap, "{test}: control: capability cat failed with --suid");
    assert_eq!(
        dev.as_deref(),
        Some(SUPERBLOCK_MAGIC),
        "{test}: control: device node unreadable with --dev"
    );
    strata_ok(&root, &["umount", &id]);
    strata_ok(&root, &["rm", &id]);
    check_clean(&root, &[], &test);
}

macro_rules! per_driver {
    ($case:ident: $vfs:ident, $overlay2:ident, $btrfs:ident, $blockfile:ident, $devmapper:ident) => {
        #[test]
        fn $vfs() {
            $case("vfs")
        }
        #[test]
        fn $overlay2() {
            $case("overlay2")
        }
        #[test]
        fn $btrfs() {
            $case("btrfs")
        }
        #[test]
        fn $blockfile() {
            $case("blockfile")
        }
        #[test]
        #[ignore = "needs dm-thin: runs in the VM tier"]
        fn $devmapper() {
            $case("devmapper")
        }
    };
}

per_driver!(local_user_cannot_become_root:
    local_user_cannot_become_root_vfs,
    local_user_cannot_become_root_overlay2,
    local_user_cannot_become_root_btrfs,
    local_user_cannot_become_root_blockfile,
    local_user_cannot_become_root_devmapper);

// ---------------------------------------------------------------------------
// Scratch mounts (import, commit, check) are nosuid,nodev too, whatever
// the spec: a bind and an overlay (mounted through fsmount attributes).

#[test]
fn scratch_mounts_are_nosuid_nodev() {
    let test = "hostile_store::scratch_mounts";
    if !require_root(test) {
        return;
    }
    let scratch = ScratchDir::new("hostile-scratch-mounts");
    let d = |n: &str| {
        let p = scratch.path().join(n);
        fs::create_dir_all(&p).unwrap();
        p
    };
    let (lower, upper, work) = (d("lower"), d("upper"), d("work"));
    let specs = [
        strata_driver_api::Mount {
            fstype: "bind".into(),
            source: lower.display().to_string(),
            options: vec!["rbind".into(), "ro".into()],
        },
        strata_driver_api::Mount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("workdir={}", work.display()),
                format!("upperdir={}", upper.display()),
                format!("lowerdir={}", lower.display()),
            ],
        },
    ];
    for (i, spec) in specs.iter().enumerate() {
        let at = scratch.path().join(format!("mnt{i}"));
        let m = strata::mounts::TempMount::new(std::slice::from_ref(spec), at.clone())
            .unwrap_or_else(|e| panic!("{test}: mount {spec:?}: {e}"));
        let found = mount_options_below(&at);
        assert_eq!(found.len(), 1, "{found:?}");
        let opts: Vec<&str> = found[0].1.split(',').collect();
        assert!(
            opts.contains(&"nosuid") && opts.contains(&"nodev"),
            "{test}: {} mounted {opts:?}",
            spec.fstype
        );
        drop(m);
    }
}

// ---------------------------------------------------------------------------
// Point 6: `strata serve` under a low file limit.

fn start_serve(root: &Path, socket: &Path, nofile: &str) -> Server {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(["serve", "--socket"])
        .arg(socket)
        .env("STRATA_LOG", "error")
        .stderr(Stdio::null());
    Server::start_command(cmd, socket)
}

/// The soft limit on open files of process `pid`.
fn soft_nofile(pid: u32) -> String {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    line.split_whitespace().nth(3).unwrap().to_owned()
}

fn serve_survives_emfile(driver: &str) {
    let test = format!("hostile_store::serve_emfile_{driver}");
    if !can_run(&test, driver) {
        return;
    }
    let scratch = ScratchDir::new(&format!("hostile-serve-{driver}"));
    let Some(root) = new_store(&test, scratch.path(), driver) else {
        return;
    };
    // The soft limit is raised to the hard one at start.
    let socket = scratch.path().join("raise.sock");
    let server = start_serve(&root, &socket, "128:4096");
    let deadline = Instant::now() + Duration::from_secs(10);
    while soft_nofile(server.id()) != "4096" {
        assert!(
            Instant::now() < deadline,
            "{test}: soft limit stayed {}",
            soft_nofile(server.id())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();

    // 200 connections under a hard limit of 128: it keeps serving.
    let socket = scratch.path().join("emfile.sock");
    let mut server = start_serve(&root, &socket, "128:128");
    let mut conns = Vec::new();
    for _ in 0..200 {
        conns.push(std::os::unix::net::UnixStream::connect(&socket).expect("connect"));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(server.running(), "{test}: strata serve exited under EMFILE");
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match GrpcSnapshotter::connect(&socket) {
            Ok(c) => match c.prepare(&"after-emfile".into(), None, Labels::new()) {
                Ok(_) => break c,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("{test}: not yet: {e}");
                }
                Err(e) => panic!("{test}: serve no longer answers: {e}"),
            },
            Err(e) if Instant::now() < deadline => eprintln!("{test}: connect: {e}"),
            Err(e) => panic!("{test}: cannot connect after EMFILE: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    client.remove(&"after-emfile".into()).unwrap();
    drop(client);
    assert!(server.running());
    server.stop();
}

per_driver!(serve_survives_emfile:
    serve_survives_emfile_vfs,
    serve_survives_emfile_overlay2,
    serve_survives_emfile_btrfs,
    serve_survives_emfile_blockfile,
    serve_survives_emfile_devmapper);

// ---------------------------------------------------------------------------
// Point 8: uid 4294967295 with mode 04755.

fn max_uid_is_refused(driver: &str) {
    let test = format!("hostile_store::max_uid_{driver}");
    if !can_run(&test, driver) {
        return;
    }
    let scratch = ScratchDir::new(&format!("hostile-uid-{driver}"));
    let Some(root) = new_store(&test, scratch.path(), driver) else {
        return;
    };
    for (uid, gid) in [(u32::MAX as u64, 0), (0, u32::MAX as u64)] {
        let tar = scratch.path().join("uid.tar");
        let mut b = tar::Builder::new(fs::File::create(&tar).unwrap());
        let mut h = header(tar::EntryType::Regular, 0o6755, 4);
        h.set_uid(uid);
        h.set_gid(gid);
        b.append_data(&mut h, "suid", &b"\x7fELF"[..]).unwrap();
        b.into_inner().unwrap().flush().unwrap();
        let err = strata_err(&root, &["import", tar.to_str().unwrap(), "uid"]);
        assert!(
            err.contains("4294967295") && err.contains("suid"),
            "{test}: {err}"
        );
        assert!(
            !strata_ok(&root, &["images"]).contains("uid"),
            "{test}: image recorded"
        );
    }
    assert_eq!(json(&root, &["info"])["snapshots"], 0, "{test}");
    check_clean(&root, &[], &test);
}

per_driver!(max_uid_is_refused:
    max_uid_is_refused_vfs,
    max_uid_is_refused_overlay2,
    max_uid_is_refused_btrfs,
    max_uid_is_refused_blockfile,
    max_uid_is_refused_devmapper);

// ---------------------------------------------------------------------------
// Point 8: the same merged content on every driver.

fn digest(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Relative path -> kind and content of everything under `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == "lost+found" {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                go(root, &p, out);
                "dir".to_owned()
            } else if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if m.file_type().is_char_device() {
                format!("char {}", m.rdev())
            } else {
                format!("file {}", String::from_utf8_lossy(&fs::read(&p).unwrap()))
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

fn merged_content_matches_vfs(driver: &str) {
    let test = format!("hostile_store::merged_content_{driver}");
    if !can_run(&test, driver) {
        return;
    }
    let scratch = ScratchDir::new(&format!("hostile-merge-{driver}"));
    let Some(root) = new_store(&test, scratch.path(), driver) else {
        return;
    };
    let base = RawTar::new()
        .file("old", b"old")
        .dir("d/")
        .file("d/x", b"x")
        .dir("target/")
        .symlink("link", "/target")
        .symlink("rel", "target")
        .finish();
    // Through the lower layer's symlinks; an opaque directory below the root.
    let through = RawTar::new()
        .file("link/planted", b"via absolute link")
        .file("rel/relative", b"via relative link")
        .file("d/.wh..wh..opq", b"")
        .file("d/y", b"y")
        .finish();
    // An opaque whiteout at the layer root hides everything below.
    let opaque_root = RawTar::new()
        .file(".wh..wh..opq", b"")
        .file("fresh", b"fresh")
        .finish();
    let p = |n: &str| scratch.path().join(n);
    for (n, b) in [
        ("base.tar", &base),
        ("through.tar", &through),
        ("opaque.tar", &opaque_root),
    ] {
        fs::write(p(n), b).unwrap();
    }
    let images = vec![
        ImageToSave {
            tags: vec!["through:1".into()],
            config: config_for(&[&base, &through]),
            layers: vec![p("base.tar"), p("through.tar")],
        },
        ImageToSave {
            tags: vec!["opaque:1".into()],
            config: config_for(&[&base, &opaque_root]),
            layers: vec![p("base.tar"), p("opaque.tar")],
        },
    ];
    let archive = p("images.tar");
    write_oci_archive(
        fs::File::create(&archive).unwrap(),
        &images,
        &SaveOptions {
            gzip: false,
            temp_dir: scratch.path().to_owned(),
        },
    )
    .unwrap();
    strata_ok(&root, &["load", "-i", archive.to_str().unwrap()]);

    let expect_through: BTreeMap<String, String> = [
        ("d", "dir"),
        ("d/y", "file y"),
        ("link", "-> /target"),
        ("old", "file old"),
        ("rel", "-> target"),
        ("target", "dir"),
        ("target/planted", "file via absolute link"),
        ("target/relative", "file via relative link"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    let expect_opaque: BTreeMap<String, String> = [("fresh".to_owned(), "file fresh".to_owned())]
        .into_iter()
        .collect();
    for (image, expect) in [("through:1", expect_through), ("opaque:1", expect_opaque)] {
        let id = last_line(&strata_ok(&root, &["create", image]));
        let rootfs = PathBuf::from(last_line(&strata_ok(&root, &["mount", &id])));
        let got = tree(&rootfs);
        strata_ok(&root, &["umount", &id]);
        strata_ok(&root, &["rm", &id]);
        assert_eq!(got, expect, "{test}: merged view of {image}");
    }
    check_clean(&root, &[], &test);
}

per_driver!(merged_content_matches_vfs:
    merged_content_matches_vfs_vfs,
    merged_content_matches_vfs_overlay2,
    merged_content_matches_vfs_btrfs,
    merged_content_matches_vfs_blockfile,
    merged_content_matches_vfs_devmapper);

// ---------------------------------------------------------------------------
// Point 8: a store on a full disk still opens (check, images, info).

fn full_disk_store_opens(driver: &str) {
    let test = format!("hostile_store::full_disk_open_{driver}");
    if !can_run(&test, driver) || !require_program(&test, "mkfs.ext4") {
        return;
    }
    let fs_size = if matches!(driver, "vfs" | "overlay2") {
        48 << 20
    } else {
        160 << 20
    };
    let disk = LoopFs::new("ext4", fs_size, &[]).expect("small ext4");
    let scratch = ScratchDir::new(&format!("hostile-full-{driver}"));
    let Some(root) = new_store(&test, disk.path(), driver) else {
        return;
    };
    let base = scratch.path().join("base.tar");
    busybox_rootfs_tar(&base, "full disk\n");
    strata_ok(&root, &["import", base.to_str().unwrap(), "base"]);
    // Close the store (its backing unmounts), then fill the disk as root.
    let filler = disk.path().join("filler");
    {
        let mut f = fs::File::create(&filler).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        loop {
            if f.write_all(&chunk).and_then(|()| f.sync_data()).is_err() {
                break;
            }
        }
    }
    // Small writes may still fit a partly used block; fill those too.
    for i in 0.. {
        if fs::write(disk.path().join(format!("crumb-{i}")), b"c").is_err() {
            break;
        }
    }
    check_clean(&root, &[], &format!("{test}: check on a full disk"));
    assert!(
        strata_ok(&root, &["images"]).contains("base"),
        "{test}: images"
    );
    strata_ok(&root, &["info"]);
    fs::remove_file(&filler).unwrap();
    assert_no_leaks(&root, &test);
}

per_driver!(full_disk_store_opens:
    full_disk_store_opens_vfs,
    full_disk_store_opens_overlay2,
    full_disk_store_opens_btrfs,
    full_disk_store_opens_blockfile,
    full_disk_store_opens_devmapper);
