//! `strata image inspect`: an image's config, layers and history.

use serde::Serialize;

use crate::error::Result;
use crate::ops::image::{history, HistoryEntry};
use crate::Store;

/// What `image inspect` shows of one image; field names follow docker's
/// `image inspect` where it has them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    /// Image id (`sha256:` + hex of the config).
    pub id: String,
    /// Tags pointing at it.
    pub repo_tags: Vec<String>,
    /// When the image was built (the config's `created`), if recorded.
    pub created: Option<String>,
    /// When it entered this store, ns since the epoch.
    pub loaded_ns: u64,
    /// Architecture from the config.
    pub architecture: Option<String>,
    /// Operating system from the config.
    pub os: Option<String>,
    /// Total uncompressed size of the layers, bytes.
    pub size: u64,
    /// The config's runtime part (`Env`, `Cmd`, `Labels`, ...).
    pub config: serde_json::Value,
    /// Layers, bottom first.
    pub layers: Vec<InspectLayer>,
    /// The build steps, newest first, each with its layer.
    pub history: Vec<HistoryEntry>,
}

/// One layer of [`ImageInspect`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectLayer {
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Chain id (the key of its committed snapshot).
    pub chain_id: String,
    /// Uncompressed size, bytes.
    pub size: u64,
}

/// Describes the image `text` (tag or id) resolves to.
pub fn inspect(store: &Store, text: &str) -> Result<ImageInspect> {
    let image = store.resolve_image(text)?;
    let config = image.config_json();
    let text_of = |key: &str| config[key].as_str().map(str::to_owned);
    Ok(ImageInspect {
        id: image.id.0.clone(),
        repo_tags: image.tags.iter().map(|t| t.0.clone()).collect(),
        created: text_of("created"),
        loaded_ns: image.created_ns,
        architecture: text_of("architecture"),
        os: text_of("os"),
        size: image.layers.iter().map(|l| l.size).sum(),
        config: config["config"].clone(),
        layers: image
            .layers
            .iter()
            .map(|l| InspectLayer {
                diff_id: l.diff_id.0.clone(),
                chain_id: l.chain_id.0.clone(),
                size: l.size,
            })
            .collect(),
        history: history(store, text)?,
    })
}
