//! `strata cp`: files between a container and the host, or a tar stream.
//!
//! Every path inside the container is resolved inside its rootfs
//! ([`crate::archive::apply_beneath`], [`crate::archive::write_beneath`]):
//! a symlink or `..` in the container cannot lead a copy to the host's
//! files. Both directions go through a tar stream and the layer applier,
//! so a copy gets its checks (no entry outside the target directory). A
//! copy of a file or directory, either way, is staged in a temporary
//! directory beside the destination and renamed into place when complete:
//! an error or a signal leaves nothing. A tar stream into a container
//! (`cp - web:/etc`) is unpacked in place, merging with what is there.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::snapshotter::Snapshotter;

use crate::archive::{
    apply_beneath, apply_layer, apply_staged_beneath, find_in_root, write_beneath, ApplyOptions,
    Found,
};
use crate::error::{Result, StoreError};
use crate::model::ContainerId;
use crate::mounts::TempMount;
use crate::Store;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `CONTAINER:PATH`.
    Container {
        /// Id, id prefix or name.
        container: String,
        /// Path inside it (relative paths start at its `/`).
        path: PathBuf,
    },
    /// A host path.
    Host(PathBuf),
    /// `-`: a tar stream on standard input or output.
    Stream,
}

impl Endpoint {
    /// `-`, `NAME:PATH` (a name has no `/`), or a host path (write `./a:b`
    /// for a host file whose name has a colon).
    pub fn parse(text: &str) -> Self {
        if text == "-" {
            return Self::Stream;
        }
        match text.split_once(':') {
            Some((name, path)) if !name.is_empty() && !name.contains('/') => Self::Container {
                container: name.to_owned(),
                path: PathBuf::from(path),
            },
            _ => Self::Host(PathBuf::from(text)),
        }
    }
}

/// Copies `from` to `to`; exactly one side must be a container.
pub fn copy(store: &Store, from: &Endpoint, to: &Endpoint) -> Result<()> {
    match (from, to) {
        (Endpoint::Container { container, path }, Endpoint::Host(dst)) => {
            let root = ContainerRoot::open(store, container)?;
            to_host(root.path(), path, dst)
        }
        (Endpoint::Container { container, path }, Endpoint::Stream) => {
            let root = ContainerRoot::open(store, container)?;
            let (dir, name) = split(path)?;
            require_present(root.path(), path)?;
            let out = stdout_not_terminal()?;
            let mut w = io::BufWriter::new(crate::interrupt::Writer(out));
            write_beneath(root.path(), &dir, &name, &mut w)?;
            w.flush()
                .map_err(|e| StoreError::io("write", "standard output", e))
        }
        (Endpoint::Host(src), Endpoint::Container { container, path }) => {
            let root = ContainerRoot::open(store, container)?;
            from_host(root.path(), src, path)
        }
        (Endpoint::Stream, Endpoint::Container { container, path }) => {
            let root = ContainerRoot::open(store, container)?;
            if find_in_root(root.path(), path, true)? != Found::Directory {
                return Err(StoreError::Invalid(format!(
                    "{container}:{}: not a directory in the container (a tar stream is unpacked into one)",
                    path.display()
                )));
            }
            let limits = store.limits()?;
            let input = crate::archive::decompress(crate::interrupt::Reader(io::stdin()))
                .map_err(|e| StoreError::io("read", "standard input", e))?;
            let opts = ApplyOptions {
                limits: limits.apply_limits(u64::MAX),
                ..ApplyOptions::default()
            };
            apply_beneath(root.path(), path, input, &opts)
                .map(drop)
                .map_err(|e| {
                    StoreError::from(e).undone("entries unpacked before it stay in the container")
                })
        }
        _ => Err(StoreError::Invalid(
            "cp copies between a container and the host: one side must be CONTAINER:PATH, the other a host path or -".into(),
        )),
    }
}

/// `path` (inside a container) as its parent directory and last name.
fn split(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let name = path.file_name().ok_or_else(|| {
        StoreError::Invalid(format!(
            "{}: name a file or directory below / in the container",
            path.display()
        ))
    })?;
    let dir = path.parent().unwrap_or(Path::new("")).to_owned();
    Ok((dir, PathBuf::from(name)))
}

