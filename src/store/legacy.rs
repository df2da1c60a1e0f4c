//! Stores made before the SQLite database kept their records in redb
//! (`metadata.redb`, one process at a time). The first open copies every
//! record into SQLite in one transaction and renames the old file to
//! `metadata.redb.migrated`; a crash before the rename repeats nothing,
//! because the copy is marked done in the same transaction.

use crate::db::Database;
use redb::{ReadableTable, TableDefinition};

use super::Layout;
use crate::error::{Result, StoreError};

const BYTES_TABLES: [&str; 3] = ["snapshots", "images", "containers"];
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("snapshot_counters");
const MARKER_TABLE: &str = "store";
const MARKER_KEY: &str = "migrated_from_redb";

fn legacy_err(path: &std::path::Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Metadata(format!("migrating {}: {e}", path.display()))
}

/// Copies the records of a legacy `metadata.redb` into `db`, once.
pub fn migrate(layout: &Layout, db: &Database) -> Result<()> {
    let path = layout.legacy_database();
    if !path.exists() {
        return Ok(());
    }
    let copied = db.write(|t| {
        if t.get(MARKER_TABLE, MARKER_KEY)?.is_some() {
            return Ok(0usize);
        }
        let old = redb::Database::open(&path).map_err(|e| legacy_err(&path, e))?;
        let txn = old.begin_read().map_err(|e| legacy_err(&path, e))?;
        let mut copied = 0;
        for name in BYTES_TABLES {
            let def: TableDefinition<&str, &[u8]> = TableDefinition::new(name);
            let Ok(table) = txn.open_table(def) else {
                continue;
            };
            for entry in table.iter().map_err(|e| legacy_err(&path, e))? {
                let (k, v) = entry.map_err(|e| legacy_err(&path, e))?;
                t.put(name, k.value(), v.value())?;
                copied += 1;
            }
        }
        if let Ok(table) = txn.open_table(TAGS) {
            for entry in table.iter().map_err(|e| legacy_err(&path, e))? {
                let (k, v) = entry.map_err(|e| legacy_err(&path, e))?;
                t.put_json("tags", k.value(), &v.value().to_owned())?;
                copied += 1;
            }
        }
        if let Ok(table) = txn.open_table(COUNTERS) {
            for entry in table.iter().map_err(|e| legacy_err(&path, e))? {
                let (k, v) = entry.map_err(|e| legacy_err(&path, e))?;
                t.put_json("snapshot_counters", k.value(), &v.value())?;
            }
        }
        t.put_json(MARKER_TABLE, MARKER_KEY, &true)?;
        Ok::<_, StoreError>(copied)
    })?;
    let done = path.with_extension("redb.migrated");
    match std::fs::rename(&path, &done) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(StoreError::io("rename", &path, e));
        }
        _ => {}
    }
    if copied > 0 {
        tracing::info!(records = copied, from = %path.display(), "migrated metadata to SQLite");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_a_redb_store_move_to_sqlite_once() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        {
            let old = redb::Database::create(layout.legacy_database()).unwrap();
            let txn = old.begin_write().unwrap();
            {
                let def: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
                let mut images = txn.open_table(def).unwrap();
                images.insert("sha256:aa", &b"{\"x\":1}"[..]).unwrap();
                let mut tags = txn.open_table(TAGS).unwrap();
                tags.insert("app:1", "sha256:aa").unwrap();
                let mut counters = txn.open_table(COUNTERS).unwrap();
                counters.insert("next_id", 7).unwrap();
            }
            txn.commit().unwrap();
        }
        let db = Database::open(&layout.database()).unwrap();
        migrate(&layout, &db).unwrap();
        migrate(&layout, &db).unwrap();
        let got = db
            .read(|t| {
                Ok::<_, StoreError>((
                    t.get("images", "sha256:aa")?,
                    t.get_json::<String>("tags", "app:1")?,
                    t.get_json::<u64>("snapshot_counters", "next_id")?,
                ))
            })
            .unwrap();
        assert_eq!(got.0.as_deref(), Some(&b"{\"x\":1}"[..]));
        assert_eq!(got.1.as_deref(), Some("sha256:aa"));
        assert_eq!(got.2, Some(7));
        assert!(!layout.legacy_database().exists());
        assert!(dir.path().join("metadata.redb.migrated").exists());
    }
}
