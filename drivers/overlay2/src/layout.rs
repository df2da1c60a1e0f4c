//! Where a snapshot's directories and short link live under the home.

use std::path::{Path, PathBuf};

use strata_driver_api::SnapshotId;

const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Short link name of snapshot `id`: the id in base 36 (`35` -> `z`,
/// `1000000` -> `lfls`), so every link is named after its snapshot and a
/// 128-layer lowerdir list costs a few bytes per layer beyond the home path.
pub fn link_name(id: SnapshotId) -> String {
    let mut n = id.0;
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The id a [`link_name`] stands for, if `name` is one.
pub fn parse_link_name(name: &str) -> Option<SnapshotId> {
    if name.is_empty() || (name.len() > 1 && name.starts_with('0')) {
        return None;
    }
    let mut n: u64 = 0;
    for c in name.bytes() {
        let d = DIGITS.iter().position(|x| *x == c)? as u64;
        n = n.checked_mul(36)?.checked_add(d)?;
    }
    Some(SnapshotId(n))
}

/// Paths under the driver's home.
#[derive(Debug, Clone)]
pub struct Layout {
    home: PathBuf,
}

impl Layout {
    /// Layout rooted at `home`.
    pub fn new(home: &Path) -> Self {
        Self {
            home: home.to_owned(),
        }
    }

    /// The home itself.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `<home>/snapshots`.
    pub fn snapshots(&self) -> PathBuf {
        self.home.join("snapshots")
    }

    /// `<home>/l`.
    pub fn links(&self) -> PathBuf {
        self.home.join("l")
    }

    /// `<home>/snapshots/<id>`.
    pub fn snapshot(&self, id: SnapshotId) -> PathBuf {
        self.snapshots().join(id.to_string())
    }

    /// The snapshot's own layer (overlay upper directory).
    pub fn fs(&self, id: SnapshotId) -> PathBuf {
        self.snapshot(id).join("fs")
    }

    /// overlayfs' work directory for the snapshot.
    pub fn work(&self, id: SnapshotId) -> PathBuf {
        self.snapshot(id).join("work")
    }

    /// `<home>/l/<short>`, a symlink to `../snapshots/<id>/fs`.
    pub fn link(&self, id: SnapshotId) -> PathBuf {
        self.links().join(link_name(id))
    }

    /// What [`Layout::link`] points to, relative to `<home>/l`.
    pub fn link_target(id: SnapshotId) -> PathBuf {
        Path::new("../snapshots").join(id.to_string()).join("fs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_round_trip() {
        for n in [0, 1, 35, 36, 1295, 1_000_000, u64::MAX] {
            let name = link_name(SnapshotId(n));
            assert_eq!(parse_link_name(&name), Some(SnapshotId(n)), "{name}");
        }
        assert_eq!(link_name(SnapshotId(35)), "z");
        assert_eq!(link_name(SnapshotId(36)), "10");
        assert_eq!(parse_link_name("0x"), None);
        assert_eq!(parse_link_name("A"), None);
        assert_eq!(parse_link_name(""), None);
    }
}
