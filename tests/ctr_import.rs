//! Client tier: an archive written by `strata save` is accepted by a real
//! containerd (`ctr image import`), which unpacks it (checking every diff id
//! against the config). Starts a private containerd on a socket in a
//! scratch directory and stops it afterwards.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use strata_driver_api::testing::{require_program, require_root, ScratchDir};

/// A private containerd, killed on drop.
struct Containerd {
    child: Child,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        let config = dir.join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[grpc]\n  address = \"{0}/c.sock\"\n",
                dir.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dir.join("c.sock").exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up; see {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Containerd { child }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn ctr(dir: &Path, args: &[&str]) -> String {
    let sock = dir.join("c.sock");
    let out = Command::new("ctr")
        .arg("-a")
        .arg(&sock)
        .args(["-n", "strata-test"])
        .args(args)
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn saved_archive_imports_into_containerd() {
    if !require_root("ctr_import")
        || !require_program("ctr_import", "containerd")
        || !require_program("ctr_import", "ctr")
    {
        return;
    }
    let scratch = ScratchDir::new("ctr-import");
    let dir = scratch.path();
    let tar = dir.join("busybox.tar");
    busybox_rootfs_tar(&tar, "hello\n");
    let root = dir.join("store");
    strata_ok(&root, &["--driver", "vfs", "init"]);
    strata_ok(&root, &["import", tar.to_str().unwrap(), "demo/bb:1"]);
    let c = last_line(&strata_ok(&root, &["create", "demo/bb:1"]));
    let m = last_line(&strata_ok(&root, &["mount", &c]));
    fs::write(format!("{m}/etc/two"), "two\n").unwrap();
    strata_ok(&root, &["umount", &c]);
    strata_ok(&root, &["commit", &c, "demo/bb:2"]);
    strata_ok(&root, &["rm", &c]);
    let saved = dir.join("saved.tar");
    strata_ok(
        &root,
        &[
            "save",
            "-o",
            saved.to_str().unwrap(),
            "demo/bb:1",
            "demo/bb:2",
        ],
    );

    let cdir = dir.join("containerd");
    fs::create_dir_all(&cdir).unwrap();
    let _containerd = Containerd::start(&cdir);
    let out = ctr(&cdir, &["image", "import", saved.to_str().unwrap()]);
    assert!(out.contains("demo/bb:2"), "{out}");
    let check = ctr(&cdir, &["image", "check"]);
    let lines: Vec<&str> = check.lines().filter(|l| l.contains("demo/bb")).collect();
    assert_eq!(lines.len(), 2, "{check}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("complete") && l.trim_end().ends_with("true")),
        "{check}"
    );
    ctr(
        &cdir,
        &["image", "rm", "docker.io/demo/bb:1", "docker.io/demo/bb:2"],
    );
}
