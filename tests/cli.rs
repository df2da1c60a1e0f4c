//! The core CLI end to end, per driver that runs on this host: import, two
//! containers that do not see each other's writes, JSON listings, clear
//! errors, and nothing left mounted afterwards.

mod common;

use common::*;
use strata_driver_api::testing::{require_root, ScratchDir};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn end_to_end(driver: &str) {
    if !require_root(&format!("cli::{driver}")) {
        return;
    }
    let scratch = ScratchDir::new(&format!("cli-{driver}"));
    let root = scratch.path().join("store");
    let tar = scratch.path().join("busybox.tar");
    busybox_rootfs_tar(&tar, "from the image\n");
    let root = root.as_path();

    strata_ok(root, &["--driver", driver, "init"]);
    let image_id = last_line(&strata_ok(
        root,
        &["import", tar.to_str().unwrap(), "demo/busybox"],
    ));
    assert!(image_id.starts_with("sha256:"), "import printed {image_id}");
    let images = json(&strata_ok(root, &["--format", "json", "images"]));
    assert_eq!(images[0]["id"], image_id.as_str());
    assert_eq!(images[0]["tags"][0], "demo/busybox:latest");

    let a = last_line(&strata_ok(root, &["create", "--name", "a", "demo/busybox"]));
    let b = last_line(&strata_ok(root, &["create", "demo/busybox"]));
    assert_eq!(a.len(), 64);
    let ma = last_line(&strata_ok(root, &["mount", &a]));
    let mb = last_line(&strata_ok(root, &["mount", &b[..12]]));
    assert_eq!(
        std::fs::read_to_string(format!("{mb}/etc/motd")).unwrap(),
        "from the image\n"
    );
    std::fs::write(format!("{ma}/etc/motd"), "written in a\n").unwrap();
    std::fs::write(format!("{ma}/new-file"), "x").unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("{mb}/etc/motd")).unwrap(),
        "from the image\n"
    );
    assert!(!std::path::Path::new(&format!("{mb}/new-file")).exists());
    assert!(std::fs::symlink_metadata(format!("{mb}/bin/sh"))
        .unwrap()
        .file_type()
        .is_symlink());

    let ps = json(&strata_ok(root, &["--format", "json", "ps"]));
    assert_eq!(ps.as_array().unwrap().len(), 2);
    let info = json(&strata_ok(root, &["--format", "json", "info"]));
    assert_eq!(info["driver"], driver);
    assert_eq!(info["containers"], 2);
    let inspect = json(&strata_ok(root, &["inspect", "a"]));
    assert_eq!(inspect[0]["GraphDriver"]["Name"], driver);
    assert_eq!(inspect[0]["Mounted"], true);

    let err = strata_err(root, &["rm", "a"]);
    assert!(err.contains("still mounted"), "{err}");
    let err = strata_err(root, &["create", "no/such-image"]);
    assert!(err.contains("no such image"), "{err}");
    let err = strata_err(root, &["rmi", "demo/busybox"]);
    assert!(err.contains("used by container"), "{err}");
    let err = strata_err(root, &["--driver", "no-such-driver", "info"]);
    assert!(err.contains("already uses driver"), "{err}");

    strata_ok(root, &["umount", &a]);
    strata_ok(root, &["rm", &a]);
    strata_ok(root, &["rm", "--force", &b]);
    strata_ok(root, &["rmi", "demo/busybox"]);
    let images = json(&strata_ok(root, &["--format", "json", "images"]));
    assert_eq!(images.as_array().unwrap().len(), 0);
    let info = json(&strata_ok(root, &["--format", "json", "info"]));
    assert_eq!(info["snapshots"], 0, "layers left after rmi: {info}");
    assert_eq!(
        stray_mounts_below(root),
        Vec::<String>::new(),
        "mounts left under the store"
    );
}

#[test]
fn cli_end_to_end_vfs() {
    end_to_end("vfs");
}

#[test]
fn cli_end_to_end_overlay2() {
    end_to_end("overlay2");
}

#[test]
fn uninitialised_store_and_bad_input_fail_clearly() {
    if !require_root("cli::bad_input") {
        return;
    }
    let scratch = ScratchDir::new("cli-bad");
    let root = scratch.path().join("store");
    let err = strata_err(&root, &["--driver", "bogus", "init"]);
    assert!(err.contains("unknown driver"), "{err}");
    assert!(
        !root.join("strata.json").exists(),
        "a failed init recorded a store"
    );
    assert!(!root.exists(), "a failed init left {}", root.display());
    let err = strata_err(
        &root,
        &["--driver", "vfs", "import", "/nonexistent.tar", "x"],
    );
    assert!(err.contains("no Strata store at"), "{err}");
    assert!(
        !root.exists(),
        "import without a store made {}",
        root.display()
    );
    strata_ok(&root, &["--driver", "vfs", "init"]);
    let err = strata_err(&root, &["import", "/nonexistent.tar", "x"]);
    assert!(err.contains("/nonexistent.tar"), "{err}");
    let err = strata_err(&root, &["import", "/dev/null", "bad name"]);
    assert!(err.contains("invalid image reference"), "{err}");
    let err = strata_err(&root, &["create", "--size", "ten", "x"]);
    assert!(err.contains("not a size"), "{err}");
    let err = strata_err(&root, &["mount", "nope"]);
    assert!(err.contains("no such container"), "{err}");
}

#[test]
fn cli_end_to_end_btrfs() {
    end_to_end("btrfs");
}

#[test]
fn cli_end_to_end_blockfile() {
    end_to_end("blockfile");
}
