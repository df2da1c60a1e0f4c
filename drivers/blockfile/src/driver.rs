//! The [`Driver`] implementation: one image file per snapshot id.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_driver_api::{
    CreateOptions, Driver, DriverConfig, Error, IoContext, Kind, Mount, Result, SnapshotId,
    StatusLine, Target, Usage,
};

use crate::backing::Backing;
use crate::config::{Config, ImageFs};
use crate::error::BlockfileError;
use crate::image::{self, Cloned};

/// Suffix of finished images.
const IMG: &str = ".img";
/// Suffix of images being made (renamed to `.img` when complete).
const PART: &str = ".img.part";

/// Snapshots as reflinked filesystem images `<store>/images/<id>.img`.
#[derive(Debug)]
pub struct BlockfileDriver {
    config: Config,
    backing: Backing,
    /// Set the first time a clone falls back to copying: why.
    copy_fallback: Mutex<Option<String>>,
    /// Serialises formatting the scratch image.
    scratch_lock: Mutex<()>,
}

impl BlockfileDriver {
    /// Opens the driver in `cfg.home`: reads `blockfile.*` options, sets up
    /// (or re-mounts) the backing store and the `images/` and `tmp/` dirs.
    pub fn open(cfg: &DriverConfig<'_>) -> Result<Self> {
        let config = Config::from_options(cfg.options)?;
        let backing = Backing::open(cfg.home, &config)?;
        for dir in ["images", "tmp"] {
            let path = backing.store().join(dir);
            strata_driver_api::private::private_dir_all(&path)?;
        }
        Ok(Self {
            config,
            backing,
            copy_fallback: Mutex::new(None),
            scratch_lock: Mutex::new(()),
        })
    }

    /// The options in effect.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Directory holding the images (inside the backing mount, if any).
    pub fn store(&self) -> &Path {
        self.backing.store()
    }

    /// Path of snapshot `id`'s image file.
    pub fn image_path(&self, id: SnapshotId) -> PathBuf {
        self.images_dir().join(format!("{id}{IMG}"))
    }

    fn images_dir(&self) -> PathBuf {
        self.store().join("images")
    }

    fn part_path(&self, id: SnapshotId) -> PathBuf {
        self.images_dir().join(format!("{id}{PART}"))
    }

    /// The empty formatted image every base snapshot is cloned from.
    fn scratch_path(&self) -> PathBuf {
        let size = self.config.size;
        self.scratch_of(image::fs_for_size(self.config.fs, size), size)
    }

    /// The scratch image of filesystem `fs` and `size` bytes, whatever the
    /// options now in effect (a store keeps the scratch images its base
    /// snapshots were cloned from when the defaults change).
    fn scratch_of(&self, fs: ImageFs, size: u64) -> PathBuf {
        self.store().join(format!("scratch-{fs}-{size}.img"))
    }

    /// The scratch image base snapshot image `img` was cloned from, if it
    /// is still there (not for an image grown since, or formatted alone).
    fn origin_scratch(&self, img: &Path) -> Result<Option<PathBuf>> {
        let size = std::fs::metadata(img).ctx("stat", img)?.len();
        let path = self.scratch_of(image::detect_fs(img)?, size);
        Ok(Some(path).filter(|p| p.exists()))
    }

    /// Formats the scratch image on first use.
    fn scratch(&self) -> Result<PathBuf> {
        let path = self.scratch_path();
        let _guard = self.scratch_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !path.exists() {
            let part = path.with_extension("img.part");
            remove_if_exists(&part)?;
            image::format(&part, self.config.fs, self.config.size)?;
            std::fs::rename(&part, &path).ctx("rename", &path)?;
        }
        Ok(path)
    }

    /// Clones `src` into `dst`, remembering (and logging once) a fallback.
    fn clone_image(&self, src: &Path, dst: &Path) -> Result<()> {
        if let Cloned::Copied(reason) = image::clone_file(src, dst)? {
            let mut fallback = self.copy_fallback.lock().unwrap_or_else(|p| p.into_inner());
            if fallback.is_none() {
                tracing::warn!(%reason, "blockfile: reflink unsupported, copying images instead");
                *fallback = Some(reason);
            }
        }
        Ok(())
    }

