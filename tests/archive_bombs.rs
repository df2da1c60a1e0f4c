//! Hostile image archives through `strata load` on every driver (issue 18,
//! points 2, 3, 4, 7 and 8): header memory bombs, expansion bombs, huge
//! configs, refused loads that must leave nothing behind, and the limits on
//! layer count and empty indexes. Each bomb is built here, compressed, in a
//! few KB; each load is timed and its peak memory measured. Needs root.

mod common;
mod reliability;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use reliability::*;
use sha2::{Digest as _, Sha256};
use strata_driver_api::testing::{require_program, require_root};

const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// One layer blob: zstd-compressed bytes and the diff id of what they expand to.
struct Layer {
    blob: Vec<u8>,
    diff_id: String,
}

/// Streams an uncompressed layer through sha256 and zstd.
struct LayerWriter {
    hasher: Sha256,
    enc: zstd::stream::write::Encoder<'static, Vec<u8>>,
}

impl LayerWriter {
    fn new() -> Self {
        LayerWriter {
            hasher: Sha256::new(),
            enc: zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap(),
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.enc.write_all(bytes).unwrap();
    }

    /// `n` copies of `byte`, without holding them in memory.
    fn repeat(&mut self, byte: u8, mut n: u64) {
        let chunk = vec![byte; 1 << 20];
        while n > 0 {
            let k = n.min(chunk.len() as u64) as usize;
            self.put(&chunk[..k]);
            n -= k as u64;
        }
    }

    fn finish(self) -> Layer {
        Layer {
            diff_id: format!("sha256:{:x}", self.hasher.finalize()),
            blob: self.enc.finish().unwrap(),
        }
    }
}

fn layer_of(tar: &[u8]) -> Layer {
    let mut w = LayerWriter::new();
    w.put(tar);
    w.finish()
}

fn ustar(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

fn pad(w: &mut LayerWriter, size: u64) {
    w.repeat(0, (512 - size % 512) % 512);
}

/// A GNU long name of `len` bytes (present in full, as a bomb has it)
/// for one small file.
fn long_name_bomb(len: u64) -> Layer {
    let mut w = LayerWriter::new();
    w.put(ustar(b"././@LongLink", tar::EntryType::GNULongName, len).as_bytes());
    w.repeat(b'a', len);
    pad(&mut w, len);
    w.put(&RawTar::new().file("x", b"x").finish());
    w.finish()
}

/// One file of `len` zeros: the zstd blob is a few KB.
fn zeros_file(len: u64) -> Layer {
    let mut w = LayerWriter::new();
    w.put(ustar(b"zeros", tar::EntryType::Regular, len).as_bytes());
    w.repeat(0, len);
    pad(&mut w, len);
    w.repeat(0, 1024);
    w.finish()
}

/// A valid small tar followed by `len` zero bytes after its end.
fn trailing_bomb(len: u64) -> Layer {
    let mut w = LayerWriter::new();
    w.put(&RawTar::new().file("x", b"x").finish());
    w.repeat(0, len);
    w.finish()
}

/// An image: its layers and extra config fields.
struct Img {
    tag: &'static str,
    layers: Vec<Layer>,
    /// Overrides a layer's diff id in the config (to make it wrong).
    wrong_diff_id: Option<usize>,
    config_padding: usize,
}

impl Img {
    fn new(tag: &'static str, layers: Vec<Layer>) -> Self {
        Img {
            tag,
            layers,
            wrong_diff_id: None,
            config_padding: 0,
        }
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

/// Writes an OCI layout archive holding `images` (zero images gives an
/// index with no manifests).
fn oci_archive(path: &Path, images: &[Img]) {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifests = Vec::new();
    for img in images {
        let diff_ids: Vec<String> = img
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if img.wrong_diff_id == Some(i) {
                    sha(b"not this layer")
                } else {
                    l.diff_id.clone()
                }
            })
            .collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "padding": "p".repeat(img.config_padding),
        }))
        .unwrap();
        let layers: Vec<serde_json::Value> = img
            .layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": ZSTD, "digest": sha(&l.blob), "size": l.blob.len()}))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&manifest), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": img.tag},
        }));
        blobs.push((sha(&config), config));
        blobs.push((sha(&manifest), manifest));
        for l in &img.layers {
            blobs.push((sha(&l.blob), l.blob.clone()));
        }
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    let mut seen = std::collections::HashSet::new();
    for (d, data) in &blobs {
        if seen.insert(d.clone()) {
            add(&format!("blobs/sha256/{}", &d[7..]), data);
        }
    }
    b.into_inner().unwrap().flush().unwrap();
}

/// What one `strata load` did.
struct Run {
    ok: bool,
    stderr: String,
    took: Duration,
    max_rss_kb: i64,
}

/// GNU time, which reports a child's own peak RSS. (`wait4` from this
/// process would not: Linux folds the spawning process's peak into the
/// child's at exec.)
const TIME: &str = "/usr/bin/time";

