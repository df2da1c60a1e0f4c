//! Conversions between Strata's snapshot types and containerd's gRPC ones,
//! and between [`strata_driver_api::Error`] and gRPC status codes.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_snapshots::api::snapshots::v1 as grpc;
use containerd_snapshots::api::types as ctypes;
use containerd_snapshots::tonic::{Code, Status};
use strata_driver_api::{Error, Info, Kind, Labels, Mount, SnapshotKey, Usage};

/// Maps a Strata error to the gRPC status containerd expects
/// (containerd's `errdefs.ToGRPC`): its unpacker relies on `AlreadyExists`.
pub fn to_status(err: &Error) -> Status {
    let message = err.to_string();
    match err {
        Error::NotFound(_) => Status::not_found(message),
        Error::AlreadyExists(_) => Status::already_exists(message),
        Error::FailedPrecondition(_) => Status::failed_precondition(message),
        Error::InvalidArgument(_) => Status::invalid_argument(message),
        Error::Unsupported { .. } => Status::unimplemented(message),
        _ => Status::internal(message),
    }
}

/// Maps a gRPC status back to a Strata error (the client adapter's side).
/// The message prefixes added by [`Error`]'s `Display` are stripped so a
/// round trip keeps the original text.
pub fn from_status(status: &Status) -> Error {
    let msg = status.message();
    match status.code() {
        Code::NotFound => Error::NotFound(strip(msg, "snapshot ", " does not exist")),
        Code::AlreadyExists => Error::AlreadyExists(strip(msg, "snapshot ", " already exists")),
        Code::FailedPrecondition => Error::FailedPrecondition(msg.to_owned()),
        Code::InvalidArgument => Error::InvalidArgument(strip(msg, "invalid argument: ", "")),
        code => Error::driver("grpc", format!("{code:?}: {msg}")),
    }
}

fn strip(msg: &str, prefix: &str, suffix: &str) -> String {
    msg.strip_prefix(prefix)
        .and_then(|m| m.strip_suffix(suffix))
        .unwrap_or(msg)
        .to_owned()
}

/// Empty string (containerd's "no parent") to `None`.
pub fn parent_key(parent: String) -> Option<SnapshotKey> {
    (!parent.is_empty()).then_some(SnapshotKey(parent))
}

/// containerd's label map to Strata's ordered one.
pub fn labels_in(labels: HashMap<String, String>) -> Labels {
    labels.into_iter().collect()
}

/// Strata's label map to containerd's.
pub fn labels_out(labels: Labels) -> HashMap<String, String> {
    labels.into_iter().collect()
}

/// A Strata mount spec as containerd's `types.Mount`.
pub fn mount_out(m: Mount) -> ctypes::Mount {
    ctypes::Mount {
        r#type: m.fstype,
        source: m.source,
        target: String::new(),
        options: m.options,
    }
}

/// containerd's `types.Mount` as a Strata mount spec.
pub fn mount_in(m: ctypes::Mount) -> Mount {
    Mount {
        fstype: m.r#type,
        source: m.source,
        options: m.options,
    }
}

/// Strata kind to the crate's kind.
pub fn kind_out(kind: Kind) -> containerd_snapshots::Kind {
    match kind {
        Kind::Active => containerd_snapshots::Kind::Active,
        Kind::View => containerd_snapshots::Kind::View,
        Kind::Committed => containerd_snapshots::Kind::Committed,
    }
}

/// The crate's kind to Strata's; `Unknown` has no counterpart.
pub fn kind_in(kind: &containerd_snapshots::Kind) -> Option<Kind> {
    match kind {
        containerd_snapshots::Kind::Active => Some(Kind::Active),
        containerd_snapshots::Kind::View => Some(Kind::View),
        containerd_snapshots::Kind::Committed => Some(Kind::Committed),
        containerd_snapshots::Kind::Unknown => None,
    }
}

/// Kind as the protobuf enum value (containerd's `Kind`: view=1, active=2, committed=3).
pub fn kind_to_i32(kind: Kind) -> i32 {
    match kind {
        Kind::View => 1,
        Kind::Active => 2,
        Kind::Committed => 3,
    }
}

/// Protobuf enum value to Strata's kind.
pub fn kind_from_i32(kind: i32) -> Result<Kind, Error> {
    match kind {
        1 => Ok(Kind::View),
        2 => Ok(Kind::Active),
        3 => Ok(Kind::Committed),
        k => Err(Error::InvalidArgument(format!("unknown snapshot kind {k}"))),
    }
}

