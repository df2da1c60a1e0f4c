//! `strata snapshots [ls|tree|usage]` lists every snapshot of the store,
//! including those a runtime made through `strata serve`'s socket, with
//! key, kind, parent, labels, owner and size, while the server runs.

mod common;
mod reliability;

use common::*;
use reliability::*;
use strata::snapshotter::Snapshotter;
use strata_driver_api::{Labels, SnapshotKey};

/// Makes snapshots through `strata serve`'s socket the way containerd does
/// (namespaced keys, labels).
fn make_runtime_snapshots(server: &Server, parent: &str) {
    let client = server.client();
    let labels: Labels = [(
        "containerd.io/snapshot.ref".to_owned(),
        "sha256:feed".to_owned(),
    )]
    .into();
    let active = SnapshotKey("default/1/extract-rt".into());
    let committed = SnapshotKey("default/2/sha256:feed".into());
    client
        .prepare(
            &active,
            Some(&SnapshotKey(parent.to_owned())),
            labels.clone(),
        )
        .expect("prepare through the socket");
    client
        .commit(&committed, &active, labels)
        .expect("commit through the socket");
    client
        .prepare(
            &SnapshotKey("default/3/ctr-container".into()),
            Some(&committed),
            Labels::new(),
        )
        .expect("prepare a container through the socket");
}

#[test]
fn snapshots_lists_what_the_runtime_made() {
    let Some((scratch, root)) = scratch_store("snapshots_cli", "vfs", &[]) else {
        return;
    };
    let tar = scratch.path().join("base.tar");
    busybox_rootfs_tar(&tar, "base\n");
    strata_ok(&root, &["import", tar.to_str().unwrap(), "base:1"]);
    let container = last_line(&strata_ok(&root, &["create", "--name", "web", "base:1"]));
    let layer = json(&root, &["images"])[0]["layers"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let server = Server::start(&root, &scratch.path().join("strata.sock"));
    make_runtime_snapshots(&server, &layer);

    // Listed while the server runs, and after it stopped.
    let live = json(&root, &["snapshots"]);
    server.stop();
    let list = json(&root, &["snapshots"]);
    assert_eq!(live, list);
    let list = list.as_array().unwrap();
    let find = |key: &str| {
        list.iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("{key} not listed: {list:?}"))
            .clone()
    };
    assert_eq!(list.len(), 4, "{list:#?}");
    let base = find(&layer);
    assert_eq!(base["kind"], "committed");
    assert_eq!(base["owner"], "image base:1");
    assert!(base["parent"].is_null());
    let mine = find(&format!("container-{container}"));
    assert_eq!(mine["kind"], "active");
    assert_eq!(mine["owner"], "container web");
    assert_eq!(mine["parent"], layer.as_str());
    let rt = find("default/2/sha256:feed");
    assert_eq!(rt["kind"], "committed");
    assert_eq!(rt["owner"], "runtime");
    assert_eq!(rt["parent"], layer.as_str());
    assert_eq!(rt["labels"]["containerd.io/snapshot.ref"], "sha256:feed");
    let ctr = find("default/3/ctr-container");
    assert_eq!(ctr["kind"], "active");
    assert_eq!(ctr["owner"], "runtime");
    assert_eq!(ctr["parent"], "default/2/sha256:feed");
    for s in list {
        assert!(s["size"].is_u64(), "no size for {s}");
    }

    // `ls` is the default; the table names every key.
    let table = strata_ok(&root, &["snapshots", "ls"]);
    for s in list {
        assert!(table.contains(s["key"].as_str().unwrap()), "{table}");
    }

    let tree = json(&root, &["snapshots", "tree"]);
    let roots = tree.as_array().unwrap();
    assert_eq!(roots.len(), 1, "{tree:#}");
    assert_eq!(roots[0]["key"], layer.as_str());
    let kids: Vec<&str> = roots[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        [
            format!("container-{container}").as_str(),
            "default/2/sha256:feed"
        ]
    );
    let rt_kids = &roots[0]["children"][1]["children"];
    assert_eq!(rt_kids[0]["key"], "default/3/ctr-container");
    let drawn = strata_ok(&root, &["snapshots", "tree"]);
    assert!(drawn.contains("└─ default/3/ctr-container"), "{drawn}");

    let usage = json(&root, &["snapshots", "usage"]);
    let sizes: u64 = usage["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["size"].as_u64().unwrap())
        .sum();
    assert_eq!(usage["total_size"].as_u64().unwrap(), sizes);
    assert!(sizes > 0, "{usage:#}");
    let table = strata_ok(&root, &["snapshots", "usage"]);
    assert!(
        table.lines().last().unwrap().starts_with("TOTAL"),
        "{table}"
    );

    let help = strata_ok(&root, &["snapshots", "--help"]);
    assert!(help.contains("strata snapshots tree"), "{help}");
}
