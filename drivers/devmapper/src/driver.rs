//! [`DevmapperDriver`]: every snapshot is a thin snapshot in one dm-thin
//! pool, holding an ext4 or xfs filesystem made once on the base device.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use strata_driver_api::mount::{mount_fs, run, unmount};
use strata_driver_api::{
    failpoint, CreateOptions, Driver, DriverConfig, Error as ApiError, IoContext, Kind, Mount,
    Result as ApiResult, SnapshotId, StatusLine, Target, Usage,
};

use crate::config::{Config, Fs};
use crate::error::{DmError, Result};
use crate::pool::{thin_mapped_sectors, Pool, PoolStatus};
use crate::state::{DevState, DeviceRecord, Records};
use crate::sys::{Dm, Presence};
use crate::units::{self, thin_dev_id, Sectors, ThinDevId};

/// Thin id of the base device every snapshot descends from.
fn base_thin() -> Result<ThinDevId> {
    thin_dev_id(0)
}
/// Thin ids are 24 bits wide.
const THIN_ID_LIMIT: u64 = (1 << 24) - 1;

/// Thin id of snapshot `id` (`id + 1`, so the base keeps 0).
pub fn thin_id(id: SnapshotId) -> Result<ThinDevId> {
    if id.0 >= THIN_ID_LIMIT {
        return Err(DmError::IdRange(id.0));
    }
    thin_dev_id(id.0 + 1)
}

/// Device-name prefix of a store: `strata-<8 hex digits of the home path's hash>`.
pub fn store_prefix(home: &Path) -> String {
    let canonical = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    // FNV-1a: stable across builds and platforms, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("strata-{:08x}", h as u32)
}

/// The devmapper driver. Kernel steps are serialised by one lock.
#[derive(Debug)]
pub struct DevmapperDriver {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    dm: Dm,
    pool: Pool,
    cfg: Config,
    records: Records,
    prefix: String,
    home: PathBuf,
}

impl DevmapperDriver {
    /// Opens the driver: sets up the pool, repairs half-done steps left by a
    /// crash, and makes the base filesystem the first time.
    pub fn open(cfg: &DriverConfig<'_>) -> ApiResult<Self> {
        let config = Config::from_options(cfg.options)?;
        if !Path::new(crate::sys::CONTROL).exists() {
            return Err(ApiError::Unsupported {
                driver: "devmapper".into(),
                reason: format!(
                    "{} is missing (no device-mapper in this kernel)",
                    crate::sys::CONTROL
                ),
            });
        }
        let dm = Dm::open()?;
        let prefix = store_prefix(cfg.home);
        let pool = Pool::open(&dm, &config, cfg.home, &format!("{prefix}-pool"))?;
        let inner = Inner {
            dm,
            pool,
            cfg: config,
            records: Records::open(cfg.home)?,
            prefix,
            home: cfg.home.to_path_buf(),
        };
        inner.reconcile()?;
        inner.ensure_base()?;
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Device-mapper name of snapshot `id`'s device.
    pub fn device_name(&self, id: SnapshotId) -> String {
        self.lock().name(id.0)
    }

    /// Device-mapper name of the pool.
    pub fn pool_name(&self) -> String {
        self.lock().pool.name.clone()
    }

    /// The pool's data blocks in use and in total.
    pub fn pool_data_blocks(&self) -> ApiResult<(u64, u64)> {
        let inner = self.lock();
        Ok(inner.pool.status(&inner.dm)?.data)
    }

    /// The pool's data block size in bytes.
    pub fn pool_block_bytes(&self) -> u64 {
        self.lock().pool.block_bytes()
    }
}

impl Inner {
    fn name(&self, id: u64) -> String {
        format!("{}-{id}", self.prefix)
    }

    fn base_name(&self) -> String {
        format!("{}-base", self.prefix)
    }

    /// The pool's transaction id in the kernel now.
    fn kernel_transaction_id(&self) -> Result<u64> {
        Ok(self.pool.status(&self.dm)?.transaction_id)
    }

    /// Runs one pool metadata step, then moves the pool's transaction id
    /// from `from` (its value before the step) on by one; fails when the
    /// pool is no longer at `from`. The new id lands in the pool metadata
    /// with the step; the caller recorded it beforehand, in the record the
    /// step belongs to, so nothing is written after the step.
    fn metadata_step(
        &self,
        from: u64,
        step: impl FnOnce() -> Result<()>,
        point: &str,
    ) -> Result<()> {
        step()?;
        failpoint(point);
        self.pool.set_transaction_id(&self.dm, from, from + 1)
    }

