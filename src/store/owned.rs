//! Files a process writes under the store before the record that claims
//! them exists (a kept layer tar, a layer manifest) carry the writer's
//! session in an extended attribute, so `check` and `rmi`'s pruning in
//! another process leave them alone while the writer lives.

use std::path::Path;

use crate::db::session::Session;

use super::Store;

const XATTR: &str = "user.strata.session";

/// Marks `path` as written by this process (best effort: a filesystem
/// without user xattrs just loses the protection).
pub fn mark(session: &Session, path: &Path) {
    if let Err(e) = xattr::set(path, XATTR, session.id().as_bytes()) {
        tracing::debug!(path = %path.display(), error = %e, "cannot mark file with its session");
    }
}

/// Whether the session that wrote `path` is alive: `None` for a file
/// without the mark.
fn writer_alive(store: &Store, path: &Path) -> Option<bool> {
    let id = xattr::get(path, XATTR).ok()??;
    Some(store.session().is_alive(&String::from_utf8_lossy(&id)))
}

/// Whether `path` was written by a strata process that has died.
pub fn left_by_dead_session(store: &Store, path: &Path) -> bool {
    writer_alive(store, path) == Some(false)
}

/// Whether `path` was written by a strata process that is still running.
pub fn held_by_live_session(store: &Store, path: &Path) -> bool {
    writer_alive(store, path) == Some(true)
}
