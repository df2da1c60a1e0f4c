//! The conformance cases. Each one builds layers through the snapshotter and
//! applies the same operations to a plain reference directory, then checks
//! that a view of the top layer equals the reference (the flattened layers).

use std::cell::Cell;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::tree::{read_tree, Mounted, Tree};
use super::Fixture;
use strata::snapshotter::{Snapshotter, SnapshotterExt};
use strata_driver_api::{Error, Info, Kind, Labels, SnapshotKey};

fn sk(s: &str) -> SnapshotKey {
    SnapshotKey::from(s)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes `data` to `rel` below `root`, creating parent directories.
pub fn put(root: &Path, rel: &str, data: &str) {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir -p");
    }
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn chmod(root: &Path, rel: &str, mode: u32) {
    std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(root: &Path, rel: &str, uid: u32, gid: u32) {
    std::os::unix::fs::chown(root.join(rel), Some(uid), Some(gid)).expect("chown");
}

struct Ctx<'a> {
    fx: &'a Fixture,
    reference: PathBuf,
    counter: Cell<usize>,
}

impl<'a> Ctx<'a> {
    fn new(fx: &'a Fixture) -> Self {
        let reference = fx.scratch.path().join("reference");
        std::fs::create_dir_all(&reference).expect("mkdir reference");
        Self {
            fx,
            reference,
            counter: Cell::new(0),
        }
    }

    fn sn(&self) -> &dyn Snapshotter {
        self.fx.snapshotter.as_ref()
    }

    fn fresh_dir(&self) -> PathBuf {
        let n = self.counter.get();
        self.counter.set(n + 1);
        self.fx.scratch.path().join(format!("m{n}"))
    }

    fn mount(&self, key: &str) -> Mounted {
        let mounts = self
            .sn()
            .mounts(&sk(key))
            .unwrap_or_else(|e| panic!("mounts of {key}: {e}"));
        Mounted::new(&mounts, self.fresh_dir())
    }

    /// Prepares `name-active` on `parent`, applies `ops` to it and to the
    /// reference, and commits it as `name`.
    fn layer(&self, name: &str, parent: Option<&str>, ops: impl Fn(&Path)) {
        let active = format!("{name}-active");
        let parent = parent.map(sk);
        self.sn()
            .prepare(&sk(&active), parent.as_ref(), Labels::new())
            .unwrap_or_else(|e| panic!("prepare {active}: {e}"));
        {
            let m = self.mount(&active);
            ops(m.path());
        }
        ops(&self.reference);
        self.sn()
            .commit(&sk(name), &sk(&active), Labels::new())
            .unwrap_or_else(|e| panic!("commit {active} as {name}: {e}"));
    }

    /// The tree a read-only view of `parent` shows.
    fn view_tree(&self, parent: &str) -> Tree {
        let key = format!("view-of-{parent}-{}", self.counter.get());
        self.sn()
            .view(&sk(&key), Some(&sk(parent)), Labels::new())
            .unwrap_or_else(|e| panic!("view {key}: {e}"));
        let tree = {
            let m = self.mount(&key);
            read_tree(m.path())
        };
        self.sn()
            .remove(&sk(&key))
            .unwrap_or_else(|e| panic!("remove {key}: {e}"));
        tree
    }

    fn assert_view_matches_reference(&self, top: &str) {
        let got = self.view_tree(top);
        let want = read_tree(&self.reference);
        if got != want {
            let only_got: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            let only_want: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            panic!("view of {top} differs from the flattened layers\n  wrong or extra in view: {only_got:?}\n  wrong or missing in view: {only_want:?}");
        }
    }
}

fn expect_err<T: std::fmt::Debug>(
    what: &str,
    r: strata_driver_api::Result<T>,
    ok: fn(&Error) -> bool,
) {
    match r {
        Err(e) if ok(&e) => {}
        other => panic!("{what}: unexpected result {other:?}"),
    }
}

fn is_exists(e: &Error) -> bool {
    matches!(e, Error::AlreadyExists(_))
}
fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound(_))
}
fn is_precondition(e: &Error) -> bool {
    matches!(e, Error::FailedPrecondition(_))
}

