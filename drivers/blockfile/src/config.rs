//! Options of the blockfile driver (`--opt blockfile.KEY=VALUE`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::BlockfileError;

/// One GiB.
const GIB: u64 = 1 << 30;

/// Filesystem inside each snapshot image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFs {
    /// ext4 (default): small images work, resized online.
    Ext4,
    /// xfs: mounted with `nouuid` because clones share the UUID; at least 300 MiB.
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
pub struct Config {
    /// `blockfile.fs`: filesystem of the images.
    pub fs: ImageFs,
    /// `blockfile.size`: apparent size of a new base image, bytes (sparse).
    pub size: u64,
    /// `blockfile.backing`: `auto`, `loop` or `direct`.
    pub backing: BackingMode,
    /// `blockfile.backing_size`: apparent size of `<home>/backing.img`, bytes.
    pub backing_size: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fs: ImageFs::Ext4,
            size: GIB,
            backing: BackingMode::Auto,
            backing_size: 100 * GIB,
        }
    }
}

impl Config {
    /// Reads the `blockfile.*` keys of `options`; other drivers' keys are
    /// ignored, unknown `blockfile.*` keys are an error.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, BlockfileError> {
        let mut cfg = Config::default();
        for (key, value) in options {
            let Some(name) = key.strip_prefix("blockfile.") else {
                continue;
            };
            let bad = |reason: &str| BlockfileError::Option {
                key: key.clone(),
                value: value.clone(),
                reason: reason.to_owned(),
            };
            match name {
                "fs" => {
                    cfg.fs = match value.as_str() {
                        "ext4" => ImageFs::Ext4,
                        "xfs" => ImageFs::Xfs,
                        _ => return Err(bad("expected ext4 or xfs")),
                    }
                }
                "size" => cfg.size = parse_size(value).ok_or_else(|| bad("expected a size"))?,
                "backing_size" => {
                    cfg.backing_size = parse_size(value).ok_or_else(|| bad("expected a size"))?
                }
                "backing" => {
                    cfg.backing = match value.as_str() {
                        "auto" => BackingMode::Auto,
                        "loop" => BackingMode::Loop,
                        "direct" => BackingMode::Direct,
                        _ => return Err(bad("expected auto, loop or direct")),
                    }
                }
                _ => return Err(bad("unknown blockfile option")),
            }
        }
        Ok(cfg)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("1GiB"), Some(GIB));
        assert_eq!(parse_size("2g"), Some(2 * GIB));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn options_override_defaults_and_reject_unknown_keys() {
        let mut opts = BTreeMap::new();
        opts.insert("blockfile.fs".to_owned(), "xfs".to_owned());
        opts.insert("blockfile.size".to_owned(), "2G".to_owned());
        opts.insert("btrfs.size".to_owned(), "ignored".to_owned());
        let cfg = Config::from_options(&opts).expect("valid options");
        assert_eq!(cfg.fs, ImageFs::Xfs);
        assert_eq!(cfg.size, 2 * GIB);
        assert_eq!(cfg.backing, BackingMode::Auto);

        opts.insert("blockfile.colour".to_owned(), "red".to_owned());
        assert!(Config::from_options(&opts).is_err());
    }
}
