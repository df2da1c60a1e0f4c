//! Concurrency: many CLI processes at once; many threads driving the
//! in-process snapshotter, and many gRPC clients driving a `strata serve`
//! process, without errors or leaks; and the CLI working on the store a
//! busy `strata serve` serves (tests/shared_store.rs). The devmapper cases
//! run in the VM tier.

mod common;
mod reliability;

use std::sync::Arc;

use common::*;
use reliability::*;
use strata::snapshotter::{Snapshotter, SnapshotterExt};
use strata_driver_api::testing::{require_root, skip, ScratchDir};
use strata_driver_api::{Labels, SnapshotKey};

fn store_with_base(test: &str, driver: &str) -> Option<(ScratchDir, std::path::PathBuf)> {
    let (scratch, root) = scratch_store(test, driver, &[])?;
    let tar = scratch.path().join("base.tar");
    busybox_rootfs_tar(&tar, "base\n");
    strata_ok(&root, &["import", tar.to_str().unwrap(), "base"]);
    Some((scratch, root))
}

/// Applies `tar` as a layer the way `load` does, up to the point before its
/// image is recorded: the layer and what to roll back.
fn apply_as_a_load(
    store: &strata::Store,
    tar: &std::path::Path,
) -> (strata::model::LayerRecord, strata::store::NewLayers) {
    let limits = store.limits().expect("limits").apply_limits(u64::MAX);
    let mut made = strata::store::NewLayers::default();
    let layer = store
        .layers()
        .apply_and_keep(
            None,
            std::fs::File::open(tar).unwrap(),
            None,
            limits,
            &mut made,
        )
        .expect("apply the layer");
    (layer, made)
}

/// The record of a one-layer image of `layer` tagged `tag`.
fn image_of(layer: &strata::model::LayerRecord, tag: &str) -> strata::model::ImageRecord {
    let config = strata::ops::import::image_config(&[layer], "test");
    strata::model::ImageRecord {
        id: strata::model::Digest::of(&config),
        config,
        layers: vec![layer.clone()],
        tags: vec![strata::model::Reference::lookup(tag)],
        created_ns: strata::now_ns(),
    }
}

