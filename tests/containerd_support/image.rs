//! A one-layer OCI image (busybox-static as /bin/busybox, /bin/sh linked
//! to it) written as an OCI layout tar that `ctr images import` takes.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

fn sha256(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn layer_tar(busybox: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut dir, "bin/", std::io::empty()).unwrap();
    let mut file = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    b.append_data(&mut file, "bin/busybox", busybox).unwrap();
    let mut link = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut link, "bin/sh", "busybox").unwrap();
    b.into_inner().unwrap()
}

/// The OCI platform architecture name of this host.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A built image: its layout tar, name, and the chain id of its only layer.
pub struct Image {
    /// The reference containerd knows it by.
    pub name: String,
    /// Chain id of the one layer (= its diff id): the committed snapshot's name.
    pub chain_id: String,
}

/// Writes the image to `out` (an OCI layout in a tar) and describes it.
pub fn write_busybox_image(out: &Path, name: &str) -> Image {
    write_busybox_image_running(out, name, &["/bin/sh"])
}

/// [`write_busybox_image`] whose default command is `cmd` (a CRI pause
/// image: `sleep` for as long as the pod lives).
pub fn write_busybox_image_running(out: &Path, name: &str, cmd: &[&str]) -> Image {
    let busybox = std::fs::read(BUSYBOX).expect("read busybox");
    let layer = layer_tar(&busybox);
    let diff_id = sha256(&layer);
    let config = serde_json::json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": cmd },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config), "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": diff_id, "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest), "size": manifest.len(),
            "platform": { "architecture": oci_arch(), "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": "test",
            },
        }],
    })
    .to_string()
    .into_bytes();

    let file = std::fs::File::create(out).expect("create image tar");
    let mut b = tar::Builder::new(file);
    let mut add = |path: &str, data: &[u8]| {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for blob in [&layer, &config, &manifest] {
        let digest = sha256(blob);
        add(
            &format!("blobs/sha256/{}", &digest["sha256:".len()..]),
            blob,
        );
    }
    b.into_inner().unwrap();
    Image {
        name: name.to_owned(),
        chain_id: diff_id,
    }
}
