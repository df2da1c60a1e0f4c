//! Reading OCI image layout and `docker save` archives.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::error::{ImageError, Result};
use super::spec::{self, media, ConfigRootfs, Descriptor, DockerEntry, Index, Manifest};
use super::verify::{into_image_error, read_verified, Section, Verify, MAX_DOCUMENTS_TOTAL};
use crate::archive::{detect_compression, escape_name, ApplyLimits, Compression, Guard};
use crate::model::{chain_ids, ChainId, Digest, ImageId};

/// An opened image archive: the (uncompressed) tar file and its images.
pub struct ImageArchive {
    path: PathBuf,
    file: Arc<File>,
    entries: HashMap<String, (u64, u64)>,
    images: Vec<ArchiveImage>,
    /// Bytes of documents read so far (see [`MAX_DOCUMENTS_TOTAL`]).
    documents: AtomicU64,
}

/// One image in an archive.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    /// Image id: sha256 of the config bytes.
    pub id: ImageId,
    /// References (`name:tag`) the archive gives the image; may be empty.
    pub tags: Vec<String>,
    /// The config, byte for byte.
    pub config: Vec<u8>,
    /// Layers, bottom first.
    pub layers: Vec<ArchiveLayer>,
    /// Digest of the manifest, for OCI layouts.
    pub manifest: Option<Digest>,
}

impl ArchiveImage {
    /// Diff ids from the config, bottom first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// Chain ids, bottom first.
    pub fn chain_ids(&self) -> Vec<ChainId> {
        chain_ids(&self.diff_ids())
    }
}

/// One layer of an image in an archive.
#[derive(Debug, Clone)]
pub struct ArchiveLayer {
    /// Entry name of the blob in the archive.
    pub entry: String,
    /// Digest of the blob as stored (compressed); `None` for legacy docker
    /// save layers, which are checked by diff id only.
    pub digest: Option<Digest>,
    /// Blob size as stored.
    pub size: u64,
    /// Media type (for legacy docker save layers, the docker tar type).
    pub media_type: String,
    /// Expected sha256 of the uncompressed tar, from the config.
    pub diff_id: Digest,
    /// Role for messages, e.g. `layer 2/3 of alpine:3`.
    pub what: String,
}

/// An uncompressed layer stream that verifies the blob digest and the diff
/// id when it reaches its end; a mismatch is an `io::Error` carrying an
/// [`ImageError`] (see [`ImageError::from_io`]). Read it to the end.
pub struct LayerReader {
    inner: Verify<Box<dyn Read + Send>>,
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        what: what.to_owned(),
        source,
    })
}

