//! The driver's own crash-safe records in `<home>`: one JSON file per thin
//! device, written (fsync + rename) before each pool metadata step, and
//! the pool-wide record (`pool.json`).
//!
//! A device record's name says where the thin device is in its life:
//! `devices/<id>.creating` before its create step, `devices/<id>.json` once
//! made, `devices/<id>.removing` before its delete step. Moving between
//! them is a rename of a file whose content is durable already, so it
//! costs one directory fsync instead of a rewrite.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{record_err, Result};
use crate::units::{Sectors, ThinDevId};

/// Where a thin device is in its life. Each state is recorded before the
/// kernel step it names, so after a crash the record says what may be
/// half-done.
///
/// Only the thin device's life in the pool metadata is recorded: whether
/// its device-mapper device is live is the kernel's to say (the device is
/// named after the snapshot and vanishes on reboot). `Activating`,
/// `Active` and `Deactivating` are still read, from records written by
/// earlier versions, and mean `Created` once the driver has opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevState {
    /// `create_snap`/`create_thin` may or may not have happened.
    Creating,
    /// The thin device exists in the pool; its device-mapper device may be
    /// live or not.
    Created,
    /// Earlier versions: a device-mapper device may be half set up.
    Activating,
    /// Earlier versions: the device-mapper device is live.
    Active,
    /// Earlier versions: the device-mapper device is being removed.
    Deactivating,
    /// The device-mapper device and the thin device are being deleted.
    Removing,
}

/// What the driver knows about one thin device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Snapshot id (`0` is never used; the base device has its own record).
    pub id: u64,
    /// Thin device id in the pool.
    pub thin_id: ThinDevId,
    /// Thin id of the origin it was snapshotted from.
    pub origin: Option<ThinDevId>,
    /// Virtual size in bytes.
    pub size: u64,
    /// Life-cycle state.
    pub state: DevState,
    /// Read-only (view or committed).
    pub read_only: bool,
    /// Mapped sectors when it was committed (its table is gone afterwards).
    pub mapped_sectors: Option<Sectors>,
    /// Inodes its filesystem used when it was committed (absent in records
    /// written before inodes were counted).
    #[serde(default)]
    pub inodes: Option<u64>,
    /// The pool's transaction id once this record's metadata step (create
    /// or delete) is done, recorded before the step (absent in records
    /// written before device records carried it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<u64>,
}

/// Pool-wide record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    /// A transaction id the pool is known to have reached: written with the
    /// base device's steps and when the driver raises a pool that lost
    /// steps. Later steps record theirs in device records only.
    pub transaction_id: u64,
    /// Whether the base device exists and holds a filesystem.
    pub base_ready: bool,
    /// Whether the base device's thin id may exist (creation started).
    pub base_started: bool,
    /// Mapped sectors of the base device after mkfs.
    #[serde(default)]
    pub base_mapped_sectors: Sectors,
}

/// Record files under `<home>`.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
    pool: PathBuf,
}

/// Name ending of a made device's record.
const MADE: &str = "json";
/// Name ending of a record written before the create step.
const CREATING: &str = "creating";
/// Name ending of a record renamed before the delete step.
const REMOVING: &str = "removing";

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| record_err(dir, e))
}

