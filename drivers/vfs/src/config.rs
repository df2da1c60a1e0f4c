//! Driver options (`--opt vfs.KEY=VALUE`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_driver_api::{parse_options, OptionError};

/// Whether regular files are reflinked (`vfs.reflink`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reflink {
    /// Use `FICLONE` when the filesystem supports it (default).
    #[default]
    #[serde(alias = "true", alias = "yes")]
    Auto,
    /// Always copy the data.
    #[serde(alias = "false", alias = "no")]
    Never,
}

/// Options of the vfs driver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VfsConfig {
    /// Reflink policy.
    pub reflink: Reflink,
}

impl VfsConfig {
    /// Reads the `vfs.*` keys of `options`; other drivers' keys are ignored,
    /// unknown `vfs.*` keys are an error.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, OptionError> {
        parse_options("vfs", "vfs", options)
    }
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
        let e = VfsConfig::from_options(&opts(&[("vfs.reflink", "maybe")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("vfs option vfs.reflink=\"maybe\""),
            "{e}"
        );
        let yes = VfsConfig::from_options(&opts(&[("vfs.reflink", "yes")])).unwrap();
        assert_eq!(yes.reflink, Reflink::Auto);
    }
}
