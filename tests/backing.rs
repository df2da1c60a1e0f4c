//! A loop-backed store's backing file is attached to one loop device per
//! host and stays mounted between commands. Reproduces the reported
//! corruption (a leftover mount of the backing filesystem, its mount point
//! unmounted, then ordinary commands attached the image a second time),
//! and covers `strata release`, racing opens and `check` finding a second
//! attachment. Loop devices are only ever counted for our own files: other
//! processes on the host attach loop devices concurrently.

mod common;
mod reliability;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use common::*;
use reliability::*;
use strata_driver_api::mount::{
    attach_loop, attach_loop_once, detach_loop, is_mountpoint, loops_backed_by, mount_fs, unmount,
};
use strata_driver_api::testing::{loops_below, require_program, require_root, ScratchDir};

/// A store whose backing is a loop file, and where it lives.
struct Fixture {
    scratch: ScratchDir,
    root: PathBuf,
    /// The backing file.
    image: PathBuf,
    /// Where the driver mounts it.
    mnt: PathBuf,
    fstype: &'static str,
    images: usize,
}

/// Loop devices whose backing file is exactly `file`, read from sysfs paths
/// (independently of the inode matching under test).
fn attached(file: &Path) -> Vec<PathBuf> {
    loops_below(file)
}

fn fixture(test: &str, driver: &str) -> Option<Fixture> {
    let (mkfs, fstype, options): (_, _, &[&str]) = match driver {
        "btrfs" => (
            "mkfs.btrfs",
            "btrfs",
            &["btrfs.size=256M", "btrfs.quota=off"],
        ),
        _ => (
            "mkfs.xfs",
            "xfs",
            &[
                "blockfile.backing=loop",
                "blockfile.size=32M",
                "blockfile.backing_size=512M",
            ],
        ),
    };
    if !require_program(test, mkfs) {
        return None;
    }
    let (scratch, root) = scratch_store(test, driver, options)?;
    let backing = backing_of(&root);
    assert_eq!(backing.len(), 1, "{test}: one backing file: {backing:?}");
    let (image, devices, mnt) = backing.into_iter().next().expect("backing");
    assert_eq!(devices.len(), 1, "{test}: attached once after init");
    let mnt = mnt.unwrap_or_else(|| panic!("{test}: the backing is mounted after init"));
    Some(Fixture {
        scratch,
        root,
        image,
        mnt,
        fstype,
        images: 0,
    })
}

impl Fixture {
    /// Ordinary commands: import, create, mount, write and read, umount, rm;
    /// then `check` must be clean.
    fn exercise(&mut self, test: &str) {
        self.images += 1;
        let n = self.images;
        let tar = self.scratch.path().join(format!("rootfs-{n}.tar"));
        busybox_rootfs_tar(&tar, &format!("image {n}\n"));
        let reference = format!("demo/app:{n}");
        strata_ok(&self.root, &["import", tar.to_str().unwrap(), &reference]);
        let id = last_line(&strata_ok(&self.root, &["create", &reference]));
        let path = PathBuf::from(last_line(&strata_ok(&self.root, &["mount", &id])));
        assert_eq!(
            std::fs::read_to_string(path.join("etc/motd")).expect("read motd"),
            format!("image {n}\n"),
            "{test}"
        );
        std::fs::write(path.join("written"), b"kept").expect("write in the container");
        strata_ok(&self.root, &["umount", &id]);
        let path = PathBuf::from(last_line(&strata_ok(&self.root, &["mount", &id])));
        assert_eq!(
            std::fs::read(path.join("written")).expect("read back"),
            b"kept"
        );
        strata_ok(&self.root, &["rm", "--force", &id]);
        check_clean(
            &self.root,
            &[],
            &format!("{test}: check after ordinary commands"),
        );
    }

    /// Asserts the backing file sits on exactly `dev` (and only it), by
    /// sysfs path and by inode.
    fn assert_attached_to(&self, dev: &Path, when: &str) {
        assert_eq!(
            attached(&self.image),
            vec![dev.to_path_buf()],
            "{} must stay on one loop device {when}",
            self.image.display()
        );
        assert_eq!(loops_backed_by(&self.image), vec![dev.to_path_buf()]);
    }

    fn device(&self) -> PathBuf {
        let devices = attached(&self.image);
        assert_eq!(devices.len(), 1, "attached once: {devices:?}");
        devices[0].clone()
    }
}

