//! [`Overlay2Driver`]: snapshots as overlayfs upper directories.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use strata_driver_api::{
    CreateOptions, Driver, DriverConfig, Error, IoContext, Kind, Mount, Result, SnapshotId,
    StatusLine, Target, Usage,
};

use crate::layout::{parse_link_name, Layout};
use crate::quota::ProjectQuotas;
use strata_driver_api::du::disk_usage;

use crate::{spec, sys, Overlay2Config, Overlay2Error};

/// Driver name.
const NAME: &str = "overlay2";

/// Most lower layers one overlay mount takes (the kernel's `OVL_MAX_STACK`).
pub const MAX_LAYERS: usize = 500;

/// The overlay2 driver. Layout under its home:
/// - `snapshots/<id>/fs`: the snapshot's own changes (overlay upper dir);
/// - `snapshots/<id>/work`: overlayfs' work directory;
/// - `l/<short>`: symlink to `../snapshots/<id>/fs`, used in lowerdir lists.
#[derive(Debug)]
pub struct Overlay2Driver {
    layout: Layout,
    config: Overlay2Config,
    /// Options added to every overlay mount (`index=off`, ...).
    features: Vec<String>,
    backing: String,
    /// Project quotas, where the home's filesystem enforces them.
    quotas: Option<ProjectQuotas>,
}

impl Overlay2Driver {
    /// Opens the driver in `cfg.home`, after checking that overlayfs exists
    /// and accepts upper directories on the home's filesystem.
    pub fn open(cfg: &DriverConfig<'_>) -> Result<Self> {
        let config = Overlay2Config::from_options(cfg.options)?;
        let layout = Layout::new(cfg.home);
        check_home_path(layout.home())?;
        if !sys::overlay_registered().ctx("read", "/proc/filesystems")? {
            return Err(unsupported(
                "overlay is not in /proc/filesystems (is the overlay module loaded? try `modprobe overlay`)".into(),
            ));
        }
        let backing =
            strata_driver_api::fs_type_name(layout.home()).ctx("statfs", layout.home())?;
        let features = features(&config);
        sys::remove_stale_probes(layout.home());
        // The probe writes files, so it runs once, when the home is set up:
        // opening an existing store must work on a full disk (for `check`).
        if !(layout.snapshots().is_dir() && layout.links().is_dir()) {
            let probe = layout.home().join(format!(".probe-{}", std::process::id()));
            sys::probe_mount(&probe, &features).map_err(|why| {
                unsupported(format!(
                    "the home {} ({backing}) cannot hold overlay upper directories: {why}",
                    layout.home().display()
                ))
            })?;
            for dir in [layout.snapshots(), layout.links()] {
                strata_driver_api::private::private_dir_all(&dir)?;
            }
        }
        let quotas = ProjectQuotas::probe(layout.home());
        Ok(Self {
            layout,
            config,
            features,
            backing,
            quotas,
        })
    }

    /// The snapshot's own layer directory (its upper directory).
    pub fn layer_dir(&self, id: SnapshotId) -> PathBuf {
        self.layout.fs(id)
    }

    fn require(&self, id: SnapshotId) -> Result<()> {
        let dir = self.layout.fs(id);
        if dir.is_dir() {
            Ok(())
        } else {
            Err(Overlay2Error::Missing {
                id: id.0,
                path: dir.display().to_string(),
            }
            .into())
        }
    }

    /// Lowerdir entries (short links) of `ids`, nearest first. A missing
    /// link (lost in a crash) is made again.
    fn lowers(&self, ids: &[SnapshotId]) -> Result<Vec<PathBuf>> {
        if ids.len() > MAX_LAYERS {
            return Err(Error::Driver {
                driver: NAME,
                source: format!(
                    "a mount of {} lower layers (nearest: snapshot {}) is too deep: overlayfs stacks at most {MAX_LAYERS}",
                    ids.len(),
                    ids[0]
                ).into(),
            });
        }
        ids.iter()
            .map(|id| {
                self.require(*id)?;
                let link = self.layout.link(*id);
                if fs::symlink_metadata(&link).is_err() {
                    self.make_link(*id)?;
                }
                Ok(link)
            })
            .collect()
    }

