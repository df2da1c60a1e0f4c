//! Removing a directory tree whatever its depth.
//!
//! `std::fs::remove_dir_all` holds a descriptor for every level it is in,
//! so a tree deeper than the open-file limit (a layer of `a/a/a/...` 1500
//! levels deep is 3000 bytes of tar name; a container can nest without
//! end) cannot be removed with it: the snapshot stays on disk for good.
//! [`remove_tree`] holds two descriptors at most, climbing back up through
//! `..` and checking it reaches the directory it came down from.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

/// One directory on the way down: its entries (name, is a directory),
/// how many are done, and its (device, inode) to recognise it from below.
struct Level {
    names: Vec<(Vec<u8>, bool)>,
    next: usize,
    id: (u64, u64),
}

impl Level {
    fn read(dir: &OwnedFd) -> io::Result<Level> {
        let st = nix::sys::stat::fstat(dir.as_fd())?;
        Ok(Level {
            names: list_dir(dir.as_fd())?,
            next: 0,
            id: (st.st_dev, st.st_ino),
        })
    }
}

/// The entries of the open directory `dir` as (name, is a directory),
/// without `.` and `..`, in directory order, not following symlinks.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, bool)>> {
    let listing = nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in nix::dir::Dir::from_fd(listing)?.iter() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = match e.file_type() {
            Some(t) => t == nix::dir::Type::Directory,
            None => {
                let st =
                    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
                st.st_mode & libc::S_IFMT == libc::S_IFDIR
            }
        };
        names.push((name.to_vec(), is_dir));
    }
    Ok(names)
}

fn open_dir(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes `path` and, when it is a directory, everything below it, at any
/// depth, never following a symlink. A missing `path` is `NotFound`. Fails
/// rather than go on if a directory was moved while being emptied, so
/// nothing outside `path` is ever removed.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    if !std::fs::symlink_metadata(path)?.is_dir() {
        return std::fs::remove_file(path);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let top = nix::fcntl::open(
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    remove_tree_at(top.as_fd(), std::os::unix::ffi::OsStrExt::as_bytes(name)).map_err(|e| {
        if e.kind() == io::ErrorKind::Other {
            io::Error::other(format!("{}: {e}", path.display()))
        } else {
            e
        }
    })
}

/// Removes the directory `name` in `parent` and everything below it, as
/// [`remove_tree`] does; `name` itself must be a directory, not a symlink
/// (`ELOOP`/`ENOTDIR` otherwise).
pub fn remove_tree_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let mut cur = open_dir(parent, name)?;
    let mut stack = vec![Level::read(&cur)?];
    while let Some(level) = stack.last_mut() {
        if let Some((child, is_dir)) = level.names.get(level.next).cloned() {
            level.next += 1;
            if is_dir {
                cur = open_dir(&cur, &child)?;
                stack.push(Level::read(&cur)?);
            } else {
                nix::unistd::unlinkat(cur.as_fd(), child.as_slice(), UnlinkatFlags::NoRemoveDir)?;
            }
            continue;
        }
        stack.pop();
        let Some(up) = stack.last() else {
            break;
        };
        let up_fd = open_dir(&cur, b"..")?;
        let st = nix::sys::stat::fstat(up_fd.as_fd())?;
        if (st.st_dev, st.st_ino) != up.id {
            return Err(io::Error::other(
                "a directory below it moved while it was being removed",
            ));
        }
        cur = up_fd;
        let done = &up.names[up.next - 1].0;
        nix::unistd::unlinkat(cur.as_fd(), done.as_slice(), UnlinkatFlags::RemoveDir)?;
    }
    drop(cur);
    nix::unistd::unlinkat(parent, name, UnlinkatFlags::RemoveDir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `depth` directories `a` below `dir`, with a file at the
    /// bottom.
    fn deep_tree(dir: &Path, depth: usize) {
        let mut cur =
            nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..depth {
            nix::sys::stat::mkdirat(cur.as_fd(), "a", Mode::from_bits_truncate(0o755)).unwrap();
            cur = open_dir(&cur, b"a").unwrap();
        }
        let f = nix::fcntl::openat(
            cur.as_fd(),
            "f",
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        drop(f);
    }

    #[test]
    fn trees_deeper_than_the_open_file_limit_are_removed() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let soft = if soft > 1 << 16 {
            setrlimit(Resource::RLIMIT_NOFILE, 1 << 16, hard).unwrap();
            1 << 16
        } else {
            soft
        };
        let scratch = tempfile::tempdir().unwrap();
        let top = scratch.path().join("snapshot");
        std::fs::create_dir(&top).unwrap();
        std::fs::write(top.join("wide"), b"x").unwrap();
        std::fs::create_dir(top.join("sibling")).unwrap();
        deep_tree(&top, soft as usize + 100);
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        assert!(scratch.path().exists());
    }

    #[test]
    fn symlinks_are_removed_not_followed() {
        let scratch = tempfile::tempdir().unwrap();
        let outside = scratch.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let top = scratch.path().join("snapshot");
        std::fs::create_dir_all(top.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, top.join("d/link")).unwrap();
        remove_tree(&top).unwrap();
        assert!(outside.join("keep").exists());
        let link = scratch.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        remove_tree(&link).unwrap();
        assert!(outside.join("keep").exists() && !link.exists());
    }
}
