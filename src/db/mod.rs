//! The metadata database: SQLite in WAL mode, so any number of processes
//! open the same store at once. Readers never wait; a writer waits only
//! for another process's write transaction (milliseconds), never for its
//! whole command. Records are JSON values in named tables of one key/value
//! relation, so callers keep the shape they had with a key/value store.
//!
//! Every transaction runs in a closure: it commits when the closure returns
//! `Ok` and rolls back otherwise, so a check-then-act sequence inside one
//! closure is atomic across processes.
//!
//! [`session`] names the process behind each recorded intent.

pub mod session;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{ffi, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

/// How long a writer waits for another process's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The table of snapshot records, whose `parent` field is indexed.
const SNAPSHOTS: &str = "snapshots";

/// The `parent` field of a record as SQL (NULL when the value is not JSON),
/// the expression the `snapshot_parents` index is built on: a query must
/// use it verbatim to use the index.
const PARENT_FIELD: &str = "(CASE WHEN json_valid(CAST(value AS TEXT)) \
     THEN json_extract(CAST(value AS TEXT), '$.parent') END)";

/// A failure of the metadata database, with the database file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused or failed an operation.
    #[error("{op} {path}: {source}")]
    Sqlite {
        /// What was being done.
        op: &'static str,
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored record could not be decoded.
    #[error("record {what} in {table}: {source}")]
    Decode {
        /// The table.
        table: &'static str,
        /// The record's key.
        what: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

impl From<DbError> for strata_driver_api::Error {
    /// A database failure as a snapshot operation's error, keeping the typed
    /// source and whether the disk was full.
    fn from(e: DbError) -> Self {
        strata_driver_api::Error::Metadata {
            out_of_space: e.is_out_of_space(),
            source: Box::new(e),
        }
    }
}

impl DbError {
    /// Whether the failure is the disk (or its quota) being full.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            DbError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => e.code == ffi::ErrorCode::DiskFull,
            _ => false,
        }
    }

    /// Whether another process held the database longer than the busy timeout.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            DbError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if e.code == ffi::ErrorCode::DatabaseBusy || e.code == ffi::ErrorCode::DatabaseLocked
        )
    }
}

/// Result alias for database calls.
pub type DbResult<T> = std::result::Result<T, DbError>;

/// The store's metadata database.
pub struct Database {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish()
    }
}

impl Database {
    /// Opens (creating if needed) the database at `path`, readable by root
    /// only.
    pub fn open(path: &Path) -> DbResult<Self> {
        let sqlite = |op| {
            let path = path.to_path_buf();
            move |source| DbError::Sqlite { op, path, source }
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite("open"))?;
        restrict_to_owner(path);
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite("set busy timeout on"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite("enable WAL on"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite("set synchronous on"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (
                tbl TEXT NOT NULL,
                key TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (tbl, key)
            ) WITHOUT ROWID;",
        )
        .map_err(sqlite("create tables in"))?;
        // Removing a snapshot counts its children: without this index that
        // decoded every record (a store of 10,000 snapshots took ~10x longer).
        conn.execute_batch(&format!(
            "CREATE INDEX IF NOT EXISTS snapshot_parents ON records {PARENT_FIELD} \
             WHERE tbl = '{SNAPSHOTS}';"
        ))
        .map_err(sqlite("create indexes in"))?;
        for side in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(side);
            restrict_to_owner(Path::new(&p));
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a read transaction (a consistent snapshot; never waits
    /// for writers).
    pub fn read<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Txn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self.connection();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|source| self.err("begin read on", source))?;
        let out = f(&Txn {
            tx: &tx,
            path: &self.path,
        })?;
        tx.finish()
            .map_err(|source| self.err("end read on", source))?;
        Ok(out)
    }

    /// Runs `f` in a write transaction: committed when `f` returns `Ok`,
    /// rolled back otherwise. Other processes' writers wait for it.
    pub fn write<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Txn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.write_on(&mut self.connection(), f)
    }

    fn write_on<T, E: From<DbError>>(
        &self,
        conn: &mut Connection,
        f: impl FnOnce(&Txn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| self.err("begin write on", source))?;
        let out = f(&Txn {
            tx: &tx,
            path: &self.path,
        })?;
        tx.commit()
            .map_err(|source| self.err("commit to", source))?;
        Ok(out)
    }

    /// [`Database::write`] without waiting for the disk: the commit
    /// survives this process dying at once, but a power loss may drop it
    /// (with later unsynced ones; never an earlier synced one, and the next
    /// synced write makes it durable too). Only for a write that finishes an
    /// operation whose intent is already durable and which repair finishes
    /// the same way when the write is lost: the last record of a commit or
    /// a remove. Saves one fsync.
    pub fn write_unsynced<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Txn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut conn = self.connection();
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|source| self.err("relax synchronous on", source))?;
        let out = self.write_on(&mut conn, f);
        let restored = conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|source| self.err("set synchronous on", source));
        let out = out?;
        restored?;
        Ok(out)
    }

    fn err(&self, op: &'static str, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            op,
            path: self.path.clone(),
            source,
        }
    }
}

/// Makes a database file root-only; a file not made yet is skipped.
fn restrict_to_owner(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot make the database root-only");
        }
    }
}

/// One transaction: named tables of string keys and byte values.
pub struct Txn<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    path: &'a Path,
}