/// prepare → write → commit → child → the child's view equals the flattened layers.
pub fn basic_flattened_view(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("base", None, |r| {
        put(r, "etc/hosts", "v1");
        put(r, "bin/tool", "#!/bin/sh\n");
        chmod(r, "bin/tool", 0o755);
        std::os::unix::fs::symlink("tool", r.join("bin/alias")).expect("symlink");
    });
    c.layer("top", Some("base"), |r| {
        put(r, "etc/hosts", "v2");
        put(r, "etc/motd", "hello");
    });
    c.assert_view_matches_reference("top");
    let base = c.view_tree("base");
    assert_eq!(
        base.get(Path::new("etc/hosts"))
            .map(|e| matches!(e, super::Entry::File { data, .. } if data == b"v1")),
        Some(true),
        "the base layer changed under its child"
    );
}

/// stat of active, committed and removed-by-commit snapshots.
pub fn stat_active_and_committed(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("base", None, |r| put(r, "a", "a"));
    let sn = c.sn();
    sn.prepare(&sk("act"), Some(&sk("base")), labels(&[("a", "1")]))
        .expect("prepare");
    let info = sn.stat(&sk("act")).expect("stat act");
    assert_eq!(
        (info.kind, info.parent.clone(), info.labels.clone()),
        (Kind::Active, Some(sk("base")), labels(&[("a", "1")]))
    );
    let base = sn.stat(&sk("base")).expect("stat base");
    assert_eq!((base.kind, base.parent), (Kind::Committed, None));
    sn.commit(&sk("done"), &sk("act"), Labels::new())
        .expect("commit");
    let done = sn.stat(&sk("done")).expect("stat done");
    assert_eq!(
        (done.kind, done.parent, done.labels),
        (Kind::Committed, Some(sk("base")), labels(&[("a", "1")]))
    );
    expect_err(
        "stat of a committed active key",
        sn.stat(&sk("act")),
        is_not_found,
    );
}

/// A three-level parent chain keeps its parents and contents.
pub fn three_level_chain(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("l1", None, |r| put(r, "one", "1"));
    c.layer("l2", Some("l1"), |r| put(r, "two", "2"));
    c.layer("l3", Some("l2"), |r| put(r, "three", "3"));
    assert_eq!(c.sn().stat(&sk("l3")).expect("stat").parent, Some(sk("l2")));
    assert_eq!(c.sn().stat(&sk("l2")).expect("stat").parent, Some(sk("l1")));
    c.assert_view_matches_reference("l3");
}

/// Keys and names share one namespace; reuse fails with AlreadyExists.
pub fn duplicate_keys_fail(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("base", None, |r| put(r, "f", "x"));
    let sn = c.sn();
    sn.prepare(&sk("k"), None, Labels::new())
        .expect("prepare k");
    expect_err(
        "second prepare of k",
        sn.prepare(&sk("k"), None, Labels::new()),
        is_exists,
    );
    expect_err(
        "view with key k",
        sn.view(&sk("k"), Some(&sk("base")), Labels::new()),
        is_exists,
    );
    expect_err(
        "prepare with committed name",
        sn.prepare(&sk("base"), None, Labels::new()),
        is_exists,
    );
    expect_err(
        "commit onto an existing name",
        sn.commit(&sk("base"), &sk("k"), Labels::new()),
        is_exists,
    );
    assert_eq!(
        sn.stat(&sk("k")).expect("k survives a failed commit").kind,
        Kind::Active
    );
}