    /// The highest transaction id the records say the pool reached:
    /// `pool.json`'s, or a finished create's (a device record in `Created`
    /// names the id its step moved the pool to).
    fn recorded_transaction_id(&self, records: &[DeviceRecord]) -> Result<u64> {
        let pool = self.records.pool()?.transaction_id;
        Ok(records
            .iter()
            .filter(|r| r.state != DevState::Creating && r.state != DevState::Removing)
            .filter_map(|r| r.transaction_id)
            .fold(pool, u64::max))
    }

    /// Raises the kernel's transaction id to the recorded one when the pool
    /// metadata is behind the records (it lost steps, e.g. on power loss),
    /// then finishes or rolls back each device record left half-way by a
    /// crash. A kernel id ahead of `pool.json` is the normal case (steps
    /// record their id in device records) and writes nothing: an open with
    /// nothing to reconcile must work on a full disk (for `check`).
    fn reconcile(&self) -> Result<()> {
        let records = self.records.all()?;
        let recorded = self.recorded_transaction_id(&records)?;
        let kernel = self.kernel_transaction_id()?;
        if kernel < recorded {
            tracing::warn!(pool = %self.pool.name, kernel, recorded, "pool metadata is behind the records");
            self.pool.set_transaction_id(&self.dm, kernel, recorded)?;
            let mut prec = self.records.pool()?;
            prec.transaction_id = recorded;
            self.records.put_pool(&prec)?;
        }
        let prec = self.records.pool()?;
        if prec.base_started && !prec.base_ready {
            self.dm.remove(&self.base_name(), false)?;
            let from = self.kernel_transaction_id()?;
            self.metadata_step(
                from,
                || self.pool.delete(&self.dm, base_thin()?),
                "devmapper.reconcile-base",
            )?;
            let mut prec = self.records.pool()?;
            prec.base_started = false;
            prec.transaction_id = from + 1;
            self.records.put_pool(&prec)?;
        }
        let present: std::collections::HashSet<String> = self.dm.list()?.into_iter().collect();
        for mut rec in records {
            self.reconcile_one(&mut rec, &present)?;
        }
        Ok(())
    }

    /// Finishes or rolls back `rec`; `present` names every device-mapper
    /// device there is (listed once: most records have none).
    fn reconcile_one(
        &self,
        rec: &mut DeviceRecord,
        present: &std::collections::HashSet<String>,
    ) -> Result<()> {
        let name = self.name(rec.id);
        match rec.state {
            DevState::Creating | DevState::Removing => {
                tracing::info!(device = %name, state = ?rec.state, "rolling back / finishing removal after a crash");
                self.destroy(rec)
            }
            DevState::Activating | DevState::Deactivating | DevState::Active => {
                if present.contains(&name) {
                    self.clear_dead(&name)?;
                }
                self.records.set(rec, DevState::Created)
            }
            DevState::Created if present.contains(&name) => self.clear_dead(&name),
            DevState::Created => Ok(()),
        }
    }

    /// Removes device `name` if it exists without a live table: an
    /// activation cut short by a crash.
    fn clear_dead(&self, name: &str) -> Result<()> {
        if self.dm.presence(name)? == Presence::Dead {
            tracing::info!(device = %name, "removing a half set-up device after a crash");
            self.dm.remove(name, false)?;
        }
        Ok(())
    }

    /// Removes the device-mapper device and the thin device of `rec`, then
    /// its record. A device still busy with deferred removal keeps its
    /// record in `Removing`, finished on the next open.
    fn destroy(&self, rec: &mut DeviceRecord) -> Result<()> {
        let from = self.kernel_transaction_id()?;
        self.records.begin_remove(rec)?;
        if !self
            .dm
            .remove(&self.name(rec.id), self.cfg.deferred_remove)?
        {
            tracing::info!(device = %self.name(rec.id), "busy: deferred removal");
            return Ok(());
        }
        failpoint("devmapper.remove-after-deactivate");
        self.metadata_step(
            from,
            || self.pool.delete(&self.dm, rec.thin_id),
            "devmapper.remove-after-delete",
        )?;
        self.records.delete(rec.id)
    }

