//! The store: a root directory holding the driver's data and the metadata
//! database (snapshots, images, tags, containers), shared by any number of
//! strata processes at once (see [`layout`] for the paths, [`keys`] for
//! snapshot keys and labels, [`layers`] for a layer's snapshot, kept tar
//! and manifest, [`Meta`] for records, [`view`] for temporary views).
//!
//! Concurrency: metadata changes are SQLite transactions (WAL: readers never
//! wait); driver steps run one at a time across processes under a step lock
//! held for one kernel operation ([`crate::snapshotter::Serialised`]); each
//! process runs in a [`Session`] whose id marks its half-done work, so the
//! next process finishes or undoes the work of a process that died, and
//! never touches the work of one still running.

mod config;
pub mod keys;
pub mod layers;
pub mod layout;
mod legacy;
mod meta;
pub mod owned;
mod recover;
pub mod view;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::session::Session;
use crate::db::Database;
use crate::snapshotter::{Serialised, Snapshots, StepLock};
use strata_driver_api::{Driver, Labels};

pub use config::StoreConfig;
pub use layers::{LayerStore, NewLayers};
pub use layout::Layout;
pub(crate) use meta::container_with_snapshot_in;
pub use meta::Meta;
pub use recover::{remove_scratch_dir, Recovered};

use crate::error::{Result, StoreError};
use crate::model::{ContainerRecord, ImageRecord, Reference};

/// An open store.
pub struct Store {
    layout: Layout,
    config: StoreConfig,
    session: Arc<Session>,
    snapshots: Arc<Snapshots<Box<dyn Driver>>>,
    recovered: Recovered,
}

/// Disk kept back so metadata can still record the outcome of an operation
/// that filled the disk.
const METADATA_RESERVE: u64 = 8 << 20;

impl Store {
    /// Creates a store at `root` with `driver` (`auto` picks one), or opens
    /// the existing one if it already uses that driver.
    pub fn init(root: &Path, driver: &str, options: BTreeMap<String, String>) -> Result<Self> {
        crate::perms::secure_root(root)?;
        let layout = Layout::new(root);
        let init_lock = StepLock::new(layout.step_lock());
        let guard = init_lock.hold()?;
        if let Some(existing) = StoreConfig::load(root)? {
            if driver != "auto" && driver != existing.driver {
                return Err(StoreError::DriverMismatch {
                    root: root.to_path_buf(),
                    existing: existing.driver,
                });
            }
            drop(guard);
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
        drop(guard);
        let store = Self::open_with(root, config.clone())?;
        config.save(root)?;
        Ok(store)
    }

    /// Opens the store at `root`, finishing or undoing what processes that
    /// died left half-done ([`Store::recovered`] says what).
    pub fn open(root: &Path) -> Result<Self> {
        let config = StoreConfig::load(root)?
            .ok_or_else(|| StoreError::NotInitialized(root.to_path_buf()))?;
        Self::open_with(root, config)
    }

    fn open_with(root: &Path, config: StoreConfig) -> Result<Self> {
        crate::perms::secure_root(root)?;
        let layout = Layout::new(root);
        let home = layout.driver_home(&config.driver);
        for dir in [
            home.clone(),
            layout.containers(),
            layout.scratch_root(),
            layout.sessions(),
        ] {
            crate::perms::private_dir(&dir)?;
        }
        let session = Arc::new(Session::begin(&layout.sessions())?);
        let steps = StepLock::new(layout.step_lock());
        let driver = {
            let _guard = steps.hold()?;
            crate::drivers::open_driver(&config.driver, &home, &config.options)?
        };
        let driver: Box<dyn Driver> = Box::new(Serialised::new(driver, steps));
        crate::space::release_reserve_if_full(root, &layout.metadata_reserve());
        let db = Database::open(&layout.database())?;
        legacy::migrate(&layout, &db)?;
        let snapshots = Snapshots::open(driver, Arc::new(db))?
            .with_session(session.clone())
            .with_space_reserve(layout.metadata_reserve(), METADATA_RESERVE);
        crate::perms::restrict_root_files(root)?;
        let mut store = Self {
            layout,
            config,
            session,
            snapshots: Arc::new(snapshots),
            recovered: Recovered::default(),
        };
        store.recovered = recover::recover(&store)?;
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Every path of the store.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// What init recorded.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// This process's session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// What opening the store finished or undid for processes that died.
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    /// Notes what a caller finished for processes that died (see
    /// `check::finish_interrupted`), for [`Recovered::summary`].
    pub fn note_finished(&mut self, actions: Vec<String>) {
        self.recovered.finished.extend(actions);
    }

    /// Labels marking a snapshot as made by this process.
    pub fn session_labels(&self) -> Labels {
        [(keys::LABEL_SESSION.to_owned(), self.session.id().to_owned())].into()
    }

    /// The snapshotter (containerd semantics over the driver).
    pub fn snapshots(&self) -> &Arc<Snapshots<Box<dyn Driver>>> {
        &self.snapshots
    }

    /// The driver (its state-changing steps serialised across processes).
    pub fn driver(&self) -> &dyn Driver {
        self.snapshots.driver().as_ref()
    }

    /// The limits this store applies to images it loads or imports
    /// (`limits.*` options, then `STRATA_LIMIT_*`).
    pub fn limits(&self) -> Result<crate::limits::Limits> {
        crate::limits::Limits::from_options(&self.config.options)
    }

    /// Layers: their snapshots, kept tars and manifests.
    pub fn layers(&self) -> LayerStore<'_> {
        LayerStore::new(self)
    }

    /// Image, tag and container records.
    pub fn meta(&self) -> Result<Meta<'_>> {
        Meta::new(self.snapshots.database())
    }

    /// Finds an image by tag, full id, or unique id prefix.
    pub fn resolve_image(&self, text: &str) -> Result<ImageRecord> {
        let meta = self.meta()?;
        let reference = Reference::lookup(text);
        if let Some(id) = meta.tag(&reference)? {
            return meta.image(&id)?.ok_or_else(|| {
                StoreError::Metadata(format!("tag {reference} points at missing image {id}"))
            });
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

    /// A scratch directory of this process, `<root>/tmp/<session>/<name>`;
    /// what a process that dies leaves there is removed by the next one.
    pub fn temp_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.layout.scratch(self.session.id()).join(name);
        crate::perms::private_dir(&dir)?;
        Ok(dir)
    }
}

impl Drop for Store {
    /// Removes this process's scratch directory (whatever is still mounted
    /// there is left for the next process to find and clean up).
    fn drop(&mut self) {
        let dir = self.layout.scratch(self.session.id());
        if dir.exists() {
            recover::remove_scratch_dir(&dir);
        }
    }
}
