//! [`Snapshots`]: containerd's snapshotter semantics over any [`Driver`],
//! with records in the store's SQLite database. Every kernel step is
//! preceded by a committed record of the intent (`Creating`, `Committing`,
//! `Removing`) naming the session that runs it, so an operation whose
//! process died is found by the next one and [`Snapshots::repair`] can
//! finish or undo it, while operations of live processes are left alone.
//! The last record of a commit or a remove is written without an fsync
//! ([`Database::write_unsynced`]): if a power loss drops it, the durable
//! intent is still there and repair finishes the operation the same way.
//!
//! Each check-then-act (the key is free, the parent is committed, nothing
//! is based on the snapshot being removed) happens inside one write
//! transaction, so it holds across every process that opens the store.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use strata_driver_api::{
    failpoint, now_ns, CreateOptions, Driver, Error, Info, Kind, Labels, Mount, Result, SnapshotId,
    SnapshotKey, Target, Usage,
};

use super::reserve::SpaceReserve;
use super::{Filters, Snapshotter};
use crate::db::session::Session;
use crate::db::{Database, Txn};

const SNAPSHOTS: &str = "snapshots";
const COUNTERS: &str = "snapshot_counters";
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
    /// Session running the operation named by `state` (none when `Ready`).
    #[serde(default)]
    pub owner: Option<String>,
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
    /// The session that left it.
    pub owner: Option<String>,
}

/// containerd's snapshotter semantics for driver `D`.
pub struct Snapshots<D: Driver> {
    driver: D,
    db: Arc<Database>,
    /// This process's session; without one every half-done record counts
    /// as abandoned (single-process use: tests, benches).
    session: Option<Arc<Session>>,
    /// Space given back when a metadata write finds the disk full.
    reserve: Option<SpaceReserve>,
    /// Size of the reserve.
    reserve_bytes: u64,
}

fn record_in(txn: &Txn<'_>, key: &SnapshotKey) -> Result<Option<Record>> {
    Ok(txn.get_json(SNAPSHOTS, key.as_str())?)
}

fn is_ready(r: &Record) -> bool {
    r.state == State::Ready || r.state == State::Committing
}

/// Whether `key` is a committed snapshot (its commit done or being
/// finished) in the transaction `txn`: what an image record may name.
pub fn is_committed_in(txn: &Txn<'_>, key: &SnapshotKey) -> Result<bool> {
    Ok(record_in(txn, key)?.is_some_and(|r| r.kind == Kind::Committed && is_ready(&r)))
}

impl<D: Driver> Snapshots<D> {
    /// Wraps `driver`, keeping snapshot records in `db`.
    pub fn open(driver: D, db: Arc<Database>) -> Result<Self> {
        Ok(Self {
            driver,
            db,
            session: None,
            reserve: None,
            reserve_bytes: 0,
        })
    }

