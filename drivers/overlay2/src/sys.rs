//! What the driver asks of the host: overlayfs registration, module
//! parameters, the backing filesystem type, and a probe mount proving the
//! home can hold upper directories. No `unsafe` is needed here.

use std::fs;
use std::io;
use std::path::Path;

use strata_driver_api::mount::{mount_all, unmount};
use strata_driver_api::Mount;

/// Whether `/proc/filesystems` lists overlay.
pub fn overlay_registered() -> io::Result<bool> {
    strata_driver_api::kernel_has_fs("overlay")
}

/// A parameter of the overlay module (`index`, `redirect_dir`, `metacopy`),
/// when the kernel exposes it.
pub fn module_param(name: &str) -> Option<String> {
    fs::read_to_string(Path::new("/sys/module/overlay/parameters").join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Unmounts and deletes probe directories (`.probe-<pid>`) under `home`
/// that a process killed in the middle of `open` left behind.
pub fn remove_stale_probes(home: &Path) {
    let Ok(entries) = fs::read_dir(home) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(".probe-")) else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let _ = unmount(&entry.path().join("merged"));
        let _ = fs::remove_dir_all(entry.path());
    }
}

/// Mounts a two-layer overlay with `options` in `dir` (created, then
/// removed), writes through it and deletes a lower file (which needs a
/// whiteout in the upper directory). Returns why it failed.
pub fn probe_mount(dir: &Path, features: &[String]) -> Result<(), String> {
    let _ = fs::remove_dir_all(dir);
    let result = probe_in(dir, features);
    let _ = unmount(&dir.join("merged"));
    let _ = fs::remove_dir_all(dir);
    result
}

fn probe_in(dir: &Path, features: &[String]) -> Result<(), String> {
    let sub = |n: &str| dir.join(n);
    for d in ["lower1", "lower2", "upper", "work", "merged"] {
        fs::create_dir_all(sub(d)).map_err(|e| format!("mkdir {}: {e}", sub(d).display()))?;
    }
    fs::write(sub("lower1/file"), b"probe").map_err(|e| format!("write probe file: {e}"))?;
    let spec = crate::spec::overlay(
        &[sub("lower2"), sub("lower1")],
        Some((&sub("upper"), &sub("work"))),
        features,
    );
    mount_all(
        &strata_driver_api::mount::hardened(std::slice::from_ref::<Mount>(&spec)),
        &sub("merged"),
    )
    .map_err(|e| format!("test overlay mount in {} failed: {e}", dir.display()))?;
    let merged = sub("merged");
    fs::write(merged.join("new"), b"x").map_err(|e| format!("write through overlay: {e}"))?;
    fs::remove_file(merged.join("file"))
        .map_err(|e| format!("whiteout of a lower file (mknod in the upper dir): {e}"))?;
    unmount(&merged).map_err(|e| format!("unmount test overlay: {e}"))?;
    Ok(())
}
