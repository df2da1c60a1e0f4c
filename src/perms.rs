//! The store's permission model: the root directory is 0700 and every
//! directory Strata makes below it 0700, every file 0600 (loop files, kept
//! layer tars, manifests, the database and its side files), so no user but
//! root can read a layer's files, whatever their own modes, or write into
//! a committed layer. Modes are given at creation and set again explicitly,
//! so the umask of whoever runs strata does not matter; the root's 0700 is
//! the outer barrier and also covers files other libraries create.

use std::path::Path;

use strata_driver_api::private::{private_dir_all, restrict_file_if_exists};

use crate::error::{Result, StoreError};

/// Creates the store root (and missing parents) if needed and sets it to
/// 0700, also for a store made before this was enforced.
pub fn secure_root(root: &Path) -> Result<()> {
    private_dir_all(root).map_err(StoreError::from)
}

/// Sets every regular file directly in `root` to 0600: the metadata
/// database and its side files (journal, WAL, shared memory: whatever the
/// database library made), the lock, the config and the space reserve.
/// Call after opening the database; a file that vanishes meanwhile is fine.
pub fn restrict_root_files(root: &Path) -> Result<()> {
    let entries = std::fs::read_dir(root).map_err(|e| StoreError::io("read directory", root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("read directory", root, e))?;
        let is_file = entry
            .file_type()
            .map_err(|e| StoreError::io("stat", entry.path(), e))?
            .is_file();
        if is_file {
            restrict_file_if_exists(&entry.path())?;
        }
    }
    Ok(())
}

/// Creates a directory Strata owns below the root (0700).
pub fn private_dir(dir: &Path) -> Result<()> {
    private_dir_all(dir).map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn root_and_its_files_become_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["metadata.redb", "metadata.sqlite-wal", "lock"] {
            let p = root.join(f);
            std::fs::write(&p, b"x").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::create_dir(root.join("layer")).unwrap();
        std::fs::set_permissions(root.join("layer"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        secure_root(&root).unwrap();
        restrict_root_files(&root).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&root), 0o700);
        for f in ["metadata.redb", "metadata.sqlite-wal", "lock"] {
            assert_eq!(mode(&root.join(f)), 0o600, "{f}");
        }
        // Directories are not files: a layer's own mode is left alone.
        assert_eq!(mode(&root.join("layer")), 0o755);
    }
}