    fn thin_table(&self, thin: ThinDevId, size: u64) -> Result<Vec<crate::sys::TableLine>> {
        let pool = self.dm.node(&self.pool.name)?;
        Ok(vec![(
            Sectors(0),
            units::sectors(size),
            "thin".into(),
            format!("{} {thin}", pool.display()),
        )])
    }

    /// Makes the base thin device with a fresh filesystem, once.
    fn ensure_base(&self) -> Result<()> {
        if self.records.pool()?.base_ready {
            return Ok(());
        }
        let mut prec = self.records.pool()?;
        prec.base_started = true;
        self.records.put_pool(&prec)?;
        let from = self.kernel_transaction_id()?;
        self.metadata_step(
            from,
            || self.pool.create_thin(&self.dm, base_thin()?),
            "devmapper.base-after-create",
        )?;
        let name = self.base_name();
        let dev = self.dm.create(
            &name,
            &self.thin_table(base_thin()?, self.cfg.base_size)?,
            false,
        )?;
        let made = self.mkfs(&dev);
        let mapped = self.mapped(&name);
        self.dm.remove(&name, false)?;
        made?;
        let mut prec = self.records.pool()?;
        prec.base_ready = true;
        prec.base_mapped_sectors = mapped?;
        prec.transaction_id = prec.transaction_id.max(from + 1);
        self.records.put_pool(&prec)
    }

    fn mkfs(&self, dev: &Path) -> Result<()> {
        match self.cfg.fs {
            Fs::Ext4 => {
                // Inode tables and journal are written once here: lazy init
                // would write them in every snapshot and unshare those blocks.
                run(Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-m", "0"])
                    .args([
                        "-E",
                        "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard",
                    ])
                    .args(&self.cfg.mkfs_args)
                    .arg(dev))?;
                // A new snapshot's tree must be empty.
                run(Command::new("debugfs")
                    .args(["-w", "-R", "rmdir lost+found"])
                    .arg(dev))?;
            }
            Fs::Xfs => {
                run(Command::new("mkfs.xfs")
                    .args(["-q", "-f", "-K"])
                    .args(&self.cfg.mkfs_args)
                    .arg(dev))?;
            }
        }
        Ok(())
    }

    /// Mapped sectors of the live device `name`.
    fn mapped(&self, name: &str) -> Result<Sectors> {
        let line = self.dm.status(name)?;
        thin_mapped_sectors(&line).ok_or_else(|| DmError::State {
            device: name.to_owned(),
            message: format!("thin status {line:?} (failed device?)"),
        })
    }

    fn record(&self, id: SnapshotId) -> Result<DeviceRecord> {
        self.records.get(id.0)?.ok_or_else(|| DmError::State {
            device: self.name(id.0),
            message: format!("no thin device recorded for snapshot {id}"),
        })
    }

    /// Refuses to create when the pool is below its free-space floor,
    /// growing a loop pool first when it passed the autoextend threshold;
    /// returns the pool's status after that.
    fn check_space(&self) -> Result<PoolStatus> {
        let mut status = self.pool.status(&self.dm)?;
        if status.out_of_data_space && status.data.0 < status.data.1 {
            // Blocks were freed since the pool ran out: a resume lets it
            // leave out-of-data-space mode.
            self.dm.suspend(&self.pool.name)?;
            self.dm.resume(&self.pool.name)?;
            status = self.pool.status(&self.dm)?;
        }
        let threshold = self.cfg.autoextend_threshold;
        let used_pct = 100.0 - status.free_pct();
        if self.pool.data_file.is_some()
            && (1..100).contains(&threshold)
            && used_pct >= f64::from(threshold)
        {
            self.pool.extend(&self.dm, self.cfg.autoextend_percent)?;
            status = self.pool.status(&self.dm)?;
        }
        let free_pct = status.free_pct();
        if status.out_of_data_space || free_pct < f64::from(self.cfg.min_free_space) {
            return Err(DmError::NoSpace {
                pool: self.pool.name.clone(),
                free_pct,
                free: (status.data.1 - status.data.0) * self.pool.block_bytes(),
                min_pct: self.cfg.min_free_space,
            });
        }
        Ok(status)
    }

