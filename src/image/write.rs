//! Writing OCI image layout archives (with a docker `manifest.json`).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::error::{ImageError, Result};
use super::spec::{self, media, ConfigRootfs, Descriptor, DockerEntry, Index, Manifest, OciLayout};
use crate::model::Digest;

/// One image to save.
#[derive(Debug, Clone)]
pub struct ImageToSave {
    /// References, `name:tag`; each becomes an index entry and a docker
    /// `RepoTags` item.
    pub tags: Vec<String>,
    /// The config bytes, unchanged (they define the image id).
    pub config: Vec<u8>,
    /// Uncompressed layer tars, bottom first; their sha256 must equal the
    /// config's diff ids.
    pub layers: Vec<PathBuf>,
}

/// How to save.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// gzip the layer blobs (`tar+gzip`); otherwise plain `tar` blobs.
    pub gzip: bool,
    /// Where compressed blobs are staged before being copied into the
    /// archive.
    pub temp_dir: PathBuf,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            gzip: true,
            temp_dir: std::env::temp_dir(),
        }
    }
}

/// Docker-style full name for containerd: `alpine:3` becomes
/// `docker.io/library/alpine:3`, `me/app:1` becomes `docker.io/me/app:1`.
pub fn normalize_ref(r: &str) -> String {
    let first = r.split('/').next().unwrap_or(r);
    let has_domain =
        r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_domain {
        r.to_owned()
    } else if r.contains('/') {
        format!("docker.io/{r}")
    } else {
        format!("docker.io/library/{r}")
    }
}

fn tag_of(r: &str) -> &str {
    let last = r.rsplit('/').next().unwrap_or(r);
    last.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest")
}

/// Writes `images` as an OCI image layout tar (`oci-layout`, `index.json`,
/// `blobs/sha256/*`) plus a docker `manifest.json`, to `out`. Headers are
/// normalised (mtime 0, root owner), so the same images give the same bytes.
pub fn write_oci_archive(
    out: impl Write,
    images: &[ImageToSave],
    opts: &SaveOptions,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let w = |e: io::Error| ImageError::io("write", "archive", e);
    add_dir(&mut tar, "blobs/").map_err(w)?;
    add_dir(&mut tar, "blobs/sha256/").map_err(w)?;
    let mut written = HashSet::new();
    let mut index = Vec::new();
    let mut docker = Vec::new();
    for img in images {
        let config_digest = Digest::of(&img.config);
        let what = format!("image {config_digest}");
        let c: ConfigRootfs =
            serde_json::from_slice(&img.config).map_err(|source| ImageError::Json {
                what: format!("config of {what}"),
                source,
            })?;
        if c.rootfs.diff_ids.len() != img.layers.len() {
            return Err(ImageError::invalid(
                &what,
                format!(
                    "config lists {} diff ids, {} layer files given",
                    c.rootfs.diff_ids.len(),
                    img.layers.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in img.layers.iter().zip(&c.rootfs.diff_ids) {
            let blob = LayerBlob::prepare(path, opts)?;
            if blob.diff_id.0 != *diff_id {
                return Err(ImageError::DigestMismatch {
                    what: format!("layer file {} of {what}", path.display()),
                    expected: Digest(diff_id.clone()),
                    actual: blob.diff_id,
                });
            }
            let desc = Descriptor {
                media_type: blob.media_type.to_owned(),
                digest: blob.digest.0.clone(),
                size: blob.size,
                annotations: BTreeMap::new(),
                platform: None,
            };
            if written.insert(blob.digest.clone()) {
                let mut f = blob.file;
                f.seek(SeekFrom::Start(0))
                    .map_err(|e| ImageError::io("read", path, e))?;
                add_file(&mut tar, &blob_name(&blob.digest), blob.size, f).map_err(w)?;
            }
            layers.push(desc);
        }
        let config_desc = Descriptor {
            media_type: media::OCI_CONFIG.to_owned(),
            digest: config_digest.0.clone(),
            size: img.config.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        };
        put_blob(&mut tar, &mut written, &img.config).map_err(w)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.to_owned()),
            config: config_desc,
            layers: layers.clone(),
        };
        let mbytes = json(&manifest)?;
        let mdigest = put_blob(&mut tar, &mut written, &mbytes).map_err(w)?;
        let mdesc = |annotations| Descriptor {
            media_type: media::OCI_MANIFEST.to_owned(),
            digest: mdigest.0.clone(),
            size: mbytes.len() as u64,
            annotations,
            platform: None,
        };
        if img.tags.is_empty() {
            index.push(mdesc(BTreeMap::new()));
        }
        for t in &img.tags {
            let a = BTreeMap::from([
                (
                    spec::ANNOTATION_CONTAINERD_NAME.to_owned(),
                    normalize_ref(t),
                ),
                (spec::ANNOTATION_REF_NAME.to_owned(), tag_of(t).to_owned()),
            ]);
            index.push(mdesc(a));
        }
        docker.push(DockerEntry {
            config: blob_name(&config_digest),
            repo_tags: Some(img.tags.clone()),
            layers: layers
                .iter()
                .map(|l| blob_name(&Digest(l.digest.clone())))
                .collect(),
        });
    }
    let layout = json(&OciLayout {
        image_layout_version: "1.0.0".to_owned(),
    })?;
    add_file(&mut tar, "oci-layout", layout.len() as u64, &layout[..]).map_err(w)?;
    let index = json(&Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.to_owned()),
        manifests: index,
    })?;
    add_file(&mut tar, "index.json", index.len() as u64, &index[..]).map_err(w)?;
    let docker = json(&docker)?;
    add_file(&mut tar, "manifest.json", docker.len() as u64, &docker[..]).map_err(w)?;
    tar.into_inner().map_err(w)?.flush().map_err(w)
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| ImageError::Json {
        what: "serialising archive metadata".to_owned(),
        source,
    })
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn put_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    written: &mut HashSet<Digest>,
    bytes: &[u8],
) -> io::Result<Digest> {
    let d = Digest::of(bytes);
    if written.insert(d.clone()) {
        add_file(tar, &blob_name(&d), bytes.len() as u64, bytes)?;
    }
    Ok(d)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, name, io::empty())
}

