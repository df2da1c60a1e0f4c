//! `dm.*` options, parsed from the store's `--opt key=value` map.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{DmError, Result};

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

/// Parses `4096`, `512K`, `10M`, `1G`, `2T` (binary units, optional `iB`/`B`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_suffix("iB")
        .or_else(|| s.strip_suffix('B'))
        .unwrap_or(s);
    let (digits, shift) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 10),
        (i, 'm' | 'M') => (&s[..i], 20),
        (i, 'g' | 'G') => (&s[..i], 30),
        (i, 't' | 'T') => (&s[..i], 40),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

fn bad(key: &str, value: &str, reason: &str) -> DmError {
    DmError::Option {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn size(key: &str, value: &str) -> Result<u64> {
    parse_size(value).ok_or_else(|| bad(key, value, "not a size (e.g. 10G, 512M)"))
}

fn percent(key: &str, value: &str) -> Result<u8> {
    match value.trim_end_matches('%').parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(bad(key, value, "not a percentage 0-100")),
    }
}

fn boolean(key: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad(key, value, "not a boolean")),
    }
}

impl Config {
    /// Reads every `dm.*` option; other namespaces are ignored, unknown
    /// `dm.*` keys are an error.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut c = Config::default();
        let (mut data_size, mut meta_size) = (None, None);
        let (mut datadev, mut metadev, mut pooldev) = (None, None, None);
        for (key, value) in options {
            let Some(name) = key.strip_prefix("dm.") else {
                continue;
            };
            match name {
                "data_size" | "loopdatasize" => data_size = Some(size(key, value)?),
                "metadata_size" | "loopmetadatasize" => meta_size = Some(size(key, value)?),
                "datadev" => datadev = Some(PathBuf::from(value)),
                "metadatadev" => metadev = Some(PathBuf::from(value)),
                "thinpooldev" => {
                    pooldev = Some(value.trim_start_matches("/dev/mapper/").to_owned())
                }
                "blocksize" => c.block_size = size(key, value)?,
                "basesize" => c.base_size = size(key, value)?,
                "fs" => {
                    c.fs = match value.as_str() {
                        "ext4" => Fs::Ext4,
                        "xfs" => Fs::Xfs,
                        _ => return Err(bad(key, value, "expected ext4 or xfs")),
                    }
                }
                "mkfsarg" => c.mkfs_args = value.split_whitespace().map(str::to_owned).collect(),
                "deferred_remove" => c.deferred_remove = boolean(key, value)?,
                "min_free_space" => c.min_free_space = percent(key, value)?,
                "autoextend_threshold" => c.autoextend_threshold = percent(key, value)?,
                "autoextend_percent" => c.autoextend_percent = percent(key, value)?,
                _ => return Err(bad(key, value, "unknown devmapper option")),
            }
        }
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
        c.pool =
            match (pooldev, datadev, metadev) {
                (Some(pool), None, None) => PoolSource::Existing(pool),
                (None, Some(data), Some(metadata)) => PoolSource::Devices { data, metadata },
                (None, None, None) => {
                    let data_size = data_size.unwrap_or(100 * GIB);
                    PoolSource::LoopFiles {
                        data_size,
                        metadata_size: meta_size
                            .unwrap_or_else(|| metadata_size_for(data_size, c.block_size)),
                    }
                }
                _ => return Err(bad(
                    "dm.thinpooldev",
                    "",
                    "give either dm.thinpooldev, or both dm.datadev and dm.metadatadev, or neither",
                )),
            };
        Ok(c)
    }

    /// Pool block size in 512-byte sectors.
    pub fn block_sectors(&self) -> u64 {
        self.block_size / 512
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
        assert_eq!(c.block_sectors(), 256);
        assert_eq!(c.mkfs_args, ["-m", "0", "-E", "nodiscard"]);
        assert!(c.deferred_remove);
        assert_eq!(c.min_free_space, 5);
        assert_eq!(c.fs, Fs::Xfs);
    }
}
