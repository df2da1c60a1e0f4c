//! `dm.*` options, parsed from the store's `--opt key=value` map.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strata_driver_api::options::{optional_percent, optional_size};
use strata_driver_api::{parse_options, OptionError};

use crate::units::Sectors;

/// Driver name in option errors.
const DRIVER: &str = "devmapper";

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Where the thin pool comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolSource {
    /// Sparse `data.img` and `metadata.img` in the driver's home, attached
    /// to loop devices (the default).
    LoopFiles {
        /// Size of the data file in bytes (`dm.data_size`).
        data_size: u64,
        /// Size of the metadata file in bytes (`dm.metadata_size`).
        metadata_size: u64,
    },
    /// Block devices given by `dm.datadev` and `dm.metadatadev`.
    Devices {
        /// Data device.
        data: PathBuf,
        /// Metadata device.
        metadata: PathBuf,
    },
    /// An existing pool by device-mapper name (`dm.thinpooldev`).
    Existing(String),
}

/// Filesystem made on the base thin device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fs {
    /// ext4 (default).
    Ext4,
    /// xfs, mounted with `nouuid` because every snapshot shares the uuid.
    Xfs,
}

impl Fs {
    /// Name as `mount -t` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
        }
    }
}

/// The driver's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Where the pool comes from.
    pub pool: PoolSource,
    /// Pool block size in bytes (`dm.blocksize`, 64 KiB to 1 GiB, multiple of 64 KiB).
    pub block_size: u64,
    /// Virtual size of the base device (`dm.basesize`); every snapshot is at least this big.
    pub base_size: u64,
    /// Filesystem of the base device (`dm.fs`).
    pub fs: Fs,
    /// Extra mkfs arguments (`dm.mkfsarg`, space separated).
    pub mkfs_args: Vec<String>,
    /// Leave busy devices for the kernel to remove when closed (`dm.deferred_remove`).
    pub deferred_remove: bool,
    /// Refuse to create devices when less than this percentage of the pool's
    /// data space is free (`dm.min_free_space`).
    pub min_free_space: u8,
    /// Grow the loop data file when the pool's data usage passes this
    /// percentage; 0 or 100 disables (`dm.autoextend_threshold`).
    pub autoextend_threshold: u8,
    /// Grow by this percentage of the current size (`dm.autoextend_percent`).
    pub autoextend_percent: u8,
}

impl Default for Config {
    fn default() -> Self {
        let data_size = 100 * GIB;
        let block_size = 64 * KIB;
        Self {
            pool: PoolSource::LoopFiles {
                data_size,
                metadata_size: metadata_size_for(data_size, block_size),
            },
            block_size,
            base_size: 10 * GIB,
            fs: Fs::Ext4,
            mkfs_args: Vec::new(),
            deferred_remove: false,
            min_free_space: 10,
            autoextend_threshold: 80,
            autoextend_percent: 20,
        }
    }
}

/// The kernel's rule of thumb for the metadata device: 48 bytes per data
/// block, at least 2 MiB, at most the 16 GiB the pool can use.
pub fn metadata_size_for(data_size: u64, block_size: u64) -> u64 {
    let blocks = data_size / block_size.max(1);
    let bytes = blocks.saturating_mul(48).clamp(2 * MIB, 16 * GIB);
    bytes.div_ceil(4 * KIB) * 4 * KIB
}

/// The `dm.*` keys as given; [`Config::from_options`] checks them and
/// derives the pool source.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DmOptions {
    #[serde(alias = "loopdatasize", deserialize_with = "optional_size")]
    data_size: Option<u64>,
    #[serde(alias = "loopmetadatasize", deserialize_with = "optional_size")]
    metadata_size: Option<u64>,
    datadev: Option<PathBuf>,
    metadatadev: Option<PathBuf>,
    thinpooldev: Option<String>,
    #[serde(deserialize_with = "optional_size")]
    blocksize: Option<u64>,
    #[serde(deserialize_with = "optional_size")]
    basesize: Option<u64>,
    fs: Option<Fs>,
    mkfsarg: Option<Vec<String>>,
    deferred_remove: Option<bool>,
    #[serde(deserialize_with = "optional_percent")]
    min_free_space: Option<u8>,
    #[serde(deserialize_with = "optional_percent")]
    autoextend_threshold: Option<u8>,
    #[serde(deserialize_with = "optional_percent")]
    autoextend_percent: Option<u8>,
}

fn bad(key: &str, value: &str, reason: &str) -> OptionError {
    OptionError::new(DRIVER, key, value, reason)
}

