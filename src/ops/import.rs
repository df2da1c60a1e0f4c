//! `strata import FILE NAME[:TAG]`: a flat rootfs tar becomes a one-layer image.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::archive::{decompress, is_malformed_tar, Source};
use crate::error::{Result, StoreError};
use crate::model::{Digest, ImageRecord, LayerRecord, Reference};
use crate::Store;

/// Imports the tar at `file` (plain, gzip or zstd; `-` is standard input)
/// as image `reference`.
pub fn import(store: &Store, file: &Path, reference: &Reference) -> Result<ImageRecord> {
    if crate::ops::stdio::is_stdio(file) {
        let stdin = std::io::stdin();
        return import_from(store, stdin, "standard input", reference);
    }
    let input = File::open(file).map_err(|e| StoreError::io("open", file, e))?;
    import_from(store, input, &file.display().to_string(), reference)
}

/// Imports the tar read from `input`, named `what` in messages and in the
/// image's history. An empty input is refused before anything is made.
pub fn import_from(
    store: &Store,
    input: impl Read + Send,
    what: &str,
    reference: &Reference,
) -> Result<ImageRecord> {
    let mut input = BufReader::new(crate::interrupt::Reader(input));
    let first = input
        .fill_buf()
        .map_err(|e| StoreError::io("read", what, e))?;
    if first.is_empty() {
        return Err(StoreError::Invalid(format!(
            "{what} is empty: not a tar archive"
        )));
    }
    let tar = decompress(input).map_err(|e| StoreError::io("read", what, e))?;
    let limits = store.limits()?;
    // A layer without its image is pruned as unused by `strata check`.
    let mut made = crate::store::NewLayers::default();
    let layer = store
        .layers()
        .apply_and_keep(
            None,
            Source(tar),
            None,
            limits.apply_limits(u64::MAX),
            &mut made,
        )
        .map_err(|e| match &e {
            StoreError::Archive(a) if is_malformed_tar(a) => {
                StoreError::Invalid(format!("not a tar archive ({what})"))
            }
            _ => e,
        })?;
    strata_driver_api::failpoint("import.layer_done");
    let config = image_config(&[&layer], &format!("strata import {what}"));
    let image = ImageRecord {
        id: Digest::of(&config),
        config,
        layers: vec![layer],
        tags: vec![reference.clone()],
        created_ns: crate::now_ns(),
    };
    if let Err(e) = store.meta()?.put_image(&image) {
        made.roll_back(&store.layers());
        return Err(e);
    }
    Ok(image)
}

/// A minimal OCI image config for `layers` with one history entry.
pub fn image_config(layers: &[&LayerRecord], created_by: &str) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.0.as_str()).collect();
    let created = crate::model::rfc3339(crate::now_ns() / 1_000_000_000);
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
