//! OCI / docker archive round trips and corrupt archives. No root needed.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::RawTar;
use sha2::{Digest as _, Sha256};
use strata::image::{write_oci_archive, ImageArchive, ImageError, ImageToSave, SaveOptions};
use strata::model::{chain_ids, Digest};

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-test-image-")
        .tempdir()
        .unwrap()
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

fn config_for(layers: &[&[u8]], label: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"which": label}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    base: Vec<u8>,
    top: Vec<u8>,
    other: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let dir = scratch();
        let base = RawTar::new()
            .dir("etc/")
            .file("etc/os-release", b"ID=test\n")
            .finish();
        let top = RawTar::new()
            .file("etc/.wh.os-release", b"")
            .file("hello", &vec![b'x'; 100_000])
            .finish();
        let other = RawTar::new().file("other", b"other image").finish();
        for (n, b) in [
            ("base.tar", &base),
            ("top.tar", &top),
            ("other.tar", &other),
        ] {
            fs::write(dir.path().join(n), b).unwrap();
        }
        Fixture {
            dir,
            base,
            top,
            other,
        }
    }

    fn p(&self, n: &str) -> PathBuf {
        self.dir.path().join(n)
    }

    fn images(&self) -> Vec<ImageToSave> {
        vec![
            ImageToSave {
                tags: vec!["app:1".into(), "app:latest".into()],
                config: config_for(&[&self.base, &self.top], "app"),
                layers: vec![self.p("base.tar"), self.p("top.tar")],
            },
            ImageToSave {
                tags: vec!["me/other:2".into()],
                config: config_for(&[&self.base, &self.other], "other"),
                layers: vec![self.p("base.tar"), self.p("other.tar")],
            },
        ]
    }

    fn save(&self, name: &str, gzip: bool) -> PathBuf {
        let out = self.p(name);
        let opts = SaveOptions {
            gzip,
            temp_dir: self.dir.path().to_owned(),
        };
        write_oci_archive(fs::File::create(&out).unwrap(), &self.images(), &opts).unwrap();
        out
    }
}

