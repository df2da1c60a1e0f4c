//! Layers in and out of the store: `load`, `save`, `diff`, `commit`,
//! `export`.
//!
//! Every layer tar that enters the store (load, commit) is kept under
//! `<root>/layer-tars/<diff id hex>.tar`, so `save` can write the exact bytes
//! the config's diff ids name; a layer without a kept tar (from `import`)
//! is regenerated from its snapshot and must hash to the same diff id.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use strata_driver_api::{Mount, SnapshotKey, Snapshotter, SnapshotterExt};

use crate::archive::{
    changes, changes_overlay, escape_name, write_layer, write_tree, ApplyLimits, Change,
};
use crate::error::{Result, StoreError};
use crate::image::{ImageArchive, ImageToSave, SaveOptions};
use crate::limits::Limits;
use crate::model::{layer_snapshot_key, ContainerId, Digest, ImageRecord, LayerRecord, Reference};
use crate::mounts::TempMount;
use crate::ops::layer::apply_layer_snapshot;
use crate::Store;

/// Where the tar of layer `diff_id` is kept.
pub fn layer_tar_path(store: &Store, diff_id: &Digest) -> PathBuf {
    store
        .root()
        .join("layer-tars")
        .join(format!("{}.tar", diff_id.hex()))
}

/// Deletes kept layer tars that no recorded image uses any more (after
/// `rmi`). Returns how many were deleted.
pub fn prune_layer_tars(store: &Store) -> Result<usize> {
    let dir = store.root().join("layer-tars");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("read directory", &dir, e)),
    };
    let used: HashSet<String> = store
        .meta()?
        .images()?
        .iter()
        .flat_map(|i| i.layers.iter().map(|l| format!("{}.tar", l.diff_id.hex())))
        .collect();
    let mut removed = 0;
    for e in entries {
        let e = e.map_err(|e| StoreError::io("read directory", &dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar")
            && !used.contains(&name)
            && !crate::store::owned::held_by_live_session(store, &e.path())
        {
            fs::remove_file(e.path()).map_err(|err| StoreError::io("remove", e.path(), err))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Copies everything read into a file.
struct Tee<R> {
    inner: R,
    out: SparseWriter,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Writes a file leaving every all-zero 4 KiB block a hole, so a kept
/// layer tar full of zeros (padding, zero-filled files) takes no space.
struct SparseWriter {
    file: File,
    buf: Vec<u8>,
    len: u64,
}

const SPARSE_BLOCK: usize = 4096;
const SPARSE_BUF: usize = 256 * 1024;

impl SparseWriter {
    fn new(file: File) -> Self {
        SparseWriter {
            file,
            buf: Vec::with_capacity(SPARSE_BUF),
            len: 0,
        }
    }

    /// Writes out whole blocks (all of the buffer when `all`).
    fn drain(&mut self, all: bool) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let keep = if all {
            0
        } else {
            self.buf.len() % SPARSE_BLOCK
        };
        let upto = self.buf.len() - keep;
        for chunk in self.buf[..upto].chunks(SPARSE_BLOCK) {
            if !crate::archive::is_zero(chunk) {
                self.file.write_all_at(chunk, self.len)?;
            }
            self.len += chunk.len() as u64;
        }
        self.buf.drain(..upto);
        Ok(())
    }

    /// Writes what is buffered and gives the file its full length.
    fn finish(&mut self) -> io::Result<()> {
        self.drain(true)?;
        self.file.set_len(self.len)
    }
}

impl Write for SparseWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SPARSE_BUF {
            self.drain(false)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Loads every image of an OCI layout or docker save archive. Layers whose
/// chain id is already stored are reused. A refused load leaves nothing:
/// see [`load_with_progress`].
pub fn load(store: &Store, file: &Path) -> Result<Vec<ImageRecord>> {
    load_with_progress(store, file, &mut |_| {})
}

/// What a load made, in order, so that a failure can undo all of it.
#[derive(Default)]
struct Made {
    /// Snapshots committed by this load, with their chain ids (whose CRC
    /// manifests were written with them).
    snapshots: Vec<(SnapshotKey, Digest)>,
    /// Kept layer tars that did not exist before this load.
    tars: Vec<PathBuf>,
}

impl Made {
    /// The one rollback path of a failed load (no image was recorded: they
    /// are recorded together, last): snapshots newest first with their
    /// manifests, then kept tars. Returns how many layers it removed.
    fn roll_back(self, store: &Store) -> usize {
        let mut removed = 0;
        for (key, chain) in self.snapshots.iter().rev() {
            if let Err(e) = store.snapshots().remove(key) {
                tracing::error!(%key, error = %e, "removing a failed load's layer");
                continue;
            }
            removed += 1;
            if let Err(e) = crate::check::manifest::remove(store.root(), chain) {
                tracing::error!(%key, error = %e, "removing a failed load's layer manifest");
            }
        }
        for tar in &self.tars {
            let _ = fs::remove_file(tar);
        }
        removed
    }
}

/// [`load`], reporting each layer as it is applied or found present
/// (`progress` gets a one-line message, for a terminal).
///
/// Everything that can be checked before writing is checked first (every
/// image's documents, layer count and blobs' presence; see
/// [`crate::limits`]); then all layers of all images are applied, each
/// within the layer and image size limits; only then are the images
/// recorded. On any error everything this load made (layers, their
/// manifests and kept tars, image records) is removed again.
pub fn load_with_progress(
    store: &Store,
    file: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<ImageRecord>> {
    let limits = Limits::of(store)?;
    let archive = ImageArchive::open_limited(file, &store.temp_dir("load")?, limits.image_size)?;
    let mut made = Made::default();
    let result = load_images(store, &archive, &limits, &mut made, progress);
    if let Err(err) = result {
        let removed = made.roll_back(store);
        return Err(if removed > 0 {
            err.undone(format!("{removed} layer(s) removed"))
        } else {
            err
        });
    }
    result
}

fn load_images(
    store: &Store,
    archive: &ImageArchive,
    limits: &Limits,
    made: &mut Made,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<ImageRecord>> {
    let images = archive.images();
    if images.is_empty() {
        return Err(StoreError::Invalid(format!(
            "{}: the archive holds no image",
            file_name(archive)
        )));
    }
    for img in images {
        if img.layers.len() > limits.layers {
            return Err(StoreError::Invalid(format!(
                "image {}: {} layers is over the layer count limit of {} (limits.layers / STRATA_LIMIT_LAYERS)",
                img.id,
                img.layers.len(),
                limits.layers
            )));
        }
    }
    let known: HashMap<Digest, u64> = store
        .meta()?
        .images()?
        .into_iter()
        .flat_map(|i| i.layers)
        .map(|l| (l.chain_id, l.size))
        .collect();
    let mut pending = Vec::new();
    for img in images {
        let chains = img.chain_ids();
        let mut layers: Vec<LayerRecord> = Vec::new();
        let mut image_size = 0u64;
        let n = img.layers.len();
        for (i, (layer, chain)) in img.layers.iter().zip(&chains).enumerate() {
            crate::interrupt::check()?;
            let short = layer.diff_id.short();
            let key = layer_snapshot_key(chain);
            if store.snapshots().exists(&key)? {
                let size = known.get(chain).copied().unwrap_or(0);
                image_size = image_size.saturating_add(size);
                layers.push(LayerRecord {
                    diff_id: layer.diff_id.clone(),
                    chain_id: chain.clone(),
                    size,
                });
                progress(&format!("layer {}/{n} {short}: already present", i + 1));
                continue;
            }
            progress(&format!(
                "layer {}/{n} {short}: applying ({} bytes)",
                i + 1,
                layer.size
            ));
            let tar_path = layer_tar_path(store, &layer.diff_id);
            let had_tar = tar_path.exists();
            let apply_limits = limits.apply_limits(limits.image_size.saturating_sub(image_size));
            let record = load_layer(
                store,
                archive,
                layer,
                layers.last().map(|l| &l.chain_id),
                apply_limits,
            )
            .map_err(|e| in_layer(e, &layer.what))?;
            made.snapshots.push((key, record.chain_id.clone()));
            if !had_tar {
                made.tars.push(tar_path);
            }
            if record.chain_id != *chain {
                return Err(StoreError::Invalid(format!(
                    "{}: applied layer has chain id {}, expected {chain}",
                    layer.what, record.chain_id
                )));
            }
            image_size = image_size.saturating_add(record.size);
            layers.push(record);
        }
        let mut tags = Vec::new();
        for t in &img.tags {
            match Reference::parse(t) {
                Ok(r) => tags.push(r),
                Err(e) => {
                    tracing::warn!(tag = %escape_name(t.as_bytes()), error = %e, "skipping a tag strata cannot record")
                }
            }
        }
        pending.push(ImageRecord {
            id: img.id.clone(),
            config: img.config.clone(),
            layers,
            tags,
            created_ns: crate::now_ns(),
        });
    }
    crate::interrupt::check()?;
    // Every image in one transaction: a load records all its images or none.
    store.meta()?.add_images(pending)
}

fn file_name(archive: &ImageArchive) -> String {
    archive.path().display().to_string()
}

/// Names the layer in an archive error that does not already.
fn in_layer(e: StoreError, what: &str) -> StoreError {
    match e {
        StoreError::Archive(source) => StoreError::Layer {
            layer: what.to_owned(),
            source,
        },
        other => other,
    }
}

fn load_layer(
    store: &Store,
    archive: &ImageArchive,
    layer: &crate::image::ArchiveLayer,
    parent: Option<&Digest>,
    limits: ApplyLimits,
) -> Result<LayerRecord> {
    apply_and_keep(store, parent, archive.open_layer(layer)?, limits)
}

/// [`apply_layer_snapshot`] that also keeps the tar it applied (see the
/// module docs; zero blocks are left as holes), so `save` can reproduce the
/// layer byte for byte. Every
/// path that brings a foreign layer into the store (`load`, `import`)
/// goes through here; `limits` bound what the tar may expand to, and a
/// refused layer's tar is never kept.
pub fn apply_and_keep(
    store: &Store,
    parent: Option<&Digest>,
    tar: impl Read,
    limits: ApplyLimits,
) -> Result<LayerRecord> {
    let tmp = store
        .temp_dir("layer-tars")?
        .join(format!("in-{}.tar", ContainerId::generate()));
    let out = strata_driver_api::private::create_private_file(&tmp)?;
    let mut reader = Tee {
        inner: tar,
        out: SparseWriter::new(out),
    };
    let result = apply_layer_snapshot(store, parent, &mut reader, limits).and_then(|record| {
        reader
            .out
            .finish()
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        keep_tar(store, &tmp, &record.diff_id)?;
        Ok(record)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn keep_tar(store: &Store, tmp: &Path, diff_id: &Digest) -> Result<()> {
    let dst = layer_tar_path(store, diff_id);
    if let Some(dir) = dst.parent() {
        crate::perms::private_dir(dir)?;
    }
    crate::store::owned::mark(store.session(), tmp);
    fs::rename(tmp, &dst).map_err(|e| StoreError::io("rename", tmp, e))
}

/// Saves images (by reference or id) as one OCI layout archive at `out`,
/// written to a temporary name and renamed when complete.
pub fn save(store: &Store, refs: &[String], out: &Path, gzip: bool) -> Result<()> {
    let mut seen = HashSet::new();
    let mut images = Vec::new();
    for r in refs {
        let image = store.resolve_image(r)?;
        if !seen.insert(image.id.clone()) {
            continue;
        }
        let mut layers = Vec::new();
        let mut parent: Option<&Digest> = None;
        for l in &image.layers {
            layers.push(ensure_layer_tar(store, l, parent)?);
            parent = Some(&l.chain_id);
        }
        images.push(ImageToSave {
            tags: image.tags.iter().map(|t| t.0.clone()).collect(),
            config: image.config.clone(),
            layers,
        });
    }
    let opts = SaveOptions {
        gzip,
        temp_dir: store.temp_dir("save")?,
    };
    let mut partial = PartialOutput::create(out)?;
    let result = crate::image::write_oci_archive(
        BufWriter::new(crate::interrupt::Writer(partial.file())),
        &images,
        &opts,
    );
    match result {
        Ok(()) => partial.finish(),
        Err(e) => Err(StoreError::from(e).undone(partial.discard())),
    }
}

/// A file written outside the store (`save -o`, `export -o`). It is
/// written as an unnamed file (`O_TMPFILE`) in the destination's directory,
/// so that no death, not even SIGKILL, can leave a partial file behind;
/// when complete it is linked under a temporary name in that directory and
/// renamed over the destination. On a filesystem without `O_TMPFILE` it is
/// a named temporary file (`.NAME.XXXXXX.strata-partial`) from the start.
/// Dropped unfinished (an error, an interruption, a panic), it is removed.
pub struct PartialOutput {
    out: PathBuf,
    dir: PathBuf,
    temp: Option<Temp>,
}

enum Temp {
    /// No name yet: it vanishes with the process.
    Unnamed(File),
    /// The fallback: removed on drop.
    Named(tempfile::NamedTempFile),
}

impl PartialOutput {
    /// Opens the temporary for `out`, root-only (0600): an archive holds
    /// the image's files, root-only ones included.
    pub fn create(out: &Path) -> Result<Self> {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        use std::os::unix::fs::PermissionsExt;
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let flags = OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        let temp = match nix::fcntl::open(&dir, flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => Temp::Unnamed(File::from(fd)),
            Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EISDIR) => {
                let named = tempfile::Builder::new()
                    .prefix(&Self::temp_prefix(out)?)
                    .suffix(".strata-partial")
                    .permissions(fs::Permissions::from_mode(0o600))
                    .tempfile_in(&dir)
                    .map_err(|e| StoreError::io("create a temporary file in", &dir, e))?;
                Temp::Named(named)
            }
            Err(e) => {
                return Err(StoreError::io(
                    "create a temporary file in",
                    &dir,
                    io::Error::from(e),
                ))
            }
        };
        Ok(Self {
            out: out.to_owned(),
            dir,
            temp: Some(temp),
        })
    }

    fn temp_prefix(out: &Path) -> Result<String> {
        let name = out
            .file_name()
            .ok_or_else(|| StoreError::Invalid(format!("{}: not a file name", out.display())))?;
        Ok(format!(".{}.", name.to_string_lossy()))
    }

    /// The temporary file to write to.
    pub fn file(&self) -> &File {
        match self.temp.as_ref().expect("PartialOutput used after finish") {
            Temp::Unnamed(f) => f,
            Temp::Named(n) => n.as_file(),
        }
    }

    /// Flushes the file to disk and renames it over the destination.
    pub fn finish(&mut self) -> Result<()> {
        use std::os::fd::AsRawFd;
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        let temp_path = match temp {
            Temp::Named(named) => {
                named
                    .as_file()
                    .sync_all()
                    .map_err(|e| StoreError::io("sync", named.path(), e))?;
                named.into_temp_path()
            }
            Temp::Unnamed(file) => {
                file.sync_all()
                    .map_err(|e| StoreError::io("sync", &self.out, e))?;
                // Give it a temporary name beside the destination (linkat
                // of an O_TMPFILE cannot replace), then rename it over.
                tempfile::Builder::new()
                    .prefix(&Self::temp_prefix(&self.out)?)
                    .suffix(".strata-partial")
                    .make_in(&self.dir, |path| {
                        nix::unistd::linkat(
                            nix::fcntl::AT_FDCWD,
                            format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
                            nix::fcntl::AT_FDCWD,
                            path,
                            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                        )
                        .map_err(io::Error::from)
                    })
                    .map_err(|e| StoreError::io("link the output in", &self.dir, e))?
                    .into_temp_path()
            }
        };
        let path = temp_path.to_path_buf();
        temp_path
            .persist(&self.out)
            .map_err(|e| StoreError::io("rename", path, e.error))?;
        Ok(())
    }

    /// Removes the temporary file now; returns a note naming the output,
    /// for an interruption's report.
    pub fn discard(&mut self) -> String {
        if let Some(Temp::Named(n)) = self.temp.take() {
            let path = n.path().to_owned();
            if let Err(e) = n.close() {
                tracing::warn!(path = %path.display(), error = %e, "removing a partial output");
            }
        }
        format!("partial {} removed", self.out.display())
    }
}

/// The kept tar of `layer`, regenerating it from the snapshots if needed.
fn ensure_layer_tar(
    store: &Store,
    layer: &LayerRecord,
    parent: Option<&Digest>,
) -> Result<PathBuf> {
    let path = layer_tar_path(store, &layer.diff_id);
    if path.exists() {
        return Ok(path);
    }
    let tmp = store
        .temp_dir("layer-tars")?
        .join(format!("regen-{}.tar", layer.diff_id.hex()));
    let diff_id = {
        let upper = View::new(store, Some(&layer_snapshot_key(&layer.chain_id)))?;
        let lower = match parent {
            Some(p) => Some(View::new(store, Some(&layer_snapshot_key(p)))?),
            None => None,
        };
        let ch = changes(lower.as_ref().map(|v| v.path()), upper.path())?;
        write_hashed(upper.path(), &ch, &tmp)?
    };
    crate::interrupt::check().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    if diff_id != layer.diff_id {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Invalid(format!(
            "layer {} has no kept tar and regenerating it gave diff id {diff_id}; cannot save it faithfully",
            layer.diff_id
        )));
    }
    keep_tar(store, &tmp, &diff_id)?;
    Ok(path)
}

/// Writes the layer tar of `ch` from `root` to `dst`, returning its diff id.
/// The file is removed again on error (and on interruption, checked per
/// entry and per chunk written).
fn write_hashed(root: &Path, ch: &[Change], dst: &Path) -> Result<Digest> {
    let file = strata_driver_api::private::create_private_file(dst)?;
    let mut w = HashingWriter {
        inner: BufWriter::new(crate::interrupt::Writer(file)),
        hasher: Sha256::new(),
    };
    let written = write_layer(root, ch, &mut w)
        .map_err(StoreError::from)
        .and_then(|()| w.inner.flush().map_err(|e| StoreError::io("write", dst, e)));
    if let Err(e) = written {
        drop(w);
        let _ = fs::remove_file(dst);
        return Err(e);
    }
    Ok(Digest::from_hasher(w.hasher))
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A temporary read-only view of a committed snapshot, mounted; removed on
/// drop. `None` gives an empty directory.
struct View<'a> {
    store: &'a Store,
    key: SnapshotKey,
    mount: Option<TempMount>,
    mounts: Vec<Mount>,
}

impl<'a> View<'a> {
    fn new(store: &'a Store, parent: Option<&SnapshotKey>) -> Result<Self> {
        let key = SnapshotKey(format!("view-{}", ContainerId::generate()));
        let mounts = store
            .snapshots()
            .view(&key, parent, store.session_labels())?;
        let mut view = View {
            store,
            key,
            mount: None,
            mounts,
        };
        let dir = store.temp_dir("mounts")?.join(view.key.as_str());
        view.mount = Some(TempMount::new(&view.mounts, dir)?);
        Ok(view)
    }

    fn path(&self) -> &Path {
        self.mount
            .as_ref()
            .map(|m| m.path())
            .unwrap_or(Path::new("/nonexistent"))
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        self.mount.take();
        if let Err(e) = self.store.snapshots().remove(&self.key) {
            tracing::error!(key = %self.key, error = %e, "removing a temporary view");
        }
    }
}

/// The upper directory of an overlay mount spec, if that is what it is.
pub(crate) fn overlay_upper(mounts: &[Mount]) -> Option<PathBuf> {
    let m = mounts.iter().find(|m| m.fstype == "overlay")?;
    m.options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(PathBuf::from)
}

/// A container's root mounted for reading (its own mount if mounted).
struct ContainerRoot {
    _mount: Option<TempMount>,
    path: PathBuf,
    mounts: Vec<Mount>,
}

fn container_root(
    store: &Store,
    text: &str,
) -> Result<(crate::model::ContainerRecord, ContainerRoot)> {
    let record = store.resolve_container(text)?;
    let mounts = store.snapshots().mounts(&record.snapshot)?;
    if let Some(p) = &record.mounted_at {
        if strata_driver_api::mount::is_mountpoint(p)? {
            let root = ContainerRoot {
                _mount: None,
                path: p.clone(),
                mounts,
            };
            return Ok((record, root));
        }
    }
    let dir = store
        .temp_dir("mounts")?
        .join(format!("ro-{}", ContainerId::generate()));
    let m = TempMount::new(&mounts, dir)?;
    let path = m.path().to_owned();
    Ok((
        record,
        ContainerRoot {
            _mount: Some(m),
            path,
            mounts,
        },
    ))
}

/// What a container changed against its image, as `docker diff` lists it.
/// overlay2 containers are read from their upper directory; others are
/// walked against a view of the image.
pub fn diff(store: &Store, text: &str) -> Result<Vec<Change>> {
    let (record, root) = container_root(store, text)?;
    let image = store
        .meta()?
        .image(&record.image)?
        .ok_or_else(|| StoreError::UnknownImage(record.image.0.clone()))?;
    let lower = match image.top_snapshot() {
        Some(top) => Some(View::new(store, Some(&top))?),
        None => None,
    };
    let lower_path = lower.as_ref().map(|v| v.path());
    match overlay_upper(&root.mounts) {
        Some(upper) => Ok(changes_overlay(lower_path, &upper)?),
        None => Ok(changes(lower_path, &root.path)?),
    }
}

/// Commits a container's changes as a new image `reference` (the container
/// stays as it is). Prints nothing; returns the new image.
pub fn commit(store: &Store, text: &str, reference: &Reference) -> Result<ImageRecord> {
    let ch = diff(store, text)?;
    let (record, root) = container_root(store, text)?;
    let image = store
        .meta()?
        .image(&record.image)?
        .ok_or_else(|| StoreError::UnknownImage(record.image.0.clone()))?;
    let tmp = store
        .temp_dir("layer-tars")?
        .join(format!("commit-{}.tar", ContainerId::generate()));
    let diff_id = write_hashed(&root.path, &ch, &tmp)?;
    drop(root);
    let parent = image.layers.last().map(|l| &l.chain_id);
    let layer = match File::open(&tmp)
        .map_err(|e| StoreError::io("open", &tmp, e))
        .and_then(|tar| {
            apply_layer_snapshot(
                store,
                parent,
                io::BufReader::new(tar),
                ApplyLimits::default(),
            )
        }) {
        Ok(l) => l,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e.undone("the new layer's tar removed"));
        }
    };
    if layer.diff_id != diff_id {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Invalid(format!(
            "commit: layer hashed to {diff_id} but applied as {}",
            layer.diff_id
        )));
    }
    keep_tar(store, &tmp, &diff_id)?;
    strata_driver_api::failpoint("commit.layer_done");
    let config = committed_config(
        &image.config,
        &diff_id,
        &format!("strata commit {}", record.name),
    )?;
    let mut layers = image.layers.clone();
    layers.push(layer);
    let new = ImageRecord {
        id: Digest::of(&config),
        config,
        layers,
        tags: vec![reference.clone()],
        created_ns: crate::now_ns(),
    };
    let meta = store.meta()?;
    let mut stored = meta.image(&new.id)?.unwrap_or_else(|| new.clone());
    if !stored.tags.contains(reference) {
        stored.tags.push(reference.clone());
    }
    meta.put_image(&stored)?;
    Ok(stored)
}

/// The parent's config with one more diff id and history entry.
fn committed_config(parent: &[u8], diff_id: &Digest, created_by: &str) -> Result<Vec<u8>> {
    let mut c: serde_json::Value = serde_json::from_slice(parent)
        .map_err(|e| StoreError::Invalid(format!("image config: {e}")))?;
    let created = crate::ops::import::rfc3339(crate::now_ns() / 1_000_000_000);
    c["created"] = created.clone().into();
    let diff_ids = c["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut diff_ids = diff_ids;
    diff_ids.push(diff_id.0.clone().into());
    c["rootfs"] = serde_json::json!({ "type": "layers", "diff_ids": diff_ids });
    let mut history = c["history"].as_array().cloned().unwrap_or_default();
    history.push(serde_json::json!({ "created": created, "created_by": created_by }));
    c["history"] = history.into();
    serde_json::to_vec(&c).map_err(|e| StoreError::Invalid(format!("image config: {e}")))
}

/// Writes a container's merged root as one flat tar at `out`.
pub fn export(store: &Store, text: &str, out: &Path) -> Result<()> {
    let (_record, root) = container_root(store, text)?;
    let mut partial = PartialOutput::create(out)?;
    let result = {
        let mut w = BufWriter::new(crate::interrupt::Writer(partial.file()));
        write_tree(&root.path, &mut w)
            .map_err(StoreError::from)
            .and_then(|()| w.flush().map_err(|e| StoreError::io("write", out, e)))
    };
    match result {
        Ok(()) => partial.finish(),
        Err(e) => Err(e.undone(partial.discard())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_writer_keeps_bytes_and_makes_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        let mut data = vec![0u8; 3 << 20];
        data[10] = 1;
        data[(1 << 20) + 4095] = 2;
        data[(3 << 20) - 1] = 3;
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        // Odd-sized writes, as a decompressor hands them out.
        for chunk in data.chunks(7777) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(fs::read(&p).unwrap(), data);
        let m = fs::metadata(&p).unwrap();
        assert!(
            m.blocks() * 512 < 1 << 20,
            "{} bytes allocated",
            m.blocks() * 512
        );
        // A tail of zeros still counts in the length.
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        w.write_all(&[0u8; 5000]).unwrap();
        w.finish().unwrap();
        assert_eq!(fs::read(&p).unwrap(), vec![0u8; 5000]);
    }
}