fn time_of(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn ns_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ns_of_timestamp(t: Option<prost_types::Timestamp>) -> u64 {
    t.and_then(|t| SystemTime::try_from(t).ok())
        .map(ns_of)
        .unwrap_or(0)
}

/// Strata info to the crate's info (server side).
pub fn info_out(info: Info) -> containerd_snapshots::Info {
    containerd_snapshots::Info {
        kind: kind_out(info.kind),
        name: info.name.0,
        parent: info.parent.map(|p| p.0).unwrap_or_default(),
        labels: labels_out(info.labels),
        created_at: time_of(info.created_ns),
        updated_at: time_of(info.updated_ns),
    }
}

/// The crate's info to Strata's (server side, for Update); `kind` fills in
/// when the request left it unknown.
pub fn info_in(info: containerd_snapshots::Info, kind: Kind) -> Info {
    Info {
        kind: kind_in(&info.kind).unwrap_or(kind),
        name: SnapshotKey(info.name),
        parent: parent_key(info.parent),
        labels: labels_in(info.labels),
        created_ns: ns_of(info.created_at),
        updated_ns: ns_of(info.updated_at),
    }
}

/// Strata info to the wire message (client side, for Update).
pub fn info_to_grpc(info: &Info) -> grpc::Info {
    grpc::Info {
        name: info.name.0.clone(),
        parent: info
            .parent
            .as_ref()
            .map(|p| p.0.clone())
            .unwrap_or_default(),
        kind: kind_to_i32(info.kind),
        created_at: Some(time_of(info.created_ns).into()),
        updated_at: Some(time_of(info.updated_ns).into()),
        labels: labels_out(info.labels.clone()),
    }
}

/// Wire message to Strata info (client side).
pub fn info_from_grpc(info: grpc::Info) -> Result<Info, Error> {
    Ok(Info {
        kind: kind_from_i32(info.kind)?,
        name: SnapshotKey(info.name),
        parent: parent_key(info.parent),
        labels: labels_in(info.labels),
        created_ns: ns_of_timestamp(info.created_at),
        updated_ns: ns_of_timestamp(info.updated_at),
    })
}

/// Strata usage to the crate's (sizes saturate at `i64::MAX`).
pub fn usage_out(u: Usage) -> containerd_snapshots::Usage {
    containerd_snapshots::Usage {
        size: i64::try_from(u.size).unwrap_or(i64::MAX),
        inodes: i64::try_from(u.inodes).unwrap_or(i64::MAX),
    }
}

/// Normalises containerd's update field paths for [`crate::snapshotter::Snapshotter::update`]:
/// `labels` (or no mask) replaces every label, `labels.NAME` sets one; any
/// other field cannot be updated.
pub fn fieldpaths_in(paths: Option<Vec<String>>) -> Result<Vec<String>, Error> {
    let paths = paths.unwrap_or_default();
    let mut out = Vec::new();
    for path in paths {
        if path == "labels" {
            return Ok(Vec::new());
        }
        match path.strip_prefix("labels.") {
            Some(name) if !name.is_empty() => out.push(path),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "cannot update {path:?} field on snapshot"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_codes_and_back() {
        let cases = [
            Error::NotFound("ns/1/k".into()),
            Error::AlreadyExists("ns/1/k".into()),
            Error::FailedPrecondition("k is not committed".into()),
            Error::InvalidArgument("bad filter".into()),
        ];
        let codes = [
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::InvalidArgument,
        ];
        for (err, code) in cases.iter().zip(codes) {
            let status = to_status(err);
            assert_eq!(status.code(), code, "{err}");
            let back = from_status(&status);
            assert_eq!(back.to_string(), err.to_string());
        }
        let io = Error::io(
            "mkdir",
            "/x",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(to_status(&io).code(), Code::Internal);
        let unsup = Error::Unsupported {
            driver: "btrfs".into(),
            reason: "no btrfs".into(),
        };
        assert_eq!(to_status(&unsup).code(), Code::Unimplemented);
    }

    #[test]
    fn info_round_trips_through_the_wire() {
        let info = Info {
            name: "default/3/sha256:abc".into(),
            parent: Some("p".into()),
            kind: Kind::Committed,
            labels: [("containerd.io/gc.root".to_string(), "x".to_string())].into(),
            created_ns: 1_700_000_000_123_456_789,
            updated_ns: 1_700_000_001_000_000_000,
        };
        assert_eq!(info_from_grpc(info_to_grpc(&info)).unwrap(), info);
        let out = info_out(info.clone());
        assert_eq!(info_in(out, Kind::Active), info);
    }

    #[test]
    fn no_parent_is_the_empty_string() {
        assert_eq!(parent_key(String::new()), None);
        let info = Info {
            name: "a".into(),
            parent: None,
            kind: Kind::Active,
            labels: Labels::new(),
            created_ns: 0,
            updated_ns: 0,
        };
        assert_eq!(info_to_grpc(&info).parent, "");
        assert_eq!(info_out(info).parent, "");
    }

    #[test]
    fn fieldpaths_are_normalised() {
        let v = |s: &[&str]| Some(s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(fieldpaths_in(None).unwrap(), Vec::<String>::new());
        assert_eq!(fieldpaths_in(v(&["labels"])).unwrap(), Vec::<String>::new());
        assert_eq!(
            fieldpaths_in(v(&["labels.a", "labels.b/c"])).unwrap(),
            vec!["labels.a".to_string(), "labels.b/c".to_string()]
        );
        assert!(matches!(
            fieldpaths_in(v(&["parent"])),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn usage_saturates() {
        let u = usage_out(Usage {
            size: u64::MAX,
            inodes: 3,
        });
        assert_eq!((u.size, u.inodes), (i64::MAX, 3));
    }
}
