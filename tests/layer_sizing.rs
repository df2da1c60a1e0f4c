//! A layer bigger than a fixed-capacity driver's configured snapshot size
//! still loads: `load` passes the layer's size to the driver as a
//! `strata.io/min-free` hint and the layer's image (blockfile) or thin
//! device (devmapper, in the VM tier) grows to fit it; the container made
//! from the image sees the whole layer.

mod common;
mod reliability;

use std::fs;
use std::path::Path;

use common::*;
use reliability::scratch_store;
use sha2::{Digest as _, Sha256};
use strata::image::{write_oci_archive, ImageToSave, SaveOptions};

const MIB: usize = 1 << 20;
/// The layer's one file: more than the 64 MiB the stores are given.
const BIG: usize = 100 * MIB;

/// An uncompressed OCI archive of `demo/big:1`, one layer holding `big`.
fn big_archive(dir: &Path) -> std::path::PathBuf {
    let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let layer = RawTar::new().file("big", &data).finish();
    let layer_path = dir.join("big.tar");
    fs::write(&layer_path, &layer).expect("write layer");
    let diff_id = format!("sha256:{:x}", Sha256::digest(&layer));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "a big layer"}],
    }))
    .expect("config");
    let images = vec![ImageToSave {
        tags: vec!["demo/big:1".into()],
        config,
        layers: vec![layer_path],
    }];
    let out = dir.join("big-image.tar");
    let opts = SaveOptions {
        gzip: false,
        temp_dir: dir.to_owned(),
    };
    write_oci_archive(
        fs::File::create(&out).expect("create archive"),
        &images,
        &opts,
    )
    .expect("write archive");
    out
}

/// Loads the big layer into a `driver` store made with `options` and
/// checks a container of it sees the whole file; returns the size in bytes
/// of the container's filesystem.
fn load_big_layer(test: &str, driver: &str, options: &[&str]) -> Option<u64> {
    let (scratch, root) = scratch_store(test, driver, options)?;
    let archive = big_archive(scratch.path());
    let out = strata_ok(&root, &["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(out.contains("demo/big:1"), "{out}");
    let id = last_line(&strata_ok(&root, &["create", "demo/big:1"]));
    let path = last_line(&strata_ok(&root, &["mount", &id]));
    let len = fs::metadata(Path::new(&path).join("big"))
        .expect("the layer's file in the container")
        .len();
    assert_eq!(len, BIG as u64, "{test}");
    let st = nix::sys::statvfs::statvfs(Path::new(&path)).expect("statvfs");
    strata_ok(&root, &["rm", "--force", &id]);
    Some(st.blocks() * st.fragment_size())
}

#[test]
fn blockfile_grows_an_image_to_fit_a_big_layer() {
    let test = "layer_sizing::blockfile";
    let options = ["blockfile.size=64M", "blockfile.backing_size=2G"];
    let Some(size) = load_big_layer(test, "blockfile", &options) else {
        return;
    };
    eprintln!("{test}: a 100 MiB layer on 64 MiB images: a {size}-byte filesystem");
    assert!(size > (BIG as u64), "{size}");
}

#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn devmapper_grows_a_device_to_fit_a_big_layer() {
    let test = "layer_sizing::devmapper";
    let Some(size) = load_big_layer(test, "devmapper", &["dm.basesize=64M"]) else {
        return;
    };
    eprintln!("{test}: a 100 MiB layer on 64 MiB devices: a {size}-byte filesystem");
    assert!(size > (BIG as u64), "{size}");
}
