//! What `strata inspect` adds about a container's block storage: for a
//! loop-mounted image file (blockfile), the file, its loop device and its
//! capacity; for a loop device (a loop-backed btrfs or xfs), the file
//! behind it, which stays the same when the device number changes.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use strata_driver_api::Mount;

/// Adds `ImageFile`, `LoopDevice`, `Capacity` (bytes) or `BackingFile`
/// to `data` for the mounts that have them.
pub fn add_block_details(mounts: &[Mount], data: &mut Map<String, Value>) {
    for m in mounts {
        let source = Path::new(&m.source);
        if m.options.iter().any(|o| o == "loop") {
            data.insert("ImageFile".into(), m.source.clone().into());
            if let Ok(meta) = std::fs::metadata(source) {
                data.insert("Capacity".into(), meta.len().into());
            }
            let devices = strata_driver_api::mount::loops_backed_by(source);
            let device = devices.first().map(|d| d.display().to_string());
            data.insert("LoopDevice".into(), device.into());
        } else if let Some(file) = loop_backing_file(source) {
            data.insert("BackingFile".into(), file.display().to_string().into());
        }
    }
}

/// The file behind `/dev/loopN`, from sysfs.
fn loop_backing_file(dev: &Path) -> Option<PathBuf> {
    let name = dev.strip_prefix("/dev").ok()?.to_str()?;
    if !name.starts_with("loop") {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end()))
}