/// The reported scenario: a mount of the backing filesystem outlives a
/// command (a scratch mount left by Ctrl-C), the backing's own mount point
/// gets unmounted, then ordinary commands run. They must mount the
/// filesystem again from the same loop device, never attach a second one.
fn leftover_mount(test: &str, driver: &str) {
    let Some(mut f) = fixture(test, driver) else {
        return;
    };
    f.exercise(test);
    let dev = f.device();
    let held = f.scratch.path().join("held");
    std::fs::create_dir(&held).expect("mkdir held");
    mount_fs(&dev, &held, f.fstype, &[]).expect("keep a mount of the backing filesystem");
    unmount(&f.mnt).expect("unmount the backing's mount point");
    assert!(!is_mountpoint(&f.mnt).expect("mountinfo"));

    f.exercise(test);
    f.assert_attached_to(&dev, "while another mount holds its filesystem");
    assert!(
        is_mountpoint(&f.mnt).expect("mountinfo"),
        "{test}: remounted"
    );
    unmount(&f.mnt).expect("unmount the backing's mount point again");
    f.exercise(test);
    f.assert_attached_to(&dev, "after a second unmount behind its back");
    let images = json(&f.root, &["images"]);
    assert_eq!(images.as_array().map(Vec::len), Some(3), "{test}: {images}");

    let err = strata_err(&f.root, &["release"]);
    assert!(
        err.contains(held.to_str().unwrap()) && err.contains(f.image.to_str().unwrap()),
        "{test}: release must name the file and the mount that holds it: {err}"
    );
    f.assert_attached_to(&dev, "after a refused release");
    assert!(
        is_mountpoint(&f.mnt).expect("mountinfo"),
        "refused release unmounts nothing"
    );

    unmount(&held).expect("unmount the leftover mount");
    strata_ok(&f.root, &["release"]);
    assert_eq!(
        attached(&f.image),
        Vec::<PathBuf>::new(),
        "{test}: released"
    );
    assert!(!is_mountpoint(&f.mnt).expect("mountinfo"));
    assert_no_leaks(&f.root, "after release");
}

#[test]
fn leftover_mount_does_not_attach_twice_btrfs() {
    leftover_mount("backing::leftover_mount_btrfs", "btrfs");
}

#[test]
fn leftover_mount_does_not_attach_twice_blockfile() {
    leftover_mount("backing::leftover_mount_blockfile", "blockfile");
}

/// `release` unmounts and detaches; the next command sets the backing up
/// again, once, with every image intact; `info` shows each state.
fn release_and_reattach(test: &str, driver: &str) {
    let Some(mut f) = fixture(test, driver) else {
        return;
    };
    f.exercise(test);
    let info = json(&f.root, &["info"]);
    assert_eq!(info["backing"][0]["mounted"], true, "{test}: {info}");
    let text = strata_ok(&f.root, &["info"]);
    assert!(
        text.contains(f.image.to_str().unwrap()) && text.contains("(mounted)"),
        "{test}: info names the backing and its state:\n{text}"
    );

    let id = last_line(&strata_ok(&f.root, &["create", "demo/app:1"]));
    strata_ok(&f.root, &["mount", &id]);
    let err = strata_err(&f.root, &["release"]);
    assert!(err.contains("still mounted"), "{test}: {err}");
    strata_ok(&f.root, &["umount", &id]);

    strata_ok(&f.root, &["release"]);
    assert_eq!(attached(&f.image), Vec::<PathBuf>::new(), "{test}");
    assert!(!is_mountpoint(&f.mnt).expect("mountinfo"));
    strata_ok(&f.root, &["release"]);

    strata_ok(&f.root, &["ps"]);
    let dev = f.device();
    assert!(is_mountpoint(&f.mnt).expect("mountinfo"));
    let info = json(&f.root, &["info"]);
    assert_eq!(info["backing"][0]["mounted"], true, "{test}: {info}");
    assert_eq!(
        info["backing"][0]["loop_devices"],
        serde_json::json!([dev.to_str().unwrap()]),
        "{test}: {info}"
    );
    strata_ok(&f.root, &["rm", &id]);
    f.exercise(test);
    f.assert_attached_to(&dev, "after release and reattach");
}

/// A process killed right after attaching the backing, its lock on the
/// backing file still held, must not leave that lock behind: the loop
/// device keeps the open file it was attached with, so attaching through
/// the lock's own handle would wedge every later command forever.
fn killed_after_attach(test: &str, driver: &str) {
    let Some(f) = fixture(test, driver) else {
        return;
    };
    strata_ok(&f.root, &["release"]);
    let end = run_at_failpoint(command(&f.root, &["images"]), "backing.attached");
    assert_eq!(end, End::Killed, "{test}: never reached backing.attached");
    let next = run_and_kill(
        command(&f.root, &["images"]),
        std::time::Duration::from_secs(60),
    );
    assert_ne!(
        next,
        End::Killed,
        "{test}: the next command waited 60 s for a dead process's backing lock"
    );
    assert_eq!(next, End::Exited(0), "{test}: images after the kill failed");
    assert_eq!(attached(&f.image).len(), 1, "{test}: attached once");
}

