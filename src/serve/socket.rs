//! The listening socket: created mode 0600 without a window where it is
//! wider, a stale file from a crash replaced, a live server never displaced.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::ServeError;

/// A bound, listening socket that removes its file when dropped (only if the
/// file is still the one it bound).
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    ino: u64,
}

impl BoundSocket {
    /// Binds `path`. An existing socket nobody listens on is replaced; a live
    /// one is an error ([`ServeError::InUse`]), and so is any other kind of file.
    pub fn bind(path: &Path) -> Result<Self, ServeError> {
        clear_stale(path)?;
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| ServeError::io("create directory", parent, e))?;
        // Bind inside a private 0700 directory, tighten the socket to 0600,
        // then rename it into place: nobody can connect before it is 0600.
        let private = tempfile::Builder::new()
            .prefix(".strata-serve-")
            .tempdir_in(parent)
            .map_err(|e| ServeError::io("create directory in", parent, e))?;
        let staged = private.path().join("sock");
        let listener =
            UnixListener::bind(&staged).map_err(|e| ServeError::io("bind", &staged, e))?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o600))
            .map_err(|e| ServeError::io("chmod", &staged, e))?;
        fs::rename(&staged, path).map_err(|e| ServeError::io("rename socket to", path, e))?;
        let ino = fs::symlink_metadata(path)
            .map_err(|e| ServeError::io("stat", path, e))?
            .ino();
        listener
            .set_nonblocking(true)
            .map_err(|e| ServeError::io("set nonblocking", path, e))?;
        Ok(Self {
            listener: Some(listener),
            path: path.to_owned(),
            ino,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the listener to tokio (the file stays owned by `self`).
    pub(crate) fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .map(|m| m.file_type().is_socket() && m.ino() == self.ino)
            .unwrap_or(false);
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove socket");
            }
        }
    }
}

/// Removes `path` if it is a socket nobody listens on.
fn clear_stale(path: &Path) -> Result<(), ServeError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ServeError::io("stat", path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ServeError::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(ServeError::InUse(path.to_owned())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing stale socket");
            fs::remove_file(path).map_err(|e| ServeError::io("remove stale socket", path, e))
        }
        Err(e) => Err(ServeError::io("probe socket", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_0600_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let bound = BoundSocket::bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Only the socket is left in the directory (the staging dir is gone).
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(bound);
        assert!(!path.exists());
    }

    #[test]
    fn stale_socket_is_replaced_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A stale socket: bound, then its listener closed, the file left.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let bound = BoundSocket::bind(&path).unwrap();
        match BoundSocket::bind(&path) {
            Err(ServeError::InUse(p)) => assert_eq!(p, path),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(bound);
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        fs::write(&path, b"data").unwrap();
        assert!(matches!(
            BoundSocket::bind(&path),
            Err(ServeError::NotASocket(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"data");
    }
}
