//! `<root>/strata.json`: the driver chosen at `strata init` and its options.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// What `strata init` recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Driver name.
    pub driver: String,
    /// Why that driver (for `auto`), shown by `info`.
    pub driver_reason: String,
    /// `--opt key=value` options.
    pub options: BTreeMap<String, String>,
}

const FILE: &str = "strata.json";

impl StoreConfig {
    /// Reads the config of the store at `root`.
    pub fn load(root: &Path) -> Result<Option<Self>> {
        let path = root.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Metadata(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", path, e)),
        }
    }

    /// Writes it atomically (temp file + rename).
    pub fn save(&self, root: &Path) -> Result<()> {
        let path = root.join(FILE);
        let tmp = root.join(format!("{FILE}.tmp"));
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| StoreError::Metadata(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(|e| StoreError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &path, e))
    }
}
