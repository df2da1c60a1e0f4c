//! The layer/image/container model: content-addressed ids and records.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A `sha256:<hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(pub String);

impl Digest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// Digest from a finished hasher.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(format!("sha256:{}", hex(&hasher.finalize())))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }

    /// The first 12 hex characters, as docker prints ids.
    pub fn short(&self) -> &str {
        let h = self.hex();
        &h[..h.len().min(12)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a layer's uncompressed tar.
pub type DiffId = Digest;
/// Identity of a stack of layers: chain(1) = diff(1), chain(n) = sha256(chain(n-1) + " " + diff(n)).
pub type ChainId = Digest;
/// sha256 of an image's config: the same image has the same id in every store.
pub type ImageId = Digest;

/// The chain id of layer `diff_id` on top of `parent` (the OCI rule:
/// the bottom layer's chain id is its diff id, then `sha256(parent + " " + diff)`).
pub fn chain_id(parent: Option<&ChainId>, diff_id: &DiffId) -> ChainId {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
    }
}

/// Chain ids of a stack of diff ids, bottom first.
pub fn chain_ids(diff_ids: &[DiffId]) -> Vec<ChainId> {
    let mut out: Vec<ChainId> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        out.push(chain_id(out.last(), diff));
    }
    out
}

/// A container's id: 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl ContainerId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut seed);
        }
        let mut h = Sha256::new_with_prefix(seed);
        h.update(strata_driver_api::now_ns().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        Self(hex(&h.finalize()))
    }

    /// The first 12 characters.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `name:tag` reference; the tag defaults to `latest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Reference(pub String);

impl Reference {
    /// Parses `NAME[:TAG][@DIGEST]` by the OCI distribution grammar
    /// (lowercase repository path components, tag `[\w][\w.-]{0,127}`),
    /// adding `:latest` when neither a tag nor a digest is given. A
    /// repository named `sha256` is refused: `sha256:HEX` names an image by
    /// id, and such a tag would shadow the image with that id.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &dyn fmt::Display| {
            format!("invalid image reference {text:?}: {why} (use NAME[:TAG], e.g. demo/app:1.0)")
        };
        text.parse::<oci_spec::distribution::Reference>()
            .map_err(|e| invalid(&e))?;
        let name = text.split(['@']).next().unwrap_or(text);
        let repository = match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => name,
        };
        if repository == "sha256" {
            return Err(invalid(&"sha256:... names an image by id, not by tag"));
        }
        Ok(Self::lookup(text))
    }

    /// The stored form of `text` (`:latest` added when neither a tag nor a
    /// digest is given), unchecked: for finding an existing tag, which was
    /// checked when it was made. It costs no grammar check, whose regex
    /// would otherwise be compiled by every command that names an image.
    pub fn lookup(text: &str) -> Self {
        let last = text.rsplit('/').next().unwrap_or(text);
        if text.contains('@') || last.contains(':') {
            Self(text.to_owned())
        } else {
            Self(format!("{text}:latest"))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// sha256 of the uncompressed tar.
    pub diff_id: DiffId,
    /// Chain id; also the key of the committed snapshot holding it.
    pub chain_id: ChainId,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

/// An image: its config, layers bottom first, and tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// sha256 of `config`.
    pub id: ImageId,
    /// The OCI image config, byte for byte.
    pub config: Vec<u8>,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// Tags pointing at it.
    pub tags: Vec<Reference>,
    /// When it entered this store, ns.
    pub created_ns: u64,
}

impl ImageRecord {
    /// The parsed config.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.config).unwrap_or(serde_json::Value::Null)
    }
}

/// A container: one writable snapshot on top of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Id.
    pub id: ContainerId,
    /// Unique name.
    pub name: String,
    /// The image it was made from.
    pub image: ImageId,
    /// The reference the user gave.
    pub image_ref: String,
    /// Key of its active snapshot.
    pub snapshot: strata_driver_api::SnapshotKey,
    /// Size limit asked for, bytes.
    pub size_limit: Option<u64>,
    /// Where its merged rootfs is mounted, if it is.
    pub mounted_at: Option<std::path::PathBuf>,
    /// The session (process) mounting it right now: set before the mount,
    /// cleared when `mounted_at` is recorded. A mount of a dead session that
    /// was never recorded is undone by the next command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounting: Option<String>,
    /// The user's labels (`create --label KEY=VALUE`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Creation time, ns.
    pub created_ns: u64,
}

/// Formats Unix seconds as an RFC 3339 UTC timestamp (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn references_get_latest() {
        assert_eq!(Reference::parse("busybox").unwrap().0, "busybox:latest");
        assert_eq!(
            Reference::parse("reg:5000/x/busybox").unwrap().0,
            "reg:5000/x/busybox:latest"
        );
        assert_eq!(Reference::parse("busybox:1.36").unwrap().0, "busybox:1.36");
        assert!(Reference::parse("bad name").is_err());
    }

    #[test]
    fn references_follow_the_distribution_grammar() {
        for bad in [
            "Demo/App:1",
            "demo/App",
            "Demo",
            "demo/app:",
            "a:b:c",
            "sha256:92161fce9d2a",
            "x:-tag",
            &format!("x:{}", "t".repeat(129)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} was accepted");
        }
        for good in [
            "localhost:5000/demo/app:1.0",
            "Registry.example.com/demo/app",
            "demo/app_x.y-z:V1_2.3",
            &format!("x:{}", "t".repeat(128)),
        ] {
            assert!(Reference::parse(good).is_ok(), "{good} was refused");
        }
        let digest = format!("demo/app@sha256:{}", "a".repeat(64));
        assert_eq!(Reference::parse(&digest).unwrap().0, digest);
    }
}
