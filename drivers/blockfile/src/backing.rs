//! Where the image files live: the home directory itself when its filesystem
//! can reflink, otherwise a loop-mounted xfs (`mkfs.xfs -m reflink=1`) file
//! `<home>/backing.img` mounted at `<home>/store`, attached to one loop
//! device per host and left mounted between commands until `strata
//! release` ([`mount_backing`]).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_driver_api::mount::{mount_backing, release_backing, run};
use strata_driver_api::{BackingFile, IoContext, Result};

use crate::config::{BackingMode, Config};

/// The store directory and how it is provided.
#[derive(Debug, Clone)]
pub enum Backing {
    /// Images live in the home directory.
    Direct {
        /// The home directory.
        dir: PathBuf,
        /// Whether it can reflink (else every create copies).
        reflink: bool,
    },
    /// Images live in a loop-mounted xfs file.
    Loop {
        /// `<home>/backing.img`.
        image: PathBuf,
        /// `<home>/store`, where it is mounted.
        mountpoint: PathBuf,
    },
}

impl Backing {
    /// Chooses the backing for `home` and mounts the loop file if needed
    /// (again after a reboot).
    pub fn open(home: &Path, cfg: &Config) -> Result<Backing> {
        let image = home.join("backing.img");
        let use_loop = match cfg.backing {
            BackingMode::Loop => true,
            BackingMode::Direct => false,
            BackingMode::Auto => image.exists() || !supports_reflink(home),
        };
        if !use_loop {
            return Ok(Backing::Direct {
                dir: home.to_owned(),
                reflink: supports_reflink(home),
            });
        }
        let mountpoint = home.join("store");
        if !image.exists() {
            make_backing(&image, cfg.backing_size)?;
        }
        // Root-only, also for a file made before this was enforced: it
        // holds every layer's files, whatever their own modes.
        strata_driver_api::private::restrict(&image, strata_driver_api::private::FILE_MODE)?;
        strata_driver_api::private::private_dir_all(&mountpoint)?;
        mount_backing(
            &image,
            &mountpoint,
            "xfs",
            &strata_driver_api::mount::hardened_options(Vec::new()),
        )?;
        Ok(Backing::Loop { image, mountpoint })
    }

    /// The directory holding `images/`, `scratch-*.img` and `tmp/`.
    pub fn store(&self) -> &Path {
        match self {
            Backing::Direct { dir, .. } => dir,
            Backing::Loop { mountpoint, .. } => mountpoint,
        }
    }

    /// Unmounts the loop backing, if any, and detaches its loop device,
    /// unless anything else holds it (a mounted snapshot image, open
    /// files): then nothing changes and the error names the holder.
    pub fn release(&self) -> Result<()> {
        match self {
            Backing::Direct { .. } => Ok(()),
            Backing::Loop { image, mountpoint } => release_backing(image, Some(mountpoint)),
        }
    }

    /// The loop file and its mount point (none for a direct store).
    pub fn files(&self) -> Vec<BackingFile> {
        match self {
            Backing::Direct { .. } => Vec::new(),
            Backing::Loop { image, mountpoint } => vec![BackingFile {
                file: image.clone(),
                mount_point: Some(mountpoint.clone()),
            }],
        }
    }

    /// One line for `strata info`.
    pub fn describe(&self) -> String {
        match self {
            Backing::Direct { dir, reflink: true } => {
                format!("{} (its filesystem can reflink)", dir.display())
            }
            Backing::Direct {
                dir,
                reflink: false,
            } => format!(
                "{} (no reflink there: every create is a full sparse copy)",
                dir.display()
            ),
            Backing::Loop { image, mountpoint } => format!(
                "loop-mounted xfs (reflink=1) {} at {}",
                image.display(),
                mountpoint.display()
            ),
        }
    }
}

/// Formats a sparse xfs file with reflink, via a `.part` name so a crash
/// never leaves a half-formatted backing file behind under the real name.
fn make_backing(image: &Path, size: u64) -> Result<()> {
    let part = image.with_extension("img.part");
    let file = strata_driver_api::private::create_private_file(&part)?;
    file.set_len(size).ctx("truncate", &part)?;
    drop(file);
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-m", "reflink=1"])
        .arg(&part))?;
    std::fs::rename(&part, image).ctx("rename", image)
}

/// Whether files in `dir` can be reflinked (tries FICLONE on two probe files).
pub fn supports_reflink(dir: &Path) -> bool {
    let a = dir.join(format!(".strata-reflink-probe-{}-a", std::process::id()));
    let b = a.with_extension("b");
    let probe = || -> std::io::Result<()> {
        let mut src = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&a)?;
        src.write_all(&[0x5a; 4096])?;
        src.sync_all()?;
        let dst = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&b)?;
        strata_driver_api::reflink::clone_file(&src, &dst)
    };
    let ok = probe().is_ok();
    // Best effort: a probe file that was never created is not an error.
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    ok
}
