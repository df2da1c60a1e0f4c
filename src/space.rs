//! Opening a store on a full disk: whatever the database writes when it
//! opens (creating missing tables, growing its file) must not be what makes
//! `check` impossible. When the store's filesystem cannot give
//! [`OPEN_HEADROOM`] more bytes, the metadata space reserve is given back
//! before the database opens (it is made again at a later open, once there is room;
//! meanwhile new snapshots are refused, as they are whenever the reserve
//! is missing).

use std::path::Path;

/// Name prefix of the probe file (`<root>/.space-probe-<pid>`).
const PROBE_PREFIX: &str = ".space-probe-";

/// Bytes the disk must still be able to give for the reserve to be kept.
pub const OPEN_HEADROOM: u64 = 1 << 20;

/// Releases `reserve` when the filesystem holding `root` cannot give
/// [`OPEN_HEADROOM`] more bytes: a probe file of that size is allocated
/// (and removed) next to the reserve, since free-block counts include
/// blocks nobody may use. Returns whether the reserve was released.
pub fn release_reserve_if_full(root: &Path, reserve: &Path) -> bool {
    remove_stale_probes(root);
    if !reserve.exists() {
        return false;
    }
    let probe = root.join(format!("{PROBE_PREFIX}{}", std::process::id()));
    let room = strata_driver_api::private::private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .and_then(|f| {
            nix::fcntl::fallocate(
                &f,
                nix::fcntl::FallocateFlags::empty(),
                0,
                OPEN_HEADROOM as i64,
            )
            .map_err(std::io::Error::from)
        });
    let _ = std::fs::remove_file(&probe);
    match room {
        Ok(()) => false,
        Err(e)
            if e.raw_os_error() != Some(libc::ENOSPC) && e.raw_os_error() != Some(libc::EDQUOT) =>
        {
            tracing::warn!(path = %probe.display(), error = %e, "cannot probe for free space");
            false
        }
        Err(_) => match std::fs::remove_file(reserve) {
            Ok(()) => {
                tracing::warn!(path = %reserve.display(), "disk full: released the metadata space reserve to open the store");
                true
            }
            Err(e) => {
                tracing::warn!(path = %reserve.display(), error = %e, "disk full and the space reserve cannot be released");
                false
            }
        },
    }
}

/// Removes probe files a process killed while probing left in `root`.
fn remove_stale_probes(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PROBE_PREFIX))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_with_room_keeps_its_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = dir.path().join("metadata.reserve");
        std::fs::write(&reserve, b"r").unwrap();
        let stale = dir.path().join(format!("{PROBE_PREFIX}1"));
        std::fs::write(&stale, b"left by a crash").unwrap();
        assert!(!release_reserve_if_full(dir.path(), &reserve));
        assert!(reserve.exists());
        assert!(!stale.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "probe left behind");
    }
}
