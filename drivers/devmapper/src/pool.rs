//! The thin pool: setting it up from loop files, block devices or an
//! existing pool; its status; the metadata messages (create_thin,
//! create_snap, delete, set_transaction_id); growing the loop data file.

use std::path::{Path, PathBuf};

use strata_driver_api::mount::{attach_loop_once, release_backing};
use strata_driver_api::IoContext;

use crate::config::{Config, PoolSource};
use crate::error::{DmError, Result};
use crate::sys::{self, Dm};
use crate::units::{self, Sectors, ThinDevId};

/// Data file name of a loop-backed pool.
pub const DATA_FILE: &str = "data.img";
/// Metadata file name of a loop-backed pool.
pub const METADATA_FILE: &str = "metadata.img";

/// A parsed thin-pool status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Current metadata transaction id.
    pub transaction_id: u64,
    /// Used and total metadata blocks (4 KiB).
    pub meta: (u64, u64),
    /// Used and total data blocks (the pool's block size).
    pub data: (u64, u64),
    /// `rw`, or degraded (`ro`, `out_of_data_space`).
    pub read_write: bool,
    /// Data space ran out (writes beyond it error).
    pub out_of_data_space: bool,
    /// The pool errors instead of queueing when full.
    pub error_if_no_space: bool,
}

impl PoolStatus {
    /// Parses `<txid> <used>/<total meta> <used>/<total data> <held root> rw|ro|out_of_data_space ...`.
    pub fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let pair = |s: &str| -> Option<(u64, u64)> {
            let (a, b) = s.split_once('/')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        Some(Self {
            transaction_id: f.first()?.parse().ok()?,
            meta: pair(f.get(1)?)?,
            data: pair(f.get(2)?)?,
            read_write: *f.get(4)? == "rw",
            out_of_data_space: *f.get(4)? == "out_of_data_space",
            error_if_no_space: f.contains(&"error_if_no_space"),
        })
    }

    /// Free data space in percent.
    pub fn free_pct(&self) -> f64 {
        if self.data.1 == 0 {
            return 0.0;
        }
        100.0 * (self.data.1 - self.data.0) as f64 / self.data.1 as f64
    }
}

/// Mapped sectors of a thin device from its status line
/// (`<nr mapped sectors> <highest mapped sector>`).
pub fn thin_mapped_sectors(line: &str) -> Option<Sectors> {
    line.split_whitespace().next()?.parse().ok().map(Sectors)
}

/// The pool the driver's thin devices live in.
#[derive(Debug)]
pub struct Pool {
    /// Device-mapper name.
    pub name: String,
    /// Data block size.
    pub block_sectors: Sectors,
    /// Whether the driver made the pool (and may grow or tear it down).
    pub owned: bool,
    /// Loop data file, when loop-backed.
    pub data_file: Option<PathBuf>,
    /// Loop metadata file, when loop-backed.
    pub metadata_file: Option<PathBuf>,
}

/// The loop device of `file`: the one attached already, or a new one (no
/// autoclear: it stays until [`Pool::teardown`]). Host-wide once, so a
/// pool file never sits on two loop devices.
fn loop_for(file: &Path) -> Result<PathBuf> {
    Ok(attach_loop_once(file, false)?.path.clone())
}

fn sparse_file(path: &Path, size: u64) -> Result<()> {
    let f = strata_driver_api::private::private_file_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ctx("create", path)?;
    // Root-only, also for a file made before this was enforced: the pool
    // holds every layer's blocks, whatever the files' own modes.
    strata_driver_api::private::restrict(path, strata_driver_api::private::FILE_MODE)?;
    let len = f.metadata().ctx("stat", path)?.len();
    if len < size {
        f.set_len(size).ctx("truncate", path)?;
    }
    Ok(())
}

/// The thin-pool table over `data` (of size `data_size`), its length whole
/// blocks of `block`.
fn pool_table(meta: &Path, data: &Path, data_size: Sectors, block: Sectors) -> sys::TableLine {
    let len = Sectors(data_size.0 / block.0 * block.0);
    let params = format!(
        "{} {} {} 0 1 error_if_no_space",
        meta.display(),
        data.display(),
        block.0
    );
    (Sectors(0), len, "thin-pool".into(), params)
}

impl Pool {
    /// Sets up (or finds) the pool named `name` as `cfg` says.
    pub fn open(dm: &Dm, cfg: &Config, home: &Path, name: &str) -> Result<Self> {
        let block_sectors = cfg.block_sectors();
        let (meta, data, data_file, metadata_file) = match &cfg.pool {
            PoolSource::Existing(existing) => return Self::existing(dm, existing),
            PoolSource::Devices { data, metadata } => (metadata.clone(), data.clone(), None, None),
            PoolSource::LoopFiles {
                data_size,
                metadata_size,
            } => {
                let data_file = home.join(DATA_FILE);
                let meta_file = home.join(METADATA_FILE);
                sparse_file(&data_file, *data_size)?;
                sparse_file(&meta_file, *metadata_size)?;
                let meta = loop_for(&meta_file)?;
                let data = loop_for(&data_file)?;
                (meta, data, Some(data_file), Some(meta_file))
            }
        };
        if !dm.is_live(name)? {
            dm.remove(name, false)?;
            let size = sys::device_sectors(&data)?;
            dm.create(
                name,
                &[pool_table(&meta, &data, size, block_sectors)],
                false,
            )?;
        }
        let pool = Self {
            name: name.to_owned(),
            block_sectors: Self::table_block_sectors(dm, name)?,
            owned: true,
            data_file,
            metadata_file,
        };
        if pool.block_sectors != block_sectors {
            tracing::warn!(
                pool = name,
                "pool block size differs from dm.blocksize; keeping the pool's"
            );
        }
        Ok(pool)
    }