    fn create(&self, target: Target<'_>, options: &CreateOptions) -> Result<()> {
        let thin = thin_id(target.id)?;
        let pool_status = self.check_space()?;
        let (origin, origin_size, origin_mapped) = match target.parent() {
            Some(p) => {
                let parent = self.record(p)?;
                (parent.thin_id, parent.size, parent.mapped_sectors)
            }
            None => (
                base_thin()?,
                self.cfg.base_size,
                Some(self.records.pool()?.base_mapped_sectors),
            ),
        };
        if let Some(requested) = options.size.filter(|&s| s < origin_size) {
            return Err(ApiError::InvalidArgument(format!(
                "snapshot {}: size {requested} is smaller than its origin device \
                 ({origin_size} bytes); thin devices only grow",
                target.id
            ))
            .into());
        }
        // Without a limit, the min_free hint grows the device when its
        // origin's unmapped bytes (an estimate that errs low: blocks freed
        // inside its filesystem stay mapped) leave too little room.
        let wanted = match options.size {
            Some(limit) => limit.max(origin_size),
            None => {
                let mapped = origin_mapped.map_or(origin_size, units::bytes);
                let pool_bytes = pool_status.data.1.saturating_mul(self.pool.block_bytes());
                options
                    .size_for_room(
                        origin_size,
                        origin_size.saturating_sub(mapped),
                        pool_bytes.max(origin_size),
                    )
                    .unwrap_or(origin_size)
            }
        };
        let size = units::bytes(units::sectors_ceil(wanted));
        let mut rec = DeviceRecord {
            id: target.id.0,
            thin_id: thin,
            origin: Some(origin),
            size,
            state: DevState::Creating,
            read_only: target.kind != Kind::Active,
            mapped_sectors: None,
            inodes: None,
            transaction_id: Some(pool_status.transaction_id + 1),
        };
        self.records.put_creating(&mut rec)?;
        failpoint("devmapper.create-before-snap");
        let origin_name = match target.parent() {
            Some(p) => self.name(p.0),
            None => self.base_name(),
        };
        self.metadata_step(
            pool_status.transaction_id,
            || self.snapshot(thin, origin, &origin_name),
            "devmapper.create-after-snap",
        )?;
        if size > origin_size {
            self.grow_fs(&rec)?;
        }
        self.records.finish_create(&mut rec)?;
        failpoint("devmapper.create-after-created");
        self.activate(&rec)?;
        Ok(())
    }

    /// `create_snap`, with a live origin suspended around it.
    fn snapshot(&self, thin: ThinDevId, origin: ThinDevId, origin_name: &str) -> Result<()> {
        if !self.dm.is_live(origin_name)? {
            return self.pool.create_snap(&self.dm, thin, origin);
        }
        self.dm.suspend(origin_name)?;
        let made = self.pool.create_snap(&self.dm, thin, origin);
        let resumed = self.dm.resume(origin_name);
        made.and(resumed)
    }

    /// Grows the filesystem of a new device to its (larger) virtual size.
    fn grow_fs(&self, rec: &DeviceRecord) -> Result<()> {
        let name = self.name(rec.id);
        let dev = self
            .dm
            .create(&name, &self.thin_table(rec.thin_id, rec.size)?, false)?;
        let grown = match self.cfg.fs {
            Fs::Ext4 => run(Command::new("e2fsck").args(["-f", "-n"]).arg(&dev))
                .and_then(|_| run(Command::new("resize2fs").arg("-f").arg(&dev)))
                .map(drop),
            Fs::Xfs => self.grow_xfs(&dev, rec.id),
        };
        let removed = self.dm.remove(&name, false);
        grown?;
        removed.map(drop)
    }

    fn grow_xfs(&self, dev: &Path, id: u64) -> ApiResult<()> {
        let mnt = self.home.join(format!("grow-{id}"));
        strata_driver_api::private::private_dir_all(&mnt)?;
        let options = strata_driver_api::mount::hardened_options(vec!["nouuid".to_owned()]);
        let grown = mount_fs(dev, &mnt, "xfs", &options).and_then(|()| {
            let grown = run(Command::new("xfs_growfs").arg(&mnt)).map(drop);
            grown.and(unmount(&mnt))
        });
        let removed = std::fs::remove_dir(&mnt).ctx("rmdir", &mnt);
        grown.and(removed)
    }

