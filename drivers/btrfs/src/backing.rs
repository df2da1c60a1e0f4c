//! The btrfs filesystem snapshots live on: the home itself when it is on
//! btrfs, else a sparse loop file `<home>/btrfs.img` (made with mkfs.btrfs
//! once) loop-mounted at `<home>/mnt` by the first open and left mounted
//! between commands until `strata release`. It is attached to one loop
//! device per host ([`mount_backing`]): two loop devices of one btrfs image
//! mounted at once are two live instances of one filesystem, which
//! corrupts it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_driver_api::mount::{mount_backing, release_backing, run};
use strata_driver_api::{BackingFile, Error, IoContext, Result};

use crate::config::BtrfsConfig;
use crate::sys;

/// Name of the loop file under the home.
pub const IMAGE_FILE: &str = "btrfs.img";
/// Mount point of the loop file under the home.
pub const MOUNT_DIR: &str = "mnt";
/// Filesystem label of loop files the driver makes.
pub const LABEL: &str = "strata-btrfs";

/// Where the filesystem came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The home is on an existing btrfs filesystem.
    Host,
    /// A loop file under the home.
    LoopFile {
        /// The image file.
        image: PathBuf,
    },
}

/// An opened backing filesystem.
#[derive(Debug, Clone)]
pub struct Backing {
    /// Directory under which `snapshots/` lives.
    pub root: PathBuf,
    /// Block device holding the filesystem (for `btrfs` mount specs).
    pub device: PathBuf,
    /// Host or loop file.
    pub kind: Kind,
}

impl Backing {
    /// Opens (and if needed creates and mounts) the filesystem for `home`.
    pub fn open(home: &Path, cfg: &BtrfsConfig) -> Result<Self> {
        let home = fs::canonicalize(home).ctx("canonicalize", home)?;
        if sys::is_btrfs(&home).ctx("statfs", &home)? {
            let device = mount_source(&home)?;
            return Ok(Self {
                root: home,
                device,
                kind: Kind::Host,
            });
        }
        let image = home.join(IMAGE_FILE);
        let mnt = home.join(MOUNT_DIR);
        strata_driver_api::private::private_dir_all(&mnt)?;
        // A new image is only made where none exists, so no loop device
        // can hold it; an existing one is never formatted again.
        if !image.exists() {
            make_image(&home, &image, cfg)?;
        }
        // Root-only, also for an image made before this was enforced: it
        // holds every layer's files, whatever their own modes.
        strata_driver_api::private::restrict(&image, strata_driver_api::private::FILE_MODE)?;
        let device = mount_backing(
            &image,
            &mnt,
            "btrfs",
            &strata_driver_api::mount::hardened_options(Vec::new()),
        )?;
        Ok(Self {
            root: mnt,
            device,
            kind: Kind::LoopFile { image },
        })
    }

    /// Unmounts the loop file and detaches its loop device, unless anything
    /// else holds it (a mounted snapshot, open files): then nothing changes
    /// and the error names the holder. A host btrfs is left alone.
    pub fn release(&self) -> Result<()> {
        match &self.kind {
            Kind::Host => Ok(()),
            Kind::LoopFile { image } => release_backing(image, Some(&self.root)),
        }
    }

    /// The loop file and its mount point (none on a host btrfs).
    pub fn files(&self) -> Vec<BackingFile> {
        match &self.kind {
            Kind::Host => Vec::new(),
            Kind::LoopFile { image } => vec![BackingFile {
                file: image.clone(),
                mount_point: Some(self.root.clone()),
            }],
        }
    }

    /// One line describing the backing for `strata info`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Host => format!(
                "host btrfs {} on {}",
                self.root.display(),
                self.device.display()
            ),
            Kind::LoopFile { image, .. } => format!(
                "loop file {} on {} mounted at {}",
                image.display(),
                self.device.display(),
                self.root.display()
            ),
        }
    }
}

/// Creates the sparse image under a temporary name, formats it, then renames
/// it into place, so a crash never leaves a half-made image behind.
fn make_image(home: &Path, image: &Path, cfg: &BtrfsConfig) -> Result<()> {
    let st = nix::sys::statvfs::statvfs(home).ctx("statvfs", home)?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    let size = cfg.loop_size(free);
    let tmp = image.with_extension("img.tmp");
    let file = strata_driver_api::private::private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .ctx("create", &tmp)?;
    file.set_len(size).ctx("truncate", &tmp)?;
    drop(file);
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-L", LABEL])
        .arg(&tmp))?;
    fs::rename(&tmp, image).ctx("rename", image)
}

/// The source (device) of the btrfs mount whose mount point is the longest
/// prefix of `path`, from `/proc/self/mountinfo`.
pub fn mount_source(path: &Path) -> Result<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ctx("read", "/proc/self/mountinfo")?;
    best_btrfs_source(&info, path).ok_or_else(|| Error::Driver {
        driver: crate::error::DRIVER,
        source: format!("no btrfs mount found for {}", path.display()).into(),
    })
}

fn best_btrfs_source(mountinfo: &str, path: &Path) -> Option<PathBuf> {
    let mut best: Option<(usize, PathBuf)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(mount_point), Some(fstype), Some(source)) =
            (left.split(' ').nth(4), r.next(), r.next())
        else {
            continue;
        };
        let mount_point = unescape(mount_point);
        if fstype != "btrfs" || !path.starts_with(&mount_point) {
            continue;
        }
        let depth = Path::new(&mount_point).components().count();
        if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((depth, PathBuf::from(unescape(source))));
        }
    }
    best.map(|(_, s)| s)
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_picks_the_deepest_btrfs_mount() {
        let info = "\
22 1 254:0 / / rw - ext4 /dev/vda rw
40 22 7:3 / /var/lib/strata/btrfs/mnt rw,relatime - btrfs /dev/loop3 rw
41 22 7:4 / /srv/a\\040b rw - btrfs /dev/loop4 rw
";
        assert_eq!(
            best_btrfs_source(info, Path::new("/var/lib/strata/btrfs/mnt/snapshots/1")),
            Some(PathBuf::from("/dev/loop3"))
        );
        assert_eq!(
            best_btrfs_source(info, Path::new("/srv/a b/x")),
            Some(PathBuf::from("/dev/loop4"))
        );
        assert_eq!(best_btrfs_source(info, Path::new("/home")), None);
    }
}
