//! Driver options (`--opt overlay2.KEY=VALUE`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_driver_api::Result;

use crate::Overlay2Error;

/// Options of the overlay2 driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut config = Self::default();
        for (key, value) in options {
            let Some(name) = key.strip_prefix("overlay2.") else {
                continue;
            };
            let slot =
                match name {
                    "index_off" => &mut config.index_off,
                    "native_diff" => &mut config.native_diff,
                    _ => return Err(bad(
                        key,
                        value,
                        "unknown overlay2 option (known: overlay2.index_off, overlay2.native_diff)",
                    )),
                };
            *slot = match value.as_str() {
                "true" | "yes" | "1" | "on" => true,
                "false" | "no" | "0" | "off" => false,
                _ => return Err(bad(key, value, "expected true or false")),
            };
        }
        Ok(config)
    }
}

fn bad(key: &str, value: &str, reason: &'static str) -> strata_driver_api::Error {
    Overlay2Error::BadOption {
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
    fn defaults_and_overrides() {
        assert_eq!(
            Overlay2Config::from_options(&opts(&[("vfs.reflink", "never")])).unwrap(),
            Overlay2Config::default()
        );
        let c = Overlay2Config::from_options(&opts(&[("overlay2.index_off", "false")])).unwrap();
        assert!(!c.index_off && c.native_diff);
    }

    #[test]
    fn rejects_unknown_keys_and_values() {
        assert!(Overlay2Config::from_options(&opts(&[("overlay2.size", "1G")])).is_err());
        assert!(Overlay2Config::from_options(&opts(&[("overlay2.index_off", "maybe")])).is_err());
    }
}