#[test]
fn many_cli_processes_at_once_serialise_cleanly() {
    let Some((scratch, root)) = store_with_base("concurrency::cli", "vfs") else {
        return;
    };
    let mut tars = Vec::new();
    for i in 0..3 {
        let tar = scratch.path().join(format!("img{i}.tar"));
        busybox_rootfs_tar(&tar, &format!("img {i}\n"));
        tars.push(tar);
    }
    let mut children = Vec::new();
    for i in 0..8 {
        let name = format!("c{i}");
        children.push(
            command(&root, &["create", "--name", &name, "base"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    for (i, tar) in tars.iter().enumerate() {
        let reference = format!("img{i}");
        children.push(
            command(&root, &["import", tar.to_str().unwrap(), &reference])
                .spawn()
                .unwrap(),
        );
        children.push(
            command(&root, &["ps"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let ops = children.len();
    for mut c in children {
        assert!(
            c.wait().unwrap().success(),
            "a concurrent strata process failed"
        );
    }
    assert_eq!(json(&root, &["ps"]).as_array().unwrap().len(), 8);
    assert_eq!(json(&root, &["images"]).as_array().unwrap().len(), 4);
    check_clean(&root, &["--data"], "check --data after the processes");
    eprintln!("CONCURRENCY cli: {ops} strata processes at once on one store");
}

/// Threads × iterations of prepare, stat, mounts, commit, view, usage,
/// walk and remove through one in-process snapshotter.
fn hammer(driver: &str) {
    let test = format!("concurrency::threads_{driver}");
    if !require_root(&test) {
        return;
    }
    let scratch = ScratchDir::new(&format!("conc-threads-{driver}"));
    let root = scratch.path().join("store");
    let store = match strata::Store::init(&root, driver, Default::default()) {
        Ok(s) => s,
        Err(e) if e.to_string().contains("unknown driver") => {
            return skip(&test, &format!("driver {driver} is not registered"))
        }
        Err(e) => panic!("open {driver}: {e}"),
    };
    let sn = Arc::clone(store.snapshots());
    sn.prepare(&"base-active".into(), None, Labels::new())
        .unwrap();
    sn.commit(&"base".into(), &"base-active".into(), Labels::new())
        .unwrap();
    let threads = 6;
    let rounds = 25;
    let ops = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let sn = &sn;
            let ops = &ops;
            s.spawn(move || {
                for r in 0..rounds {
                    let active = SnapshotKey(format!("t{t}-r{r}-active"));
                    let layer = SnapshotKey(format!("t{t}-r{r}-layer"));
                    let view = SnapshotKey(format!("t{t}-r{r}-view"));
                    sn.prepare(&active, Some(&"base".into()), Labels::new())
                        .unwrap();
                    sn.stat(&active).unwrap();
                    sn.mounts(&active).unwrap();
                    sn.commit(&layer, &active, Labels::new()).unwrap();
                    sn.view(&view, Some(&layer), Labels::new()).unwrap();
                    sn.usage(&layer).unwrap();
                    sn.list(&[]).unwrap();
                    sn.remove(&view).unwrap();
                    sn.remove(&layer).unwrap();
                    ops.fetch_add(9, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(
        sn.list(&[]).unwrap().len(),
        1,
        "snapshots left besides base"
    );
    assert!(
        sn.incomplete().unwrap().is_empty(),
        "half-done operations left"
    );
    assert!(sn.orphans().unwrap().is_empty(), "orphan storage left");
    let report = strata::check::check(&store, Default::default()).unwrap();
    assert!(!report.damaged(), "{:?}", report.remaining);
    sn.remove(&"base".into()).unwrap();
    drop(sn);
    drop(store);
    assert_no_leaks(&root, "after the threads");
    eprintln!(
        "CONCURRENCY {driver}: {} snapshotter operations from {threads} threads",
        ops.into_inner()
    );
}

#[test]
fn threads_hammer_the_snapshotter_vfs() {
    hammer("vfs");
}

#[test]
fn threads_hammer_the_snapshotter_overlay2() {
    hammer("overlay2");
}

#[test]
fn threads_hammer_the_snapshotter_btrfs() {
    hammer("btrfs");
}

#[test]
fn threads_hammer_the_snapshotter_blockfile() {
    hammer("blockfile");
}

#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn threads_hammer_the_snapshotter_devmapper() {
    hammer("devmapper");
}

/// Clients × rounds of prepare, stat, mounts, commit, view, usage, list and
/// remove through one `strata serve` process; afterwards the server stops
/// cleanly and the store holds nothing but what the test left.
fn serve_hammer(driver: &str) {
    let test = format!("concurrency::serve_{driver}");
    let Some((scratch, root)) = scratch_store(&test, driver, &[]) else {
        return;
    };
    let server = Server::start(&root, &scratch.path().join("strata.sock"));
    let admin = server.client();
    admin
        .prepare(&"base-active".into(), None, Labels::new())
        .unwrap();
    admin
        .commit(&"base".into(), &"base-active".into(), Labels::new())
        .unwrap();
    let clients = 8;
    let rounds = 10;
    let ops = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for c in 0..clients {
            let (server, ops) = (&server, &ops);
            s.spawn(move || {
                let sn = server.client();
                for r in 0..rounds {
                    let active = SnapshotKey(format!("c{c}-r{r}-active"));
                    let layer = SnapshotKey(format!("c{c}-r{r}-layer"));
                    let view = SnapshotKey(format!("c{c}-r{r}-view"));
                    sn.prepare(&active, Some(&"base".into()), Labels::new())
                        .unwrap_or_else(|e| panic!("prepare {active}: {e}"));
                    sn.stat(&active).unwrap();
                    assert!(!sn.mounts(&active).unwrap().is_empty());
                    sn.commit(&layer, &active, Labels::new())
                        .unwrap_or_else(|e| panic!("commit {layer}: {e}"));
                    sn.view(&view, Some(&layer), Labels::new()).unwrap();
                    sn.usage(&layer).unwrap();
                    sn.list(&[]).unwrap();
                    sn.remove(&view)
                        .unwrap_or_else(|e| panic!("remove {view}: {e}"));
                    sn.remove(&layer)
                        .unwrap_or_else(|e| panic!("remove {layer}: {e}"));
                    ops.fetch_add(9, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let left: Vec<_> = admin
        .list(&[])
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(left, vec![SnapshotKey::from("base")], "snapshots left");
    admin.remove(&"base".into()).unwrap();
    drop(admin);
    server.stop();
    check_clean(
        &root,
        &[],
        &format!("{test}: store not clean after serving"),
    );
    assert_eq!(json(&root, &["info"])["snapshots"], 0);
    assert_no_leaks(&root, "after strata serve stopped");
    eprintln!(
        "CONCURRENCY serve {driver}: {} gRPC operations from {clients} clients",
        ops.into_inner()
    );
}

#[test]
fn serve_clients_hammer_the_socket_vfs() {
    serve_hammer("vfs");
}

#[test]
fn serve_clients_hammer_the_socket_overlay2() {
    serve_hammer("overlay2");
}

#[test]
fn serve_clients_hammer_the_socket_btrfs() {
    serve_hammer("btrfs");
}

#[test]
fn serve_clients_hammer_the_socket_blockfile() {
    serve_hammer("blockfile");
}

#[test]
#[ignore = "needs dm-thin: runs in the VM tier"]
fn serve_clients_hammer_the_socket_devmapper() {
    serve_hammer("devmapper");
}

/// An import whose layer is in the store already (another image has it)
/// and an `rmi` of that other image, interleaved the way two processes
/// can: the import finds the layer, the rmi removes its image and the
/// layers no recorded image needs, then the import records its image.
/// The image must not end up naming a layer that is gone: either the
/// layer stays or recording the image fails.
#[test]
fn rmi_never_removes_a_layer_an_import_is_about_to_record() {
    let test = "concurrency::rmi_vs_import";
    let Some((scratch, root)) = store_with_base(test, "vfs") else {
        return;
    };
    let tar = scratch.path().join("again.tar");
    busybox_rootfs_tar(&tar, "shared\n");
    strata_ok(&root, &["import", tar.to_str().unwrap(), "first"]);

    let store = strata::Store::open(&root).expect("open the store");
    let (layer, made) = apply_as_a_load(&store, &tar);
    strata_ok(&root, &["rmi", "first"]);
    let image = image_of(&layer, "second");
    let recorded = store.meta().and_then(|m| m.put_image(&image));
    if recorded.is_err() {
        // What the import does when its record fails.
        made.roll_back(&store.layers());
    }
    let key = strata::store::keys::layer_snapshot_key(&layer.chain_id);
    let layer_there = store.snapshots().stat(&key).is_ok();
    drop(store);
    assert!(
        recorded.is_err() || layer_there,
        "image second was recorded with its layer {key} removed by the rmi"
    );
    // The shared kept tar, marked by the import while the rmi ran, is left
    // for check to remove.
    check(&root, &["--repair"]);
    check_clean(&root, &[], &format!("{test}: store not clean"));
}

/// The other interleaving: an rmi (or a prune, or a failed load's
/// rollback) decided a layer was unused, then another process recorded an
/// image naming it. The removal must then refuse: it checks the images in
/// the transaction that starts it.
#[test]
fn a_layer_an_image_names_is_never_removed() {
    let test = "concurrency::layer_named_by_image";
    let Some((_scratch, root)) = store_with_base(test, "vfs") else {
        return;
    };
    let store = strata::Store::open(&root).expect("open the store");
    let image = store.resolve_image("base").expect("base");
    let chain = image.layers[0].chain_id.clone();
    let removed = store.layers().remove(&chain);
    let key = strata::store::keys::layer_snapshot_key(&chain);
    let layer_there = store.snapshots().stat(&key).is_ok();
    drop(store);
    assert!(
        removed.is_err() && layer_there,
        "layer {key} of image base was removed: {removed:?}"
    );
    check_clean(&root, &[], &format!("{test}: store not clean"));
}

/// A check's repair acts on what its scan read, and another process may
/// have changed it since: a `create` wrote its container and snapshot
/// records, a `mount` mounted a container and recorded it. Each repair
/// here replays that interleaving (the scan, the other process's step,
/// the repair) and must leave the live container as it is.
#[test]
fn repairs_leave_what_a_live_process_did_since_the_scan() {
    let test = "concurrency::repair_after_scan";
    let Some((_scratch, root)) = store_with_base(test, "vfs") else {
        return;
    };
    let id = last_line(&strata_ok(&root, &["create", "--name", "web", "base"]));
    let store = strata::Store::open(&root).expect("open the store");
    let web = store.resolve_container(&id).expect("web");
    let rootfs = strata::ops::container::rootfs_path(&store, &web.id);
    let found = |want: &dyn Fn(&strata::check::Problem) -> bool| {
        strata::check::scan(&store)
            .expect("scan")
            .into_iter()
            .find(|p| want(p))
            .expect("the scan finds the problem")
    };

    // A mount record left by a reboot; `strata mount web` then mounts it.
    let mut stale = web.clone();
    stale.mounted_at = Some(rootfs.clone());
    store.meta().unwrap().put_container(&stale).unwrap();
    let problem = found(&|p| matches!(p, strata::check::Problem::StaleMountRecord(_)));
    strata_ok(&root, &["mount", "web"]);
    strata::check::repair(&store, &problem).expect("repair");
    let now = store.resolve_container("web").unwrap();
    assert!(
        now.mounted_at.is_some(),
        "web is mounted but its record now says it is not"
    );

    // A mount the scan saw before `strata mount` recorded it.
    let mut unrecorded = now.clone();
    unrecorded.mounted_at = None;
    store.meta().unwrap().put_container(&unrecorded).unwrap();
    let problem = found(&|p| matches!(p, strata::check::Problem::UnrecordedMount(_)));
    store.meta().unwrap().put_container(&now).unwrap();
    strata::check::repair(&store, &problem).expect("repair");
    assert!(
        !mounts_below(&rootfs).is_empty(),
        "web's recorded mount was unmounted"
    );
    strata_ok(&root, &["umount", "web"]);

    // A container the scan saw before `create` had written its snapshot.
    let key = web.snapshot.clone();
    let mut early = web.clone();
    early.snapshot = strata_driver_api::SnapshotKey(format!("{key}-being-created"));
    store.meta().unwrap().put_container(&early).unwrap();
    let problem = found(&|p| matches!(p, strata::check::Problem::ContainerWithoutSnapshot(_)));
    let image = store.resolve_image("base").unwrap();
    let top = strata::store::keys::layer_snapshot_key(&image.layers[0].chain_id);
    store
        .snapshots()
        .prepare(&early.snapshot, Some(&top), store.session_labels())
        .expect("the create's snapshot");
    strata::check::repair(&store, &problem).expect("repair");
    let kept = store.meta().unwrap().container(&web.id).unwrap();
    store.meta().unwrap().put_container(&web).unwrap();
    store.snapshots().remove(&early.snapshot).unwrap();
    assert!(kept.is_some(), "the new container's record was removed");

    // A container's snapshot the scan saw before `create` recorded the
    // container, read as dead because that process ended meanwhile.
    store.meta().unwrap().delete_container(&web.id).unwrap();
    let problem =
        found(&|p| matches!(p, strata::check::Problem::DeadSnapshot { key: k, .. } if *k == key));
    store.meta().unwrap().put_container(&web).unwrap();
    strata::check::repair(&store, &problem).expect("repair");
    let records = store.snapshots().records().unwrap();
    drop(store);
    assert!(
        records.iter().any(|(k, _)| *k == key),
        "the snapshot of a container recorded since the scan was removed"
    );
    strata_ok(&root, &["rm", "web"]);

    // A kept tar the scan saw before `load` recorded the image naming it,
    // read as an orphan because that process ended meanwhile.
    let store = strata::Store::open(&root).expect("open the store");
    let base = store.resolve_image("base").unwrap();
    let tar = store.layers().tar_path(&base.layers[0].diff_id);
    store
        .meta()
        .unwrap()
        .remove_image_unless_used(&base.id)
        .unwrap();
    let problem = strata::check::scan(&store)
        .unwrap()
        .into_iter()
        .find(|p| matches!(p, strata::check::Problem::OrphanLayerTar(t) if *t == tar))
        .expect("the scan finds the unused tar");
    store.meta().unwrap().put_image(&base).unwrap();
    strata::check::repair(&store, &problem).expect("repair");
    drop(store);
    assert!(
        tar.exists(),
        "the tar of an image recorded since the scan was removed"
    );
    check_clean(&root, &[], &format!("{test}: store not clean"));
}

/// `check --repair --prune` while an import has committed its layer but
/// not yet recorded its image: the layer is the live import's, not unused.
#[test]
fn prune_leaves_the_layer_a_live_import_has_not_recorded_yet() {
    let test = "concurrency::prune_vs_import";
    let Some((scratch, root)) = store_with_base(test, "vfs") else {
        return;
    };
    let tar = scratch.path().join("new.tar");
    busybox_rootfs_tar(&tar, "new\n");
    let store = strata::Store::open(&root).expect("open the store");
    let (layer, made) = apply_as_a_load(&store, &tar);
    check(&root, &["--repair", "--prune"]);
    let image = image_of(&layer, "new");
    let recorded = store.meta().and_then(|m| m.put_image(&image));
    let key = strata::store::keys::layer_snapshot_key(&layer.chain_id);
    let layer_there = store.snapshots().stat(&key).is_ok();
    if recorded.is_err() {
        made.roll_back(&store.layers());
    }
    drop(store);
    assert!(
        recorded.is_ok() && layer_there,
        "the prune removed layer {key} of the import in flight: {recorded:?}"
    );
    strata_ok(&root, &["rmi", "new"]);
    check_clean(&root, &[], &format!("{test}: store not clean"));
}

/// `rm` (and `container prune`, which removes what `rm` would) while
/// another process's `strata mount` has mounted the container but not yet
/// recorded it: the container is in use, not unmounted, and stays.
#[test]
fn rm_refuses_a_container_a_live_process_is_mounting() {
    let test = "concurrency::rm_vs_mount";
    let Some((_scratch, root)) = store_with_base(test, "vfs") else {
        return;
    };
    strata_ok(&root, &["create", "--name", "web", "base"]);
    let store = strata::Store::open(&root).expect("open the store");
    let mut web = store.resolve_container("web").unwrap();
    let target = strata::ops::container::rootfs_path(&store, &web.id);
    let mounts = store.snapshots().mounts(&web.snapshot).unwrap();
    web.mounting = Some(store.session().id().to_owned());
    store.meta().unwrap().put_container(&web).unwrap();
    strata::mounts::mount_persistent(&mounts, &target, Default::default()).unwrap();
    let rm = strata(&root, &["rm", "web"]);
    let kept = store.meta().unwrap().container(&web.id).unwrap();
    strata::mounts::unmount_persistent(&target).unwrap();
    if kept.is_some() {
        web.mounting = None;
        store.meta().unwrap().put_container(&web).unwrap();
    }
    drop(store);
    assert!(
        !rm.status.success() && kept.is_some(),
        "rm removed web while a live process was mounting it"
    );
    strata_ok(&root, &["rm", "web"]);
    check_clean(&root, &[], &format!("{test}: store not clean"));
}

/// A snapshot a client removes while check scans (its storage gone, its
/// record not yet) and then makes again under the same key (containerd
/// reuses a container's key): the repair of the dangling record must not
/// remove the new snapshot.
#[test]
fn a_dangling_repair_leaves_a_snapshot_made_again_under_its_key() {
    let test = "concurrency::dangling_remade";
    let Some((_scratch, root)) = store_with_base(test, "vfs") else {
        return;
    };
    let store = strata::Store::open(&root).expect("open the store");
    let key = SnapshotKey("default/1/web".into());
    let sn = store.snapshots();
    sn.prepare(&key, None, Labels::new()).expect("prepare");
    let old = sn.id_of(&key).unwrap();
    store
        .driver()
        .remove(old)
        .expect("the remove's storage step");
    let problem = strata::check::scan(&store)
        .expect("scan")
        .into_iter()
        .find(|p| matches!(p, strata::check::Problem::Dangling { .. }))
        .expect("the scan finds the dangling record");
    sn.remove(&key).expect("the remove's last step");
    sn.prepare(&key, None, Labels::new())
        .expect("prepare again");
    let _ = strata::check::repair(&store, &problem);
    let kept = sn.stat(&key).is_ok();
    if kept {
        sn.remove(&key).unwrap();
    }
    drop(store);
    assert!(kept, "the repair removed the new {key}");
    check_clean(&root, &[], &format!("{test}: store not clean"));
}

/// Whether process `pid` is stopped (state `T` in `/proc/PID/stat`).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

/// `rm --force` of a container while another process mounts it: that
/// process stops after making the mount, before recording it (its intent
/// is recorded). The removal stands: the mount process must not write the
/// container's record back, and fails, leaving nothing mounted.
#[test]
fn a_container_removed_while_being_mounted_stays_removed() {
    let test = "concurrency::rm_during_mount";
    let Some((_scratch, root)) = store_with_base(test, "vfs") else {
        return;
    };
    strata_ok(&root, &["create", "--name", "web", "base"]);
    let mount = command(&root, &["mount", "web"])
        .env("STRATA_FAILPOINT_STOP", "container.mount.mounted")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mount");
    let pid = mount.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !stopped(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "mount never reached its failpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    strata_ok(&root, &["rm", "--force", "web"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .expect("SIGCONT");
    let out = mount.wait_with_output().expect("wait for mount");
    assert!(
        !out.status.success(),
        "the mount of a removed container succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left = json(&root, &["ps"]);
    assert_eq!(
        left.as_array().unwrap().len(),
        0,
        "the removed container came back: {left}"
    );
    assert_eq!(
        mounts_below(&root.join("containers")),
        Vec::<String>::new(),
        "a container mount was left"
    );
    check_clean(&root, &[], &format!("{test}: store not clean"));
}