/// Label updates replace or patch labels and move `updated`, not `created`.
pub fn labels_and_timestamps(fx: &Fixture) {
    let sn = fx.snapshotter.as_ref();
    sn.prepare(&sk("k"), None, labels(&[("x", "1")]))
        .expect("prepare");
    let first = sn.stat(&sk("k")).expect("stat");
    assert_eq!(first.created_ns, first.updated_ns);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let replaced = sn
        .update(
            &Info {
                labels: labels(&[("x", "2"), ("y", "3")]),
                ..first.clone()
            },
            &[],
        )
        .expect("update");
    assert_eq!(replaced.labels, labels(&[("x", "2"), ("y", "3")]));
    assert_eq!(replaced.created_ns, first.created_ns);
    assert!(
        replaced.updated_ns > first.updated_ns,
        "updated time did not move"
    );
    let patched = sn
        .update(
            &Info {
                labels: Labels::new(),
                ..first.clone()
            },
            &["labels.y".to_string()],
        )
        .expect("update labels.y");
    assert_eq!(patched.labels, labels(&[("x", "2")]));
    assert_eq!(
        sn.stat(&sk("k")).expect("stat").labels,
        labels(&[("x", "2")])
    );
    expect_err(
        "update of the parent field",
        sn.update(&first, &["parent".to_string()]),
        |e| matches!(e, Error::InvalidArgument(_)),
    );
}

/// A removed key can be used again and starts empty.
pub fn remove_then_reuse_key(fx: &Fixture) {
    let c = Ctx::new(fx);
    let sn = c.sn();
    sn.prepare(&sk("k"), None, Labels::new()).expect("prepare");
    put(c.mount("k").path(), "old", "old");
    sn.remove(&sk("k")).expect("remove");
    expect_err("stat after remove", sn.stat(&sk("k")), is_not_found);
    expect_err("second remove", sn.remove(&sk("k")), is_not_found);
    sn.prepare(&sk("k"), None, Labels::new())
        .expect("prepare again");
    let m = c.mount("k");
    assert!(read_tree(m.path()).is_empty(), "a reused key sees old data");
}

fn names(sn: &dyn Snapshotter, filters: &[&str]) -> Vec<String> {
    let filters: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
    let mut names: Vec<String> = sn
        .list(&filters)
        .expect("walk")
        .into_iter()
        .map(|i| i.name.0)
        .collect();
    names.sort();
    names
}

/// walk filters on kind, name, parent and labels.
pub fn walk_filters(fx: &Fixture) {
    let sn = fx.snapshotter.as_ref();
    sn.prepare(&sk("base-active"), None, Labels::new())
        .expect("prepare");
    sn.commit(&sk("base"), &sk("base-active"), labels(&[("tier", "base")]))
        .expect("commit");
    sn.prepare(
        &sk("a"),
        Some(&sk("base")),
        labels(&[("tier", "top"), ("pick", "yes")]),
    )
    .expect("prepare a");
    sn.view(&sk("v"), Some(&sk("base")), labels(&[("tier", "top")]))
        .expect("view v");
    assert_eq!(names(sn, &[]), ["a", "base", "v"]);
    assert_eq!(names(sn, &["kind==committed"]), ["base"]);
    assert_eq!(names(sn, &["kind==active"]), ["a"]);
    assert_eq!(names(sn, &["kind==view"]), ["v"]);
    assert_eq!(names(sn, &["name==a"]), ["a"]);
    assert_eq!(names(sn, &["parent==base"]), ["a", "v"]);
    assert_eq!(names(sn, &["labels.pick==yes"]), ["a"]);
    assert_eq!(names(sn, &["labels.tier"]), ["a", "base", "v"]);
    assert_eq!(names(sn, &["kind==active,labels.tier==top"]), ["a"]);
    assert_eq!(names(sn, &["name==a", "name==v"]), ["a", "v"]);
}

/// Overwriting a file from a lower layer leaves the lower layer alone.
pub fn update_lower_file(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("base", None, |r| put(r, "f", "base"));
    c.layer("top", Some("base"), |r| {
        put(r, "f", "top, longer than before")
    });
    c.assert_view_matches_reference("top");
    let base = c.view_tree("base");
    assert!(
        matches!(base.get(Path::new("f")), Some(super::Entry::File { data, .. }) if data == b"base")
    );
}

/// A lower directory deleted and recreated shows only the new content.
pub fn delete_and_recreate_lower_dir(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("base", None, |r| {
        put(r, "d/a", "a");
        put(r, "d/b", "b");
        put(r, "d/sub/c", "c");
    });
    c.layer("top", Some("base"), |r| {
        std::fs::remove_dir_all(r.join("d")).expect("rm -r d");
        std::fs::create_dir(r.join("d")).expect("mkdir d");
        put(r, "d/new", "new");
    });
    c.assert_view_matches_reference("top");
}

