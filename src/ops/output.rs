//! Files Strata writes outside the store (`save -o`, `export -o`).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// A file written outside the store (`save -o`, `export -o`). It is
/// written as an unnamed file (`O_TMPFILE`) in the destination's directory,
/// so that no death, not even SIGKILL, can leave a partial file behind;
/// when complete it is linked as the destination when that does not exist
/// (one step), else under a temporary name and renamed over it (a SIGKILL
/// between those two steps leaves the complete file under the temporary
/// name). On a filesystem without `O_TMPFILE` it is
/// a named temporary file (`.NAME.XXXXXX.strata-partial`) from the start.
/// Dropped unfinished (an error, an interruption, a panic), it is removed.
///
/// The output `-` is standard output instead (refused on a terminal): the
/// bytes go straight out, and an error leaves the reader a truncated
/// stream (which a reader of tar or OCI archives detects).
pub struct PartialOutput {
    out: PathBuf,
    dir: PathBuf,
    temp: Option<Temp>,
}

enum Temp {
    /// No name yet: it vanishes with the process.
    Unnamed(File),
    /// The fallback: removed on drop.
    Named(tempfile::NamedTempFile),
    /// `-`: a duplicate of standard output.
    Stdout(File),
}

impl PartialOutput {
    /// Opens the temporary for `out`, root-only (0600): an archive holds
    /// the image's files, root-only ones included.
    pub fn create(out: &Path) -> Result<Self> {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        use std::os::unix::fs::PermissionsExt;
        if crate::ops::stdio::is_stdio(out) {
            return Self::stdout();
        }
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let flags = OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        let temp = match nix::fcntl::open(&dir, flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => Temp::Unnamed(File::from(fd)),
            Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EISDIR) => {
                let named = tempfile::Builder::new()
                    .prefix(&Self::temp_prefix(out)?)
                    .suffix(".strata-partial")
                    .permissions(fs::Permissions::from_mode(0o600))
                    .tempfile_in(&dir)
                    .map_err(|e| StoreError::io("create a temporary file in", &dir, e))?;
                Temp::Named(named)
            }
            Err(e) => {
                return Err(StoreError::io(
                    "create a temporary file in",
                    &dir,
                    io::Error::from(e),
                ))
            }
        };
        Ok(Self {
            out: out.to_owned(),
            dir,
            temp: Some(temp),
        })
    }

    /// Standard output, refused when it is a terminal (an archive there is
    /// only noise).
    fn stdout() -> Result<Self> {
        use std::io::IsTerminal;
        use std::os::fd::AsFd;
        let out = io::stdout();
        if out.is_terminal() {
            return Err(StoreError::Invalid(
                "refusing to write an archive to a terminal: give -o FILE or redirect standard output"
                    .into(),
            ));
        }
        let fd = out
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| StoreError::io("duplicate", "standard output", e))?;
        Ok(Self {
            out: PathBuf::from("-"),
            dir: PathBuf::from("."),
            temp: Some(Temp::Stdout(File::from(fd))),
        })
    }

    fn temp_prefix(out: &Path) -> Result<String> {
        let name = out
            .file_name()
            .ok_or_else(|| StoreError::Invalid(format!("{}: not a file name", out.display())))?;
        Ok(format!(".{}.", name.to_string_lossy()))
    }

    /// The temporary file to write to.
    pub fn file(&self) -> &File {
        match self.temp.as_ref().expect("PartialOutput used after finish") {
            Temp::Unnamed(f) => f,
            Temp::Named(n) => n.as_file(),
            Temp::Stdout(f) => f,
        }
    }

    /// Flushes the file to disk and renames it over the destination.
    pub fn finish(&mut self) -> Result<()> {
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        let temp_path = match temp {
            Temp::Stdout(_) => return Ok(()),
            Temp::Named(named) => {
                named
                    .as_file()
                    .sync_all()
                    .map_err(|e| StoreError::io("sync", named.path(), e))?;
                named.into_temp_path()
            }
            Temp::Unnamed(file) => {
                file.sync_all()
                    .map_err(|e| StoreError::io("sync", &self.out, e))?;
                // A new destination gets its name in one step: no death can
                // leave a temporary name behind.
                match link_fd(&file, &self.out) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(StoreError::io("link the output as", &self.out, e)),
                }
                // An existing one: give the file a temporary name beside it
                // (linkat cannot replace), then rename it over.
                tempfile::Builder::new()
                    .prefix(&Self::temp_prefix(&self.out)?)
                    .suffix(".strata-partial")
                    .make_in(&self.dir, |path| link_fd(&file, path))
                    .map_err(|e| StoreError::io("link the output in", &self.dir, e))?
                    .into_temp_path()
            }
        };
        let path = temp_path.to_path_buf();
        temp_path
            .persist(&self.out)
            .map_err(|e| StoreError::io("rename", path, e.error))?;
        Ok(())
    }

    /// Removes the temporary file now; returns a note naming the output,
    /// for an interruption's report.
    pub fn discard(&mut self) -> String {
        if let Some(Temp::Named(n)) = self.temp.take() {
            let path = n.path().to_owned();
            if let Err(e) = n.close() {
                tracing::warn!(path = %path.display(), error = %e, "removing a partial output");
            }
        }
        if crate::ops::stdio::is_stdio(&self.out) {
            return "standard output left incomplete".into();
        }
        format!("partial {} removed", self.out.display())
    }
}

/// Gives the unnamed file `file` (`O_TMPFILE`) the name `path`; fails with
/// `AlreadyExists` when `path` exists.
fn link_fd(file: &File, path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
        nix::fcntl::AT_FDCWD,
        path,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

/// A writer that reports how many bytes went through it so far, for a
/// progress display.
pub struct Counted<'a, W> {
    inner: W,
    written: u64,
    report: &'a dyn Fn(u64),
}

impl<'a, W> Counted<'a, W> {
    /// Counts the bytes written to `inner`, calling `report` with the total.
    pub fn new(inner: W, report: &'a dyn Fn(u64)) -> Self {
        Self {
            inner,
            written: 0,
            report,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        (self.report)(self.written);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
