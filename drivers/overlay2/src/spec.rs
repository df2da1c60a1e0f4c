//! Mount specs for a snapshot: pure functions, tested without root.

use std::path::{Path, PathBuf};

use strata_driver_api::Mount;

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A recursive bind mount of `dir`.
pub fn bind(dir: &Path, read_only: bool) -> Mount {
    Mount {
        fstype: "bind".into(),
        source: path_str(dir),
        options: vec!["rbind".into(), if read_only { "ro" } else { "rw" }.into()],
    }
}

/// An overlay of `lowers` (nearest first) with `upper` and `work` when
/// writable, or read-only over the lowers alone. `features` are the
/// driver-wide options (`index=off`, ...).
pub fn overlay(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, features: &[String]) -> Mount {
    let mut options: Vec<String> = Vec::new();
    if upper.is_none() {
        options.push("ro".into());
    }
    options.extend(features.iter().cloned());
    if let Some((upper, work)) = upper {
        options.push(format!("workdir={}", path_str(work)));
        options.push(format!("upperdir={}", path_str(upper)));
    }
    let lowers: Vec<String> = lowers.iter().map(|p| path_str(p)).collect();
    options.push(format!("lowerdir={}", lowers.join(":")));
    Mount {
        fstype: "overlay".into(),
        source: "overlay".into(),
        options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_overlay_lists_lowers_nearest_first() {
        let lowers = [PathBuf::from("/h/l/2"), PathBuf::from("/h/l/1")];
        let m = overlay(
            &lowers,
            Some((Path::new("/h/s/3/fs"), Path::new("/h/s/3/work"))),
            &["index=off".to_string()],
        );
        assert_eq!(m.fstype, "overlay");
        assert_eq!(
            m.options,
            [
                "index=off",
                "workdir=/h/s/3/work",
                "upperdir=/h/s/3/fs",
                "lowerdir=/h/l/2:/h/l/1"
            ]
        );
        assert!(!m.is_read_only());
    }

    #[test]
    fn lower_only_overlay_is_read_only() {
        let lowers = [PathBuf::from("/a"), PathBuf::from("/b")];
        let m = overlay(&lowers, None, &[]);
        assert_eq!(m.options, ["ro", "lowerdir=/a:/b"]);
        assert!(m.is_read_only());
        assert_eq!(bind(Path::new("/x"), true).options, ["rbind", "ro"]);
    }
}
