//! Root-only storage: directories 0700 and files 0600, with the mode given
//! at creation (so no window where they are wider) and set again explicitly
//! afterwards (so the process umask cannot widen or narrow it).
//!
//! The store root's 0700 is the outer barrier: nobody but root can reach
//! anything below it. Files and directories Strata creates below it are
//! root-only too, so a mistakenly widened root still exposes nothing.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{IoContext, Result};

/// Mode of every directory Strata creates for itself.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file Strata creates for itself (loop files, kept tars,
/// the database, manifests).
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) mode 0700, then sets 0700 on `dir`
/// itself whether it was created now or existed already.
pub fn private_dir_all(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .ctx("mkdir", dir)?;
    restrict(dir, DIR_MODE)
}

/// Creates `dir` (and missing parents) mode 0700 for use as a mount
/// point, leaving an existing `dir` as it is: it may have something mounted
/// on it already, whose root directory (a container's content) must not
/// be changed.
pub fn private_mount_point(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .ctx("mkdir", dir)
}

/// Creates the directory `dir` (its parent must exist) mode 0700.
/// Fails if it exists, like [`fs::create_dir`].
pub fn private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(DIR_MODE)
        .create(dir)
        .ctx("mkdir", dir)?;
    restrict(dir, DIR_MODE)
}

/// Options that create a file mode 0600 (the umask can only narrow it).
pub fn private_file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates (or truncates) `path` for writing, mode 0600 whatever the umask
/// or the mode an existing file had.
pub fn create_private_file(path: &Path) -> Result<File> {
    let file = private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .ctx("create", path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .ctx("chmod", path)?;
    Ok(file)
}

/// Sets `path`'s permission bits to `mode` (following symlinks is not an
/// issue: Strata calls it on paths it created under its root-only tree).
pub fn restrict(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, Permissions::from_mode(mode)).ctx("chmod", path)
}

/// Sets an existing file to 0600; a missing file is fine. For files made by
/// other libraries (the metadata database and its side files).
pub fn restrict_file_if_exists(path: &Path) -> Result<()> {
    match fs::set_permissions(path, Permissions::from_mode(FILE_MODE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.ctx("chmod", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn dirs_are_0700_files_0600_and_wide_ones_are_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        fs::create_dir(dir.path().join("a")).unwrap();
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, Permissions::from_mode(0o777)).unwrap();
        private_dir_all(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o7777, 0o700);
        let fresh = dir.path().join("c");
        private_dir(&fresh).unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o700);
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, Permissions::from_mode(0o666)).unwrap();
        create_private_file(&file).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);
        fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        restrict_file_if_exists(&file).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);
        restrict_file_if_exists(&dir.path().join("missing")).unwrap();
        // A mount point is made 0700 but an existing one is left alone.
        let point = dir.path().join("m/n");
        private_mount_point(&point).unwrap();
        assert_eq!(fs::metadata(&point).unwrap().mode() & 0o7777, 0o700);
        fs::set_permissions(&point, Permissions::from_mode(0o755)).unwrap();
        private_mount_point(&point).unwrap();
        assert_eq!(fs::metadata(&point).unwrap().mode() & 0o7777, 0o755);
    }
}