fn read_layer(a: &ImageArchive, img: usize, layer: usize) -> Result<Vec<u8>, std::io::Error> {
    let l = &a.images()[img].layers[layer];
    let mut r = a.open_layer(l).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

fn check_round_trip(f: &Fixture, archive: &Path) {
    let a = ImageArchive::open(archive).unwrap();
    let imgs = a.images();
    // One index entry per tag: app has two.
    assert_eq!(imgs.len(), 3);
    let saved = f.images();
    let app = &imgs[0];
    assert_eq!(app.id, Digest::of(&saved[0].config));
    assert_eq!(app.config, saved[0].config);
    assert_eq!(
        app.tags,
        vec!["app:1".to_string(), "app:latest".to_string()]
    );
    let expected_diffs = vec![Digest(digest(&f.base)), Digest(digest(&f.top))];
    assert_eq!(app.diff_ids(), expected_diffs);
    assert_eq!(app.chain_ids(), chain_ids(&expected_diffs));
    assert_eq!(
        app.chain_ids()[1],
        Digest(digest(
            format!("{} {}", expected_diffs[0], expected_diffs[1]).as_bytes()
        ))
    );
    assert_eq!(read_layer(&a, 0, 0).unwrap(), f.base);
    assert_eq!(read_layer(&a, 0, 1).unwrap(), f.top);
    assert_eq!(read_layer(&a, 2, 1).unwrap(), f.other);
    assert_eq!(imgs[2].id, Digest::of(&saved[1].config));
    // Shared base layer: same chain id in both images.
    assert_eq!(imgs[2].chain_ids()[0], app.chain_ids()[0]);
}

#[test]
fn oci_round_trip_gzip_and_plain() {
    let f = Fixture::new();
    for gzip in [true, false] {
        let out = f.save("img.tar", gzip);
        check_round_trip(&f, &out);
    }
}

#[test]
fn save_is_reproducible_and_dedups_blobs() {
    let f = Fixture::new();
    let a = fs::read(f.save("a.tar", true)).unwrap();
    let b = fs::read(f.save("b.tar", true)).unwrap();
    assert_eq!(digest(&a), digest(&b));
    let mut ar = tar::Archive::new(&a[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    let blobs = names
        .iter()
        .filter(|n| n.starts_with("blobs/sha256/") && n.len() > 20)
        .count();
    // 3 distinct layers + 2 configs + 2 manifests.
    assert_eq!(blobs, 7, "{names:?}");
    assert!(
        names.contains(&"oci-layout".to_string()) && names.contains(&"manifest.json".to_string())
    );
}

#[test]
fn compressed_outer_archives_open() {
    let f = Fixture::new();
    let plain = fs::read(f.save("img.tar", true)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    fs::write(f.p("img.tar.gz"), gz.finish().unwrap()).unwrap();
    check_round_trip(&f, &f.p("img.tar.gz"));
    fs::write(f.p("img.tar.zst"), zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    check_round_trip(&f, &f.p("img.tar.zst"));
}

#[test]
fn truncated_outer_gzip_is_refused() {
    let f = Fixture::new();
    let plain = fs::read(f.save("img.tar", true)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    fs::write(f.p("cut.tar.gz"), &gz[..gz.len() / 2]).unwrap();
    let err = ImageArchive::open(&f.p("cut.tar.gz"))
        .err()
        .expect("truncated archive opened");
    assert!(err.to_string().contains("cut.tar.gz"), "{err}");
}

/// Rewrites a tar, letting `edit` change (or drop, by returning false) entries.
fn rewrite(src: &Path, dst: &Path, mut edit: impl FnMut(&str, &mut Vec<u8>) -> bool) {
    let bytes = fs::read(src).unwrap();
    let mut ar = tar::Archive::new(&bytes[..]);
    let mut b = tar::Builder::new(fs::File::create(dst).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if !edit(&name, &mut data) {
            continue;
        }
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn wrong_layer_digest_is_refused_naming_the_blob() {
    let f = Fixture::new();
    let good = f.save("img.tar", false);
    let base_blob = format!("blobs/sha256/{}", &digest(&f.base)[7..]);
    rewrite(&good, &f.p("bad.tar"), |name, data| {
        if name == base_blob {
            data[600] ^= 0xff;
        }
        true
    });
    let a = ImageArchive::open(&f.p("bad.tar")).unwrap();
    let err = read_layer(&a, 0, 0).expect_err("corrupt layer read without error");
    let img = ImageError::from_io(&err).expect("an ImageError inside");
    assert!(matches!(img, ImageError::DigestMismatch { .. }), "{img}");
    assert!(img.to_string().contains(&digest(&f.base)), "{img}");
}

#[test]
fn wrong_manifest_digest_and_missing_blob_are_refused() {
    let f = Fixture::new();
    let good = f.save("img.tar", true);
    let config = f.images()[0].config.clone();
    let cblob = format!("blobs/sha256/{}", &digest(&config)[7..]);
    rewrite(&good, &f.p("bad.tar"), |name, data| {
        if name == cblob {
            data.push(b' ');
        }
        true
    });
    let err = ImageArchive::open(&f.p("bad.tar"))
        .err()
        .expect("tampered config accepted");
    assert!(err.to_string().contains(&digest(&config)), "{err}");
    rewrite(&good, &f.p("missing.tar"), |name, _| name != cblob);
    let err = ImageArchive::open(&f.p("missing.tar"))
        .err()
        .expect("missing config accepted");
    assert!(matches!(err, ImageError::MissingBlob { .. }), "{err}");
}

#[test]
fn unsupported_layer_media_type_is_refused() {
    let f = Fixture::new();
    let good = f.save("img.tar", true);
    // Change the media type in every manifest; the manifest digest changes,
    // so rewrite index.json to point at the new manifests.
    let mut renamed: Vec<(String, String, usize)> = Vec::new();
    let bytes = fs::read(&good).unwrap();
    let mut ar = tar::Archive::new(&bytes[..]);
    let mut b = tar::Builder::new(fs::File::create(f.p("enc.tar")).unwrap());
    let mut index = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let text = String::from_utf8_lossy(&data).to_string();
        if name == "index.json" {
            index = data;
            continue;
        }
        let mut out_name = name.clone();
        if text.contains("\"layers\"") && text.contains("tar+gzip") {
            let old = digest(&data);
            data = text.replace("tar+gzip", "tar+gzip+encrypted").into_bytes();
            let new = digest(&data);
            out_name = format!("blobs/sha256/{}", &new[7..]);
            renamed.push((old, new, data.len()));
        }
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, &out_name, &data[..]).unwrap();
    }
    let mut text = String::from_utf8(index).unwrap();
    for (old, new, len) in &renamed {
        text = text.replace(old, new);
        let _ = len;
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut v = v;
    for m in v["manifests"].as_array_mut().unwrap() {
        let d = m["digest"].as_str().unwrap().to_string();
        if let Some((_, _, len)) = renamed.iter().find(|(_, n, _)| *n == d) {
            m["size"] = serde_json::json!(len);
        }
    }
    let text = serde_json::to_vec(&v).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "index.json", &text[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    let err = ImageArchive::open(&f.p("enc.tar"))
        .err()
        .expect("encrypted layer accepted");
    let msg = err.to_string();
    assert!(
        matches!(err, ImageError::UnsupportedMediaType { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("encrypted") && msg.contains("blob sha256:"),
        "{msg}"
    );
}

/// A legacy `docker save` archive: `<id>.json` config, `<dir>/layer.tar`,
/// a symlinked duplicate layer.
fn legacy(f: &Fixture, layer_bytes: &[u8]) -> PathBuf {
    let config = config_for(&[&f.base, &f.top], "legacy");
    let hex = &digest(&config)[7..];
    let manifest = serde_json::json!([{
        "Config": format!("{hex}.json"),
        "RepoTags": ["legacy:1"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]);
    let path = f.p("legacy.tar");
    let mut b = tar::Builder::new(fs::File::create(&path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&format!("{hex}.json"), &config);
    add("real/layer.tar", &f.base);
    add("bbb/layer.tar", layer_bytes);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "aaa/layer.tar", "../real/layer.tar")
        .unwrap();
    b.finish().unwrap();
    path
}

#[test]
fn legacy_docker_save_reads_and_checks_diff_ids() {
    let f = Fixture::new();
    let a = ImageArchive::open(&legacy(&f, &f.top)).unwrap();
    assert_eq!(a.images()[0].tags, vec!["legacy:1".to_string()]);
    assert_eq!(read_layer(&a, 0, 0).unwrap(), f.base);
    assert_eq!(read_layer(&a, 0, 1).unwrap(), f.top);
    let mut wrong = f.top.clone();
    wrong[700] ^= 1;
    let a = ImageArchive::open(&legacy(&f, &wrong)).unwrap();
    let err = read_layer(&a, 0, 1).expect_err("layer with wrong diff id accepted");
    let msg = ImageError::from_io(&err).expect("image error").to_string();
    assert!(
        msg.contains("bbb/layer.tar") && msg.contains("digest mismatch"),
        "{msg}"
    );
}

#[test]
fn not_an_image_is_refused() {
    let f = Fixture::new();
    fs::write(f.p("junk.tar"), RawTar::new().file("hello", b"x").finish()).unwrap();
    let err = ImageArchive::open(&f.p("junk.tar"))
        .err()
        .expect("junk accepted");
    assert!(matches!(err, ImageError::NotAnImage { .. }), "{err}");
}

#[test]
fn outer_archive_headers_and_expansion_are_capped() {
    let f = Fixture::new();
    // A 256 MiB GNU long name in the outer tar: refused at its header.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(256 << 20);
    h.set_cksum();
    let mut bomb = h.as_bytes().to_vec();
    bomb.extend(std::iter::repeat_n(b'a', 10_000));
    fs::write(f.p("longname.tar"), &bomb).unwrap();
    let err = ImageArchive::open(&f.p("longname.tar"))
        .err()
        .expect("a 256 MiB long name was read");
    let msg = err.to_string();
    assert!(msg.contains("GNU long name") && msg.len() < 400, "{msg}");
    // A compressed archive that expands past the limit stops there.
    let plain = fs::read(f.save("limited.tar", false)).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&plain).unwrap();
    let gz = f.p("limited.tar.gz");
    fs::write(&gz, enc.finish().unwrap()).unwrap();
    let err = ImageArchive::open_limited(&gz, f.dir.path(), 1024)
        .err()
        .expect("expansion past the limit accepted");
    assert!(err.to_string().contains("more than 1024 bytes"), "{err}");
    ImageArchive::open_limited(&gz, f.dir.path(), 64 << 20).unwrap();
}

#[test]
fn empty_indexes_and_big_documents_are_refused() {
    let f = Fixture::new();
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(
        &mut b,
        "index.json",
        br#"{"schemaVersion":2,"manifests":[]}"#,
    );
    fs::write(f.p("empty.tar"), b.into_inner().unwrap()).unwrap();
    let err = ImageArchive::open(&f.p("empty.tar"))
        .err()
        .expect("empty index accepted");
    assert!(err.to_string().contains("lists no manifests"), "{err}");

    let mut b = tar::Builder::new(Vec::new());
    let big = format!(
        r#"{{"schemaVersion":2,"manifests":[],"x":"{}"}}"#,
        "y".repeat(5 << 20)
    );
    add(&mut b, "index.json", big.as_bytes());
    fs::write(f.p("big.tar"), b.into_inner().unwrap()).unwrap();
    let err = ImageArchive::open(&f.p("big.tar"))
        .err()
        .expect("5 MiB index accepted");
    assert!(
        err.to_string().contains("over the limit of 4194304 bytes"),
        "{err}"
    );
}

#[test]
fn documents_read_many_times_are_capped_in_total() {
    // One 2 MiB config named by 100 manifest.json entries (a 6 KiB list):
    // each entry read it again and kept its own copy, so a few MiB of
    // archive cost memory and hashing in proportion to entries × config.
    let f = Fixture::new();
    let config = format!(
        r#"{{"rootfs":{{"type":"layers","diff_ids":[]}},"pad":"{}"}}"#,
        "y".repeat(2 << 20)
    );
    let entries: Vec<_> = (0..100)
        .map(|_| serde_json::json!({"Config": "c.json", "Layers": []}))
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("c.json", config.into_bytes()),
        ("manifest.json", serde_json::to_vec(&entries).unwrap()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    fs::write(f.p("repeated.tar"), b.into_inner().unwrap()).unwrap();
    let err = ImageArchive::open(&f.p("repeated.tar"))
        .err()
        .expect("100 copies of a 2 MiB config read");
    assert!(
        err.to_string().contains("indexes, manifests and configs"),
        "{err}"
    );
}

#[test]
fn entry_names_kept_by_the_index_are_capped_in_total() {
    // 5000 files named by 4000 bytes each: a 25 MB archive (a few KB
    // compressed, which `load` first expands to a temporary file). The
    // index kept every name, so memory grew with the expanded archive.
    let f = Fixture::new();
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..5000 {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(0);
        let name = format!("{}{i}", "n".repeat(4000));
        b.append_data(&mut h, name, &[][..]).unwrap();
    }
    fs::write(f.p("names.tar"), b.into_inner().unwrap()).unwrap();
    let err = ImageArchive::open(&f.p("names.tar"))
        .err()
        .expect("an archive of long names opened");
    assert!(
        err.to_string()
            .contains("names of the archive's file entries"),
        "{err}"
    );
}
