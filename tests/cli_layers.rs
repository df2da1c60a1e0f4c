//! load / save / diff / commit / export / history through the CLI on every
//! host driver: load → save → load on another driver keeps image and chain
//! ids; the same change commits to the same diff id everywhere; a hostile
//! archive leaves the store as it was.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use sha2::{Digest as _, Sha256};
use strata::image::{write_oci_archive, ImageToSave, SaveOptions};
use strata_driver_api::testing::{require_root, ScratchDir};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().enumerate().map(|(i, _)| serde_json::json!({"created_by": format!("step {i}")})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Writes an OCI archive with images `demo/app:1` (base+top) and
/// `demo/other:1` (base+other); returns (path, app config).
fn make_archive(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let base_path = dir.join("base.tar");
    busybox_rootfs_tar(&base_path, "from the image\n");
    let base = fs::read(&base_path).unwrap();
    let top = RawTar::new()
        .file("etc/.wh.motd", b"")
        .file("etc/hostname", b"app\n")
        .finish();
    let other = RawTar::new().file("other", b"other\n").finish();
    fs::write(dir.join("top.tar"), &top).unwrap();
    fs::write(dir.join("other.tar"), &other).unwrap();
    let app_config = config_for(&[&base, &top]);
    let images = vec![
        ImageToSave {
            tags: vec!["demo/app:1".into()],
            config: app_config.clone(),
            layers: vec![base_path.clone(), dir.join("top.tar")],
        },
        ImageToSave {
            tags: vec!["demo/other:1".into()],
            config: config_for(&[&base, &other]),
            layers: vec![base_path, dir.join("other.tar")],
        },
    ];
    let out = dir.join("images.tar");
    let opts = SaveOptions {
        gzip: true,
        temp_dir: dir.to_owned(),
    };
    write_oci_archive(fs::File::create(&out).unwrap(), &images, &opts).unwrap();
    (out, app_config)
}

fn image<'a>(images: &'a serde_json::Value, tag: &str) -> &'a serde_json::Value {
    images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["tags"].as_array().unwrap().iter().any(|t| t == tag))
        .unwrap_or_else(|| panic!("no image {tag} in {images}"))
}