    /// Makes the device of `rec` live (read-only when the record says so),
    /// or finds it live already.
    ///
    /// Whether a device is live is not recorded: device-mapper devices are
    /// named after their snapshot, so the kernel answers, and they vanish
    /// on reboot, when a record would be wrong. A device left half set up
    /// by a crash, or live in the wrong mode, is made again.
    fn activate(&self, rec: &DeviceRecord) -> Result<PathBuf> {
        let name = self.name(rec.id);
        match self.dm.presence(&name)? {
            Presence::Live { read_only } if read_only == rec.read_only => {
                return self.dm.node(&name)
            }
            Presence::Missing => {}
            Presence::Dead | Presence::Live { .. } => {
                self.dm.remove(&name, false)?;
            }
        }
        let dev = self.dm.create(
            &name,
            &self.thin_table(rec.thin_id, rec.size)?,
            rec.read_only,
        )?;
        failpoint("devmapper.activate-after-create");
        Ok(dev)
    }

    /// Removes the device of `rec` (the thin device stays); fails, leaving
    /// it live, while it is in use.
    fn deactivate(&self, rec: &DeviceRecord) -> Result<()> {
        self.dm.remove(&self.name(rec.id), false).map(drop)
    }

    fn commit(&self, target: Target<'_>) -> Result<()> {
        let mut rec = self.record(target.id)?;
        if rec.read_only && rec.mapped_sectors.is_some() {
            return Ok(());
        }
        let dev = self.activate(&rec)?;
        rec.mapped_sectors = Some(self.mapped(&self.name(rec.id))?);
        rec.inodes = Some(strata_driver_api::used_inodes(&dev)?);
        self.deactivate(&rec)?;
        rec.read_only = true;
        self.records.set(&mut rec, DevState::Created)
    }

    fn mounts(&self, target: Target<'_>) -> Result<Vec<Mount>> {
        let rec = self.record(target.id)?;
        let dev = self.activate(&rec)?;
        let mut options = Vec::new();
        if rec.read_only {
            options.push("ro".to_owned());
        }
        if self.cfg.fs == Fs::Xfs {
            options.push("nouuid".to_owned());
        }
        Ok(vec![Mount {
            fstype: self.cfg.fs.as_str().to_owned(),
            source: dev.display().to_string(),
            options,
        }])
    }

    fn remove(&self, id: SnapshotId) -> Result<()> {
        match self.records.get(id.0)? {
            Some(mut rec) => self.destroy(&mut rec),
            None => {
                // Nothing recorded: clear whatever a crash before the first
                // record could have left under this id.
                self.dm.remove(&self.name(id.0), false)?;
                Ok(())
            }
        }
    }

    /// Mapped sectors of `rec` now: recorded at commit, else from the live device.
    fn mapped_of(&self, rec: &DeviceRecord) -> Result<Sectors> {
        if let Some(m) = rec.mapped_sectors {
            return Ok(m);
        }
        self.activate(rec)?;
        self.mapped(&self.name(rec.id))
    }

    /// Inodes used in `rec`'s filesystem: recorded at commit, else from
    /// statfs or the superblock of the live device.
    fn inodes_of(&self, rec: &DeviceRecord) -> Result<u64> {
        if let Some(n) = rec.inodes {
            return Ok(n);
        }
        let dev = self.activate(rec)?;
        Ok(strata_driver_api::used_inodes(&dev)?)
    }

    fn usage(&self, target: Target<'_>) -> Result<Usage> {
        let rec = self.record(target.id)?;
        let own = self.mapped_of(&rec)?;
        let own_inodes = self.inodes_of(&rec)?;
        let (parent, parent_inodes) = match target.parent() {
            Some(p) => {
                let parent = self.record(p)?;
                (self.mapped_of(&parent)?, self.inodes_of(&parent)?)
            }
            None => (self.records.pool()?.base_mapped_sectors, 0),
        };
        Ok(Usage {
            size: units::bytes(Sectors(own.saturating_sub(*parent))),
            inodes: own_inodes.saturating_sub(parent_inodes),
        })
    }

