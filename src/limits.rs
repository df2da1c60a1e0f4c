//! Size limits on untrusted images: how big a layer may expand, how big an
//! image may be in total, how many layers it may have, how big its JSON
//! documents may be.
//!
//! Set per store with `strata init --opt limits.KEY=VALUE` (kept in
//! `strata.json`), or per process with the `STRATA_LIMIT_*` variables,
//! which win. Sizes take the units of `--opt` sizes (`512M`, `16G`).
//!
//! | option | variable | default |
//! |---|---|---|
//! | `limits.layer_size` | `STRATA_LIMIT_LAYER_SIZE` | 16 GiB |
//! | `limits.image_size` | `STRATA_LIMIT_IMAGE_SIZE` | 64 GiB |
//! | `limits.layers` | `STRATA_LIMIT_LAYERS` | 128 |
//!
//! JSON documents (index, manifest, config) are capped at
//! [`crate::image::MAX_DOCUMENT_SIZE`] and tar extension headers at
//! [`crate::archive::DEFAULT_MAX_HEADER_BYTES`]; those are not settable.

use std::collections::BTreeMap;

use crate::archive::ApplyLimits;
use crate::error::{Result, StoreError};

/// Default [`Limits::layer_size`]: 16 GiB.
pub const DEFAULT_LAYER_SIZE: u64 = 16 << 30;
/// Default [`Limits::image_size`]: 64 GiB.
pub const DEFAULT_IMAGE_SIZE: u64 = 64 << 30;
/// Default [`Limits::layers`]: 128, the depth Docker's overlay2 driver
/// refuses to go beyond, so no image Docker can run is refused.
pub const DEFAULT_LAYERS: usize = 128;

/// The limits a store applies to images it loads or imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest uncompressed layer tar (and sum of its entries' sizes).
    pub layer_size: u64,
    /// Largest sum of an image's uncompressed layers.
    pub image_size: u64,
    /// Most layers in one image.
    pub layers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            layer_size: DEFAULT_LAYER_SIZE,
            image_size: DEFAULT_IMAGE_SIZE,
            layers: DEFAULT_LAYERS,
        }
    }
}

const KEYS: [(&str, &str); 3] = [
    ("layer_size", "STRATA_LIMIT_LAYER_SIZE"),
    ("image_size", "STRATA_LIMIT_IMAGE_SIZE"),
    ("layers", "STRATA_LIMIT_LAYERS"),
];

impl Limits {
    /// Reads `limits.*` store options, then the `STRATA_LIMIT_*` variables
    /// of this process. An unknown `limits.*` key or a bad value is an error.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut limits = Limits::default();
        for (key, value) in options {
            let Some(name) = key.strip_prefix("limits.") else {
                continue;
            };
            if !KEYS.iter().any(|(k, _)| *k == name) {
                return Err(StoreError::Invalid(format!(
                    "unknown option {key} (known: limits.layer_size, limits.image_size, limits.layers)"
                )));
            }
            limits.set(name, value, key)?;
        }
        for (name, var) in KEYS {
            if let Ok(value) = std::env::var(var) {
                limits.set(name, &value, var)?;
            }
        }
        Ok(limits)
    }

    fn set(&mut self, name: &str, value: &str, source: &str) -> Result<()> {
        let bad = || StoreError::Invalid(format!("{source}={value:?}: not a valid limit"));
        match name {
            "layers" => {
                self.layers = value.trim().parse().map_err(|_| bad())?;
                if self.layers == 0 {
                    return Err(bad());
                }
            }
            _ => {
                let v = strata_driver_api::parse_size(value)
                    .filter(|v| *v > 0)
                    .ok_or_else(bad)?;
                if name == "layer_size" {
                    self.layer_size = v;
                } else {
                    self.image_size = v;
                }
            }
        }
        Ok(())
    }

    /// The tar limits for a layer that may use at most `image_left` more
    /// bytes of its image's budget.
    pub fn apply_limits(&self, image_left: u64) -> ApplyLimits {
        let (max, setting) = if image_left < self.layer_size {
            (
                image_left,
                "what is left of the image size limit (limits.image_size / STRATA_LIMIT_IMAGE_SIZE)",
            )
        } else {
            (
                self.layer_size,
                "the layer size limit (limits.layer_size / STRATA_LIMIT_LAYER_SIZE)",
            )
        };
        ApplyLimits {
            max_bytes: max,
            max_bytes_setting: setting.to_owned(),
            ..ApplyLimits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_unknown_keys_fail() {
        let mut o = BTreeMap::new();
        o.insert("limits.layer_size".to_owned(), "64M".to_owned());
        o.insert("limits.layers".to_owned(), "5".to_owned());
        o.insert("btrfs.size".to_owned(), "1G".to_owned());
        let l = Limits::from_options(&o).unwrap();
        assert_eq!(l.layer_size, 64 << 20);
        assert_eq!(l.layers, 5);
        assert_eq!(l.image_size, DEFAULT_IMAGE_SIZE);
        o.insert("limits.nope".to_owned(), "1".to_owned());
        assert!(Limits::from_options(&o).is_err());
        o.remove("limits.nope");
        o.insert("limits.layers".to_owned(), "0".to_owned());
        assert!(Limits::from_options(&o).is_err());
    }

    #[test]
    fn the_tighter_limit_is_named() {
        let l = Limits::default();
        assert!(l
            .apply_limits(u64::MAX)
            .max_bytes_setting
            .contains("layer size"));
        let a = l.apply_limits(10);
        assert_eq!(a.max_bytes, 10);
        assert!(a.max_bytes_setting.contains("image size"));
    }
}