impl Config {
    /// Reads every `dm.*` option; other namespaces are ignored, unknown
    /// `dm.*` keys are an error.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, OptionError> {
        let o: DmOptions = parse_options(DRIVER, "dm", options)?;
        let d = Config::default();
        let c = Config {
            block_size: o.blocksize.unwrap_or(d.block_size),
            base_size: o.basesize.unwrap_or(d.base_size),
            fs: o.fs.unwrap_or(d.fs),
            mkfs_args: o.mkfsarg.clone().unwrap_or(d.mkfs_args),
            deferred_remove: o.deferred_remove.unwrap_or(d.deferred_remove),
            min_free_space: o.min_free_space.unwrap_or(d.min_free_space),
            autoextend_threshold: o.autoextend_threshold.unwrap_or(d.autoextend_threshold),
            autoextend_percent: o.autoextend_percent.unwrap_or(d.autoextend_percent),
            pool: d.pool,
        };
        if c.block_size < 64 * KIB || c.block_size > GIB || c.block_size % (64 * KIB) != 0 {
            return Err(bad(
                "dm.blocksize",
                &c.block_size.to_string(),
                "must be a multiple of 64K between 64K and 1G",
            ));
        }
        if c.base_size < 16 * MIB {
            return Err(bad(
                "dm.basesize",
                &c.base_size.to_string(),
                "must be at least 16M",
            ));
        }
        let pool = pool_source(&o, c.block_size)?;
        Ok(Config { pool, ..c })
    }

    /// Pool block size.
    pub fn block_sectors(&self) -> Sectors {
        crate::units::sectors(self.block_size)
    }
}

/// The pool named by `dm.thinpooldev`, or the devices `dm.datadev` and
/// `dm.metadatadev`, or (neither) loop files of the given sizes.
fn pool_source(o: &DmOptions, block_size: u64) -> Result<PoolSource, OptionError> {
    match (&o.thinpooldev, &o.datadev, &o.metadatadev) {
        (Some(pool), None, None) => Ok(PoolSource::Existing(
            pool.trim_start_matches("/dev/mapper/").to_owned(),
        )),
        (None, Some(data), Some(metadata)) => Ok(PoolSource::Devices {
            data: data.clone(),
            metadata: metadata.clone(),
        }),
        (None, None, None) => {
            let data_size = o.data_size.unwrap_or(100 * GIB);
            Ok(PoolSource::LoopFiles {
                data_size,
                metadata_size: o
                    .metadata_size
                    .unwrap_or_else(|| metadata_size_for(data_size, block_size)),
            })
        }
        _ => Err(bad(
            "dm.thinpooldev",
            o.thinpooldev.as_deref().unwrap_or(""),
            "give either dm.thinpooldev, or both dm.datadev and dm.metadatadev, or neither",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_kernel_rule() {
        let c = Config::from_options(&opts(&[("btrfs.size", "1G")])).expect("parse");
        assert_eq!(c.block_size, 64 * KIB);
        assert_eq!(c.fs, Fs::Ext4);
        match c.pool {
            PoolSource::LoopFiles {
                data_size,
                metadata_size,
            } => {
                assert_eq!(data_size, 100 * GIB);
                // 100 GiB / 64 KiB = 1638400 blocks * 48 bytes
                assert_eq!(metadata_size, 1_638_400 * 48);
            }
            other => panic!("unexpected pool {other:?}"),
        }
    }

    #[test]
    fn small_pools_get_two_mib_of_metadata() {
        assert_eq!(metadata_size_for(256 * MIB, 64 * KIB), 2 * MIB);
    }

    #[test]
    fn pool_modes() {
        let c =
            Config::from_options(&opts(&[("dm.thinpooldev", "/dev/mapper/tp")])).expect("parse");
        assert_eq!(c.pool, PoolSource::Existing("tp".into()));
        let c = Config::from_options(&opts(&[
            ("dm.datadev", "/dev/sdb"),
            ("dm.metadatadev", "/dev/sdc"),
        ]))
        .expect("parse");
        assert!(matches!(c.pool, PoolSource::Devices { .. }));
        assert!(Config::from_options(&opts(&[("dm.datadev", "/dev/sdb")])).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        for (k, v) in [
            ("dm.blocksize", "4K"),
            ("dm.blocksize", "100K"),
            ("dm.fs", "btrfs"),
            ("dm.min_free_space", "120"),
            ("dm.deferred_remove", "maybe"),
            ("dm.nonsense", "1"),
            ("dm.basesize", "huge"),
        ] {
            let e = Config::from_options(&opts(&[(k, v)])).expect_err(k);
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn sizes_and_flags() {
        let c = Config::from_options(&opts(&[
            ("dm.data_size", "1G"),
            ("dm.blocksize", "128K"),
            ("dm.fs", "xfs"),
            ("dm.mkfsarg", "-m 0 -E nodiscard"),
            ("dm.deferred_remove", "true"),
            ("dm.min_free_space", "5%"),
        ]))
        .expect("parse");
        assert_eq!(c.block_sectors(), Sectors(256));
        assert_eq!(c.mkfs_args, ["-m", "0", "-E", "nodiscard"]);
        assert!(c.deferred_remove);
        assert_eq!(c.min_free_space, 5);
        assert_eq!(c.fs, Fs::Xfs);
    }
}