/// chown and chmod of lower files and directories.
pub fn chown_lower_files(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("base", None, |r| {
        put(r, "f", "f");
        std::fs::create_dir(r.join("d")).expect("mkdir");
    });
    c.layer("top", Some("base"), |r| {
        chown(r, "f", 1234, 5678);
        chown(r, "d", 42, 43);
        chmod(r, "f", 0o600);
    });
    c.assert_view_matches_reference("top");
}

/// A directory keeps its owner and mode while later layers add files to it.
pub fn dir_ownership_across_three_layers(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("l1", None, |r| {
        std::fs::create_dir(r.join("d")).expect("mkdir");
        chown(r, "d", 1000, 1000);
        chmod(r, "d", 0o750);
    });
    c.layer("l2", Some("l1"), |r| put(r, "d/x", "x"));
    c.layer("l3", Some("l2"), |r| put(r, "d/y", "y"));
    c.assert_view_matches_reference("l3");
}

/// A parent with children cannot be removed.
pub fn remove_parent_with_children_fails(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("base", None, |r| put(r, "f", "f"));
    let sn = c.sn();
    sn.prepare(&sk("child"), Some(&sk("base")), Labels::new())
        .expect("prepare child");
    expect_err(
        "remove of a parent",
        sn.remove(&sk("base")),
        is_precondition,
    );
    sn.remove(&sk("child")).expect("remove child");
    sn.remove(&sk("base")).expect("remove base once childless");
}

/// Deleted files stay hidden in every descendant.
pub fn deletions_hidden_in_descendants(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("l1", None, |r| {
        put(r, "a", "a");
        put(r, "b", "b");
        put(r, "dir/c", "c");
    });
    c.layer("l2", Some("l1"), |r| {
        std::fs::remove_file(r.join("a")).expect("rm a");
        std::fs::remove_dir_all(r.join("dir")).expect("rm -r dir");
    });
    c.layer("l3", Some("l2"), |r| put(r, "z", "z"));
    c.assert_view_matches_reference("l3");
    c.layer("l4", Some("l3"), |r| put(r, "y", "y"));
    c.assert_view_matches_reference("l4");
}

/// Hard links to and renames of lower files.
pub fn hard_link_and_rename_across_layers(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("l1", None, |r| {
        put(r, "f", "data");
        put(r, "g", "move me");
    });
    c.layer("l2", Some("l1"), |r| {
        std::fs::hard_link(r.join("f"), r.join("f2")).expect("link");
        std::fs::create_dir(r.join("sub")).expect("mkdir");
        std::fs::rename(r.join("g"), r.join("sub/g2")).expect("rename");
    });
    c.assert_view_matches_reference("l2");
    c.sn()
        .view(&sk("v"), Some(&sk("l2")), Labels::new())
        .expect("view");
    let m = c.mount("v");
    let (a, b) = (
        m.path().join("f").metadata().expect("f"),
        m.path().join("f2").metadata().expect("f2"),
    );
    assert_eq!(a.ino(), b.ino(), "f and f2 are no longer one inode");
}

/// A mounted view rejects writes.
pub fn view_rejects_writes(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.layer("base", None, |r| put(r, "f", "f"));
    c.sn()
        .view(&sk("v"), Some(&sk("base")), Labels::new())
        .expect("view");
    let m = c.mount("v");
    let err = std::fs::write(m.path().join("new"), "x").expect_err("write into a view succeeded");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::OpenOptions::new()
        .append(true)
        .open(m.path().join("f"))
        .and_then(|mut f| f.write_all(b"x"))
        .expect_err("append to a view's file succeeded");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
}

