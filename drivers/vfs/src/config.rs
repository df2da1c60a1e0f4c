//! Driver options (`--opt vfs.KEY=VALUE`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_driver_api::Result;

use crate::VfsError;

/// Whether regular files are reflinked (`vfs.reflink`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reflink {
    /// Use `FICLONE` when the filesystem supports it (default).
    #[default]
    Auto,
    /// Always copy the data.
    Never,
}

/// Options of the vfs driver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfsConfig {
    /// Reflink policy.
    pub reflink: Reflink,
}

impl VfsConfig {
    /// Reads the `vfs.*` keys of `options`; other drivers' keys are ignored,
    /// unknown `vfs.*` keys are an error.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut config = Self::default();
        for (key, value) in options {
            let Some(name) = key.strip_prefix("vfs.") else {
                continue;
            };
            match name {
                "reflink" => {
                    config.reflink = match value.as_str() {
                        "auto" | "true" | "yes" => Reflink::Auto,
                        "never" | "false" | "no" => Reflink::Never,
                        _ => return Err(bad(key, value, "expected auto or never")),
                    }
                }
                _ => return Err(bad(key, value, "unknown vfs option (known: vfs.reflink)")),
            }
        }
        Ok(config)
    }
}

fn bad(key: &str, value: &str, reason: &'static str) -> strata_driver_api::Error {
    VfsError::BadOption {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_reflink_and_ignores_other_drivers() {
        let c = VfsConfig::from_options(&opts(&[("vfs.reflink", "never"), ("btrfs.size", "1G")]));
        assert_eq!(c.unwrap().reflink, Reflink::Never);
        assert_eq!(
            VfsConfig::from_options(&opts(&[])).unwrap().reflink,
            Reflink::Auto
        );
    }

    #[test]
    fn rejects_unknown_keys_and_values() {
        assert!(VfsConfig::from_options(&opts(&[("vfs.size", "1G")])).is_err());
        assert!(VfsConfig::from_options(&opts(&[("vfs.reflink", "maybe")])).is_err());
    }
}
