//! Options of the blockfile driver (`--opt blockfile.KEY=VALUE`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use strata_driver_api::options::size;
use strata_driver_api::{parse_options, OptionError};

/// One GiB.
const GIB: u64 = 1 << 30;

/// Default apparent size of a base image: sparse, so only what is written
/// is allocated, and large enough that a container never meets it first.
pub const DEFAULT_SIZE: u64 = 10 * GIB;

/// Filesystem inside each snapshot image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFs {
    /// ext4: small images work, resized offline.
    Ext4,
    /// xfs (default): mounted with `nouuid` because clones share the UUID;
    /// an image below xfs' 300 MiB minimum is made ext4 instead. A first
    /// write plus fsync in a clone costs 26-60% less than on ext4 (one small
    /// log record to unshare in the backing instead of jbd2's descriptor,
    /// metadata and commit blocks); each read-write mount unshares up to
    /// 2 MiB of log.
    Xfs,
}

impl ImageFs {
    /// The name `mount -t` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFs::Ext4 => "ext4",
            ImageFs::Xfs => "xfs",
        }
    }
}

impl fmt::Display for ImageFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the image files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackingMode {
    /// In the home directory when it can reflink, else in a loop-mounted xfs.
    Auto,
    /// Always in a loop-mounted xfs file `<home>/backing.img`.
    Loop,
    /// Always in the home directory; without reflink every create copies.
    Direct,
}

/// The driver's options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `blockfile.fs`: filesystem of the images.
    pub fs: ImageFs,
    /// `blockfile.size`: apparent size of a new base image, bytes (sparse).
    #[serde(deserialize_with = "size")]
    pub size: u64,
    /// `blockfile.backing`: `auto`, `loop` or `direct`.
    pub backing: BackingMode,
    /// `blockfile.backing_size`: apparent size of `<home>/backing.img`, bytes.
    #[serde(deserialize_with = "size")]
    pub backing_size: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fs: ImageFs::Xfs,
            size: DEFAULT_SIZE,
            backing: BackingMode::Auto,
            backing_size: 100 * GIB,
        }
    }
}

impl Config {
    /// Reads the `blockfile.*` keys of `options`; other drivers' keys are
    /// ignored, unknown `blockfile.*` keys are an error.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, OptionError> {
        parse_options("blockfile", "blockfile", options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_large_sparse_xfs_images() {
        let cfg = Config::from_options(&BTreeMap::new()).expect("no options");
        assert_eq!((cfg.fs, cfg.size), (ImageFs::Xfs, 10 * GIB));
    }

    #[test]
    fn options_override_defaults_and_reject_unknown_keys() {
        let mut opts = BTreeMap::new();
        opts.insert("blockfile.fs".to_owned(), "ext4".to_owned());
        opts.insert("blockfile.size".to_owned(), "2G".to_owned());
        opts.insert("btrfs.size".to_owned(), "ignored".to_owned());
        let cfg = Config::from_options(&opts).expect("valid options");
        assert_eq!(cfg.fs, ImageFs::Ext4);
        assert_eq!(cfg.size, 2 * GIB);
        assert_eq!(cfg.backing, BackingMode::Auto);

        opts.insert("blockfile.colour".to_owned(), "red".to_owned());
        assert!(Config::from_options(&opts).is_err());
        opts.remove("blockfile.colour");
        opts.insert("blockfile.backing".to_owned(), "loop".to_owned());
        opts.insert("blockfile.backing_size".to_owned(), "1T".to_owned());
        let cfg = Config::from_options(&opts).expect("valid options");
        assert_eq!(
            (cfg.backing, cfg.backing_size),
            (BackingMode::Loop, 1024 * GIB)
        );
        opts.insert("blockfile.size".to_owned(), "big".to_owned());
        let e = Config::from_options(&opts).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.value.as_str()),
            ("blockfile.size", "big")
        );
    }
}
