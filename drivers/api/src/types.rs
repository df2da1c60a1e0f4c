//! Plain data shared by every driver: keys, ids, kinds, infos, mount specs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// User-visible name of a snapshot. Active/view keys and committed names share
/// one namespace. Treated as opaque (containerd prefixes `namespace/id/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotKey(pub String);

impl SnapshotKey {
    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SnapshotKey {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for SnapshotKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Store-assigned numeric id of a snapshot's storage. It stays the same when
/// an active snapshot is committed, and drivers name their kernel objects
/// (directories, subvolumes, thin devices, image files) after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotId(pub u64);

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a snapshot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable, from `prepare`. Cannot be a parent.
    Active,
    /// Read-only, from `view`. Cannot be a parent or committed.
    View,
    /// Read-only layer, from `commit`. May be a parent.
    Committed,
}

impl Kind {
    /// Lower-case name as containerd prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Labels attached to a snapshot.
pub type Labels = BTreeMap<String, String>;

/// Label that asks for a per-snapshot size limit in bytes (`strata create --size`).
/// A driver that cannot enforce it refuses the snapshot.
pub const LABEL_SIZE: &str = "strata.io/size";

/// containerd's size hint on Prepare, in bytes (containerd 2.4 and later).
/// Enforced like [`LABEL_SIZE`] where the driver can; elsewhere logged once
/// and answered with [`LABEL_SIZE_UNENFORCED`] on the snapshot.
pub const LABEL_MAX_SIZE: &str = "containerd.io/snapshot/max-size";

/// Set (to the hint's value) on a snapshot whose [`LABEL_MAX_SIZE`] hint its
/// driver cannot enforce.
pub const LABEL_SIZE_UNENFORCED: &str = "strata.io/size-unenforced";

/// Label with a sizing hint, in bytes: the free space a new snapshot should
/// start with, e.g. the layer store's upper bound of a layer about to be
/// applied. Drivers whose snapshots have a fixed capacity (blockfile,
/// devmapper) grow the new snapshot when its parent leaves less room;
/// others ignore it. Never a limit: see [`CreateOptions::min_free`].
pub const LABEL_MIN_FREE: &str = "strata.io/min-free";

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Public description of a snapshot (containerd's `snapshots.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Key (active/view) or name (committed).
    pub name: SnapshotKey,
    /// Committed parent, if any.
    pub parent: Option<SnapshotKey>,
    /// Active, view or committed.
    pub kind: Kind,
    /// User labels.
    pub labels: Labels,
    /// Creation time, ns since the epoch.
    pub created_ns: u64,
    /// Last update time, ns since the epoch.
    pub updated_ns: u64,
}

/// Space used by a snapshot alone (not its parents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes of storage exclusive to this snapshot.
    pub size: u64,
    /// Inodes exclusive to this snapshot (0 when the driver cannot tell).
    pub inodes: u64,
}

/// A mount the caller should perform to see a snapshot: like containerd's
/// `mount.Mount`. Drivers return these; they never choose mount points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type: `bind`, `overlay`, `btrfs`, `ext4`, `xfs`, ...
    #[serde(rename = "type")]
    pub fstype: String,
    /// Source path or device. A regular file with the `loop` option is
    /// attached to a loop device first.
    pub source: String,
    /// Options, as `mount -o` takes them (`ro`, `rbind`, `loop`, `lowerdir=..`).
    pub options: Vec<String>,
}

impl Mount {
    /// Whether the mount is read-only.
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// Options for creating a snapshot's storage, derived from its labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Size limit in bytes, from [`LABEL_SIZE`].
    pub size: Option<u64>,
    /// Free space in bytes the snapshot should start with, from
    /// [`LABEL_MIN_FREE`]: a hint that grows fixed-capacity snapshots
    /// (never shrinks them, never sets a quota); drivers without a fixed
    /// capacity ignore it.
    pub min_free: Option<u64>,
}

/// Snapshots grown for [`CreateOptions::min_free`] grow in whole steps of
/// this many bytes (64 MiB).
pub const GROW_STEP: u64 = 64 << 20;