    fn stored_ids(&self) -> Result<Vec<SnapshotId>> {
        let mut ids: Vec<u64> = self.records.all()?.into_iter().map(|r| r.id).collect();
        let prefix = format!("{}-", self.prefix);
        for name in self.dm.list()? {
            if let Some(id) = name
                .strip_prefix(&prefix)
                .and_then(|s| s.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids.into_iter().map(SnapshotId).collect())
    }

    fn status(&self) -> Vec<StatusLine> {
        let mut lines = vec![
            ("pool".to_owned(), self.pool.name.clone()),
            ("block size".to_owned(), self.pool.block_bytes().to_string()),
            ("filesystem".to_owned(), self.cfg.fs.as_str().to_owned()),
            ("base size".to_owned(), self.cfg.base_size.to_string()),
            (
                "usage".to_owned(),
                "mapped blocks of the thin device minus its parent's".to_owned(),
            ),
        ];
        if let Some(f) = &self.pool.data_file {
            lines.push(("backing".to_owned(), format!("loop files {}", f.display())));
        }
        match self.pool.status(&self.dm) {
            Ok(s) => {
                let b = self.pool.block_bytes();
                lines.push((
                    "data".to_owned(),
                    format!("{} of {} bytes used", s.data.0 * b, s.data.1 * b),
                ));
                lines.push((
                    "metadata".to_owned(),
                    format!("{} of {} blocks used", s.meta.0, s.meta.1),
                ));
                lines.push(("transaction id".to_owned(), s.transaction_id.to_string()));
                lines.push((
                    "error if no space".to_owned(),
                    s.error_if_no_space.to_string(),
                ));
            }
            Err(e) => lines.push(("pool status".to_owned(), e.to_string())),
        }
        lines
    }

    /// Deactivates every device of the store, then (for a pool the driver
    /// made) removes the pool and detaches its loop devices.
    fn release(&self) -> Result<()> {
        for rec in self.records.all()? {
            self.deactivate(&rec)?;
        }
        self.dm.remove(&self.base_name(), false)?;
        self.pool.teardown(&self.dm)
    }
}

/// Removes every device-mapper device of the store in `home` (thin
/// devices, base, pool; children first) and detaches its loop devices,
/// without opening the driver. Thin devices stay in the pool metadata. For
/// tests and for tearing a store down after a crash.
pub fn teardown(home: &Path) -> ApiResult<()> {
    let dm = Dm::open()?;
    let prefix = format!("{}-", store_prefix(home));
    let mut names: Vec<String> = dm
        .list()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    // The pool goes last: every other device is stacked on it.
    names.sort_by_key(|n| n.ends_with("-pool"));
    for name in names {
        dm.remove(&name, false)?;
    }
    for file in [crate::pool::DATA_FILE, crate::pool::METADATA_FILE] {
        for dev in strata_driver_api::mount::loops_backed_by(&home.join(file)) {
            strata_driver_api::mount::detach_loop(&dev)?;
        }
    }
    Ok(())
}

impl Driver for DevmapperDriver {
    fn name(&self) -> &'static str {
        "devmapper"
    }

    /// The thin device's size is the limit.
    fn limits_size(&self) -> bool {
        true
    }

    fn create(&self, target: Target<'_>, options: &CreateOptions) -> ApiResult<()> {
        Ok(self.lock().create(target, options)?)
    }

    fn commit(&self, target: Target<'_>) -> ApiResult<()> {
        Ok(self.lock().commit(target)?)
    }

    fn remove(&self, id: SnapshotId) -> ApiResult<()> {
        Ok(self.lock().remove(id)?)
    }

    fn mounts(&self, target: Target<'_>) -> ApiResult<Vec<Mount>> {
        Ok(self.lock().mounts(target)?)
    }

    fn usage(&self, target: Target<'_>) -> ApiResult<Usage> {
        Ok(self.lock().usage(target)?)
    }

    fn stored_ids(&self) -> ApiResult<Vec<SnapshotId>> {
        Ok(self.lock().stored_ids()?)
    }

    fn status(&self) -> Vec<StatusLine> {
        self.lock().status()
    }

    fn release(&self) -> ApiResult<()> {
        Ok(self.lock().release()?)
    }

    fn backing_files(&self) -> Vec<strata_driver_api::BackingFile> {
        self.lock().pool.backing_files()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_ids_fit_24_bits() {
        assert_eq!(u32::from(thin_id(SnapshotId(1)).expect("id")), 2);
        assert!(thin_id(SnapshotId(THIN_ID_LIMIT)).is_err());
        assert!(thin_id(SnapshotId(THIN_ID_LIMIT - 1)).is_ok());
    }

    #[test]
    fn prefix_is_stable_and_short() {
        let a = store_prefix(Path::new("/nonexistent/store/a"));
        assert_eq!(a, store_prefix(Path::new("/nonexistent/store/a")));
        assert_ne!(a, store_prefix(Path::new("/nonexistent/store/b")));
        assert_eq!(a.len(), "strata-".len() + 8);
    }
}
