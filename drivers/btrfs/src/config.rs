//! Driver options (`--opt btrfs.KEY=VALUE`) with their defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_driver_api::options::optional_size;
use strata_driver_api::{parse_options, OptionError};

use crate::error::DRIVER;

/// Smallest loop file the driver creates (mkfs.btrfs needs about 110 MiB).
pub const MIN_LOOP_SIZE: u64 = 128 << 20;
/// Largest default loop file size.
pub const MAX_DEFAULT_LOOP_SIZE: u64 = 100 << 30;

/// Options of the btrfs driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BtrfsConfig {
    /// `btrfs.size`: size of the sparse loop file when the home is not on
    /// btrfs. `None` = 80% of the free space of the home's filesystem, at most
    /// 100 GiB, at least 128 MiB.
    #[serde(deserialize_with = "optional_size")]
    pub size: Option<u64>,
    /// `btrfs.quota`: quotas for sizes and walk-free usage. Default on.
    pub quota: QuotaSetting,
    /// `btrfs.qgroup_cleanup`: who destroys a removed subvolume's qgroup.
    #[serde(alias = "qgroup-cleanup")]
    pub qgroup_cleanup: CleanupSetting,
}

/// Values of `btrfs.qgroup_cleanup`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupSetting {
    /// `auto`: the kernel where it does it (Linux 6.10 and later), else Strata.
    #[default]
    Auto,
    /// `kernel`: btrfs' cleaner removes the qgroup when it drops the
    /// subvolume; remove records nothing.
    Kernel,
    /// `strata`: remove records the qgroup ids durably and a background
    /// thread destroys them.
    Strata,
}

/// Values of `btrfs.quota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaSetting {
    /// `on`: simple quotas where the kernel has them (6.7+), else qgroups.
    #[serde(alias = "true", alias = "1", alias = "yes")]
    On,
    /// `simple`: simple quotas only.
    #[serde(alias = "squota")]
    Simple,
    /// `qgroups`: full qgroup accounting.
    #[serde(alias = "qgroup", alias = "full")]
    Qgroups,
    /// `off`: no quotas; usage walks the tree, sizes are refused.
    #[serde(alias = "false", alias = "0", alias = "no")]
    Off,
}

impl Default for BtrfsConfig {
    fn default() -> Self {
        Self {
            size: None,
            quota: QuotaSetting::On,
            qgroup_cleanup: CleanupSetting::Auto,
        }
    }
}

impl BtrfsConfig {
    /// Reads `btrfs.*` keys; other drivers' keys are ignored, unknown
    /// `btrfs.*` keys are an error.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, OptionError> {
        let cfg: Self = parse_options(DRIVER, "btrfs", options)?;
        match cfg.size {
            Some(size) if size < MIN_LOOP_SIZE => Err(OptionError::new(
                DRIVER,
                "btrfs.size",
                &options["btrfs.size"],
                format!("{size} bytes is below the minimum of {MIN_LOOP_SIZE} bytes"),
            )),
            _ => Ok(cfg),
        }
    }

    /// The loop file size to use given the free bytes of the home's filesystem.
    pub fn loop_size(&self, free: u64) -> u64 {
        self.size
            .unwrap_or_else(|| (free / 10 * 8).min(MAX_DEFAULT_LOOP_SIZE))
            .max(MIN_LOOP_SIZE)
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
    fn options_are_read_and_checked() {
        let cfg = BtrfsConfig::from_options(&opts(&[
            ("btrfs.size", "1G"),
            ("btrfs.quota", "off"),
            ("dm.data_size", "9G"),
        ]))
        .expect("valid options");
        assert_eq!(cfg.size, Some(1 << 30));
        assert_eq!(cfg.quota, QuotaSetting::Off);
        let cfg = BtrfsConfig::from_options(&opts(&[("btrfs.quota", "qgroups")])).expect("valid");
        assert_eq!(cfg.quota, QuotaSetting::Qgroups);
        assert!(BtrfsConfig::from_options(&opts(&[("btrfs.size", "1M")])).is_err());
        assert!(BtrfsConfig::from_options(&opts(&[("btrfs.nope", "1")])).is_err());
        let e = BtrfsConfig::from_options(&opts(&[("btrfs.size", "1M")])).unwrap_err();
        assert_eq!((e.key.as_str(), e.value.as_str()), ("btrfs.size", "1M"));
        let cfg = BtrfsConfig::from_options(&opts(&[("btrfs.quota", "squota")])).expect("valid");
        assert_eq!(cfg.quota, QuotaSetting::Simple);
        let cfg =
            BtrfsConfig::from_options(&opts(&[("btrfs.qgroup_cleanup", "strata")])).expect("valid");
        assert_eq!(cfg.qgroup_cleanup, CleanupSetting::Strata);
        assert_eq!(BtrfsConfig::default().qgroup_cleanup, CleanupSetting::Auto);
        assert!(BtrfsConfig::from_options(&opts(&[("btrfs.qgroup_cleanup", "soon")])).is_err());
    }

    #[test]
    fn default_loop_size_is_bounded() {
        let cfg = BtrfsConfig::default();
        assert_eq!(cfg.loop_size(10 << 20), MIN_LOOP_SIZE);
        assert_eq!(cfg.loop_size(10 << 30), 8 << 30);
        assert_eq!(cfg.loop_size(1 << 50), MAX_DEFAULT_LOOP_SIZE);
    }
}