fn parse_digest(s: &str, what: &str) -> Result<Digest> {
    let Some(hex) = s.strip_prefix("sha256:") else {
        return Err(ImageError::invalid(
            what,
            format!(
                "unsupported digest \"{}\" (only sha256)",
                escape_name(s.as_bytes())
            ),
        ));
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ImageError::invalid(
            what,
            format!("malformed digest \"{}\"", escape_name(s.as_bytes())),
        ));
    }
    Ok(Digest(s.to_owned()))
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl ImageArchive {
    /// Opens an archive. A gzip or zstd outer file is first decompressed to
    /// an anonymous temporary file in `$TMPDIR`.
    pub fn open(path: &Path) -> Result<ImageArchive> {
        Self::open_with_temp(path, &std::env::temp_dir())
    }

    /// As [`open`](Self::open), decompressing into `temp_dir` if needed.
    pub fn open_with_temp(path: &Path, temp_dir: &Path) -> Result<ImageArchive> {
        Self::open_limited(path, temp_dir, u64::MAX)
    }

    /// As [`open_with_temp`](Self::open_with_temp); a compressed archive
    /// may decompress to at most `max_bytes`, and is refused as soon as it
    /// goes beyond.
    pub fn open_limited(path: &Path, temp_dir: &Path, max_bytes: u64) -> Result<ImageArchive> {
        let mut file = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
        let mut head = [0u8; 4];
        let n = read_head(&mut file, &mut head).map_err(|e| ImageError::io("read", path, e))?;
        if detect_compression(&head[..n]) != Compression::None {
            let mut tmp = tempfile::tempfile_in(temp_dir)
                .map_err(|e| ImageError::io("create temporary file in", temp_dir, e))?;
            let src = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
            let mut dec = crate::archive::decompress(src)
                .map_err(|e| ImageError::io("decompress", path, e))?;
            let copied = io::copy(
                &mut crate::interrupt::Reader(dec.by_ref().take(max_bytes)),
                &mut tmp,
            )
            .map_err(|e| ImageError::io("decompress", path, e))?;
            if copied == max_bytes && dec.read(&mut [0u8; 1]).unwrap_or(0) > 0 {
                return Err(ImageError::invalid(
                    path.display().to_string(),
                    format!(
                        "decompresses to more than {max_bytes} bytes, the image size limit (limits.image_size / STRATA_LIMIT_IMAGE_SIZE)"
                    ),
                ));
            }
            file = tmp;
        }
        let file = Arc::new(file);
        let entries = index_tar(&file).map_err(|e| {
            let e = crate::archive::ArchiveError::from_read(e);
            if crate::archive::is_malformed_tar(&e) {
                return ImageError::NotATar {
                    path: path.to_owned(),
                };
            }
            match e {
                crate::archive::ArchiveError::Read(e) => ImageError::io("read tar", path, e),
                other => ImageError::io("read tar", path, io::Error::other(other)),
            }
        })?;
        let mut archive = ImageArchive {
            path: path.to_owned(),
            file,
            entries,
            images: Vec::new(),
            documents: AtomicU64::new(0),
        };
        archive.images = archive.parse_images()?;
        Ok(archive)
    }

    /// The archive's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The images, in archive order.
    pub fn images(&self) -> &[ArchiveImage] {
        &self.images
    }

    /// Opens `layer` as an uncompressed, verifying stream.
    pub fn open_layer(&self, layer: &ArchiveLayer) -> Result<LayerReader> {
        if !media::LAYERS.contains(&layer.media_type.as_str()) {
            return Err(ImageError::UnsupportedMediaType {
                what: layer.what.clone(),
                media_type: layer.media_type.clone(),
            });
        }
        let raw = self.section(&layer.entry, &layer.what)?;
        let blob = Verify::new(
            raw,
            layer.digest.clone(),
            Some(layer.size),
            layer.what.clone(),
        );
        let dec = crate::archive::decompress(blob).map_err(|e| into_image_error(e, &layer.what))?;
        Ok(LayerReader {
            inner: Verify::new(
                dec,
                Some(layer.diff_id.clone()),
                None,
                format!("{} (uncompressed)", layer.what),
            ),
        })
    }

    fn section(&self, entry: &str, what: &str) -> Result<Section> {
        let (off, len) =
            self.entries
                .get(entry)
                .copied()
                .ok_or_else(|| ImageError::MissingBlob {
                    what: what.to_owned(),
                    digest: entry.to_owned(),
                })?;
        Ok(Section::new(self.file.clone(), off, len))
    }

    fn read_entry(&self, entry: &str, what: &str) -> Result<Vec<u8>> {
        let doc = read_verified(self.section(entry, what)?, None, None, what)?;
        self.charge(&doc, what)?;
        Ok(doc)
    }

    /// Counts a document read against [`MAX_DOCUMENTS_TOTAL`].
    fn charge(&self, doc: &[u8], what: &str) -> Result<()> {
        let total = self
            .documents
            .fetch_add(doc.len() as u64, Ordering::Relaxed)
            + doc.len() as u64;
        if total > MAX_DOCUMENTS_TOTAL {
            return Err(ImageError::invalid(
                what,
                format!(
                    "reading it makes {total} bytes of indexes, manifests and configs read from {}, over the limit of {MAX_DOCUMENTS_TOTAL} bytes for one archive",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }

    fn read_blob(&self, d: &Descriptor, what: &str) -> Result<Vec<u8>> {
        let digest = parse_digest(&d.digest, what)?;
        let what = format!("{what} {digest}");
        let entry = blob_entry(&digest);
        let section = self.section(&entry, &what)?;
        let doc = read_verified(section, Some(digest), Some(d.size), &what)?;
        self.charge(&doc, &what)?;
        Ok(doc)
    }

    fn parse_images(&self) -> Result<Vec<ArchiveImage>> {
        let docker = if self.entries.contains_key("manifest.json") {
            Some(parse::<Vec<DockerEntry>>(
                &self.read_entry("manifest.json", "manifest.json")?,
                "manifest.json",
            )?)
        } else {
            None
        };
        if self.entries.contains_key("index.json") {
            let index: Index = parse(&self.read_entry("index.json", "index.json")?, "index.json")?;
            if index.manifests.is_empty() {
                return Err(ImageError::invalid("index.json", "lists no manifests"));
            }
            let mut images = Vec::new();
            for d in &index.manifests {
                let mut img = self.image_from_descriptor(d, "index.json", 0)?;
                img.tags = tags_for(d, &img.id, docker.as_deref(), &self.path);
                images.push(img);
            }
            return Ok(images);
        }
        match docker {
            Some(entries) if entries.is_empty() => {
                Err(ImageError::invalid("manifest.json", "lists no images"))
            }
            Some(entries) => entries
                .iter()
                .map(|e| self.image_from_docker_entry(e))
                .collect(),
            None => Err(ImageError::NotAnImage {
                path: self.path.clone(),
            }),
        }
    }

    fn image_from_descriptor(
        &self,
        d: &Descriptor,
        parent: &str,
        depth: u32,
    ) -> Result<ArchiveImage> {
        if depth > 4 {
            return Err(ImageError::invalid(parent, "indexes nested too deeply"));
        }
        match d.media_type.as_str() {
            media::OCI_INDEX | media::DOCKER_LIST => {
                let what = format!("index {}", escape_name(d.digest.as_bytes()));
                let index: Index = parse(&self.read_blob(d, "index")?, &what)?;
                let chosen = self.pick_platform(&index, &what)?;
                self.image_from_descriptor(chosen, &what, depth + 1)
            }
            media::OCI_MANIFEST | media::DOCKER_MANIFEST => self.image_from_manifest(d),
            other => Err(ImageError::UnsupportedMediaType {
                what: format!("{parent}: manifest {}", escape_name(d.digest.as_bytes())),
                media_type: escape_name(other.as_bytes()),
            }),
        }
    }

    fn pick_platform<'a>(&self, index: &'a Index, what: &str) -> Result<&'a Descriptor> {
        let present = |d: &&Descriptor| {
            parse_digest(&d.digest, what).is_ok_and(|g| self.entries.contains_key(&blob_entry(&g)))
        };
        let matching = |d: &&Descriptor| {
            d.platform
                .as_ref()
                .is_none_or(|p| p.os == "linux" && p.architecture == host_arch())
        };
        index
            .manifests
            .iter()
            .filter(present)
            .find(matching)
            .ok_or_else(|| {
                ImageError::invalid(
                    what,
                    format!(
                        "no manifest for linux/{} present in the archive",
                        host_arch()
                    ),
                )
            })
    }

    fn image_from_manifest(&self, d: &Descriptor) -> Result<ArchiveImage> {
        let mdigest = parse_digest(&d.digest, "manifest")?;
        let what = format!("manifest {mdigest}");
        let manifest: Manifest = parse(&self.read_blob(d, "manifest")?, &what)?;
        let config = self.read_blob(&manifest.config, &format!("config of {what}:"))?;
        let diff_ids = config_diff_ids(&config, &what, manifest.layers.len())?;
        let n = manifest.layers.len();
        let mut layers = Vec::new();
        for (i, (l, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
            let digest = parse_digest(&l.digest, &what)?;
            let lwhat = format!("layer {}/{n} blob {digest} of {what}", i + 1);
            if !media::LAYERS.contains(&l.media_type.as_str()) {
                return Err(ImageError::UnsupportedMediaType {
                    what: lwhat,
                    media_type: l.media_type.clone(),
                });
            }
            let entry = blob_entry(&digest);
            if !self.entries.contains_key(&entry) {
                return Err(ImageError::MissingBlob {
                    what: lwhat,
                    digest: digest.0,
                });
            }
            layers.push(ArchiveLayer {
                entry,
                digest: Some(digest),
                size: l.size,
                media_type: l.media_type.clone(),
                diff_id,
                what: lwhat,
            });
        }
        Ok(ArchiveImage {
            id: Digest::of(&config),
            tags: Vec::new(),
            config,
            layers,
            manifest: Some(mdigest),
        })
    }

    fn image_from_docker_entry(&self, e: &DockerEntry) -> Result<ArchiveImage> {
        let what = format!("manifest.json entry {}", escape_name(e.config.as_bytes()));
        let config = self.read_entry(&normalize_entry(&e.config), &what)?;
        let id = Digest::of(&config);
        if let Some(expected) = digest_in_name(&e.config) {
            if expected != id {
                return Err(ImageError::DigestMismatch {
                    what: format!("config {}", escape_name(e.config.as_bytes())),
                    expected,
                    actual: id,
                });
            }
        }
        let diff_ids = config_diff_ids(&config, &what, e.layers.len())?;
        let n = e.layers.len();
        let mut layers = Vec::new();
        for (i, (path, diff_id)) in e.layers.iter().zip(diff_ids).enumerate() {
            let entry = normalize_entry(path);
            let shown = escape_name(path.as_bytes());
            let lwhat = format!("layer {}/{n} {shown} of {what}", i + 1);
            let size = self.entries.get(&entry).map(|(_, s)| *s).ok_or_else(|| {
                ImageError::MissingBlob {
                    what: lwhat.clone(),
                    digest: shown.clone(),
                }
            })?;
            layers.push(ArchiveLayer {
                entry,
                digest: digest_in_name(path),
                size,
                media_type: media::DOCKER_LAYER.to_owned(),
                diff_id,
                what: lwhat,
            });
        }
        Ok(ArchiveImage {
            id,
            tags: e.repo_tags.clone().unwrap_or_default(),
            config,
            layers,
            manifest: None,
        })
    }
}

fn read_head(f: &mut File, head: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn blob_entry(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn normalize_entry(name: &str) -> String {
    let mut s = name;
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    s.trim_start_matches('/').to_owned()
}

/// `blobs/sha256/<hex>` or `<hex>.json` / `<hex>/layer.tar` names carry
/// their digest.
fn digest_in_name(name: &str) -> Option<Digest> {
    let n = normalize_entry(name);
    let hex = n
        .strip_prefix("blobs/sha256/")
        .or_else(|| n.strip_suffix(".json"))?;
    parse_digest(&format!("sha256:{hex}"), name).ok()
}

fn config_diff_ids(config: &[u8], what: &str, layers: usize) -> Result<Vec<Digest>> {
    let cwhat = format!("config of {what}");
    let c: ConfigRootfs = parse(config, &cwhat)?;
    if c.rootfs.kind != "layers" {
        return Err(ImageError::invalid(
            cwhat,
            format!("rootfs type {:?} is not \"layers\"", c.rootfs.kind),
        ));
    }
    if c.rootfs.diff_ids.len() != layers {
        return Err(ImageError::invalid(
            cwhat,
            format!("{} diff ids for {layers} layers", c.rootfs.diff_ids.len()),
        ));
    }
    c.rootfs
        .diff_ids
        .iter()
        .map(|d| parse_digest(d, &format!("diff id in {what}")))
        .collect()
}

/// Tags of an index entry: docker's manifest.json names win (docker save
/// writes both), then containerd's full-name annotation, then the OCI ref
/// name if it looks like a full reference.
fn tags_for(
    d: &Descriptor,
    id: &Digest,
    docker: Option<&[DockerEntry]>,
    _path: &Path,
) -> Vec<String> {
    if let Some(entries) = docker {
        for e in entries {
            if digest_in_name(&e.config).as_ref() == Some(id) {
                if let Some(tags) = &e.repo_tags {
                    if !tags.is_empty() {
                        return tags.clone();
                    }
                }
            }
        }
    }
    let a: &BTreeMap<String, String> = &d.annotations;
    if let Some(name) = a.get(spec::ANNOTATION_CONTAINERD_NAME) {
        return vec![name.clone()];
    }
    match a.get(spec::ANNOTATION_REF_NAME) {
        Some(r) if r.contains(':') || r.contains('/') => vec![r.clone()],
        _ => Vec::new(),
    }
}

/// Most bytes the index of an archive keeps: each file or link entry
/// counts its name, its link target and [`INDEX_ENTRY_OVERHEAD`]. The names an image needs
/// are short (`blobs/sha256/<hex>`, `<hex>/layer.tar`); without a cap, an
/// archive of long names (tiny once compressed) costs memory in proportion
/// to its expanded size.
const MAX_INDEX_BYTES: usize = 16 << 20;
/// What an index entry costs beyond its name, for [`MAX_INDEX_BYTES`].
const INDEX_ENTRY_OVERHEAD: usize = 64;

/// Maps entry names of a tar file to (data offset, size). Symlinks (docker
/// save dedups layers with them) map to their target's range.
fn index_tar(file: &Arc<File>) -> io::Result<HashMap<String, (u64, u64)>> {
    let mut out = HashMap::new();
    let mut links = Vec::new();
    let mut kept = 0usize;
    // The guard caps long names and PAX headers (each read into memory by
    // the tar crate) and leaves offsets as they are.
    let limits = ApplyLimits {
        max_trailing_bytes: u64::MAX,
        ..ApplyLimits::default()
    };
    let mut ar = tar::Archive::new(Guard::new(
        BufReader::new(crate::archive::Source(Section::new(
            file.clone(),
            0,
            file.metadata()?.len(),
        ))),
        limits,
        false,
    ));
    for e in ar.entries()? {
        let e = e?;
        let kind = e.header().entry_type();
        if !matches!(
            kind,
            tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::Symlink
                | tar::EntryType::Link
        ) {
            continue;
        }
        let name = normalize_entry(&String::from_utf8_lossy(&e.path_bytes()));
        let link_len = e.link_name_bytes().map_or(0, |l| l.len());
        kept = kept.saturating_add(name.len() + link_len + INDEX_ENTRY_OVERHEAD);
        if kept > MAX_INDEX_BYTES {
            return Err(io::Error::other(crate::archive::LimitExceeded {
                what: format!(
                    "names of the archive's file entries, up to {}",
                    escape_name(name.as_bytes())
                ),
                size: kept as u64,
                limit: MAX_INDEX_BYTES as u64,
                setting: "the limit on entry names an image archive may hold".to_owned(),
                exact: false,
            }));
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                out.insert(name, (e.raw_file_position(), e.size()));
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(t) = e.link_name_bytes() {
                    let t = String::from_utf8_lossy(&t).into_owned();
                    links.push((name, t, e.header().entry_type() == tar::EntryType::Symlink));
                }
            }
            _ => {}
        }
    }
    for (name, target, symlink) in links {
        let resolved = if symlink {
            let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
            lexical(&dir.join(&target))
        } else {
            normalize_entry(&target)
        };
        if let Some(range) = out.get(&resolved).copied() {
            out.insert(name, range);
        }
    }
    Ok(out)
}

fn lexical(p: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.to_str().unwrap_or("").split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}
