//! The shared conformance suite, driven through `strata serve`'s gRPC socket
//! (server in-process on a vfs store, client = `GrpcSnapshotter`), plus the
//! gRPC-specific behaviour: error codes, labels, filters, concurrency.

#[macro_use]
mod conformance_suite;
mod serve_support;
use serve_support as common;

use std::sync::Arc;

use conformance_suite::Fixture;
use strata::serve::{self, GrpcSnapshotter};
use strata::snapshotter::{Snapshotter, SnapshotterExt};
use strata_driver_api::testing::{require_root, ScratchDir};
use strata_driver_api::{Error, Kind, Labels, SnapshotKey};

fn make() -> Option<Fixture> {
    if !require_root("serve_conformance") {
        return None;
    }
    let scratch = ScratchDir::new("serve");
    let (client, server) = common::served(&scratch, common::vfs_store(&scratch));
    Some(Fixture {
        snapshotter: Box::new(client),
        keep: vec![Box::new(server)],
        scratch,
    })
}

conformance_tests!(make);

/// A store of `driver` opened the way `strata serve` opens it (`Store`,
/// loop-backed where the driver makes its own backing), served on a socket.
fn served_store(driver: &str) -> Option<Fixture> {
    let test = format!("serve_conformance_{driver}");
    if !require_root(&test) {
        return None;
    }
    let scratch = ScratchDir::new(&format!("serve-{driver}"));
    let store = match strata::Store::init(&scratch.path().join("root"), driver, Default::default())
    {
        Ok(store) => store,
        Err(e) => {
            strata_driver_api::testing::skip(&test, &e.to_string());
            return None;
        }
    };
    let snapshots: Arc<dyn Snapshotter> = store.snapshots().clone();
    let (client, server) = common::served(&scratch, snapshots);
    Some(Fixture {
        snapshotter: Box::new(client),
        keep: vec![Box::new(server), Box::new(store)],
        scratch,
    })
}

/// The suite again through the socket on each driver's own store: overlay2
/// (mount specs with lowerdir chains), btrfs (subvolumes on a loop file),
/// blockfile (loop-mounted image clones), devmapper (thin snapshots; in the
/// VM tier, the host has no dm-thin).
mod overlay2 {
    use super::*;
    conformance_tests!(|| served_store("overlay2"));
}

mod btrfs {
    use super::*;
    conformance_tests!(|| served_store("btrfs"));
}

mod blockfile {
    use super::*;
    conformance_tests!(|| served_store("blockfile"));
}

mod devmapper {
    use super::*;
    conformance_tests!(
        || served_store("devmapper"),
        #[ignore = "needs dm-thin: runs in the VM tier"]
    );
}

