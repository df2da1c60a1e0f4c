//! Driver options (`--opt overlay2.KEY=VALUE`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_driver_api::{parse_options, OptionError};

/// Options of the overlay2 driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overlay2Config {
    /// Mount with `index=off` (default true, as containerd does): layers are
    /// shared by many overlays, and the inode index ties a lower layer to one
    /// upper directory.
    pub index_off: bool,
    /// Mount with `redirect_dir=off` and `metacopy=off` (default true) so the
    /// upper directory is always a complete, self-describing diff (native
    /// diff), whatever the kernel's defaults.
    pub native_diff: bool,
}

impl Default for Overlay2Config {
    fn default() -> Self {
        Self {
            index_off: true,
            native_diff: true,
        }
    }
}

impl Overlay2Config {
    /// Reads the `overlay2.*` keys of `options`; other drivers' keys are
    /// ignored, unknown `overlay2.*` keys are an error.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, OptionError> {
        parse_options("overlay2", "overlay2", options)
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
    fn defaults_and_overrides() {
        assert_eq!(
            Overlay2Config::from_options(&opts(&[("vfs.reflink", "never")])).unwrap(),
            Overlay2Config::default()
        );
        let c = Overlay2Config::from_options(&opts(&[("overlay2.index_off", "false")])).unwrap();
        assert!(!c.index_off && c.native_diff);
        let c = Overlay2Config::from_options(&opts(&[("overlay2.native_diff", "off")])).unwrap();
        assert!(c.index_off && !c.native_diff);
    }

    #[test]
    fn rejects_unknown_keys_and_values() {
        assert!(Overlay2Config::from_options(&opts(&[("overlay2.size", "1G")])).is_err());
        assert!(Overlay2Config::from_options(&opts(&[("overlay2.index_off", "maybe")])).is_err());
    }
}
