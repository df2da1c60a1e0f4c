//! Images: list, tag, rmi, history.

use std::collections::HashSet;

use serde::Serialize;
use strata_driver_api::failpoint;

use crate::error::{Result, StoreError};
use crate::model::{ChainId, ImageRecord, Reference};
use crate::Store;

/// Points `target` at the image `source` resolves to.
pub fn tag(store: &Store, source: &str, target: &Reference) -> Result<ImageRecord> {
    let image = store.resolve_image(source)?;
    store.meta()?.add_tag(&image.id, target)
}

/// What `rmi` did.
#[derive(Debug, Serialize)]
pub enum Removed {
    /// Only a tag went away; the image has others.
    Untagged(String),
    /// The image and the layers no other image uses.
    Deleted {
        /// Image id.
        image: String,
        /// Layers removed.
        layers: usize,
    },
}

/// Removes a tag, or the image with its unshared layers when it was the
/// last tag (or the image was named by id). Refused while containers use it.
pub fn remove(store: &Store, text: &str) -> Result<Removed> {
    let image = store.resolve_image(text)?;
    let meta = store.meta()?;
    let by_tag = Some(Reference::lookup(text)).filter(|r| image.tags.contains(r));
    if let Some(reference) = by_tag.filter(|_| image.tags.len() > 1) {
        meta.untag(&reference)?;
        return Ok(Removed::Untagged(reference.0));
    }
    // The only safe point: once the record is gone, removing its layers is
    // finished rather than undone.
    crate::interrupt::check()?;
    let users = meta.remove_image_unless_used(&image.id)?;
    if !users.is_empty() {
        let ids: Vec<&str> = users.iter().map(|c| c.id.short()).collect();
        return Err(StoreError::ImageInUse {
            image: text.to_owned(),
            containers: ids.join(", "),
        });
    }
    failpoint("image.rmi.deleted");
    let layers = remove_unused_layers(store, &image)?;
    Ok(Removed::Deleted {
        image: image.id.0,
        layers,
    })
}

/// Removes `image`'s layer snapshots, top first, that no remaining image needs.
fn remove_unused_layers(store: &Store, image: &ImageRecord) -> Result<usize> {
    let needed: HashSet<ChainId> = store
        .meta()?
        .images()?
        .iter()
        .flat_map(|i| i.layers.iter().map(|l| l.chain_id.clone()))
        .collect();
    let layers = store.layers();
    let mut removed = 0;
    for layer in image.layers.iter().rev() {
        if needed.contains(&layer.chain_id) {
            break;
        }
        match layers.remove(&layer.chain_id) {
            Ok(()) => removed += 1,
            Err(StoreError::Snapshot(strata_driver_api::Error::NotFound(_))) => {}
            Err(StoreError::Snapshot(strata_driver_api::Error::FailedPrecondition(_))) => break,
            Err(e) => return Err(e),
        }
    }
    layers.prune_tars()?;
    Ok(removed)
}

/// One line of `strata history`.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    /// Layer diff id, or `<missing>` for an empty-layer step.
    pub layer: String,
    /// Creation time as recorded.
    pub created: String,
    /// The command that made it.
    pub created_by: String,
    /// Uncompressed size of the layer.
    pub size: u64,
    /// Comment.
    pub comment: String,
}

/// The image's history, newest first, with each non-empty step matched to its layer.
pub fn history(store: &Store, text: &str) -> Result<Vec<HistoryEntry>> {
    let image = store.resolve_image(text)?;
    let config = image.config_json();
    let steps = config["history"].as_array().cloned().unwrap_or_default();
    let mut layers = image.layers.iter();
    let mut out = Vec::new();
    for step in &steps {
        let empty = step["empty_layer"].as_bool().unwrap_or(false);
        let layer = if empty { None } else { layers.next() };
        out.push(HistoryEntry {
            layer: layer
                .map(|l| l.diff_id.0.clone())
                .unwrap_or_else(|| "<missing>".into()),
            created: step["created"].as_str().unwrap_or("").to_owned(),
            created_by: step["created_by"].as_str().unwrap_or("").to_owned(),
            size: layer.map(|l| l.size).unwrap_or(0),
            comment: step["comment"].as_str().unwrap_or("").to_owned(),
        });
    }
    for layer in layers {
        out.push(HistoryEntry {
            layer: layer.diff_id.0.clone(),
            created: String::new(),
            created_by: String::new(),
            size: layer.size,
            comment: String::new(),
        });
    }
    out.reverse();
    Ok(out)
}