#[test]
fn killed_after_attach_leaves_no_lock_btrfs() {
    killed_after_attach("backing::killed_after_attach_btrfs", "btrfs");
}

#[test]
fn killed_after_attach_leaves_no_lock_blockfile() {
    killed_after_attach("backing::killed_after_attach_blockfile", "blockfile");
}

#[test]
fn release_then_a_command_reattaches_btrfs() {
    release_and_reattach("backing::release_btrfs", "btrfs");
}

#[test]
fn release_then_a_command_reattaches_blockfile() {
    release_and_reattach("backing::release_blockfile", "blockfile");
}

/// `release` refuses while another strata process (here `strata serve`)
/// has the store open, and works once it has exited.
#[test]
fn release_refuses_while_another_process_uses_the_store_btrfs() {
    let test = "backing::release_busy_btrfs";
    let Some(f) = fixture(test, "btrfs") else {
        return;
    };
    let socket = f.scratch.path().join("strata.sock");
    let mut cmd = command(&f.root, &["serve", "--socket", socket.to_str().unwrap()]);
    cmd.stderr(std::process::Stdio::null());
    // Killed on drop if an assertion fails.
    let serve = Server::start_command(cmd, &socket);
    let err = strata_err(&f.root, &["release"]);
    assert!(
        err.contains("other strata processes") && err.contains(&serve.id().to_string()),
        "{test}: release names the other process: {err}"
    );
    assert!(
        is_mountpoint(&f.mnt).expect("mountinfo"),
        "{test}: still mounted"
    );
    serve.stop();
    strata_ok(&f.root, &["release"]);
    assert_eq!(
        attached(&f.image),
        Vec::<PathBuf>::new(),
        "{test}: released"
    );
}

/// Several processes open a released store at once: the backing file is
/// attached once.
fn racing_opens(test: &str, driver: &str) {
    let Some(f) = fixture(test, driver) else {
        return;
    };
    strata_ok(&f.root, &["release"]);
    for round in 0..3 {
        let children: Vec<_> = (0..4)
            .map(|_| {
                command(&f.root, &["images"])
                    .env("STRATA_LOCK_WAIT", "120")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn strata")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "{test}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let devices = attached(&f.image);
        assert_eq!(devices.len(), 1, "{test} round {round}: {devices:?}");
        strata_ok(&f.root, &["release"]);
    }
}

#[test]
fn racing_opens_attach_once_btrfs() {
    racing_opens("backing::racing_opens_btrfs", "btrfs");
}

#[test]
fn racing_opens_attach_once_blockfile() {
    racing_opens("backing::racing_opens_blockfile", "blockfile");
}

/// Threads racing `attach_loop_once` on one file (each through its own
/// open file, so only the flock serialises them) get one device.
#[test]
fn attach_loop_once_attaches_once_under_a_race() {
    let test = "backing::attach_loop_once_race";
    if !require_root(test) {
        return;
    }
    let scratch = ScratchDir::new("backing-race");
    let file = scratch.path().join("race.img");
    std::fs::File::create(&file)
        .and_then(|f| f.set_len(16 << 20))
        .expect("sparse file");
    for round in 0..5 {
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let file = file.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    attach_loop_once(&file, false).expect("attach once").path
                })
            })
            .collect();
        let got: Vec<PathBuf> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let devices = attached(&file);
        assert_eq!(devices.len(), 1, "round {round}: {devices:?}");
        assert!(got.iter().all(|d| d == &devices[0]), "{got:?}");
        detach_loop(&devices[0]).expect("detach");
        assert_eq!(attached(&file), Vec::<PathBuf>::new());
    }
}

/// A second loop device on the backing file is damage for `check`;
/// `--repair` detaches the one nothing uses.
fn second_attachment(test: &str, driver: &str) {
    let Some(mut f) = fixture(test, driver) else {
        return;
    };
    f.exercise(test);
    let dev = f.device();
    let extra = attach_loop(&f.image, true, false)
        .expect("a second attachment")
        .path;
    let mut both = vec![dev.clone(), extra.clone()];
    both.sort();
    let mut now = attached(&f.image);
    now.sort();
    assert_eq!(now, both, "{test}: set up two attachments");

    let (code, out) = check(&f.root, &[]);
    assert_eq!(code, 1, "{test}: a second attachment is damage:\n{out}");
    assert!(
        out.contains("backing_attached_twice")
            && out.contains(f.image.to_str().unwrap())
            && out.contains(extra.to_str().unwrap())
            && out.contains(dev.to_str().unwrap()),
        "{test}: check names the file and both devices:\n{out}"
    );
    let out = check_clean(
        &f.root,
        &["--repair"],
        &format!("{test}: repair detaches the unused one"),
    );
    assert!(
        out.contains(&format!("detached {}", extra.display())),
        "{out}"
    );
    f.assert_attached_to(&dev, "after repair");
    check_clean(&f.root, &[], &format!("{test}: clean after repair"));
    f.exercise(test);
    f.assert_attached_to(&dev, "after repair and more commands");
}

