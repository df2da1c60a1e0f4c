//! Every path under a store's root, in one place.
//!
//! ```text
//! <root>/strata.json            driver and options chosen at init
//! <root>/metadata.db            SQLite (WAL): snapshots, images, tags, containers
//! <root>/metadata.reserve       disk kept back for metadata writes on a full disk
//! <root>/sessions/<id>          one per live strata process (flock held)
//! <root>/steps.lock             serialises driver steps across processes
//! <root>/<driver>/              the driver's home
//! <root>/containers/<id>/rootfs where `strata mount` mounts
//! <root>/layer-tars/            kept layer tars (by diff id)
//! <root>/manifests/             per-layer CRC manifests (by chain id)
//! <root>/tmp/<session>/         one process's scratch: mounts, temp files
//! ```

use std::path::{Path, PathBuf};

use crate::model::{ChainId, Digest};

/// The paths of one store.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout of the store at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `strata.json`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("strata.json")
    }

    /// The metadata database.
    pub fn database(&self) -> PathBuf {
        self.root.join("metadata.db")
    }

    /// The metadata database of stores made before SQLite (migrated on open).
    pub fn legacy_database(&self) -> PathBuf {
        self.root.join("metadata.redb")
    }

    /// The metadata space reserve.
    pub fn metadata_reserve(&self) -> PathBuf {
        self.root.join("metadata.reserve")
    }

    /// Where live processes hold their session files.
    pub fn sessions(&self) -> PathBuf {
        self.root.join("sessions")
    }

    /// The driver step lock.
    pub fn step_lock(&self) -> PathBuf {
        self.root.join("steps.lock")
    }

    /// The driver's home.
    pub fn driver_home(&self, driver: &str) -> PathBuf {
        self.root.join(driver)
    }

    /// Parent of every container's directory.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// One container's directory.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    /// Where `strata mount` mounts a container.
    pub fn container_rootfs(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("rootfs")
    }

    /// Kept layer tars.
    pub fn layer_tars(&self) -> PathBuf {
        self.root.join("layer-tars")
    }

    /// The kept tar of the layer with diff id `diff_id`.
    pub fn layer_tar(&self, diff_id: &Digest) -> PathBuf {
        self.layer_tars().join(format!("{}.tar", diff_id.hex()))
    }

    /// Per-layer manifests.
    pub fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// The CRC manifest of the layer with chain id `chain`.
    pub fn manifest(&self, chain: &ChainId) -> PathBuf {
        self.manifests().join(format!("{}.json", chain.hex()))
    }

    /// Where `session` writes the manifest of `chain` before renaming it
    /// into place (a dot file: [`Layout::manifest_chain`] rejects it).
    pub fn manifest_temp(&self, chain: &ChainId, session: &str) -> PathBuf {
        self.manifests()
            .join(format!(".{}.{session}.tmp", chain.hex()))
    }

    /// The chain id a file name in [`Layout::manifests`] is the manifest
    /// of; `None` for anything else (a temp file).
    pub fn manifest_chain(file_name: &str) -> Option<ChainId> {
        file_name
            .strip_suffix(".json")
            .filter(|hex| !hex.starts_with('.'))
            .map(|hex| Digest(format!("sha256:{hex}")))
    }

    /// Parent of every session's scratch directory.
    pub fn scratch_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// One session's scratch directory.
    pub fn scratch(&self, session: &str) -> PathBuf {
        self.scratch_root().join(session)
    }
}