fn read_record(path: &Path) -> Result<Option<DeviceRecord>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| record_err(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(record_err(path, e)),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| record_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| record_err(&tmp, e))?;
    f.sync_all().map_err(|e| record_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| record_err(path, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

impl Records {
    /// Opens (creating) the record directory in `home`.
    pub fn open(home: &Path) -> Result<Self> {
        let dir = home.join("devices");
        fs::create_dir_all(&dir).map_err(|e| record_err(&dir, e))?;
        Ok(Self {
            dir,
            pool: home.join("pool.json"),
        })
    }

    fn path(&self, id: u64, ending: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ending}"))
    }

    /// The record of snapshot `id`, if any; its state is `Creating` or
    /// `Removing` when its name says so.
    pub fn get(&self, id: u64) -> Result<Option<DeviceRecord>> {
        let named = [
            (MADE, None),
            (CREATING, Some(DevState::Creating)),
            (REMOVING, Some(DevState::Removing)),
        ];
        for (ending, state) in named {
            if let Some(mut rec) = read_record(&self.path(id, ending))? {
                if let Some(state) = state {
                    rec.state = state;
                }
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    fn write(&self, rec: &DeviceRecord, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| record_err(path, e))?;
        write_atomic(path, &bytes)
    }

    /// Writes `rec` durably as `<id>.json`.
    pub fn put(&self, rec: &DeviceRecord) -> Result<()> {
        self.write(rec, &self.path(rec.id, MADE))
    }

    /// Sets the state of `rec` and writes it as `<id>.json`.
    pub fn set(&self, rec: &mut DeviceRecord, state: DevState) -> Result<()> {
        rec.state = state;
        self.put(rec)
    }

    /// Writes `rec` durably as `<id>.creating`, in state `Creating`; its
    /// content already says `Created`, for [`Records::finish_create`].
    pub fn put_creating(&self, rec: &mut DeviceRecord) -> Result<()> {
        let made = DeviceRecord {
            state: DevState::Created,
            ..rec.clone()
        };
        self.write(&made, &self.path(rec.id, CREATING))?;
        rec.state = DevState::Creating;
        Ok(())
    }

    /// Moves `rec` from `Creating` to `Created` durably: renames
    /// `<id>.creating` to `<id>.json`.
    pub fn finish_create(&self, rec: &mut DeviceRecord) -> Result<()> {
        self.rename_durably(rec.id, CREATING, MADE)?;
        rec.state = DevState::Created;
        Ok(())
    }

    /// Moves `rec` to `Removing` durably: renames its record to
    /// `<id>.removing` (written anew when it has no record file).
    pub fn begin_remove(&self, rec: &mut DeviceRecord) -> Result<()> {
        let to = self.path(rec.id, REMOVING);
        let mut renamed = false;
        for from in [MADE, CREATING].map(|ending| self.path(rec.id, ending)) {
            match fs::rename(&from, &to) {
                Ok(()) => {
                    renamed = true;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(record_err(&from, e)),
            }
        }
        if renamed {
            sync_dir(&self.dir)?;
        } else if !to.exists() {
            self.write(rec, &to)?;
        }
        rec.state = DevState::Removing;
        Ok(())
    }

    fn rename_durably(&self, id: u64, from: &str, to: &str) -> Result<()> {
        let (from, to) = (self.path(id, from), self.path(id, to));
        fs::rename(&from, &to).map_err(|e| record_err(&from, e))?;
        sync_dir(&self.dir)
    }

    /// Deletes the record of `id`, whatever its name (missing is fine).
    pub fn delete(&self, id: u64) -> Result<()> {
        for ending in [REMOVING, MADE, CREATING] {
            let path = self.path(id, ending);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(record_err(&path, e)),
            }
        }
        Ok(())
    }

    /// Every device record.
    pub fn all(&self) -> Result<Vec<DeviceRecord>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| record_err(&self.dir, e))? {
            let entry = entry.map_err(|e| record_err(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = [MADE, CREATING, REMOVING].iter().find_map(|ending| {
                name.strip_suffix(ending)?
                    .strip_suffix('.')?
                    .parse::<u64>()
                    .ok()
            });
            ids.extend(id);
        }
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.get(id)?);
        }
        Ok(out)
    }

    /// The pool record (default when missing).
    pub fn pool(&self) -> Result<PoolRecord> {
        match fs::read(&self.pool) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| record_err(&self.pool, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PoolRecord::default()),
            Err(e) => Err(record_err(&self.pool, e)),
        }
    }

    /// Writes the pool record durably.
    pub fn put_pool(&self, rec: &PoolRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| record_err(&self.pool, e))?;
        write_atomic(&self.pool, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::thin_dev_id;

    #[test]
    fn records_round_trip() {
        let dir = std::env::temp_dir().join(format!("strata-dm-records-{}", std::process::id()));
        let records = Records::open(&dir).expect("open");
        let mut rec = DeviceRecord {
            id: 7,
            thin_id: thin_dev_id(8).expect("thin id"),
            origin: Some(thin_dev_id(0).expect("thin id")),
            size: 1 << 30,
            state: DevState::Creating,
            read_only: false,
            mapped_sectors: None,
            inodes: None,
            transaction_id: Some(4),
        };
        records.put_creating(&mut rec).expect("put creating");
        assert_eq!(records.get(7).expect("get"), Some(rec.clone()));
        records.finish_create(&mut rec).expect("finish create");
        assert_eq!(rec.state, DevState::Created);
        assert_eq!(records.get(7).expect("get"), Some(rec.clone()));
        records.set(&mut rec, DevState::Created).expect("set");
        assert_eq!(records.all().expect("all"), vec![rec.clone()]);
        records.begin_remove(&mut rec).expect("begin remove");
        assert_eq!(records.get(7).expect("get"), Some(rec.clone()));
        assert_eq!(records.all().expect("all"), vec![rec.clone()]);
        records.delete(7).expect("delete");
        records.delete(7).expect("delete twice");
        assert_eq!(records.get(7).expect("get"), None);
        let pool = PoolRecord {
            transaction_id: 3,
            base_ready: true,
            base_started: true,
            base_mapped_sectors: Sectors(128),
        };
        records.put_pool(&pool).expect("put pool");
        assert_eq!(records.pool().expect("pool"), pool);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