#[test]
fn check_flags_a_second_attachment_btrfs() {
    second_attachment("backing::second_attachment_btrfs", "btrfs");
}

#[test]
fn check_flags_a_second_attachment_blockfile() {
    second_attachment("backing::second_attachment_blockfile", "blockfile");
}

/// Two loop devices of the backing file that both carry a mount (two live
/// instances: here a read-only, `nouuid` xfs mount, which writes nothing):
/// `check --repair` cannot fix it and says why, until the extra mount goes.
#[test]
fn check_cannot_fix_two_live_instances_blockfile() {
    let test = "backing::two_live_instances_blockfile";
    let Some(mut f) = fixture(test, "blockfile") else {
        return;
    };
    f.exercise(test);
    let dev = f.device();
    let extra = attach_loop(&f.image, true, false)
        .expect("a second attachment")
        .path;
    let held = f.scratch.path().join("held");
    std::fs::create_dir(&held).expect("mkdir held");
    let ro = ["ro", "nouuid", "norecovery"].map(String::from);
    mount_fs(&extra, &held, "xfs", &ro).expect("mount the second attachment");

    let (code, out) = check(&f.root, &["--repair"]);
    assert_eq!(
        code, 1,
        "{test}: two live instances cannot be repaired:\n{out}"
    );
    assert!(
        out.contains("backing_attached_twice")
            && out.contains("cannot detach the extra loop devices")
            && out.contains(held.to_str().unwrap()),
        "{test}: repair says why it cannot, naming the other mount:\n{out}"
    );
    assert_eq!(attached(&f.image).len(), 2, "{test}: nothing detached");

    unmount(&held).expect("unmount the second instance");
    check_clean(
        &f.root,
        &["--repair"],
        &format!("{test}: repairable once unmounted"),
    );
    f.assert_attached_to(&dev, "after repair");
    f.exercise(test);
}

/// devmapper's pool files: attached once each across commands, released
/// and re-attached, raced, and a second attachment flagged and repaired.
#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn pool_files_attached_once_devmapper() {
    let test = "backing::pool_files_devmapper";
    let options = ["dm.basesize=64M", "dm.data_size=256M"];
    let Some((scratch, root)) = scratch_store(test, "devmapper", &options) else {
        return;
    };
    let _teardown = Teardown(root.join("devmapper"));
    let files: Vec<PathBuf> = backing_of(&root).into_iter().map(|(f, _, _)| f).collect();
    assert_eq!(files.len(), 2, "{test}: data and metadata files: {files:?}");
    let once = |when: &str| -> Vec<PathBuf> {
        files
            .iter()
            .map(|f| {
                let d = attached(f);
                assert_eq!(d.len(), 1, "{} {when}: {d:?}", f.display());
                d[0].clone()
            })
            .collect()
    };
    let tar = scratch.path().join("rootfs.tar");
    busybox_rootfs_tar(&tar, "pool\n");
    strata_ok(&root, &["import", tar.to_str().unwrap(), "demo/app:1"]);
    let devices = once("after import");
    let id = last_line(&strata_ok(&root, &["create", "demo/app:1"]));
    strata_ok(&root, &["mount", &id]);
    let err = strata_err(&root, &["release"]);
    assert!(err.contains("still mounted"), "{test}: {err}");
    strata_ok(&root, &["umount", &id]);
    assert_eq!(once("after more commands"), devices);

    strata_ok(&root, &["release"]);
    for f in &files {
        assert_eq!(
            attached(f),
            Vec::<PathBuf>::new(),
            "{} released",
            f.display()
        );
    }
    let children: Vec<_> = (0..3)
        .map(|_| {
            command(&root, &["images"])
                .env("STRATA_LOCK_WAIT", "300")
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success(), "{test}: racing images");
    }
    let devices = once("after racing opens");

    let extra = attach_loop(&files[0], true, false).expect("second").path;
    let (code, out) = check(&root, &[]);
    assert_eq!(code, 1, "{test}:\n{out}");
    assert!(
        out.contains("backing_attached_twice") && out.contains(extra.to_str().unwrap()),
        "{test}:\n{out}"
    );
    check_clean(&root, &["--repair"], test);
    assert_eq!(once("after repair"), devices);
    strata_ok(&root, &["rm", &id]);
    strata_ok(&root, &["rmi", "demo/app:1"]);
    strata_ok(&root, &["release"]);
}

/// Removes a devmapper store's device-mapper devices, even after a panic.
struct Teardown(PathBuf);

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Err(e) = strata_devmapper::teardown(&self.0) {
            eprintln!("cleanup: devmapper teardown {}: {e}", self.0.display());
        }
    }
}