fn key(s: &str) -> SnapshotKey {
    s.into()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn grpc_errors_keep_their_kind() {
    let Some(fx) = make() else { return };
    let s = &fx.snapshotter;
    let k = key("default/1/extract-1 sha256:aaa");
    s.prepare(&k, None, Labels::new()).unwrap();
    assert!(matches!(
        s.prepare(&k, None, Labels::new()),
        Err(Error::AlreadyExists(n)) if n == k.0
    ));
    assert!(matches!(s.stat(&key("nope")), Err(Error::NotFound(n)) if n == "nope"));
    // An active snapshot cannot be a parent.
    assert!(matches!(
        s.prepare(&key("child"), Some(&k), Labels::new()),
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        s.list(&["name==a,".to_string()]),
        Err(Error::InvalidArgument(m)) if m.contains("byte 8") && m.contains("expected field")
    ));
    let info = s.stat(&k).unwrap();
    assert!(matches!(
        s.update(&info, &["parent".to_string()]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn grpc_labels_round_trip_and_update_by_fieldpath() {
    let Some(fx) = make() else { return };
    let s = &fx.snapshotter;
    let l = labels(&[
        ("containerd.io/snapshot.ref", "sha256:abc"),
        ("containerd.io/gc.root", "2024-01-01T00:00:00Z"),
    ]);
    s.prepare(&key("ns/2/a"), None, l.clone()).unwrap();
    let info = s.stat(&key("ns/2/a")).unwrap();
    assert_eq!(info.labels, l);
    assert_eq!(info.kind, Kind::Active);

    let mut want = info.clone();
    want.labels = labels(&[("x", "1")]);
    let got = s
        .update(
            &want,
            &[
                "labels.x".to_string(),
                "labels.containerd.io/gc.root".to_string(),
            ],
        )
        .unwrap();
    assert_eq!(
        got.labels,
        labels(&[("containerd.io/snapshot.ref", "sha256:abc"), ("x", "1")])
    );
    // "labels" (and no mask) replace the set.
    let got = s.update(&want, &["labels".to_string()]).unwrap();
    assert_eq!(got.labels, labels(&[("x", "1")]));
    s.commit(&key("layer"), &key("ns/2/a"), labels(&[("c", "3")]))
        .unwrap();
    assert_eq!(s.stat(&key("layer")).unwrap().labels, labels(&[("c", "3")]));
}

#[test]
fn grpc_list_filters() {
    let Some(fx) = make() else { return };
    let s = &fx.snapshotter;
    s.prepare(&key("a"), None, labels(&[("t", "x")])).unwrap();
    s.commit(&key("base"), &key("a"), labels(&[("t", "x")]))
        .unwrap();
    s.prepare(&key("b"), Some(&key("base")), labels(&[("t", "y")]))
        .unwrap();
    s.view(&key("v"), Some(&key("base")), Labels::new())
        .unwrap();
    let names = |f: &[&str]| {
        let f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
        let mut n: Vec<String> = s.list(&f).unwrap().into_iter().map(|i| i.name.0).collect();
        n.sort();
        n
    };
    assert_eq!(names(&[]), ["b", "base", "v"]);
    assert_eq!(names(&["kind==committed"]), ["base"]);
    assert_eq!(names(&["kind==view"]), ["v"]);
    assert_eq!(names(&["parent==base"]), ["b", "v"]);
    assert_eq!(names(&["name==b"]), ["b"]);
    assert_eq!(names(&["labels.t==y"]), ["b"]);
    assert_eq!(names(&["labels.t"]), ["b", "base"]);
    assert_eq!(names(&["kind==active", "kind==view"]), ["b", "v"]);
    // containerd's Walk test: the quoted empty string, quoted label keys.
    s.update(
        &strata_driver_api::Info {
            labels: labels(&[("t", "y"), ("containerd.io/gc.root", "check-walk")]),
            ..s.stat(&key("b")).unwrap()
        },
        &["labels.containerd.io/gc.root".to_string()],
    )
    .unwrap();
    s.prepare(&key("a2"), None, Labels::new()).unwrap();
    let root = labels(&[("containerd.io/gc.root", "check-walk")]);
    s.commit(&key("orphan"), &key("a2"), root).unwrap();
    assert_eq!(
        names(&[r#"labels."containerd.io/gc.root"==check-walk"#]),
        ["b", "orphan"]
    );
    assert_eq!(
        names(&[r#"parent!="",labels."containerd.io/gc.root"==check-walk"#]),
        ["b"]
    );
    assert_eq!(names(&[r#"parent!="""#]), ["b", "v"]);
    assert_eq!(names(&["name~=^(b|v)$"]), ["b", "v"]);
    assert_eq!(names(&["name~=/^ba/,kind!=active"]), ["base"]);
    assert_eq!(names(&["colour==red"]), Vec::<String>::new());
}

/// Many clients at once, and a Stat from inside a List's visit (the list is
/// served while the stat runs): no deadlock, all calls answered.
#[test]
fn grpc_concurrent_clients() {
    if !require_root("grpc_concurrent_clients") {
        return;
    }
    let scratch = ScratchDir::new("serve-conc");
    let store = common::vfs_store(&scratch);
    let (client, server) = common::served(&scratch, store);
    let socket = server.socket().to_owned();
    std::thread::scope(|t| {
        for n in 0..4 {
            let socket = &socket;
            t.spawn(move || {
                let c = GrpcSnapshotter::connect(socket).unwrap();
                for i in 0..10 {
                    let k = key(&format!("c{n}/{i}"));
                    c.prepare(&k, None, Labels::new()).unwrap();
                    c.commit(&key(&format!("c{n}/l{i}")), &k, Labels::new())
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(client.list(&[]).unwrap().len(), 40);
    // The server streams the walk while this client's stat calls arrive on a
    // second connection.
    let other = Arc::new(GrpcSnapshotter::connect(&socket).unwrap());
    let mut seen = 0;
    client
        .walk(&[], &mut |info| {
            assert_eq!(other.stat(&info.name)?.name, info.name);
            seen += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, 40);
    drop((client, other));
    server.stop().unwrap();
}

/// Stopping the server leaves snapshots in place for the next start, and
/// the socket file goes away.
#[test]
fn grpc_restart_keeps_snapshots() {
    if !require_root("grpc_restart_keeps_snapshots") {
        return;
    }
    let scratch = ScratchDir::new("serve-restart");
    let store = common::vfs_store(&scratch);
    let (client, server) = common::served(&scratch, Arc::clone(&store));
    let socket = server.socket().to_owned();
    client.prepare(&key("keep"), None, Labels::new()).unwrap();
    drop(client);
    server.stop().unwrap();
    assert!(!socket.exists(), "socket left behind");
    let server = serve::spawn(store, &socket).unwrap();
    let client = GrpcSnapshotter::connect(&socket).unwrap();
    assert_eq!(client.stat(&key("keep")).unwrap().kind, Kind::Active);
    drop(client);
    server.stop().unwrap();
}
