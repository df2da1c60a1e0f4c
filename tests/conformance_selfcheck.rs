//! Runs the conformance suite against a deliberately simple copy driver
//! (`cp -a`), to check the suite and `Snapshots` themselves.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

#[macro_use]
mod conformance_suite;

use conformance_suite::Fixture;
use strata::snapshotter::Snapshots;
use strata_driver_api::mount::run;
use strata_driver_api::testing::{require_root, ScratchDir};
use strata_driver_api::*;

struct CopyDriver {
    home: PathBuf,
}

impl CopyDriver {
    fn dir(&self, id: SnapshotId) -> PathBuf {
        self.home.join(id.to_string())
    }
}

impl Driver for CopyDriver {
    fn name(&self) -> &'static str {
        "copy-selfcheck"
    }
    fn create(&self, t: Target<'_>, _: &CreateOptions) -> Result<()> {
        let dir = self.dir(t.id);
        match t.parent() {
            Some(p) => run(Command::new("cp").arg("-a").arg(self.dir(p)).arg(&dir)).map(|_| ()),
            None => std::fs::create_dir(&dir).ctx("mkdir", &dir),
        }
    }
    fn commit(&self, _: Target<'_>) -> Result<()> {
        Ok(())
    }
    fn remove(&self, id: SnapshotId) -> Result<()> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("rm -r", dir, e)),
            _ => Ok(()),
        }
    }
    fn mounts(&self, t: Target<'_>) -> Result<Vec<Mount>> {
        let mode = if t.kind == Kind::Active { "rw" } else { "ro" };
        Ok(vec![Mount {
            fstype: "bind".into(),
            source: self.dir(t.id).display().to_string(),
            options: vec!["rbind".into(), mode.into()],
        }])
    }
    fn usage(&self, t: Target<'_>) -> Result<Usage> {
        let out = run(Command::new("du").arg("-sb").arg(self.dir(t.id)))?;
        let size = out
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Usage { size, inodes: 0 })
    }
    fn stored_ids(&self) -> Result<Vec<SnapshotId>> {
        Ok(Vec::new())
    }
    fn status(&self) -> Vec<StatusLine> {
        Vec::new()
    }
}

fn make() -> Option<Fixture> {
    if !require_root("suite_selfcheck") {
        return None;
    }
    let scratch = ScratchDir::new("selfcheck");
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).expect("mkdir home");
    let db = strata::db::Database::open(&scratch.path().join("meta.db"))
        .expect("open metadata database");
    let snapshots = Snapshots::open(CopyDriver { home }, Arc::new(db)).expect("open");
    Some(Fixture {
        snapshotter: Box::new(snapshots),
        keep: Vec::new(),
        scratch,
    })
}

conformance_tests!(make);
