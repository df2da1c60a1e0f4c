//! `strata import FILE NAME[:TAG]`: a flat rootfs tar becomes a one-layer image.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::archive::decompress;
use crate::error::{Result, StoreError};
use crate::model::{Digest, ImageRecord, LayerRecord, Reference};
use crate::Store;

/// Imports the tar at `file` (plain, gzip or zstd) as image `reference`.
pub fn import(store: &Store, file: &Path, reference: &Reference) -> Result<ImageRecord> {
    let input = File::open(file).map_err(|e| StoreError::io("open", file, e))?;
    let tar = decompress(BufReader::new(input)).map_err(|e| StoreError::io("read", file, e))?;
    let limits = crate::limits::Limits::of(store)?;
    let layer =
        crate::ops::transfer::apply_and_keep(store, None, tar, limits.apply_limits(u64::MAX))?;
    strata_driver_api::failpoint("import.layer_done");
    let config = image_config(&[&layer], &format!("strata import {}", file.display()));
    let image = ImageRecord {
        id: Digest::of(&config),
        config,
        layers: vec![layer],
        tags: vec![reference.clone()],
        created_ns: crate::now_ns(),
    };
    store.meta()?.put_image(&image)?;
    Ok(image)
}

/// A minimal OCI image config for `layers` with one history entry.
pub fn image_config(layers: &[&LayerRecord], created_by: &str) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.0.as_str()).collect();
    let created = rfc3339(crate::now_ns() / 1_000_000_000);
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "created": created,
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [{ "created": created, "created_by": created_by }],
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

/// Formats Unix seconds as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