fn require_present(root: &Path, path: &Path) -> Result<()> {
    if find_in_root(root, path, false)? == Found::Missing {
        return Err(StoreError::Invalid(format!(
            "no such file or directory in the container: {}",
            path.display()
        )));
    }
    Ok(())
}

fn stdout_not_terminal() -> Result<io::Stdout> {
    use std::io::IsTerminal;
    let out = io::stdout();
    if out.is_terminal() {
        return Err(StoreError::Invalid(
            "refusing to write a tar stream to a terminal: redirect standard output".into(),
        ));
    }
    Ok(out)
}

/// Container `path` to host `dst` (into it when it is a directory).
fn to_host(root: &Path, path: &Path, dst: &Path) -> Result<()> {
    let (dir, name) = split(path)?;
    require_present(root, path)?;
    let target = if dst.is_dir() {
        dst.join(&name)
    } else {
        dst.to_owned()
    };
    if target.is_dir() {
        return Err(StoreError::Conflict(format!(
            "{} (a directory; cp does not merge into one)",
            target.display()
        )));
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let stage = tempfile::Builder::new()
        .prefix(".strata-cp-")
        .tempdir_in(&parent)
        .map_err(|e| StoreError::io("create a temporary directory in", &parent, e))?;
    piped(
        |w| write_beneath(root, &dir, &name, w).map_err(StoreError::from),
        |r| {
            apply_layer(stage.path(), r, &ApplyOptions::default())?;
            Ok(())
        },
    )?;
    std::fs::rename(stage.path().join(&name), &target)
        .map_err(|e| StoreError::io("rename into", &target, e))
}

/// Host `src` to container `path` (into it when it is a directory).
fn from_host(root: &Path, src: &Path, path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(src).map_err(|e| StoreError::io("stat", src, e))?;
    let (dir, name) = if find_in_root(root, path, true)? == Found::Directory {
        let name = src
            .file_name()
            .ok_or_else(|| StoreError::Invalid(format!("{}: no file name", src.display())))?;
        (path.to_owned(), PathBuf::from(name))
    } else {
        split(path)?
    };
    piped(
        |w| {
            let mut tar = tar::Builder::new(crate::interrupt::Writer(w));
            tar.follow_symlinks(false);
            let added = if meta.is_dir() {
                tar.append_dir_all(&name, src)
            } else {
                tar.append_path_with_name(src, &name)
            };
            added
                .and_then(|()| tar.finish())
                .map_err(|e| StoreError::io("read", src, e))
        },
        |r| {
            apply_staged_beneath(root, &dir, &name, r, &ApplyOptions::default())?;
            Ok(())
        },
    )
}

/// Runs `write` on a thread feeding a pipe that `read` consumes; fails
/// with the first error (the reader's, whose early return makes the
/// writer's next write fail with a broken pipe).
fn piped(
    write: impl FnOnce(File) -> Result<()> + Send,
    read: impl FnOnce(File) -> Result<()>,
) -> Result<()> {
    let (r, w) =
        nix::unistd::pipe().map_err(|e| StoreError::io("create a pipe", "cp", e.into()))?;
    std::thread::scope(|s| {
        let writer = s.spawn(move || write(File::from(w)));
        let read_result = read(File::from(r));
        let write_result = writer
            .join()
            .unwrap_or_else(|_| Err(StoreError::Invalid("cp: the tar writer panicked".into())));
        read_result.and(write_result)
    })
}

/// A container's rootfs, mounted for the copy unless it is mounted already.
struct ContainerRoot {
    _mount: Option<TempMount>,
    path: PathBuf,
}

impl ContainerRoot {
    fn open(store: &Store, text: &str) -> Result<Self> {
        let record = store.resolve_container(text)?;
        if let Some(p) = &record.mounted_at {
            if strata_driver_api::mount::is_mountpoint(p)? {
                return Ok(Self {
                    _mount: None,
                    path: p.clone(),
                });
            }
        }
        let mounts = store.snapshots().mounts(&record.snapshot)?;
        let dir = store
            .temp_dir("mounts")?
            .join(format!("cp-{}", ContainerId::generate()));
        let m = TempMount::new(&mounts, dir)?;
        Ok(Self {
            path: m.path().to_owned(),
            _mount: Some(m),
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
