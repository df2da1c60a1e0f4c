//! `strata serve`: the containerd proxy snapshotter.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use strata::snapshotter::Snapshotter;

use super::store_cmds::open;
use super::Cli;

/// Serves the store's snapshotter on `socket` until SIGTERM/SIGINT. The
/// store (and its lock) stays open for the whole time.
pub fn serve(cli: &Cli, socket: &Path) -> Result<()> {
    let store = open(cli)?;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let snapshotter: Arc<dyn Snapshotter> = store.snapshots().clone();
    eprintln!(
        "strata: serving {} (driver {}) on {}",
        store.root().display(),
        store.config().driver,
        socket.display()
    );
    strata::serve::serve_blocking(snapshotter, socket)
        .with_context(|| format!("serving on {}", socket.display()))
}
