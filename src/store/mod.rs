//! The store: a root directory holding the driver's data, the metadata
//! database (snapshots, images, tags, containers) and the lock.
//!
//! ```text
//! <root>/strata.json      driver and options chosen at init
//! <root>/lock             one strata process at a time
//! <root>/metadata.redb    snapshots (driver api), images, tags, containers
//! <root>/<driver>/        the driver's home
//! <root>/containers/<id>/rootfs   where `strata mount` mounts
//! <root>/tmp/             private mount points for import/commit
//! ```

mod config;
mod lock;
mod meta;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strata_driver_api::{Driver, Snapshots};

pub use config::StoreConfig;
pub use lock::StoreLock;
pub use meta::Meta;

use crate::error::{meta_err, Result, StoreError};
use crate::model::{ContainerRecord, ImageRecord, Reference};

/// An open store.
pub struct Store {
    root: PathBuf,
    config: StoreConfig,
    snapshots: Arc<Snapshots<Box<dyn Driver>>>,
    _lock: StoreLock,
}

/// Disk kept back so metadata can still record the outcome of an operation
/// that filled the disk.
const METADATA_RESERVE: u64 = 8 << 20;

/// How long a second process waits for the lock before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// [`LOCK_WAIT`], or `STRATA_LOCK_WAIT` seconds when set (tests, scripts).
pub fn lock_wait() -> Duration {
    std::env::var("STRATA_LOCK_WAIT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(LOCK_WAIT)
}

impl Store {
    /// Creates a store at `root` with `driver` (`auto` picks one), or opens
    /// the existing one if it already uses that driver.
    pub fn init(root: &Path, driver: &str, options: BTreeMap<String, String>) -> Result<Self> {
        crate::perms::secure_root(root)?;
        let _lock = StoreLock::acquire(root, lock_wait())?;
        if let Some(existing) = StoreConfig::load(root)? {
            if driver != "auto" && driver != existing.driver {
                return Err(StoreError::DriverMismatch {
                    root: root.to_path_buf(),
                    existing: existing.driver,
                });
            }
            drop(_lock);
            return Self::open(root);
        }
        let (name, reason) = if driver == "auto" {
            let (name, reason) = crate::drivers::choose_auto(root);
            (name.to_owned(), reason)
        } else {
            (driver.to_owned(), "chosen with --driver".to_owned())
        };
        let config = StoreConfig {
            driver: name,
            driver_reason: reason,
            options,
        };
        let store = Self::open_with(root, config.clone(), _lock)?;
        config.save(root)?;
        Ok(store)
    }

    /// Opens the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let config = StoreConfig::load(root)?
            .ok_or_else(|| StoreError::NotInitialized(root.to_path_buf()))?;
        let lock = StoreLock::acquire(root, lock_wait())?;
        Self::open_with(root, config, lock)
    }

    fn open_with(root: &Path, config: StoreConfig, lock: StoreLock) -> Result<Self> {
        crate::perms::secure_root(root)?;
        let home = root.join(&config.driver);
        for dir in [&home, &root.join("containers"), &root.join("tmp")] {
            crate::perms::private_dir(dir)?;
        }
        let driver = crate::drivers::open_driver(&config.driver, &home, &config.options)?;
        crate::space::release_reserve_if_full(root, &root.join("metadata.reserve"));
        let db = redb::Database::create(root.join("metadata.redb")).map_err(meta_err)?;
        let snapshots = Snapshots::open(driver, Arc::new(db))?
            .with_space_reserve(root.join("metadata.reserve"), METADATA_RESERVE);
        crate::perms::restrict_root_files(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            config,
            snapshots: Arc::new(snapshots),
            _lock: lock,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What init recorded.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The snapshotter (containerd semantics over the driver).
    pub fn snapshots(&self) -> &Arc<Snapshots<Box<dyn Driver>>> {
        &self.snapshots
    }

    /// The driver.
    pub fn driver(&self) -> &dyn Driver {
        self.snapshots.driver().as_ref()
    }

    /// Image, tag and container records.
    pub fn meta(&self) -> Result<Meta<'_>> {
        Meta::new(self.snapshots.database())
    }

    /// Finds an image by tag, full id, or unique id prefix.
    pub fn resolve_image(&self, text: &str) -> Result<ImageRecord> {
        let meta = self.meta()?;
        if let Ok(reference) = Reference::parse(text) {
            if let Some(id) = meta.tag(&reference)? {
                return meta.image(&id)?.ok_or_else(|| {
                    StoreError::Metadata(format!("tag {reference} points at missing image {id}"))
                });
            }
        }
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if hex.len() < 4 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StoreError::UnknownImage(text.to_owned()));
        }
        let mut found: Vec<ImageRecord> = meta
            .images()?
            .into_iter()
            .filter(|i| i.id.hex().starts_with(hex))
            .collect();
        match found.len() {
            0 => Err(StoreError::UnknownImage(text.to_owned())),
            1 => Ok(found.remove(0)),
            _ => Err(StoreError::Ambiguous(text.to_owned())),
        }
    }

    /// Finds a container by name, full id or unique id prefix.
    pub fn resolve_container(&self, text: &str) -> Result<ContainerRecord> {
        let all = self.meta()?.containers()?;
        if let Some(c) = all.iter().find(|c| c.name == text || c.id.0 == text) {
            return Ok(c.clone());
        }
        let mut found: Vec<&ContainerRecord> = all
            .iter()
            .filter(|c| !text.is_empty() && c.id.0.starts_with(text))
            .collect();
        match found.len() {
            0 => Err(StoreError::UnknownContainer(text.to_owned())),
            1 => Ok(found.remove(0).clone()),
            _ => Err(StoreError::Ambiguous(text.to_owned())),
        }
    }

    /// A private scratch directory under `<root>/tmp`.
    pub fn temp_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join("tmp").join(name);
        crate::perms::private_dir(&dir)?;
        Ok(dir)
    }
}

impl Drop for Store {
    /// Releases the driver's backing (loop mounts) when no container is
    /// mounted, so a store at rest holds no kernel objects.
    fn drop(&mut self) {
        let busy = self
            .meta()
            .and_then(|m| m.containers())
            .map(|all| all.iter().any(|c| c.mounted_at.is_some()))
            .unwrap_or(true);
        if !busy {
            if let Err(e) = self.snapshots.driver().close() {
                tracing::warn!(error = %e, "closing the driver");
            }
        }
    }
}