impl Txn<'_> {
    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> DbError + '_ {
        move |source| DbError::Sqlite {
            op,
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// The value of `key` in `table`.
    pub fn get(&self, table: &str, key: &str) -> DbResult<Option<Vec<u8>>> {
        self.tx
            .prepare_cached("SELECT value FROM records WHERE tbl = ?1 AND key = ?2")
            .and_then(|mut s| s.query_row((table, key), |row| row.get(0)).optional())
            .map_err(self.err("read from"))
    }

    /// Sets `key` in `table`.
    pub fn put(&self, table: &str, key: &str, value: &[u8]) -> DbResult<()> {
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO records (tbl, key, value) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute((table, key, value)))
            .map(drop)
            .map_err(self.err("write to"))
    }

    /// Removes `key` from `table`; whether it was there.
    pub fn remove(&self, table: &str, key: &str) -> DbResult<bool> {
        self.tx
            .prepare_cached("DELETE FROM records WHERE tbl = ?1 AND key = ?2")
            .and_then(|mut s| s.execute((table, key)))
            .map(|n| n > 0)
            .map_err(self.err("delete from"))
    }

    /// Every entry of `table`, in key order.
    pub fn scan(&self, table: &str) -> DbResult<Vec<(String, Vec<u8>)>> {
        self.tx
            .prepare_cached("SELECT key, value FROM records WHERE tbl = ?1 ORDER BY key")
            .and_then(|mut s| {
                s.query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(self.err("scan"))
    }

    /// How many records of the `snapshots` table name `parent` as their
    /// JSON `parent` field (by index, without reading the others).
    pub fn count_snapshot_children(&self, parent: &str) -> DbResult<u64> {
        self.tx
            .prepare_cached(&format!(
                "SELECT count(*) FROM records WHERE tbl = '{SNAPSHOTS}' AND {PARENT_FIELD} = ?1"
            ))
            .and_then(|mut s| s.query_row([parent], |row| row.get(0)))
            .map_err(self.err("count children in"))
    }

    /// The JSON record at `key`, decoded.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
    ) -> DbResult<Option<T>> {
        self.get(table, key)?
            .map(|bytes| decode(table, key, &bytes))
            .transpose()
    }

    /// Stores `value` as JSON at `key`.
    pub fn put_json<T: serde::Serialize>(
        &self,
        table: &'static str,
        key: &str,
        value: &T,
    ) -> DbResult<()> {
        let bytes = serde_json::to_vec(value).map_err(|source| DbError::Decode {
            table,
            what: key.to_owned(),
            source,
        })?;
        self.put(table, key, &bytes)
    }

    /// Every record of `table`, decoded, in key order.
    pub fn scan_json<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
    ) -> DbResult<Vec<(String, T)>> {
        self.scan(table)?
            .into_iter()
            .map(|(k, v)| decode(table, &k, &v).map(|t| (k, t)))
            .collect()
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> DbResult<T> {
    serde_json::from_slice(bytes).map_err(|source| DbError::Decode {
        table,
        what: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(db: &Database) -> i64 {
        db.connection()
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap()
    }

    /// An unsynced write commits like any other (another handle sees it, a
    /// failed one rolls back) and leaves the connection synchronous again
    /// (FULL is 2), whether it succeeded or not.
    #[test]
    fn an_unsynced_write_commits_and_later_writes_are_synced_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let a = Database::open(&path).unwrap();
        let b = Database::open(&path).unwrap();
        assert_eq!(synchronous(&a), 2);
        a.write_unsynced(|t| t.put("t", "k", b"1")).unwrap();
        assert_eq!(synchronous(&a), 2);
        assert_eq!(b.read(|t| t.get("t", "k")).unwrap(), Some(b"1".to_vec()));
        let failed: DbResult<()> = a.write_unsynced(|t| {
            t.put("t", "k", b"2")?;
            Err(DbError::Decode {
                table: "t",
                what: "k".into(),
                source: serde_json::from_str::<u8>("x").unwrap_err(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(synchronous(&a), 2);
        assert_eq!(b.read(|t| t.get("t", "k")).unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn a_failed_write_rolls_back_and_two_handles_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let a = Database::open(&path).unwrap();
        let b = Database::open(&path).unwrap();
        a.write(|t| t.put("t", "k", b"1")).unwrap();
        let failed: DbResult<()> = a.write(|t| {
            t.put("t", "k", b"2")?;
            t.put("t", "j", b"3")?;
            Err(DbError::Decode {
                table: "t",
                what: "k".into(),
                source: serde_json::from_str::<u8>("x").unwrap_err(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(b.read(|t| t.get("t", "k")).unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.read(|t| t.get("t", "j")).unwrap(), None);
        assert!(b.write(|t| t.remove("t", "k")).unwrap());
        assert_eq!(a.read(|t| t.scan("t")).unwrap(), vec![]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn snapshot_children_are_counted_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("meta.db")).unwrap();
        db.write(|t| {
            t.put(SNAPSHOTS, "base", br#"{"id":1,"parent":null}"#)?;
            t.put(SNAPSHOTS, "a", br#"{"id":2,"parent":"base"}"#)?;
            t.put(SNAPSHOTS, "b", br#"{"id":3,"parent":"base"}"#)?;
            t.put(SNAPSHOTS, "c", br#"{"id":4,"parent":"a"}"#)?;
            t.put(SNAPSHOTS, "torn", b"{not json")?;
            t.put("images", "x", br#"{"parent":"base"}"#)
        })
        .unwrap();
        let count = |p: &str| db.read(|t| t.count_snapshot_children(p)).unwrap();
        assert_eq!((count("base"), count("a"), count("c")), (2, 1, 0));
        let conn = db.connection();
        let plan: String = conn
            .query_row(
                &format!(
                    "EXPLAIN QUERY PLAN SELECT count(*) FROM records \
                     WHERE tbl = '{SNAPSHOTS}' AND {PARENT_FIELD} = 'base'"
                ),
                [],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("snapshot_parents"), "{plan}");
    }
}