fn add_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, size);
    tar.append_data(&mut h, name, data.take(size))
}

/// A layer blob ready to copy into the archive.
struct LayerBlob {
    file: File,
    digest: Digest,
    diff_id: Digest,
    size: u64,
    media_type: &'static str,
}

impl LayerBlob {
    /// Hashes the layer file and, with gzip, compresses it to a temporary
    /// file in the same pass.
    fn prepare(path: &Path, opts: &SaveOptions) -> Result<LayerBlob> {
        crate::interrupt::check()?;
        let file = File::open(path).map_err(|e| ImageError::io("open layer", path, e))?;
        let mut src = crate::interrupt::Reader(&file);
        let diff = Sha256::new();
        if !opts.gzip {
            let mut hw = HashWriter(diff, io::sink());
            io::copy(&mut src, &mut hw).map_err(|e| ImageError::io("read layer", path, e))?;
            let HashWriter(diff, _) = hw;
            let size = file
                .metadata()
                .map_err(|e| ImageError::io("stat layer", path, e))?
                .len();
            let d = Digest::from_hasher(diff);
            return Ok(LayerBlob {
                file,
                digest: d.clone(),
                diff_id: d,
                size,
                media_type: media::OCI_LAYER,
            });
        }
        let tmp = tempfile::tempfile_in(&opts.temp_dir)
            .map_err(|e| ImageError::io("create temporary file in", &opts.temp_dir, e))?;
        let gz = flate2::write::GzEncoder::new(
            HashWriter(Sha256::new(), tmp),
            flate2::Compression::fast(),
        );
        let mut hw = HashWriter(diff, gz);
        io::copy(&mut src, &mut hw).map_err(|e| ImageError::io("compress layer", path, e))?;
        let HashWriter(diff, gz) = hw;
        let HashWriter(blob, mut tmp) = gz
            .finish()
            .map_err(|e| ImageError::io("compress layer", path, e))?;
        let size = tmp
            .stream_position()
            .map_err(|e| ImageError::io("compress layer", path, e))?;
        Ok(LayerBlob {
            file: tmp,
            digest: Digest::from_hasher(blob),
            diff_id: Digest::from_hasher(diff),
            size,
            media_type: media::OCI_LAYER_GZIP,
        })
    }
}

/// Hashes what is written through it.
struct HashWriter<H, W>(H, W);

impl<W: Write> Write for HashWriter<Sha256, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.1.write(buf)?;
        self.0.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.1.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_normalise_like_docker() {
        assert_eq!(normalize_ref("alpine:3"), "docker.io/library/alpine:3");
        assert_eq!(normalize_ref("me/app:1"), "docker.io/me/app:1");
        assert_eq!(normalize_ref("ghcr.io/x/y:2"), "ghcr.io/x/y:2");
        assert_eq!(normalize_ref("localhost/y:2"), "localhost/y:2");
        assert_eq!(tag_of("localhost:5000/y"), "latest");
        assert_eq!(tag_of("a/b:c"), "c");
    }
}