    fn existing(dm: &Dm, name: &str) -> Result<Self> {
        if !dm.is_live(name)? {
            return Err(DmError::State {
                device: name.to_owned(),
                message: "dm.thinpooldev names no live device-mapper device".into(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            block_sectors: Self::table_block_sectors(dm, name)?,
            owned: false,
            data_file: None,
            metadata_file: None,
        })
    }

    fn table_block_sectors(dm: &Dm, name: &str) -> Result<Sectors> {
        let table = dm.table(name)?;
        table
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .map(Sectors)
            .ok_or_else(|| DmError::State {
                device: name.to_owned(),
                message: format!("not a thin-pool table: {table:?}"),
            })
    }

    /// The pool's current status.
    pub fn status(&self, dm: &Dm) -> Result<PoolStatus> {
        let line = dm.status(&self.name)?;
        PoolStatus::parse(&line).ok_or_else(|| DmError::State {
            device: self.name.clone(),
            message: format!("pool status {line:?} (failed or not a thin pool)"),
        })
    }

    /// Block size in bytes.
    pub fn block_bytes(&self) -> u64 {
        units::bytes(self.block_sectors)
    }

    /// Sends `create_thin <id>`.
    pub fn create_thin(&self, dm: &Dm, id: ThinDevId) -> Result<()> {
        dm.message(&self.name, &format!("create_thin {id}"))
    }

    /// Sends `create_snap <id> <origin>`.
    pub fn create_snap(&self, dm: &Dm, id: ThinDevId, origin: ThinDevId) -> Result<()> {
        dm.message(&self.name, &format!("create_snap {id} {origin}"))
    }

    /// Sends `delete <id>`; a thin id the pool does not have is fine.
    pub fn delete(&self, dm: &Dm, id: ThinDevId) -> Result<()> {
        match dm.message(&self.name, &format!("delete {id}")) {
            Err(e) if e.errno() == Some(nix::errno::Errno::ENODATA) => Ok(()),
            other => other,
        }
    }

    /// Moves the transaction id from `old` to `new`.
    pub fn set_transaction_id(&self, dm: &Dm, old: u64, new: u64) -> Result<()> {
        dm.message(&self.name, &format!("set_transaction_id {old} {new}"))
    }

    /// Grows the loop data file by `percent` and reloads the pool with the
    /// new size. Returns the new size in bytes.
    pub fn extend(&self, dm: &Dm, percent: u8) -> Result<u64> {
        let (Some(file), Some(meta_file)) = (&self.data_file, &self.metadata_file) else {
            return Err(DmError::State {
                device: self.name.clone(),
                message: "only loop-backed pools grow automatically".into(),
            });
        };
        let size = std::fs::metadata(file).ctx("stat", file)?.len();
        let grown = size + (size * u64::from(percent) / 100).max(self.block_bytes());
        sparse_file(file, grown)?;
        let data = loop_for(file)?;
        let meta = loop_for(meta_file)?;
        sys::loop_set_capacity(&data)?;
        let table = pool_table(&meta, &data, units::sectors(grown), self.block_sectors);
        dm.load(&self.name, &[table], false)?;
        dm.suspend(&self.name)?;
        dm.resume(&self.name)?;
        tracing::info!(pool = %self.name, from = size, to = grown, "grew pool data file");
        Ok(grown)
    }

    /// Removes the pool device (if the driver made it) and detaches its
    /// loop devices; fails naming what still holds one.
    pub fn teardown(&self, dm: &Dm) -> Result<()> {
        if !self.owned {
            return Ok(());
        }
        dm.remove(&self.name, false)?;
        for file in [&self.data_file, &self.metadata_file].into_iter().flatten() {
            release_backing(file, None)?;
        }
        Ok(())
    }

    /// The loop files of a loop-backed pool the driver made.
    pub fn backing_files(&self) -> Vec<strata_driver_api::BackingFile> {
        [&self.data_file, &self.metadata_file]
            .into_iter()
            .flatten()
            .map(|f| strata_driver_api::BackingFile {
                file: f.clone(),
                mount_point: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pool_status() {
        let s =
            PoolStatus::parse("3 17/512 40/4096 - rw discard_passdown error_if_no_space - 1024")
                .expect("parse");
        assert_eq!(s.transaction_id, 3);
        assert_eq!(s.meta, (17, 512));
        assert_eq!(s.data, (40, 4096));
        assert!(s.read_write && s.error_if_no_space && !s.out_of_data_space);
        assert!((s.free_pct() - 99.023).abs() < 0.01);
        let full = PoolStatus::parse(
            "9 20/512 4096/4096 - out_of_data_space discard_passdown error_if_no_space -",
        )
        .expect("parse");
        assert!(full.out_of_data_space && !full.read_write);
        assert_eq!(PoolStatus::parse("Fail"), None);
    }

    #[test]
    fn parses_thin_status() {
        assert_eq!(thin_mapped_sectors("2048 4095"), Some(Sectors(2048)));
        assert_eq!(thin_mapped_sectors("0 -"), Some(Sectors(0)));
        assert_eq!(thin_mapped_sectors("Fail"), None);
    }

    #[test]
    fn pool_table_rounds_to_blocks() {
        let (start, len, kind, params) = pool_table(
            Path::new("/dev/loop1"),
            Path::new("/dev/loop2"),
            units::sectors((1 << 30) + 4096),
            Sectors(128),
        );
        assert_eq!(
            (start, len, kind.as_str()),
            (Sectors(0), Sectors(2 * 1024 * 1024), "thin-pool")
        );
        assert_eq!(params, "/dev/loop1 /dev/loop2 128 0 1 error_if_no_space");
    }
}