/// Calling stat from inside walk does not deadlock.
pub fn stat_inside_walk(fx: &Fixture) {
    let sn = fx.snapshotter.as_ref();
    for k in ["a", "b", "c"] {
        sn.prepare(&sk(k), None, Labels::new()).expect("prepare");
    }
    let mut seen = 0;
    sn.walk(&[], &mut |info| {
        let again = sn.stat(&info.name)?;
        assert_eq!(&again, info);
        sn.update(info, &[])?;
        seen += 1;
        Ok(())
    })
    .expect("walk");
    assert_eq!(seen, 3);
}

/// The root of a new snapshot, with or without a parent, is mode 0755.
pub fn new_root_is_0755(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.sn()
        .prepare(&sk("a"), None, Labels::new())
        .expect("prepare");
    let m = c.mount("a");
    assert_eq!(
        m.path().metadata().expect("stat").permissions().mode() & 0o7777,
        0o755
    );
    drop(m);
    c.layer("base", None, |r| put(r, "f", "f"));
    c.sn()
        .prepare(&sk("b"), Some(&sk("base")), Labels::new())
        .expect("prepare");
    let m = c.mount("b");
    assert_eq!(
        m.path().metadata().expect("stat").permissions().mode() & 0o7777,
        0o755
    );
}

/// Only committed snapshots are parents; views cannot be committed.
pub fn parent_rules(fx: &Fixture) {
    let sn = fx.snapshotter.as_ref();
    sn.prepare(&sk("act"), None, Labels::new())
        .expect("prepare");
    expect_err(
        "prepare on an active parent",
        sn.prepare(&sk("x"), Some(&sk("act")), Labels::new()),
        is_precondition,
    );
    expect_err(
        "view of an active parent",
        sn.view(&sk("y"), Some(&sk("act")), Labels::new()),
        is_precondition,
    );
    expect_err(
        "prepare on a missing parent",
        sn.prepare(&sk("z"), Some(&sk("nope")), Labels::new()),
        is_not_found,
    );
    sn.view(&sk("v"), None, Labels::new())
        .expect("view without parent");
    expect_err(
        "commit of a view",
        sn.commit(&sk("c"), &sk("v"), Labels::new()),
        is_precondition,
    );
    expect_err(
        "commit of a missing key",
        sn.commit(&sk("c"), &sk("missing"), Labels::new()),
        is_not_found,
    );
    assert!(
        !sn.exists(&sk("x")).expect("stat"),
        "a failed prepare left a snapshot behind"
    );
}

/// Usage of an active snapshot grows with what is written into it.
pub fn usage_grows_with_writes(fx: &Fixture) {
    let c = Ctx::new(fx);
    c.sn()
        .prepare(&sk("a"), None, Labels::new())
        .expect("prepare");
    let before = c.sn().usage(&sk("a")).expect("usage");
    {
        let m = c.mount("a");
        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut f = std::fs::File::create(m.path().join("blob")).expect("create");
        f.write_all(&data).expect("write");
        f.sync_all().expect("fsync");
    }
    let after = c.sn().usage(&sk("a")).expect("usage");
    assert!(
        after.size >= before.size + (2 << 20),
        "usage did not grow by the 4 MiB written: before {before:?}, after {after:?}"
    );
}

/// A 128-layer chain mounts (read-only and writable) and equals the flattened tree.
pub fn chain_of_128_layers(fx: &Fixture) {
    let c = Ctx::new(fx);
    let mut parent: Option<String> = None;
    for i in 0..128 {
        let name = format!("layer{i:03}");
        c.layer(&name, parent.as_deref(), |r| {
            put(r, &format!("layers/{i:03}"), &i.to_string());
            put(r, "shared", &format!("written by {i}"));
            if i % 10 == 9 {
                std::fs::remove_file(r.join(format!("layers/{:03}", i - 5))).expect("rm");
            }
        });
        parent = Some(name);
    }
    c.assert_view_matches_reference("layer127");
    c.sn()
        .prepare(&sk("top"), Some(&sk("layer127")), Labels::new())
        .expect("prepare on 128 layers");
    let m = c.mount("top");
    put(m.path(), "layers/000", "changed on top");
    assert_eq!(
        std::fs::read_to_string(m.path().join("shared")).expect("read"),
        "written by 127"
    );
}