/// Runs `strata load -i archive` under GNU time.
fn load(root: &Path, archive: &Path, env: &[(&str, &str)]) -> Run {
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(TIME);
    cmd.arg("-o")
        .arg(report.path())
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(["load", "-i"])
        .arg(archive)
        .env("STRATA_LOG", "error")
        .env_remove("STRATA_FAILPOINT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().expect("run strata under /usr/bin/time");
    let took = start.elapsed();
    let text = std::fs::read_to_string(report.path()).unwrap();
    let max_rss_kb = text
        .lines()
        .filter_map(|l| l.trim().parse::<i64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS in {text:?}"));
    Run {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
        max_rss_kb,
    }
}

fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    let mut full = args.to_vec();
    full.extend(["--format", "json"]);
    serde_json::from_str(&strata_ok(root, &full)).expect("json output")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() {
                files_under(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}

/// The store holds nothing: no image, snapshot, kept tar, manifest or
/// scratch file, and `check` finds it clean.
fn assert_empty(test: &str, root: &Path, case: &str) {
    assert_eq!(
        json(root, &["images"]),
        serde_json::json!([]),
        "{test} {case}: images left"
    );
    assert_eq!(
        json(root, &["info"])["snapshots"],
        0,
        "{test} {case}: snapshots left"
    );
    for dir in ["layer-tars", "manifests", "tmp"] {
        let left = files_under(&root.join(dir));
        assert!(left.is_empty(), "{test} {case}: left in {dir}: {left:?}");
    }
    check_clean(root, &[], &format!("{test} {case}: check is not clean"));
    assert_no_leaks(root, &format!("{test} {case}"));
}

/// A load that must fail, quickly and in little memory, with an error
/// containing each of `expect` (and no terminal escape), leaving nothing.
fn refused(test: &str, root: &Path, archive: &Path, case: &str, expect: &[&str]) -> Run {
    let run = load(root, archive, &[]);
    eprintln!(
        "BOMB {test} {case}: {:?}, peak RSS {} MiB, {} bytes of error",
        run.took,
        run.max_rss_kb / 1024,
        run.stderr.len()
    );
    assert!(!run.ok, "{test} {case}: the load succeeded");
    for e in expect {
        assert!(
            run.stderr.contains(e),
            "{test} {case}: error does not say {e:?}: {}",
            run.stderr
        );
    }
    assert!(
        run.stderr.len() < 4096,
        "{test} {case}: {} bytes of error message",
        run.stderr.len()
    );
    assert!(
        !run.stderr.contains('\x1b'),
        "{test} {case}: raw escape in {:?}",
        run.stderr
    );
    assert!(
        run.max_rss_kb < 200 * 1024,
        "{test} {case}: peak RSS {} KiB",
        run.max_rss_kb
    );
    assert!(
        run.took < Duration::from_secs(60),
        "{test} {case}: took {:?}",
        run.took
    );
    assert_empty(test, root, case);
    run
}

/// Every case on one store of `driver`.
fn bombs(test: &str, driver: &str) {
    let Some((scratch, root)) = scratch_store(test, driver, &["limits.layer_size=256M"]) else {
        return;
    };
    let a = |name: &str| scratch.path().join(name);
    let small = || layer_of(&RawTar::new().file("etc/motd", b"hi\n").finish());

    // 2: a 256 MiB GNU long name in a few KB.
    let bomb = long_name_bomb(256 << 20);
    assert!(bomb.blob.len() < 64 << 10, "{} bytes", bomb.blob.len());
    oci_archive(&a("longname.tar"), &[Img::new("bomb:longname", vec![bomb])]);
    refused(
        test,
        &root,
        &a("longname.tar"),
        "long name",
        &["GNU long name", "268435456 bytes is over", "layer 1/1"],
    );

    // 3: a 16 GiB sparse entry in 1.5 KB, over the 256 MiB layer limit:
    // refused at its header.
    // (GNU tar ends a map with an empty segment at the file's size.)
    let sparse = sparse_tar(
        "sparse",
        16 << 30,
        &[(8 << 30, vec![b's'; 4096]), (16 << 30, Vec::new())],
    );
    oci_archive(
        &a("sparse.tar"),
        &[Img::new("bomb:sparse", vec![layer_of(&sparse)])],
    );
    refused(
        test,
        &root,
        &a("sparse.tar"),
        "sparse",
        &["entry sparse", "layer size limit (limits.layer_size"],
    );
    // Allowed by a bigger limit, it applies as holes, without iterating.
    let run = load(
        &root,
        &a("sparse.tar"),
        &[("STRATA_LIMIT_LAYER_SIZE", "32G")],
    );
    eprintln!(
        "BOMB {test} sparse accepted: {:?}, peak RSS {} MiB",
        run.took,
        run.max_rss_kb / 1024
    );
    assert!(run.ok, "{test}: sparse load under 32G: {}", run.stderr);
    assert!(
        run.took < Duration::from_secs(60),
        "{test}: sparse load took {:?}",
        run.took
    );
    strata_ok(&root, &["rmi", "bomb:sparse"]);
    strata_ok(&root, &["check", "--repair", "--prune"]);
    assert_empty(test, &root, "sparse removed");

    // 3: 1 GiB of zeros in a few KB of zstd, with a wrong diff id: refused
    // at the header against the 256 MiB limit, before anything is written.
    let mut img = Img::new("bomb:zeros", vec![zeros_file(1 << 30)]);
    img.wrong_diff_id = Some(0);
    oci_archive(&a("zeros.tar"), &[img]);
    refused(
        test,
        &root,
        &a("zeros.tar"),
        "zeros",
        &["entry zeros", "1073741824 bytes", "layer size limit"],
    );

    // 3: 256 MiB after the end of a valid tar (the diff id matches): the
    // kept tar would hold it forever.
    oci_archive(
        &a("trailing.tar"),
        &[Img::new("bomb:trailing", vec![trailing_bomb(200 << 20)])],
    );
    refused(
        test,
        &root,
        &a("trailing.tar"),
        "trailing",
        &["after the end of the layer tar"],
    );

    // 7: a good image then a bad one: neither is recorded.
    let mut bad = Img::new(
        "bomb:second",
        vec![small(), layer_of(&RawTar::new().file("b", b"b").finish())],
    );
    bad.wrong_diff_id = Some(1);
    oci_archive(&a("two.tar"), &[Img::new("good:first", vec![small()]), bad]);
    refused(
        test,
        &root,
        &a("two.tar"),
        "second image bad",
        &["layer 2/2", "digest mismatch"],
    );

    // 7: the fifth layer of five is bad: no orphan snapshot or manifest.
    let layers: Vec<Layer> = (0..5)
        .map(|i| layer_of(&RawTar::new().file(&format!("f{i}"), b"x").finish()))
        .collect();
    let mut img = Img::new("bomb:five", layers);
    img.wrong_diff_id = Some(4);
    oci_archive(&a("five.tar"), &[img]);
    refused(
        test,
        &root,
        &a("five.tar"),
        "fifth layer bad",
        &["layer 5/5", "digest mismatch"],
    );

    // 8: an index with no manifests.
    oci_archive(&a("empty.tar"), &[]);
    refused(
        test,
        &root,
        &a("empty.tar"),
        "empty index",
        &["index.json", "lists no manifests"],
    );

    // 8: 129 layers, over the default count limit of 128: refused before
    // any is applied.
    let layers: Vec<Layer> = (0..129)
        .map(|i| layer_of(&RawTar::new().file(&format!("l{i}"), b"x").finish()))
        .collect();
    oci_archive(&a("deep.tar"), &[Img::new("bomb:deep", layers)]);
    let run = refused(
        test,
        &root,
        &a("deep.tar"),
        "129 layers",
        &["129 layers is over the layer count limit of 128"],
    );
    assert!(run.took < Duration::from_secs(20), "{:?}", run.took);

    // 8: terminal escapes in an entry name reach the error escaped.
    oci_archive(
        &a("escape.tar"),
        &[Img::new(
            "bomb:escape",
            vec![layer_of(
                &RawTar::new().file("\x1b]2;pwned\x07/../x", b"").finish(),
            )],
        )],
    );
    refused(
        test,
        &root,
        &a("escape.tar"),
        "escape",
        &["\\x1b]2;pwned\\x07"],
    );

    // 4: a 60 MiB config (under the old 64 MiB cap).
    let mut img = Img::new("bomb:config", vec![small()]);
    img.config_padding = 60 << 20;
    oci_archive(&a("config.tar"), &[img]);
    refused(
        test,
        &root,
        &a("config.tar"),
        "config",
        &["config of manifest", "over the limit of 4194304 bytes"],
    );

    // And a good image still loads afterwards.
    oci_archive(&a("good.tar"), &[Img::new("good:1", vec![small()])]);
    let run = load(&root, &a("good.tar"), &[]);
    assert!(run.ok, "{test}: good image: {}", run.stderr);
    strata_ok(&root, &["rmi", "good:1"]);
    assert_empty(test, &root, "end");
}

#[test]
fn archive_bombs_are_refused_vfs() {
    let test = "bombs::vfs";
    if require_root(test) && require_program(test, "time") {
        bombs(test, "vfs");
    }
}

#[test]
fn archive_bombs_are_refused_overlay2() {
    let test = "bombs::overlay2";
    if require_root(test) && require_program(test, "time") {
        bombs(test, "overlay2");
    }
}

#[test]
fn archive_bombs_are_refused_btrfs() {
    let test = "bombs::btrfs";
    if require_root(test) && require_program(test, "mkfs.btrfs") && require_program(test, "time") {
        bombs(test, "btrfs");
    }
}

#[test]
fn archive_bombs_are_refused_blockfile() {
    let test = "bombs::blockfile";
    if require_root(test) && require_program(test, "mkfs.xfs") && require_program(test, "time") {
        bombs(test, "blockfile");
    }
}

#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn archive_bombs_are_refused_devmapper() {
    let test = "bombs::devmapper";
    if require_root(test) && require_program(test, "time") {
        bombs(test, "devmapper");
    }
}