impl CreateOptions {
    /// The size a snapshot cloned from an origin of `current` bytes, `free`
    /// of them free, must have for [`CreateOptions::min_free`] to fit,
    /// rounded up to [`GROW_STEP`] and never above `ceiling` (the space
    /// behind the snapshot: the hint comes from untrusted labels and
    /// archives, and a filesystem grown past its backing only fails later);
    /// `None` without a hint or when no growth is wanted or possible.
    pub fn size_for_room(&self, current: u64, free: u64, ceiling: u64) -> Option<u64> {
        let missing = self.min_free?.checked_sub(free).filter(|&m| m > 0)?;
        let wanted = current
            .saturating_add(missing)
            .div_ceil(GROW_STEP)
            .saturating_mul(GROW_STEP);
        Some(wanted.min(ceiling)).filter(|&size| size > current)
    }

    /// Reads the options a driver cares about from the labels, as given.
    pub fn from_labels(labels: &Labels) -> Result<Self, crate::Error> {
        Ok(Self {
            size: size_label(labels, LABEL_SIZE)?.or(size_label(labels, LABEL_MAX_SIZE)?),
            min_free: size_label(labels, LABEL_MIN_FREE)?,
        })
    }

    /// The options for a new snapshot on `driver`, which can (`limits`) or
    /// cannot enforce size limits, and the labels to record. A
    /// [`LABEL_SIZE`] it cannot enforce is refused (Unsupported); a
    /// [`LABEL_MAX_SIZE`] hint it cannot enforce is logged (once per
    /// process) and recorded as [`LABEL_SIZE_UNENFORCED`]. A limit of 0 is
    /// InvalidArgument.
    pub fn resolve(
        driver: &str,
        limits: bool,
        mut labels: Labels,
    ) -> Result<(Self, Labels), crate::Error> {
        let options = Self::from_labels(&labels)?;
        let Some(size) = options.size else {
            return Ok((options, labels));
        };
        if limits {
            return Ok((options, labels));
        }
        if labels.contains_key(LABEL_SIZE) {
            return Err(crate::Error::Unsupported {
                driver: driver.to_owned(),
                reason: format!(
                    "it cannot enforce a size limit ({LABEL_SIZE}={size}); \
                     btrfs with quotas, blockfile, devmapper and overlay2 on xfs with prjquota can"
                ),
            });
        }
        static LOGGED: std::sync::Once = std::sync::Once::new();
        LOGGED.call_once(|| {
            tracing::warn!(
                driver,
                "the {driver} driver cannot enforce {LABEL_MAX_SIZE}; \
                 such snapshots are labelled {LABEL_SIZE_UNENFORCED}"
            );
        });
        labels.insert(LABEL_SIZE_UNENFORCED.to_owned(), size.to_string());
        Ok((
            Self {
                size: None,
                ..options
            },
            labels,
        ))
    }
}

/// The positive byte count in label `key`, if set.
fn size_label(labels: &Labels, key: &str) -> Result<Option<u64>, crate::Error> {
    let Some(v) = labels.get(key) else {
        return Ok(None);
    };
    match v.parse::<u64>() {
        Ok(0) => Err(crate::Error::InvalidArgument(format!(
            "label {key}=0: a size limit must be above 0 bytes"
        ))),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(crate::Error::InvalidArgument(format!(
            "label {key}={v:?} is not a byte count"
        ))),
    }
}

