//! [`Snapshots`]: containerd's snapshotter semantics over any [`Driver`],
//! with a transactional redb metadata store. Every kernel step is preceded
//! by a committed record of the intent (`Creating`, `Committing`,
//! `Removing`), so an operation that dies half-way is found on the next
//! open and [`Snapshots::repair`] can finish or undo it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::reserve::{is_out_of_space, mentions_out_of_space, SpaceReserve};
use crate::{
    failpoint, now_ns, CreateOptions, Driver, Error, Filters, Info, Kind, Labels, Mount, Result,
    SnapshotId, SnapshotKey, Snapshotter, Target, Usage,
};

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("snapshot_counters");
const NEXT_ID: &str = "next_id";

/// Where a snapshot's storage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Storage complete.
    Ready,
    /// Intent recorded, storage being created (undo: remove it).
    Creating,
    /// Renamed to its committed name, storage being made read-only (finish: commit).
    Committing,
    /// Storage being deleted (finish: delete it).
    Removing,
}

/// One stored snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Storage id handed to the driver.
    pub id: SnapshotId,
    /// Active, view or committed.
    pub kind: Kind,
    /// Committed parent.
    pub parent: Option<SnapshotKey>,
    /// User labels.
    pub labels: Labels,
    /// Creation time, ns.
    pub created_ns: u64,
    /// Last update, ns.
    pub updated_ns: u64,
    /// Crash bookkeeping.
    pub state: State,
}

/// An operation found half-done, and what repair did about it.
#[derive(Debug, Clone, Serialize)]
pub struct Incomplete {
    /// Snapshot key or name.
    pub key: SnapshotKey,
    /// Storage id.
    pub id: SnapshotId,
    /// The state it was left in.
    pub state: State,
}

/// containerd's snapshotter semantics for driver `D`.
pub struct Snapshots<D: Driver> {
    driver: D,
    db: Arc<Database>,
    /// Serialises mutating operations of this process (redb serialises
    /// transactions, but check-then-act spans a driver call).
    write_lock: Mutex<()>,
    /// Space given back when a metadata write finds the disk full.
    reserve: Option<SpaceReserve>,
    /// Size of the reserve.
    reserve_bytes: u64,
}

fn meta_err(e: impl std::fmt::Display) -> Error {
    Error::Metadata(e.to_string())
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Metadata(format!("record of snapshot {key}: {e}")))
}

fn encode(record: &Record) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(meta_err)
}

impl<D: Driver> Snapshots<D> {
    /// Wraps `driver`, keeping snapshot records in `db`.
    pub fn open(driver: D, db: Arc<Database>) -> Result<Self> {
        let txn = db.begin_write().map_err(meta_err)?;
        txn.open_table(SNAPSHOTS).map_err(meta_err)?;
        txn.open_table(COUNTERS).map_err(meta_err)?;
        txn.commit().map_err(meta_err)?;
        Ok(Self {
            driver,
            db,
            write_lock: Mutex::new(()),
            reserve: None,
            reserve_bytes: 0,
        })
    }

    /// Keeps `bytes` of disk at `path` for metadata writes that find the
    /// disk full (the file is made now if there is room).
    pub fn with_space_reserve(mut self, path: PathBuf, bytes: u64) -> Self {
        self.reserve = Some(SpaceReserve::new(path, bytes));
        self.reserve_bytes = bytes;
        self
    }