    /// Makes the image of `target` at `dst` (its `.part` name): a clone of
    /// its parent's image (or of the scratch image), grown to the requested
    /// size limit or, without one, until the `min_free` hint fits.
    fn build(&self, target: Target<'_>, options: &CreateOptions, dst: &Path) -> Result<()> {
        let origin = match (target.parent(), options.size) {
            (Some(parent), _) => self.image_path(parent),
            // Smaller than the scratch image: format one of its own.
            (None, Some(size)) if size < self.config.size => {
                return image::format(dst, self.config.fs, size);
            }
            (None, _) => self.scratch()?,
        };
        let current = std::fs::metadata(&origin).ctx("stat", &origin)?.len();
        let size = match options.size {
            Some(size) => Some(size).filter(|&s| s != current),
            None if options.min_free.is_some() => {
                let ceiling = strata_driver_api::fs_capacity(self.store())?;
                options.size_for_room(current, image::free_estimate(&origin)?, ceiling)
            }
            None => None,
        };
        let Some(size) = size else {
            return self.clone_image(&origin, dst);
        };
        if size < current {
            return Err(BlockfileError::Shrink {
                id: target.id.0,
                requested: size,
                current,
            }
            .into());
        }
        self.clone_image(&origin, dst)?;
        let fs = image::detect_fs(dst)?;
        let mnt = self.store().join("tmp").join(target.id.to_string());
        tracing::debug!(
            id = target.id.0,
            from = current,
            to = size,
            "blockfile: growing image"
        );
        image::grow(dst, fs, size, &mnt)
    }
}

/// Deletes `path`; a missing file is fine.
fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Sets the image read-only and root-only (0400: root ignores the missing
/// write bit, the mounts are `ro`; nobody else may read a layer's blocks).
fn set_read_only(path: &Path) -> Result<()> {
    strata_driver_api::private::restrict(path, 0o400)
}

impl Driver for BlockfileDriver {
    fn name(&self) -> &'static str {
        crate::NAME
    }

    /// The image's size is the limit.
    fn limits_size(&self) -> bool {
        true
    }

    fn create(&self, target: Target<'_>, options: &CreateOptions) -> Result<()> {
        let part = self.part_path(target.id);
        remove_if_exists(&part)?;
        self.build(target, options, &part)?;
        if target.kind != Kind::Active {
            set_read_only(&part)?;
        }
        let img = self.image_path(target.id);
        std::fs::rename(&part, &img).ctx("rename", &img)
    }

    fn commit(&self, target: Target<'_>) -> Result<()> {
        set_read_only(&self.image_path(target.id))
    }

    /// Refuses while a loop device still holds the image (it is mounted
    /// somewhere): deleting it would leave that device behind.
    fn remove(&self, id: SnapshotId) -> Result<()> {
        let img = self.image_path(id);
        let devices = strata_driver_api::mount::loops_backed_by(&img);
        if !devices.is_empty() {
            let devices: Vec<_> = devices.iter().map(|d| d.display().to_string()).collect();
            return Err(BlockfileError::Busy {
                path: img,
                devices: devices.join(", "),
            }
            .into());
        }
        remove_if_exists(&img)?;
        remove_if_exists(&self.part_path(id))
    }

    fn mounts(&self, target: Target<'_>) -> Result<Vec<Mount>> {
        let img = self.image_path(target.id);
        let fs = image::detect_fs(&img)?;
        Ok(vec![Mount {
            fstype: fs.as_str().to_owned(),
            source: img.to_string_lossy().into_owned(),
            options: image::mount_options(fs, target.kind != Kind::Active),
        }])
    }

    fn usage(&self, target: Target<'_>) -> Result<Usage> {
        let img = self.image_path(target.id);
        let origin = match target.parent() {
            Some(parent) => Some(self.image_path(parent)),
            None => self.origin_scratch(&img)?,
        };
        let origin_inodes = match &origin {
            Some(o) => strata_driver_api::used_inodes(o)?,
            None => 0,
        };
        Ok(Usage {
            size: image::unshared_bytes(&img, origin.as_deref())?,
            inodes: strata_driver_api::used_inodes(&img)?.saturating_sub(origin_inodes),
        })
    }

    fn stored_ids(&self) -> Result<Vec<SnapshotId>> {
        let dir = self.images_dir();
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&dir).ctx("list", &dir)? {
            let name = entry.ctx("list", &dir)?.file_name();
            let name = name.to_string_lossy();
            let stem = name.strip_suffix(PART).or_else(|| name.strip_suffix(IMG));
            if let Some(id) = stem.and_then(|s| s.parse().ok()) {
                ids.push(SnapshotId(id));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    fn status(&self) -> Vec<StatusLine> {
        let clone = match &*self.copy_fallback.lock().unwrap_or_else(|p| p.into_inner()) {
            None => "reflink (FICLONE)".to_owned(),
            Some(reason) => format!("sparse copy: reflink unsupported ({reason})"),
        };
        let images = self.stored_ids().map(|ids| ids.len().to_string());
        vec![
            ("backing".into(), self.backing.describe()),
            (
                "image filesystem".into(),
                image::fs_for_size(self.config.fs, self.config.size).to_string(),
            ),
            (
                "image size".into(),
                format!("{} bytes (sparse)", self.config.size),
            ),
            ("clone".into(), clone),
            (
                "usage".into(),
                "FIEMAP: allocated bytes not physically shared with the parent image".into(),
            ),
            ("images".into(), images.unwrap_or_else(|e| e.to_string())),
        ]
    }

    fn release(&self) -> Result<()> {
        self.backing.release()
    }

    fn backing_files(&self) -> Vec<strata_driver_api::BackingFile> {
        self.backing.files()
    }
}