    /// (Re)creates `<home>/l/<short>` for `id`.
    fn make_link(&self, id: SnapshotId) -> Result<()> {
        let link = self.layout.link(id);
        remove_if_exists(&link, fs::remove_file(&link))?;
        std::os::unix::fs::symlink(Layout::link_target(id), &link).ctx("symlink", &link)
    }

    /// A read-only mount of `layers` (nearest first): a bind mount for one
    /// layer, a lowerdir-only overlay for more.
    fn read_only(&self, layers: &[SnapshotId], own: SnapshotId) -> Result<Mount> {
        match layers {
            [] => Ok(spec::bind(&self.layout.fs(own), true)),
            [one] => {
                self.require(*one)?;
                Ok(spec::bind(&self.layout.fs(*one), true))
            }
            many => Ok(spec::overlay(&self.lowers(many)?, None, &self.features)),
        }
    }
}

impl Overlay2Driver {
    /// How many lower layers fit in one page of classic mount(2) options,
    /// with 4-character link names (ids below 36^4) and this home.
    pub fn classic_mount_capacity(&self) -> usize {
        let home = self.layout.home().as_os_str().len();
        let per_layer = home + "/l/".len() + 4 + 1;
        let fixed = self.features.iter().map(|f| f.len() + 1).sum::<usize>()
            + 2 * (home + "workdir=/snapshots/1234567/work,".len())
            + "lowerdir=".len();
        4095usize.saturating_sub(fixed) / per_layer
    }
}

/// Mount options every overlay gets, from the config and the kernel.
fn features(config: &Overlay2Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.index_off && sys::module_param("index").is_some() {
        out.push("index=off".to_owned());
    }
    if config.native_diff {
        out.push("redirect_dir=off".to_owned());
        if sys::module_param("metacopy").is_some() {
            out.push("metacopy=off".to_owned());
        }
    }
    out
}

/// overlay's option syntax cannot carry `,` or `:` in paths.
fn check_home_path(home: &Path) -> Result<()> {
    let text = home.to_string_lossy();
    if text.contains(',') || text.contains(':') {
        return Err(unsupported(format!(
            "the home {text} contains ',' or ':', which overlay mount options cannot express"
        )));
    }
    Ok(())
}

fn unsupported(reason: String) -> Error {
    Overlay2Error::Unsupported(reason).into()
}