    /// Records `session` as the owner of this process's operations.
    pub fn with_session(mut self, session: Arc<Session>) -> Self {
        self.session = Some(session);
        self
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
            Some(r)
                if !r.is_present()
                    && !SpaceReserve::new(r.path().to_path_buf(), self.reserve_bytes)
                        .is_present() =>
            {
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
    /// reserve and tries once more (SQLite rolls a failed transaction back
    /// whole, so the retry starts clean).
    fn write<T>(&self, f: impl Fn(&Txn<'_>) -> Result<T>) -> Result<T> {
        match self.db.write(&f) {
            Err(e) if e.is_out_of_space() && self.release_reserve() => self.db.write(&f),
            other => other,
        }
    }

    /// [`Snapshots::write`] unsynced ([`Database::write_unsynced`]): for the
    /// last record of a commit or remove, which repair redoes when a power
    /// loss drops it.
    fn write_unsynced<T>(&self, f: impl Fn(&Txn<'_>) -> Result<T>) -> Result<T> {
        match self.db.write_unsynced(&f) {
            Err(e) if e.is_out_of_space() && self.release_reserve() => self.db.write_unsynced(&f),
            other => other,
        }
    }

    fn release_reserve(&self) -> bool {
        self.reserve.as_ref().is_some_and(|r| r.release())
    }

    fn owner(&self) -> Option<String> {
        self.session.as_ref().map(|s| s.id().to_owned())
    }

    /// Whether the session that owns `r`'s half-done operation is gone.
    fn abandoned(&self, r: &Record) -> bool {
        match (&self.session, &r.owner) {
            (Some(s), Some(owner)) => !s.is_alive(owner),
            _ => true,
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

    /// Every record, in key order.
    pub fn records(&self) -> Result<Vec<(SnapshotKey, Record)>> {
        self.db.read(|t| {
            Ok(t.scan_json::<Record>(SNAPSHOTS)?
                .into_iter()
                .map(|(k, r)| (SnapshotKey(k), r))
                .collect())
        })
    }

    fn get(&self, key: &SnapshotKey) -> Result<Option<Record>> {
        self.db.read(|t| record_in(t, key))
    }

    fn get_ready(&self, key: &SnapshotKey) -> Result<Record> {
        match self.get(key)? {
            Some(r) if is_ready(&r) => Ok(r),
            _ => Err(Error::NotFound(key.to_string())),
        }
    }

    fn put(&self, key: &SnapshotKey, record: &Record) -> Result<()> {
        self.write(|t| Ok(t.put_json(SNAPSHOTS, key.as_str(), record)?))
    }

    fn delete(&self, key: &SnapshotKey) -> Result<()> {
        self.write(|t| Ok(t.remove(SNAPSHOTS, key.as_str()).map(drop)?))
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
        labels: &Labels,
    ) -> Result<Record> {
        if key.as_str().is_empty() {
            return Err(Error::InvalidArgument("snapshot key is empty".into()));
        }
        self.write(|t| {
            if record_in(t, key)?.is_some() {
                return Err(Error::AlreadyExists(key.to_string()));
            }
            if let Some(p) = parent {
                let Some(parent_record) = record_in(t, p)? else {
                    return Err(Error::NotFound(format!("{p} (parent of {key})")));
                };
                if parent_record.kind != Kind::Committed || parent_record.state != State::Ready {
                    return Err(Error::FailedPrecondition(format!(
                        "parent {p} of {key} is {} and not a committed snapshot",
                        parent_record.kind
                    )));
                }
            }
            let id = t.get_json::<u64>(COUNTERS, NEXT_ID)?.unwrap_or(1);
            t.put_json(COUNTERS, NEXT_ID, &(id + 1))?;
            let now = now_ns();
            let record = Record {
                id: SnapshotId(id),
                kind,
                parent: parent.cloned(),
                labels: labels.clone(),
                created_ns: now,
                updated_ns: now,
                state: State::Creating,
                owner: self.owner(),
            };
            t.put_json(SNAPSHOTS, key.as_str(), &record)?;
            Ok(record)
        })
    }

    fn create(
        &self,
        key: &SnapshotKey,
        parent: Option<&SnapshotKey>,
        kind: Kind,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        let (options, labels) =
            CreateOptions::resolve(self.driver.name(), self.driver.limits_size(), labels)?;
        self.require_space_reserve(key)?;
        let mut record = self.reserve(key, parent, kind, &labels)?;
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
                record.owner = None;
                self.put(key, &record)?;
                Ok(mounts)
            }
            Err(e) => {
                if e.is_out_of_space() {
                    self.release_reserve();
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

    /// Half-done operations whose process is gone.
    pub fn incomplete(&self) -> Result<Vec<Incomplete>> {
        Ok(self.unfinished(&self.records()?, true))
    }

    /// Operations other live processes (or this one) are running now.
    pub fn in_progress(&self) -> Result<Vec<Incomplete>> {
        Ok(self.unfinished(&self.records()?, false))
    }

    /// The records of `records` left half-done, by dead processes
    /// (`abandoned`) or by live ones.
    fn unfinished(&self, records: &[(SnapshotKey, Record)], abandoned: bool) -> Vec<Incomplete> {
        records
            .iter()
            .filter(|(_, r)| r.state != State::Ready && self.abandoned(r) == abandoned)
            .map(|(key, r)| Incomplete {
                key: key.clone(),
                id: r.id,
                state: r.state,
                owner: r.owner.clone(),
            })
            .collect()
    }

    /// Takes over `item` for repair if it is still abandoned in the same
    /// state: returns its record, now owned by this session, or `None` when
    /// another process got there first.
    fn claim(&self, item: &Incomplete) -> Result<Option<Record>> {
        self.write(|t| {
            let Some(mut r) = record_in(t, &item.key)? else {
                return Ok(None);
            };
            if r.state != item.state || r.owner != item.owner || !self.abandoned(&r) {
                return Ok(None);
            }
            r.owner = self.owner();
            t.put_json(SNAPSHOTS, item.key.as_str(), &r)?;
            Ok(Some(r))
        })
    }

    /// Finishes (commit, remove) or undoes (create) every operation whose
    /// process died; returns what it did.
    pub fn repair(&self) -> Result<Vec<Incomplete>> {
        self.repair_among(&self.records()?)
    }

    /// [`Snapshots::repair`] for the half-done operations among `records`
    /// (read by the caller, who needs them for more than this).
    pub fn repair_among(&self, records: &[(SnapshotKey, Record)]) -> Result<Vec<Incomplete>> {
        let mut done = Vec::new();
        for item in self.unfinished(records, true) {
            let Some(mut record) = self.claim(&item)? else {
                continue;
            };
            match item.state {
                State::Ready => {}
                State::Creating | State::Removing => {
                    self.driver.remove(item.id)?;
                    self.delete(&item.key)?;
                }
                State::Committing => {
                    let parents = self.parent_chain(record.parent.as_ref())?;
                    self.driver.commit(Target {
                        id: record.id,
                        kind: Kind::Committed,
                        parents: &parents,
                    })?;
                    record.state = State::Ready;
                    record.owner = None;
                    self.put(&item.key, &record)?;
                }
            }
            done.push(item);
        }
        Ok(done)
    }

    /// Storage ids the driver holds that no record refers to. The driver is
    /// listed before the records are read: a record is written before its
    /// storage is made, so a snapshot being created is never taken for an
    /// orphan.
    pub fn orphans(&self) -> Result<Vec<SnapshotId>> {
        let mut ids = self.driver.stored_ids()?;
        let known: std::collections::HashSet<SnapshotId> =
            self.records()?.into_iter().map(|(_, r)| r.id).collect();
        ids.retain(|id| !known.contains(id));
        ids.sort();
        Ok(ids)
    }

    /// Removes the storage of `id` if it is still an orphan (no record
    /// names it, including one made since it was found).
    pub fn remove_orphan(&self, id: SnapshotId) -> Result<bool> {
        if self.records()?.iter().any(|(_, r)| r.id == id) {
            return Ok(false);
        }
        let next = self
            .db
            .read(|t| Ok::<_, Error>(t.get_json::<u64>(COUNTERS, NEXT_ID)?))?;
        if next.is_none_or(|next| id.0 >= next) {
            return Ok(false);
        }
        self.driver.remove(id)?;
        Ok(true)
    }

    /// [`Snapshotter::remove`], refused with what `still_needed` returns
    /// when it fails: it runs in the transaction that marks `key` Removing,
    /// so a reason to keep the snapshot recorded in another table of the
    /// store's database (an image naming a layer) holds across processes.
    pub fn remove_unless(
        &self,
        key: &SnapshotKey,
        still_needed: impl Fn(&Txn<'_>) -> Result<()>,
    ) -> Result<()> {
        let record = self.write(|t| {
            let mut record = match record_in(t, key)? {
                Some(r) if is_ready(&r) => r,
                _ => return Err(Error::NotFound(key.to_string())),
            };
            let children = t.count_snapshot_children(key.as_str())?;
            if children > 0 {
                return Err(Error::FailedPrecondition(format!(
                    "cannot remove snapshot {key}: {children} snapshot(s) are based on it"
                )));
            }
            still_needed(t)?;
            record.state = State::Removing;
            record.owner = self.owner();
            t.put_json(SNAPSHOTS, key.as_str(), &record)?;
            Ok(record)
        })?;
        failpoint("snapshots.remove.recorded");
        self.driver.remove(record.id)?;
        failpoint("snapshots.remove.stored");
        self.write_unsynced(|t| Ok(t.remove(SNAPSHOTS, key.as_str()).map(drop)?))
    }

    /// [`Snapshotter::remove`] of `key` only while its storage id is `id`
    /// (else FailedPrecondition, changing nothing): a repair found `key`
    /// broken, and another process may have removed it and made a new
    /// `key` since.
    pub fn remove_if_id(&self, key: &SnapshotKey, id: SnapshotId) -> Result<()> {
        self.remove_unless(key, |t| match record_in(t, key)? {
            Some(r) if r.id == id => Ok(()),
            _ => Err(Error::FailedPrecondition(format!(
                "snapshot {key} is no longer storage {id}: it was made again since"
            ))),
        })
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
        let committed = self.write(|t| {
            let active = match record_in(t, key)? {
                Some(r) if is_ready(&r) => r,
                _ => return Err(Error::NotFound(key.to_string())),
            };
            if active.kind != Kind::Active {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key} is {} and cannot be committed",
                    active.kind
                )));
            }
            if record_in(t, name)?.is_some() {
                return Err(Error::AlreadyExists(name.to_string()));
            }
            let now = now_ns();
            let committed = Record {
                kind: Kind::Committed,
                labels: if labels.is_empty() {
                    active.labels.clone()
                } else {
                    labels.clone()
                },
                created_ns: now,
                updated_ns: now,
                state: State::Committing,
                owner: self.owner(),
                ..active
            };
            t.remove(SNAPSHOTS, key.as_str())?;
            t.put_json(SNAPSHOTS, name.as_str(), &committed)?;
            Ok(committed)
        })?;
        failpoint("snapshots.commit.recorded");
        let parents = self.parent_chain(committed.parent.as_ref())?;
        self.driver.commit(Target {
            id: committed.id,
            kind: Kind::Committed,
            parents: &parents,
        })?;
        failpoint("snapshots.commit.stored");
        let ready = Record {
            state: State::Ready,
            owner: None,
            ..committed
        };
        self.write_unsynced(|t| Ok(t.put_json(SNAPSHOTS, name.as_str(), &ready)?))
    }

    fn remove(&self, key: &SnapshotKey) -> Result<()> {
        self.remove_unless(key, |_| Ok(()))
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
        let key = &info.name;
        self.write(|t| {
            let mut record = match record_in(t, key)? {
                Some(r) if is_ready(&r) => r,
                _ => return Err(Error::NotFound(key.to_string())),
            };
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
            t.put_json(SNAPSHOTS, key.as_str(), &record)?;
            Ok(Self::info(key, &record))
        })
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
            .filter(|(_, r)| is_ready(r))
            .map(|(k, r)| Self::info(k, r))
            .filter(|i| filters.matches(i))
            .collect();
        for info in &infos {
            visit(info)?;
        }
        Ok(())
    }

    fn cleanup(&self) -> Result<()> {
        for id in self.orphans()? {
            self.remove_orphan(id)?;
        }
        Ok(())
    }
}