/// Runs the flow on `driver`; returns (app image json, committed diff id).
fn flow(
    driver: &str,
    scratch: &Path,
    archive: &Path,
    app_config: &[u8],
) -> Option<(serde_json::Value, String)> {
    let root = scratch.join(format!("store-{driver}"));
    let root = root.as_path();
    let init = strata(root, &["--driver", driver, "init"]);
    if !init.status.success() {
        let why = String::from_utf8_lossy(&init.stderr).to_string();
        strata_driver_api::testing::skip(&format!("cli_layers::{driver}"), &why);
        return None;
    }
    let out = strata_ok(root, &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image: demo/app:1"), "{out}");
    let images = json(&strata_ok(root, &["--format", "json", "images"]));
    let app = image(&images, "demo/app:1").clone();
    assert_eq!(app["id"], digest(app_config));
    let info = json(&strata_ok(root, &["--format", "json", "info"]));
    assert_eq!(
        info["snapshots"], 3,
        "shared base layer stored once: {info}"
    );
    // Loading again applies nothing new.
    strata_ok(root, &["load", "-i", archive.to_str().unwrap()]);
    let info = json(&strata_ok(root, &["--format", "json", "info"]));
    assert_eq!(info["snapshots"], 3, "{info}");

    let c = last_line(&strata_ok(root, &["create", "--name", "c", "demo/app:1"]));
    let m = last_line(&strata_ok(root, &["mount", &c]));
    assert!(
        !Path::new(&format!("{m}/etc/motd")).exists(),
        "whiteout not applied"
    );
    assert_eq!(
        fs::read_to_string(format!("{m}/etc/hostname")).unwrap(),
        "app\n"
    );
    fs::write(format!("{m}/etc/hostname"), "changed\n").unwrap();
    fs::create_dir(format!("{m}/srv")).unwrap();
    fs::write(format!("{m}/srv/data"), "data\n").unwrap();
    fs::remove_file(format!("{m}/bin/cat")).unwrap();
    for p in ["etc/hostname", "srv/data", "srv", "etc", "bin"] {
        stamp(Path::new(&format!("{m}/{p}")), 1_700_000_000);
    }
    let diff = strata_ok(root, &["diff", "c"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert_eq!(
        lines,
        [
            "C /bin",
            "D /bin/cat",
            "C /etc",
            "C /etc/hostname",
            "A /srv",
            "A /srv/data"
        ],
        "{driver}"
    );
    let new_id = last_line(&strata_ok(root, &["commit", "c", "demo/app:2"]));
    assert!(new_id.starts_with("sha256:"), "{new_id}");
    let history = json(&strata_ok(
        root,
        &["--format", "json", "history", "demo/app:2"],
    ));
    assert_eq!(history.as_array().unwrap().len(), 3);
    assert_eq!(history[0]["created_by"], "strata commit c");
    let committed = history[0]["layer"].as_str().unwrap().to_owned();

    let export = scratch.join(format!("export-{driver}.tar"));
    strata_ok(root, &["export", "c", "-o", export.to_str().unwrap()]);
    let mut names = Vec::new();
    for e in tar::Archive::new(fs::File::open(&export).unwrap())
        .entries()
        .unwrap()
    {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert!(
        names.contains(&"srv/data".to_string()) && names.contains(&"bin/busybox".to_string()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "bin/cat" || n == "etc/motd"),
        "{names:?}"
    );

    // The committed image survives a save -> load into a fresh store.
    let saved = scratch.join(format!("saved-{driver}.tar"));
    strata_ok(
        root,
        &[
            "save",
            "-o",
            saved.to_str().unwrap(),
            "demo/app:1",
            "demo/app:2",
        ],
    );
    let root2 = scratch.join(format!("store2-{driver}"));
    strata_ok(&root2, &["--driver", "vfs", "init"]);
    strata_ok(&root2, &["load", "-i", saved.to_str().unwrap()]);
    let again = json(&strata_ok(&root2, &["--format", "json", "images"]));
    for tag in ["demo/app:1", "demo/app:2"] {
        let (a, b) = (
            image(&again, tag),
            image(
                &json(&strata_ok(root, &["--format", "json", "images"])),
                tag,
            )
            .clone(),
        );
        assert_eq!(a["id"], b["id"], "{tag}");
        assert_eq!(a["layers"], b["layers"], "{tag}");
    }
    strata_ok(root, &["umount", &c]);
    strata_ok(root, &["rm", &c]);
    assert_eq!(stray_mounts_below(root), Vec::<String>::new());
    for tag in ["demo/app:2", "demo/app:1", "demo/other:1"] {
        strata_ok(root, &["rmi", tag]);
    }
    let kept = fs::read_dir(root.join("layer-tars")).unwrap().count();
    assert_eq!(kept, 0, "rmi left kept layer tars");
    Some((app, committed))
}

#[test]
fn load_commit_save_on_every_driver() {
    if !require_root("cli_layers::load_commit_save") {
        return;
    }
    let scratch = ScratchDir::new("cli-layers");
    let (archive, config) = make_archive(scratch.path());
    let mut results = Vec::new();
    for driver in ["vfs", "overlay2", "btrfs", "blockfile"] {
        if let Some(r) = flow(driver, scratch.path(), &archive, &config) {
            results.push((driver, r));
        }
    }
    let (d0, (app0, diff0)) = &results[0];
    for (d, (app, diff)) in &results[1..] {
        assert_eq!(app["id"], app0["id"], "{d} vs {d0}");
        assert_eq!(app["layers"], app0["layers"], "chain ids {d} vs {d0}");
        assert_eq!(diff, diff0, "committed diff id on {d} differs from {d0}");
    }
}

#[test]
fn hostile_archive_leaves_store_unchanged() {
    if !require_root("cli_layers::hostile") {
        return;
    }
    let scratch = ScratchDir::new("cli-hostile");
    let dir = scratch.path();
    let good = RawTar::new().file("ok", b"ok").finish();
    let evil = RawTar::new()
        .file("fine", b"x")
        .file("../escape", b"pwned")
        .finish();
    fs::write(dir.join("good.tar"), &good).unwrap();
    fs::write(dir.join("evil.tar"), &evil).unwrap();
    let images = vec![ImageToSave {
        tags: vec!["evil:1".into()],
        config: config_for(&[&good, &evil]),
        layers: vec![dir.join("good.tar"), dir.join("evil.tar")],
    }];
    let archive = dir.join("evil-image.tar");
    write_oci_archive(
        fs::File::create(&archive).unwrap(),
        &images,
        &SaveOptions {
            gzip: false,
            temp_dir: dir.to_owned(),
        },
    )
    .unwrap();
    let root = dir.join("store");
    strata_ok(&root, &["--driver", "vfs", "init"]);
    let err = strata_err(&root, &["load", "-i", archive.to_str().unwrap()]);
    assert!(
        err.contains("`..` component") && err.contains("../escape"),
        "{err}"
    );
    assert!(!dir.join("escape").exists() && !root.join("escape").exists());
    let info = json(&strata_ok(&root, &["--format", "json", "info"]));
    assert_eq!(info["snapshots"], 0, "partial layers left: {info}");
    let kept = fs::read_dir(root.join("layer-tars"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(kept, 0, "layer tars of a failed load kept");
    assert_eq!(info["images"], 0, "{info}");
    assert_eq!(stray_mounts_below(&root), Vec::<String>::new());
}