fn remove_if_exists(path: &Path, result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

impl Driver for Overlay2Driver {
    fn name(&self) -> &'static str {
        NAME
    }

    /// A project quota limit, where the home's filesystem has them.
    fn limits_size(&self) -> bool {
        self.quotas.is_some()
    }

    fn create(&self, target: Target<'_>, options: &CreateOptions) -> Result<()> {
        let id = target.id;
        let snap = self.layout.snapshot(id);
        fs::create_dir(&snap).ctx("mkdir", &snap)?;
        match &self.quotas {
            Some(quotas) => quotas.assign(&snap, options.size)?,
            None if options.size.is_some() => {
                return Err(unsupported(format!(
                    "size limits need project quotas, which the home's {} does not enforce",
                    self.backing
                )))
            }
            None => {}
        }
        for dir in [self.layout.fs(id), self.layout.work(id)] {
            fs::create_dir(&dir).ctx("mkdir", &dir)?;
            fs::set_permissions(&dir, Permissions::from_mode(0o755)).ctx("chmod", &dir)?;
        }
        self.make_link(id)
    }

    fn commit(&self, target: Target<'_>) -> Result<()> {
        // The upper directory is already the layer; nothing moves on disk,
        // but what was written to it must reach the disk.
        self.require(target.id)?;
        strata_driver_api::sync_filesystem(&self.layout.fs(target.id))
    }

    fn remove(&self, id: SnapshotId) -> Result<()> {
        let link = self.layout.link(id);
        remove_if_exists(&link, fs::remove_file(&link))?;
        let snap = self.layout.snapshot(id);
        if let Some(quotas) = &self.quotas {
            quotas.clear(&snap)?;
        }
        remove_if_exists(&snap, strata_driver_api::tree::remove_tree(&snap))
    }

    fn mounts(&self, target: Target<'_>) -> Result<Vec<Mount>> {
        let id = target.id;
        self.require(id)?;
        let mount = match target.kind {
            Kind::Active if target.parents.is_empty() => spec::bind(&self.layout.fs(id), false),
            Kind::Active => spec::overlay(
                &self.lowers(target.parents)?,
                Some((&self.layout.fs(id), &self.layout.work(id))),
                &self.features,
            ),
            Kind::View => self.read_only(target.parents, id)?,
            Kind::Committed => {
                let mut layers = vec![id];
                layers.extend_from_slice(target.parents);
                self.read_only(&layers, id)?
            }
        };
        Ok(vec![mount])
    }

    fn usage(&self, target: Target<'_>) -> Result<Usage> {
        if let Some(quotas) = &self.quotas {
            if let Some(usage) = quotas.usage(&self.layout.snapshot(target.id))? {
                return Ok(usage);
            }
        }
        disk_usage(&self.layout.fs(target.id))
    }

    fn stored_ids(&self) -> Result<Vec<SnapshotId>> {
        let mut ids = Vec::new();
        let snaps = self.layout.snapshots();
        for entry in fs::read_dir(&snaps).ctx("read directory", &snaps)? {
            let entry = entry.ctx("read directory", &snaps)?;
            if let Some(id) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                ids.push(SnapshotId(id));
            }
        }
        // A link whose snapshot directory is gone is storage too (left by a crash).
        let links = self.layout.links();
        for entry in fs::read_dir(&links).ctx("read directory", &links)? {
            let entry = entry.ctx("read directory", &links)?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_link_name) {
                ids.push(id);
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn status(&self) -> Vec<StatusLine> {
        let param = |n: &str| sys::module_param(n).unwrap_or_else(|| "not exposed".into());
        let native = if self.config.native_diff {
            "yes (redirect_dir=off, metacopy=off in every mount)".to_owned()
        } else if param("redirect_dir") == "N" && param("metacopy") == "N" {
            "yes (kernel defaults redirect_dir=N, metacopy=N)".to_owned()
        } else {
            "no: redirect_dir or metacopy may be on; diff by walking".to_owned()
        };
        vec![
            ("home".into(), self.layout.home().display().to_string()),
            ("backing filesystem".into(), self.backing.clone()),
            ("mount options".into(), self.features.join(",")),
            ("native diff".into(), native),
            (
                "kernel defaults".into(),
                format!(
                    "index={} redirect_dir={} metacopy={}",
                    param("index"),
                    param("redirect_dir"),
                    param("metacopy")
                ),
            ),
            (
                "lowerdir".into(),
                format!(
                    "short links in {}; about {} layers fit one 4 KiB mount(2) option string \
                     (the fsconfig lowerdir+ path has no such limit, up to {MAX_LAYERS})",
                    self.layout.links().display(),
                    self.classic_mount_capacity()
                ),
            ),
            (
                "usage".into(),
                if self.quotas.is_some() {
                    "project quota counters of each snapshot directory".into()
                } else {
                    "du of each snapshot's upper directory".into()
                },
            ),
            (
                "size limits".into(),
                if self.quotas.is_some() {
                    "project quotas".into()
                } else {
                    format!("none: the {} home has no project quotas", self.backing)
                },
            ),
        ]
    }

    fn overlay_whiteouts(&self) -> bool {
        true
    }

    /// The upper directory: what a mounted active snapshot changed.
    fn changes_dir(&self, id: SnapshotId) -> Option<PathBuf> {
        Some(self.layer_dir(id))
    }
}