/// Parses a byte count: `4096`, `512K`, `10M`, `1.5G`, `2T` (binary units,
/// case-insensitive, optional `B` or `iB`). `None` when it is not one.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let t = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, shift) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 10),
        'm' => (&t[..t.len() - 1], 20),
        'g' => (&t[..t.len() - 1], 30),
        't' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let number = number.trim();
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(1u64 << shift);
    }
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    let bytes = value * (1u64 << shift) as f64;
    (bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// One line of a driver's status, shown by `strata info`.
pub type StatusLine = (String, String);

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn size_limits_are_enforced_refused_or_recorded() {
        let (o, l) =
            CreateOptions::resolve("btrfs", true, with(&[(LABEL_MAX_SIZE, "4096")])).unwrap();
        assert_eq!(
            (o.size, l.contains_key(LABEL_SIZE_UNENFORCED)),
            (Some(4096), false)
        );
        let (o, l) =
            CreateOptions::resolve("vfs", false, with(&[(LABEL_MAX_SIZE, "4096")])).unwrap();
        assert_eq!(o.size, None);
        assert_eq!(
            l.get(LABEL_SIZE_UNENFORCED).map(String::as_str),
            Some("4096")
        );
        let refused = CreateOptions::resolve("vfs", false, with(&[(LABEL_SIZE, "4096")]));
        assert!(
            matches!(refused, Err(crate::Error::Unsupported { driver, .. }) if driver == "vfs")
        );
        for (key, value) in [(LABEL_SIZE, "0"), (LABEL_MAX_SIZE, "0"), (LABEL_SIZE, "2M")] {
            let bad = CreateOptions::resolve("btrfs", true, with(&[(key, value)]));
            assert!(matches!(bad, Err(crate::Error::InvalidArgument(m)) if m.contains(key)));
        }
        let (o, _) = CreateOptions::resolve("vfs", false, Labels::new()).unwrap();
        assert_eq!(o.size, None);
    }

    #[test]
    fn snapshots_grow_only_when_the_wanted_room_is_missing() {
        const MIB: u64 = 1 << 20;
        let room = |free: u64| CreateOptions {
            min_free: Some(free),
            ..CreateOptions::default()
        };
        let ceiling = u64::MAX;
        assert_eq!(
            room(500 * MIB).size_for_room(1024 * MIB, 600 * MIB, ceiling),
            None
        );
        assert_eq!(
            room(500 * MIB).size_for_room(1024 * MIB, 500 * MIB, ceiling),
            None
        );
        assert_eq!(
            room(500 * MIB).size_for_room(1024 * MIB, 100 * MIB, ceiling),
            Some(1472 * MIB)
        );
        assert_eq!(room(1).size_for_room(64 * MIB, 0, ceiling), Some(128 * MIB));
        assert_eq!(
            CreateOptions::default().size_for_room(64 * MIB, 0, ceiling),
            None
        );
    }

    #[test]
    fn a_hostile_hint_grows_no_further_than_the_space_behind_it() {
        const GIB: u64 = 1 << 30;
        let huge = CreateOptions {
            min_free: Some(u64::MAX),
            ..CreateOptions::default()
        };
        assert_eq!(huge.size_for_room(GIB, 0, 100 * GIB), Some(100 * GIB));
        assert_eq!(huge.size_for_room(100 * GIB, 0, 100 * GIB), None);
        assert_eq!(huge.size_for_room(200 * GIB, 0, 100 * GIB), None);
    }

    #[test]
    fn min_free_is_a_hint_kept_for_every_driver() {
        let labels = with(&[(LABEL_MIN_FREE, "1048576"), (LABEL_MAX_SIZE, "4096")]);
        let (o, l) = CreateOptions::resolve("vfs", false, labels).unwrap();
        assert_eq!((o.size, o.min_free), (None, Some(1 << 20)));
        assert!(l.contains_key(LABEL_SIZE_UNENFORCED));
        let bad = CreateOptions::resolve("vfs", false, with(&[(LABEL_MIN_FREE, "1M")]));
        assert!(matches!(bad, Err(crate::Error::InvalidArgument(m)) if m.contains(LABEL_MIN_FREE)));
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("10g"), Some(10 << 30));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("2TB"), Some(2 << 40));
        for bad in ["", "x", "ten", "10X", "-1G", "G"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}

/// A file the driver attaches to a loop device and keeps attached between
/// commands (a loop-backed filesystem, a thin pool's data or metadata
/// file), with where the driver mounts it, if it does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackingFile {
    /// The file.
    pub file: std::path::PathBuf,
    /// Its mount point, for a filesystem the driver mounts.
    pub mount_point: Option<std::path::PathBuf>,
}
