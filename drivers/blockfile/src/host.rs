//! Commands and mounts the driver performs for itself (formatting images,
//! its backing store, private resize mounts). Same signatures as
//! `strata_driver_api::mount`, which replaces this module once it is on main.

use std::path::Path;
use std::process::Command;

use strata_driver_api::{Error, IoContext, Result};

/// Runs `cmd`, returning its stdout; a non-zero exit becomes
/// [`Error::Command`] with the exit status and stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let line = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().ctx("spawn", cmd.get_program())?;
    if !out.status.success() {
        return Err(Error::Command {
            command: line,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Mounts `source` on `target`; a regular-file source with the `loop`
/// option gets an autoclear loop device (util-linux `mount` sets it up).
pub fn mount_fs(source: &Path, target: &Path, fstype: &str, options: &[String]) -> Result<()> {
    let mut cmd = Command::new("mount");
    cmd.arg("-t").arg(fstype);
    if !options.is_empty() {
        cmd.arg("-o").arg(options.join(","));
    }
    run(cmd.arg(source).arg(target)).map(drop)
}

/// Unmounts `target`, lazily if it stays busy.
pub fn unmount(target: &Path) -> Result<()> {
    if run(Command::new("umount").arg(target)).is_ok() {
        return Ok(());
    }
    tracing::warn!(target = %target.display(), "busy, unmounting lazily");
    run(Command::new("umount").arg("-l").arg(target)).map(drop)
}

/// Whether `path` is a mount point (listed in `/proc/self/mountinfo`).
pub fn is_mountpoint(path: &Path) -> Result<bool> {
    let path = std::fs::canonicalize(path).ctx("canonicalize", path)?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx("read", "/proc/self/mountinfo")?;
    let wanted = escape_mountinfo(&path.to_string_lossy());
    Ok(info
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(wanted.as_str())))
}

/// The source device of the mount at `path` (the last one listed).
pub fn mount_source(path: &Path) -> Result<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx("read", "/proc/self/mountinfo")?;
    let wanted = escape_mountinfo(&path.to_string_lossy());
    info.lines()
        .filter(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
        .filter_map(|l| l.split(" - ").nth(1)?.split(' ').nth(1).map(str::to_owned))
        .next_back()
        .ok_or_else(|| Error::Driver {
            driver: crate::NAME,
            message: format!("{} is not a mount point", path.display()),
        })
}

/// Octal escapes mountinfo uses for whitespace and backslashes.
fn escape_mountinfo(s: &str) -> String {
    s.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012")
}