    /// Refuses to create `key` while the space reserve is used up: the disk
    /// is (nearly) full and a failure could not be recorded.
    fn require_space_reserve(&self, key: &SnapshotKey) -> Result<()> {
        match &self.reserve {
            Some(r) if !r.is_present() && !SpaceReserve::new(r.path().to_path_buf(), self.reserve_bytes).is_present() => {
                Err(Error::io(
                    "create snapshot",
                    r.path(),
                    std::io::Error::other(format!(
                        "disk full: no room to keep {} MiB for metadata, so {key} was not created; free some space",
                        self.reserve_bytes >> 20
                    )),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Runs a metadata write; if the disk is full, releases the space
    /// reserve and tries once more. The retry only helps when redb failed
    /// before writing anything: a write that failed half-way leaves the
    /// handle refusing writes until reopened, so a caller that already knows
    /// the disk is full releases the reserve first.
    fn write_retrying(&self, write: impl Fn() -> Result<()>) -> Result<()> {
        match write() {
            Err(e) if is_out_of_space(&e) && self.reserve.as_ref().is_some_and(|r| r.release()) => {
                write()
            }
            other => other,
        }
    }

    /// The driver underneath.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The shared metadata database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every record, in key order.
    pub fn records(&self) -> Result<Vec<(SnapshotKey, Record)>> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let table = txn.open_table(SNAPSHOTS).map_err(meta_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(meta_err)? {
            let (k, v) = entry.map_err(meta_err)?;
            out.push((SnapshotKey::from(k.value()), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    fn get(&self, key: &SnapshotKey) -> Result<Option<Record>> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let table = txn.open_table(SNAPSHOTS).map_err(meta_err)?;
        let value = table.get(key.as_str()).map_err(meta_err)?;
        value.map(|v| decode(key.as_str(), v.value())).transpose()
    }

    fn get_ready(&self, key: &SnapshotKey) -> Result<Record> {
        match self.get(key)? {
            Some(r) if r.state == State::Ready || r.state == State::Committing => Ok(r),
            _ => Err(Error::NotFound(key.to_string())),
        }
    }

    fn put(&self, key: &SnapshotKey, record: &Record) -> Result<()> {
        let bytes = encode(record)?;
        self.write_retrying(|| {
            let txn = self.db.begin_write().map_err(meta_err)?;
            {
                let mut table = txn.open_table(SNAPSHOTS).map_err(meta_err)?;
                table
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(meta_err)?;
            }
            txn.commit().map_err(meta_err)
        })
    }

    fn delete(&self, key: &SnapshotKey) -> Result<()> {
        self.write_retrying(|| {
            let txn = self.db.begin_write().map_err(meta_err)?;
            {
                let mut table = txn.open_table(SNAPSHOTS).map_err(meta_err)?;
                table.remove(key.as_str()).map_err(meta_err)?;
            }
            txn.commit().map_err(meta_err)
        })
    }

    /// Ids of the committed ancestors of `parent` (itself first).
    fn parent_chain(&self, parent: Option<&SnapshotKey>) -> Result<Vec<SnapshotId>> {
        let mut chain = Vec::new();
        let mut next = parent.cloned();
        while let Some(key) = next {
            let record = self.get_ready(&key)?;
            chain.push(record.id);
            next = record.parent;
        }
        Ok(chain)
    }

    fn info(key: &SnapshotKey, r: &Record) -> Info {
        Info {
            name: key.clone(),
            parent: r.parent.clone(),
            kind: r.kind,
            labels: r.labels.clone(),
            created_ns: r.created_ns,
            updated_ns: r.updated_ns,
        }
    }

    /// Records the intent to create `key` and allocates its id, in one transaction.
    fn reserve(
        &self,
        key: &SnapshotKey,
        parent: Option<&SnapshotKey>,
        kind: Kind,
        labels: Labels,
    ) -> Result<Record> {
        if key.as_str().is_empty() {
            return Err(Error::InvalidArgument("snapshot key is empty".into()));
        }
        let txn = self.db.begin_write().map_err(meta_err)?;
        let record = {
            let mut table = txn.open_table(SNAPSHOTS).map_err(meta_err)?;
            if table.get(key.as_str()).map_err(meta_err)?.is_some() {
                return Err(Error::AlreadyExists(key.to_string()));
            }
            if let Some(p) = parent {
                let value = table.get(p.as_str()).map_err(meta_err)?;
                let Some(value) = value else {
                    return Err(Error::NotFound(format!("{p} (parent of {key})")));
                };
                let parent_record = decode(p.as_str(), value.value())?;
                if parent_record.kind != Kind::Committed || parent_record.state != State::Ready {
                    return Err(Error::FailedPrecondition(format!(
                        "parent {p} of {key} is {} and not a committed snapshot",
                        parent_record.kind
                    )));
                }
            }
            let mut counters = txn.open_table(COUNTERS).map_err(meta_err)?;
            let id = counters
                .get(NEXT_ID)
                .map_err(meta_err)?
                .map(|v| v.value())
                .unwrap_or(1);
            counters.insert(NEXT_ID, id + 1).map_err(meta_err)?;
            let now = now_ns();
            let record = Record {
                id: SnapshotId(id),
                kind,
                parent: parent.cloned(),
                labels,
                created_ns: now,
                updated_ns: now,
                state: State::Creating,
            };
            table
                .insert(key.as_str(), encode(&record)?.as_slice())
                .map_err(meta_err)?;
            record
        };
        txn.commit().map_err(meta_err)?;
        Ok(record)
    }

    fn create(
        &self,
        key: &SnapshotKey,
        parent: Option<&SnapshotKey>,
        kind: Kind,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        let options = CreateOptions::from_labels(&labels)?;
        let _guard = self.lock();
        self.require_space_reserve(key)?;
        let mut record = self.reserve(key, parent, kind, labels)?;
        failpoint("snapshots.create.recorded");
        let parents = self.parent_chain(parent)?;
        let target = Target {
            id: record.id,
            kind,
            parents: &parents,
        };
        let made = self
            .driver
            .create(target, &options)
            .and_then(|()| self.driver.mounts(target));
        match made {
            Ok(mounts) => {
                failpoint("snapshots.create.stored");
                record.state = State::Ready;
                self.put(key, &record)?;
                Ok(mounts)
            }
            Err(e) => {
                // A metadata write that hits ENOSPC poisons the database
                // handle, so the retry in `write_retrying` would come too
                // late: give the space back before the rollback writes.
                if mentions_out_of_space(&e) {
                    if let Some(reserve) = &self.reserve {
                        reserve.release();
                    }
                }
                let rollback = self
                    .driver
                    .remove(record.id)
                    .and_then(|()| self.delete(key));
                if let Err(r) = rollback {
                    tracing::error!(%key, error = %r, "rollback of failed create left record for check --repair");
                }
                Err(e)
            }
        }
    }

    /// Records stuck half-way through an operation.
    pub fn incomplete(&self) -> Result<Vec<Incomplete>> {
        Ok(self
            .records()?
            .into_iter()
            .filter(|(_, r)| r.state != State::Ready)
            .map(|(key, r)| Incomplete {
                key,
                id: r.id,
                state: r.state,
            })
            .collect())
    }

    /// Finishes (commit, remove) or undoes (create) every half-done operation.
    pub fn repair(&self) -> Result<Vec<Incomplete>> {
        let _guard = self.lock();
        let stuck = self.incomplete()?;
        for item in &stuck {
            match item.state {
                State::Ready => {}
                State::Creating | State::Removing => {
                    self.driver.remove(item.id)?;
                    self.delete(&item.key)?;
                }
                State::Committing => {
                    let mut record = self
                        .get(&item.key)?
                        .ok_or_else(|| Error::NotFound(item.key.to_string()))?;
                    let parents = self.parent_chain(record.parent.as_ref())?;
                    self.driver.commit(Target {
                        id: record.id,
                        kind: Kind::Committed,
                        parents: &parents,
                    })?;
                    record.state = State::Ready;
                    self.put(&item.key, &record)?;
                }
            }
        }
        Ok(stuck)
    }

    /// Storage ids the driver holds that no record refers to.
    pub fn orphans(&self) -> Result<Vec<SnapshotId>> {
        let known: std::collections::HashSet<SnapshotId> =
            self.records()?.into_iter().map(|(_, r)| r.id).collect();
        let mut ids: Vec<SnapshotId> = self
            .driver
            .stored_ids()?
            .into_iter()
            .filter(|id| !known.contains(id))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The storage id of `key`.
    pub fn id_of(&self, key: &SnapshotKey) -> Result<SnapshotId> {
        Ok(self.get_ready(key)?.id)
    }

    /// Ids of `key` and its ancestors, nearest first (`key` first).
    pub fn chain_of(&self, key: &SnapshotKey) -> Result<Vec<SnapshotId>> {
        self.parent_chain(Some(key))
    }
}

impl<D: Driver> Snapshotter for Snapshots<D> {
    fn prepare(
        &self,
        key: &SnapshotKey,
        parent: Option<&SnapshotKey>,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active, labels)
    }

    fn view(
        &self,
        key: &SnapshotKey,
        parent: Option<&SnapshotKey>,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View, labels)
    }

    fn commit(&self, name: &SnapshotKey, key: &SnapshotKey, labels: Labels) -> Result<()> {
        let _guard = self.lock();
        let active = self.get_ready(key)?;
        if active.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key} is {} and cannot be committed",
                active.kind
            )));
        }
        let now = now_ns();
        let committed = Record {
            kind: Kind::Committed,
            labels: if labels.is_empty() {
                active.labels.clone()
            } else {
                labels
            },
            created_ns: now,
            updated_ns: now,
            state: State::Committing,
            ..active.clone()
        };
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            let mut table = txn.open_table(SNAPSHOTS).map_err(meta_err)?;
            if table.get(name.as_str()).map_err(meta_err)?.is_some() {
                return Err(Error::AlreadyExists(name.to_string()));
            }
            table.remove(key.as_str()).map_err(meta_err)?;
            table
                .insert(name.as_str(), encode(&committed)?.as_slice())
                .map_err(meta_err)?;
        }
        txn.commit().map_err(meta_err)?;
        failpoint("snapshots.commit.recorded");
        let parents = self.parent_chain(committed.parent.as_ref())?;
        self.driver.commit(Target {
            id: committed.id,
            kind: Kind::Committed,
            parents: &parents,
        })?;
        failpoint("snapshots.commit.stored");
        self.put(
            name,
            &Record {
                state: State::Ready,
                ..committed
            },
        )
    }

    fn remove(&self, key: &SnapshotKey) -> Result<()> {
        let _guard = self.lock();
        let mut record = self.get_ready(key)?;
        let children = self
            .records()?
            .into_iter()
            .filter(|(_, r)| r.parent.as_ref() == Some(key))
            .count();
        if children > 0 {
            return Err(Error::FailedPrecondition(format!(
                "cannot remove snapshot {key}: {children} snapshot(s) are based on it"
            )));
        }
        record.state = State::Removing;
        self.put(key, &record)?;
        failpoint("snapshots.remove.recorded");
        self.driver.remove(record.id)?;
        failpoint("snapshots.remove.stored");
        self.delete(key)
    }

    fn mounts(&self, key: &SnapshotKey) -> Result<Vec<Mount>> {
        let record = self.get_ready(key)?;
        let parents = self.parent_chain(record.parent.as_ref())?;
        self.driver.mounts(Target {
            id: record.id,
            kind: record.kind,
            parents: &parents,
        })
    }

    fn stat(&self, key: &SnapshotKey) -> Result<Info> {
        Ok(Self::info(key, &self.get_ready(key)?))
    }

    fn update(&self, info: &Info, fieldpaths: &[String]) -> Result<Info> {
        let _guard = self.lock();
        let key = &info.name;
        let mut record = self.get_ready(key)?;
        if fieldpaths.is_empty() {
            record.labels = info.labels.clone();
        }
        for path in fieldpaths {
            if path == "labels" {
                record.labels = info.labels.clone();
            } else if let Some(label) = path.strip_prefix("labels.") {
                match info.labels.get(label) {
                    Some(v) => record.labels.insert(label.to_owned(), v.clone()),
                    None => record.labels.remove(label),
                };
            } else {
                return Err(Error::InvalidArgument(format!(
                    "cannot update field {path:?} of snapshot {key}: only labels can change"
                )));
            }
        }
        record.updated_ns = now_ns().max(record.updated_ns + 1);
        self.put(key, &record)?;
        Ok(Self::info(key, &record))
    }

    fn usage(&self, key: &SnapshotKey) -> Result<Usage> {
        let record = self.get_ready(key)?;
        let parents = self.parent_chain(record.parent.as_ref())?;
        self.driver.usage(Target {
            id: record.id,
            kind: record.kind,
            parents: &parents,
        })
    }

    fn walk(&self, filters: &[String], visit: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()> {
        let filters = Filters::parse(filters)?;
        let infos: Vec<Info> = self
            .records()?
            .iter()
            .filter(|(_, r)| matches!(r.state, State::Ready | State::Committing))
            .map(|(k, r)| Self::info(k, r))
            .filter(|i| filters.matches(i))
            .collect();
        for info in &infos {
            visit(info)?;
        }
        Ok(())
    }

    fn cleanup(&self) -> Result<()> {
        let _guard = self.lock();
        for id in self.orphans()? {
            self.driver.remove(id)?;
        }
        Ok(())
    }
}
