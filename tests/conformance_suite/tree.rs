//! Reading a mounted tree into a comparable map, and a mount guard.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::Mount;

/// One entry of a tree, with what the suite compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Directory with mode and owner.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Regular file with content, mode and owner.
    File {
        /// Content.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Symlink and its target.
    Symlink(PathBuf),
    /// Anything else (device, fifo, socket) with its mode.
    Other(u32),
}

/// Relative path → entry. `lost+found` at the root is left out (mkfs makes it).
pub type Tree = BTreeMap<PathBuf, Entry>;

/// Reads every entry below `root`.
pub fn read_tree(root: &Path) -> Tree {
    let mut tree = Tree::new();
    walk(root, root, &mut tree);
    tree
}

fn walk(root: &Path, dir: &Path, tree: &mut Tree) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).expect("below root").to_path_buf();
        if rel == Path::new("lost+found") {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).expect("lstat");
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let entry = if ft.is_dir() {
            walk(root, &path, tree);
            Entry::Dir {
                mode,
                uid: meta.uid(),
                gid: meta.gid(),
            }
        } else if ft.is_file() {
            Entry::File {
                data: std::fs::read(&path).expect("read"),
                mode,
                uid: meta.uid(),
                gid: meta.gid(),
            }
        } else if ft.is_symlink() {
            Entry::Symlink(std::fs::read_link(&path).expect("readlink"))
        } else {
            Entry::Other(meta.mode())
        };
        tree.insert(rel, entry);
    }
}

/// Mounts specs on a fresh directory and unmounts them on drop.
pub struct Mounted {
    path: PathBuf,
    layers: usize,
}

impl Mounted {
    /// Mounts `mounts` on `dir` (created if missing).
    pub fn new(mounts: &[Mount], dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).expect("mkdir mount point");
        mount_all(mounts, &dir)
            .unwrap_or_else(|e| panic!("mounting {mounts:?} on {}: {e}", dir.display()));
        Self {
            path: dir,
            layers: mounts.len(),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for _ in 0..self.layers {
            if let Err(e) = unmount(&self.path) {
                eprintln!("unmount {}: {e}", self.path.display());
            }
        }
    }
}
