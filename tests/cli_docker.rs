//! The CLI a Docker user expects (issue #17): pipes and `-`, quiet ids,
//! filters and templates, reference validation, multi-argument and forced
//! `rmi`, `rename`, `image inspect`, prune verbs, `system df`, `cp`, and
//! the comforts (completion, man, version, help examples). On vfs: these
//! are CLI behaviours, the same on every driver.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use strata_driver_api::testing::{require_root, ScratchDir};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A vfs store with `demo/app:1` imported; returns (scratch, root, tar).
fn store_with_image(name: &str) -> Option<(ScratchDir, PathBuf, PathBuf)> {
    if !require_root(&format!("cli_docker::{name}")) {
        return None;
    }
    let scratch = ScratchDir::new(&format!("cli-docker-{name}"));
    let root = scratch.path().join("store");
    let tar = scratch.path().join("rootfs.tar");
    busybox_rootfs_tar(&tar, "from the image\n");
    strata_ok(&root, &["--driver", "vfs", "init"]);
    strata_ok(&root, &["import", tar.to_str().unwrap(), "demo/app:1"]);
    Some((scratch, root, tar))
}

/// Runs strata with `input` on standard input; returns the output.
fn strata_stdin(root: &Path, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strata");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for strata");
    feeder.join().unwrap();
    out
}

fn image_ids(root: &Path) -> Vec<String> {
    strata_ok(root, &["images", "-q", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_closed_pipe_ends_a_listing_quietly() {
    let Some((_scratch, root, _tar)) = store_with_image("epipe") else {
        return;
    };
    for args in [&["images"][..], &["snapshots"], &["--format", "json", "ps"]] {
        // The reader is gone before strata starts: its first write fails.
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} printed: {stderr}");
    }
}

#[test]
fn dash_is_stdin_and_stdout() {
    let Some((scratch, root, tar)) = store_with_image("dash") else {
        return;
    };
    let dir = scratch.path();
    // save to stdout piped into load from stdin (another store).
    let saved = strata(&root, &["save", "demo/app:1"]);
    assert!(saved.status.success());
    assert!(
        saved.stdout.len() > 1024,
        "save wrote {} bytes",
        saved.stdout.len()
    );
    let other = dir.join("other");
    strata_ok(&other, &["--driver", "vfs", "init"]);
    let loaded = strata_stdin(&other, &["load", "-i", "-"], &saved.stdout);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("Loaded image: demo/app:1"));
    // load with no -i reads stdin too.
    let again = strata_stdin(&other, &["load"], &saved.stdout);
    assert!(again.status.success());
    // import from stdin.
    let bytes = std::fs::read(&tar).unwrap();
    let imported = strata_stdin(&root, &["import", "-", "demo/piped"], &bytes);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let inspect = json(&strata_ok(&root, &["image", "inspect", "demo/piped"]));
    assert_eq!(inspect[0]["RepoTags"][0], "demo/piped:latest");
    // export to stdout: a tar holding the image's files; no file named `-`.
    let c = last_line(&strata_ok(&root, &["create", "demo/app:1"]));
    let exported = strata(&root, &["export", "-o", "-", &c]);
    assert!(exported.status.success());
    let mut names = Vec::new();
    for e in tar::Archive::new(&exported.stdout[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert!(names.iter().any(|n| n == "etc/motd"), "{names:?}");
    assert!(!Path::new("-").exists(), "a file named - was written");
    // An empty stream is refused, naming standard input, recording nothing.
    let empty = strata_stdin(&root, &["import", "-", "demo/empty"], b"");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("standard input is empty"));
    assert!(strata_err(&root, &["image", "inspect", "demo/empty"]).contains("no such image"));
}

#[test]
fn references_follow_the_oci_grammar_and_ids_cannot_be_shadowed() {
    let Some((scratch, root, _tar)) = store_with_image("refs") else {
        return;
    };
    let id = image_ids(&root)[0].clone();
    let short = &id["sha256:".len().."sha256:".len() + 12];
    for bad in [
        "Demo/App:1",
        "demo/app:",
        "a:b:c",
        &format!("sha256:{short}"),
    ] {
        let err = strata_err(&root, &["tag", "demo/app:1", bad]);
        assert!(err.contains("invalid image reference"), "{bad}: {err}");
    }
    strata_ok(
        &root,
        &["tag", "demo/app:1", "localhost:5000/demo/app:v1.2_3"],
    );
    let inspect = json(&strata_ok(
        &root,
        &["image", "inspect", &format!("sha256:{short}")],
    ));
    assert_eq!(inspect[0]["Id"], id.as_str());
    let empty = scratch.path().join("empty.tar");
    std::fs::write(&empty, b"").unwrap();
    let err = strata_err(&root, &["import", empty.to_str().unwrap(), "demo/e"]);
    assert!(err.contains("is empty: not a tar archive"), "{err}");
    assert!(err.contains("empty.tar"), "{err}");
}

#[test]
fn listings_quiet_filter_no_trunc_and_templates() {
    let Some((scratch, root, _tar)) = store_with_image("listings") else {
        return;
    };
    let old = image_ids(&root)[0].clone();
    let other_tar = scratch.path().join("other.tar");
    busybox_rootfs_tar(&other_tar, "other\n");
    std::thread::sleep(std::time::Duration::from_millis(10));
    strata_ok(
        &root,
        &["import", other_tar.to_str().unwrap(), "demo/app:1"],
    );
    let quiet = strata_ok(&root, &["images", "-q"]);
    assert_eq!(quiet.lines().count(), 2, "{quiet}");
    assert!(quiet.lines().all(|l| l.len() == 12), "{quiet}");
    let dangling = strata_ok(
        &root,
        &["images", "-q", "--no-trunc", "-f", "dangling=true"],
    );
    assert_eq!(dangling.trim(), old, "the re-tagged image is dangling");
    let tagged = strata_ok(&root, &["images", "-q", "--filter", "reference=demo/*"]);
    assert_eq!(tagged.lines().count(), 1, "{tagged}");
    let before = strata_ok(
        &root,
        &[
            "images",
            "-q",
            "--no-trunc",
            "--filter",
            "before=demo/app:1",
        ],
    );
    assert_eq!(before.trim(), old);
    let since = strata_ok(
        &root,
        &["images", "-q", "--filter", &format!("since={old}")],
    );
    assert_eq!(since.lines().count(), 1);
    let line = strata_ok(
        &root,
        &[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}\\t{{ .Layers }}",
        ],
    );
    assert!(line.contains("demo/app:1\t1\n"), "{line:?}");
    assert!(line.contains("<none>:<none>\t1\n"), "{line:?}");
    let err = strata_err(&root, &["images", "--format", "{{.Nope}}"]);
    assert!(err.contains("format template"), "{err}");
    let err = strata_err(&root, &["ps", "--filter", "status=running"]);
    assert!(err.contains("status=mounted|unmounted"), "{err}");
    let err = strata_err(&root, &["info", "--format", "{{.root}}"]);
    assert!(err.contains("use --format json here"), "{err}");
    let err = strata_err(&root, &["images", "--filter", "colour=red"]);
    assert!(err.contains("not a filter of images"), "{err}");

    let a = last_line(&strata_ok(
        &root,
        &["create", "--name", "web", "demo/app:1"],
    ));
    let b = last_line(&strata_ok(
        &root,
        &[
            "create", "--name", "db", "--label", "tier=db", "--label", "backup", &old,
        ],
    ));
    strata_ok(&root, &["mount", "web"]);
    let ps = |f: &str| strata_ok(&root, &["ps", "-q", "--no-trunc", "--filter", f]);
    assert_eq!(ps("status=mounted").trim(), a);
    assert_eq!(ps("status=unmounted").trim(), b);
    assert_eq!(ps(&format!("ancestor={old}")).trim(), b);
    assert_eq!(ps("name=we").trim(), a);
    assert_eq!(ps("label=tier=db").trim(), b);
    assert_eq!(ps("label=backup").trim(), b);
    assert_eq!(ps("label=tier=web").trim(), "");
    let both = strata_ok(
        &root,
        &[
            "ps",
            "-q",
            "--filter",
            "label=tier=db",
            "--filter",
            "label=nope",
        ],
    );
    assert_eq!(both.trim(), "", "every label filter must match");
    let inspected = json(&strata_ok(&root, &["inspect", "db"]));
    assert_eq!(inspected[0]["Labels"]["tier"], "db", "{inspected}");
    let err = strata_err(&root, &["create", "--label", "=x", &old]);
    assert!(err.contains("no key"), "{err}");
    let names = strata_ok(&root, &["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(names.contains("web mounted"), "{names}");
    assert!(names.contains("db unmounted"), "{names}");
    assert!(strata_ok(&root, &["ps", "-q"])
        .lines()
        .all(|l| l.len() == 12));
    let keys = strata_ok(&root, &["snapshots", "-q"]);
    assert_eq!(
        keys.lines().count(),
        4,
        "two layers, two containers: {keys}"
    );
    assert!(!keys.contains("KEY"));
    // The JSON fields other tests parse are still there.
    let images = json(&strata_ok(&root, &["--format", "json", "images"]));
    assert!(images[0]["id"].is_string() && images[0]["tags"].is_array());
    strata_ok(&root, &["umount", "web"]);
}

#[test]
fn rmi_many_forced_and_rename() {
    let Some((_scratch, root, _tar)) = store_with_image("rmi") else {
        return;
    };
    strata_ok(&root, &["tag", "demo/app:1", "demo/app:2"]);
    let id = image_ids(&root)[0].clone();
    let err = strata_err(&root, &["rmi", &id]);
    assert!(
        err.contains("demo/app:1") && err.contains("demo/app:2") && err.contains("-f"),
        "{err}"
    );
    let out = strata_ok(&root, &["rmi", "-f", &id]);
    assert!(out.contains("Untagged: demo/app:1"), "{out}");
    assert!(out.contains("Untagged: demo/app:2"), "{out}");
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(image_ids(&root).is_empty());

    let (_s2, root, tar) = store_with_image("rmi-many").unwrap();
    strata_ok(&root, &["import", tar.to_str().unwrap(), "demo/b"]);
    let err = strata_err(&root, &["rmi", "demo/app:1", "no/such", "demo/b"]);
    assert!(err.contains("no such image: no/such"), "{err}");
    assert!(err.contains("1 of 3"), "{err}");
    assert!(image_ids(&root).is_empty(), "the others were removed");

    strata_ok(&root, &["import", tar.to_str().unwrap(), "demo/c"]);
    strata_ok(&root, &["create", "--name", "one", "demo/c"]);
    strata_ok(&root, &["create", "--name", "two", "demo/c"]);
    strata_ok(&root, &["rename", "one", "three"]);
    let err = strata_err(&root, &["rename", "two", "three"]);
    assert!(err.contains("three already exists"), "{err}");
    let err = strata_err(&root, &["rename", "two", "bad name"]);
    assert!(err.contains("invalid container name"), "{err}");
    let names = strata_ok(&root, &["ps", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["three", "two"]);
}

#[test]
fn image_inspect_shows_layers_and_history() {
    let Some((_scratch, root, _tar)) = store_with_image("inspect") else {
        return;
    };
    let c = last_line(&strata_ok(&root, &["create", "demo/app:1"]));
    let m = last_line(&strata_ok(&root, &["mount", &c]));
    std::fs::write(format!("{m}/added"), "x").unwrap();
    strata_ok(&root, &["umount", &c]);
    strata_ok(&root, &["commit", &c, "demo/app:2"]);
    let all = json(&strata_ok(
        &root,
        &["image", "inspect", "demo/app:1", "demo/app:2"],
    ));
    assert_eq!(all.as_array().unwrap().len(), 2);
    let two = &all[1];
    let layers = two["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["DiffId"], layers[0]["ChainId"]);
    assert_ne!(layers[1]["DiffId"], layers[1]["ChainId"]);
    let total: u64 = layers.iter().map(|l| l["Size"].as_u64().unwrap()).sum();
    assert_eq!(two["Size"].as_u64(), Some(total));
    assert_eq!(two["History"].as_array().unwrap().len(), 2);
    assert_eq!(two["Os"], "linux");
    // Plain `inspect` falls back to an image, as docker's does.
    let plain = json(&strata_ok(&root, &["inspect", "demo/app:2"]));
    assert_eq!(plain[0]["Id"], two["Id"]);
    let line = strata_ok(
        &root,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Layers|length}}",
            "demo/app:2",
        ],
    );
    assert_eq!(line.trim(), format!("{} 2", two["Id"].as_str().unwrap()));
}

#[test]
fn prune_and_df() {
    let Some((scratch, root, tar)) = store_with_image("prune") else {
        return;
    };
    let old = image_ids(&root)[0].clone();
    let other = scratch.path().join("other.tar");
    busybox_rootfs_tar(&other, "other\n");
    strata_ok(&root, &["import", other.to_str().unwrap(), "demo/app:1"]);
    let kept = last_line(&strata_ok(&root, &["create", "demo/app:1"]));
    let gone = last_line(&strata_ok(&root, &["create", "demo/app:1"]));
    let m = last_line(&strata_ok(&root, &["mount", &gone]));
    std::fs::write(format!("{m}/big"), vec![7u8; 1 << 20]).unwrap();
    strata_ok(&root, &["umount", &gone]);
    strata_ok(&root, &["mount", &kept]);

    let df = json(&strata_ok(&root, &["--format", "json", "system", "df"]));
    let line = |kind: &str| {
        df["summary"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == kind)
            .unwrap()
            .clone()
    };
    assert_eq!(line("Images")["total"], 2);
    assert_eq!(line("Images")["active"], 1);
    assert_eq!(line("Containers")["total"], 2);
    assert_eq!(line("Containers")["active"], 1);
    assert!(line("Containers")["reclaimable"].as_u64().unwrap() >= 1 << 20);
    assert_eq!(line("Layers")["total"], 2);
    assert!(line("Images")["reclaimable"].as_u64().unwrap() > 0, "{df}");
    assert!(df["items"].as_array().unwrap().is_empty());
    let verbose = json(&strata_ok(
        &root,
        &["--format", "json", "system", "df", "-v"],
    ));
    assert_eq!(verbose["items"].as_array().unwrap().len(), 6);
    let table = strata_ok(&root, &["system", "df"]);
    assert!(table.contains("RECLAIMABLE"), "{table}");

    let out = strata_ok(&root, &["container", "prune"]);
    assert!(out.contains(&format!("Deleted container: {gone}")), "{out}");
    assert!(
        !out.contains(&kept),
        "a mounted container was pruned: {out}"
    );
    let freed = out.lines().last().unwrap();
    assert!(freed.starts_with("Total reclaimed space: "), "{out}");
    assert!(freed.ends_with(" MiB"), "a 1 MiB file went: {out}");
    let out = strata_ok(&root, &["image", "prune"]);
    assert!(out.contains(&format!("Deleted image: {old}")), "{out}");
    assert_eq!(image_ids(&root).len(), 1);
    strata_ok(&root, &["umount", &kept]);
    strata_ok(&root, &["import", tar.to_str().unwrap(), "demo/x"]);
    strata_ok(&root, &["import", other.to_str().unwrap(), "demo/x"]);
    let report = json(&strata_ok(&root, &["--format", "json", "system", "prune"]));
    let removed = report["removed"].as_array().unwrap();
    let kinds: Vec<&str> = removed
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["container", "image"], "{report}");
    assert!(report["freed"].as_u64().unwrap() > 0);
    let info = json(&strata_ok(&root, &["--format", "json", "info"]));
    assert_eq!(info["containers"], 0);
}

#[test]
fn cp_both_ways_and_as_a_stream_never_outside_the_container() {
    let Some((scratch, root, _tar)) = store_with_image("cp") else {
        return;
    };
    let dir = scratch.path();
    let c = last_line(&strata_ok(
        &root,
        &["create", "--name", "web", "demo/app:1"],
    ));
    // Out: a file, to a new name and into a directory.
    strata_ok(
        &root,
        &["cp", "web:/etc/motd", dir.join("motd").to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("motd")).unwrap(),
        "from the image\n"
    );
    let into = dir.join("into");
    std::fs::create_dir(&into).unwrap();
    strata_ok(&root, &["cp", "web:/etc", into.to_str().unwrap()]);
    assert!(into.join("etc/motd").is_file());
    // In: a host file into a directory, and a directory under a new name.
    std::fs::write(dir.join("conf"), "setting=1\n").unwrap();
    strata_ok(
        &root,
        &["cp", dir.join("conf").to_str().unwrap(), "web:/etc/"],
    );
    strata_ok(
        &root,
        &["cp", into.join("etc").to_str().unwrap(), "web:/etc2"],
    );
    let m = last_line(&strata_ok(&root, &["mount", &c]));
    assert_eq!(
        std::fs::read_to_string(format!("{m}/etc/conf")).unwrap(),
        "setting=1\n"
    );
    assert!(Path::new(&format!("{m}/etc2/motd")).is_file());
    // Links in the container resolve inside it.
    let canary = dir.join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::os::unix::fs::symlink(canary.as_os_str(), format!("{m}/escape")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", format!("{m}/up")).unwrap();
    std::os::unix::fs::symlink("/etc", format!("{m}/abs")).unwrap();
    strata_ok(&root, &["umount", &c]);
    let conf = dir.join("conf");
    let conf = conf.to_str().unwrap();
    // The container has no such directory: refused, not written on the host.
    strata_err(&root, &["cp", conf, "web:/escape/x"]);
    strata_err(
        &root,
        &["cp", conf, &format!("web:/up{}/y", canary.display())],
    );
    assert_eq!(
        std::fs::read_dir(&canary).unwrap().count(),
        0,
        "cp wrote through a container symlink onto the host"
    );
    // An absolute link names the container's /etc, not the host's.
    let name = format!("strata-cp-test-{}", std::process::id());
    strata_ok(&root, &["cp", conf, &format!("web:/abs/{name}")]);
    strata_ok(&root, &["cp", conf, "web:/up/up/"]);
    assert!(
        !Path::new("/etc").join(&name).exists(),
        "cp wrote the host's /etc"
    );
    let m = last_line(&strata_ok(&root, &["mount", &c]));
    assert!(Path::new(&format!("{m}/etc/{name}")).is_file());
    assert!(
        Path::new(&format!("{m}/up/conf")).is_file() || Path::new(&format!("{m}/conf")).is_file()
    );
    strata_ok(&root, &["umount", &c]);
    let err = strata_err(&root, &["cp", "web:/escape/nothing", dir.to_str().unwrap()]);
    assert!(
        err.contains("no such file or directory in the container"),
        "{err}"
    );
    // Streams: out as a tar named from the last component, in unpacked.
    let out = strata(&root, &["cp", "web:/etc", "-"]);
    assert!(out.status.success());
    let mut names = Vec::new();
    for e in tar::Archive::new(&out.stdout[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert!(names.contains(&"etc/conf".to_owned()), "{names:?}");
    let stream = RawTar::new().file("streamed", b"s").finish();
    let put = strata_stdin(&root, &["cp", "-", "web:/tmp"], &stream);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let hostile = RawTar::new().file("../../outside", b"x").finish();
    let put = strata_stdin(&root, &["cp", "-", "web:/tmp"], &hostile);
    assert!(!put.status.success(), "a ../ entry was accepted");
    let m = last_line(&strata_ok(&root, &["mount", &c]));
    assert!(Path::new(&format!("{m}/tmp/streamed")).is_file());
    assert!(!Path::new(&format!("{m}/outside")).exists());
    strata_ok(&root, &["umount", &c]);
    // A copy into a container that cannot be renamed into place (a
    // non-empty directory is there) leaves the container as it was.
    let err = strata_err(&root, &["cp", into.join("etc").to_str().unwrap(), "web:/"]);
    assert!(err.contains("rename into place"), "{err}");
    let m = last_line(&strata_ok(&root, &["mount", &c]));
    let staged: Vec<_> = std::fs::read_dir(&m)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".strata-cp"))
        .collect();
    assert!(
        staged.is_empty(),
        "staging left in the container: {staged:?}"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{m}/etc/conf")).unwrap(),
        "setting=1\n"
    );
    strata_ok(&root, &["umount", &c]);
    // Nothing is staged beside a failed host destination.
    let before: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    strata_err(&root, &["cp", "web:/nope", dir.join("x").to_str().unwrap()]);
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), before.len());
    let err = strata_err(&root, &["cp", "a", "b"]);
    assert!(err.contains("one side must be CONTAINER:PATH"), "{err}");
}

#[test]
fn completion_man_version_and_help_examples() {
    if !require_root("cli_docker::comforts") {
        return;
    }
    let scratch = ScratchDir::new("cli-docker-comforts");
    let root = scratch.path().join("store");
    let bash = strata_ok(&root, &["completion", "bash"]);
    assert!(
        bash.contains("_strata()") && bash.contains("prune"),
        "bash script"
    );
    let zsh = strata_ok(&root, &["completion", "zsh"]);
    assert!(zsh.starts_with("#compdef strata"));
    let man = scratch.path().join("man");
    strata_ok(&root, &["man", man.to_str().unwrap()]);
    let page = std::fs::read_to_string(man.join("strata.1")).unwrap();
    assert!(page.contains(".TH strata"), "{page}");
    assert!(man.join("strata-images.1").is_file());
    let version = json(&strata_ok(&root, &["--format", "json", "version"]));
    let drivers = version["drivers"].as_array().unwrap();
    assert_eq!(drivers.len(), 5);
    let vfs = drivers.iter().find(|d| d["name"] == "vfs").unwrap();
    assert_eq!(vfs["host"], true);
    assert!(version["version"].is_string());
    // Every verb, nested ones included, ends its help with an example
    // and lists its own options before the global ones.
    let mut verbs: Vec<Vec<String>> = subcommands(&root, &[])
        .into_iter()
        .map(|v| vec![v])
        .collect();
    for group in ["image", "container", "system", "snapshots"] {
        for sub in subcommands(&root, &[group]) {
            verbs.push(vec![group.to_owned(), sub]);
        }
    }
    assert!(verbs.len() > 40, "{verbs:?}");
    for verb in &verbs {
        let mut args: Vec<&str> = verb.iter().map(String::as_str).collect();
        args.push("--help");
        let help = strata_ok(&root, &args);
        let is_group = help.contains("\nCommands:\n");
        assert!(
            is_group || help.contains("Example"),
            "{verb:?} --help has no example:\n{help}"
        );
        let own = help.find("\nOptions:\n");
        let global = help
            .find("\nGlobal options:\n")
            .expect("global options section");
        assert!(
            own.is_none_or(|o| o < global),
            "{verb:?}: own options after global ones"
        );
    }
    let init = strata_ok(&root, &["init", "--help"]);
    for key in [
        "btrfs.size",
        "btrfs.quota",
        "blockfile.fs",
        "blockfile.size",
        "dm.data_size",
        "dm.basesize",
        "overlay2.index_off",
        "vfs.reflink",
        "limits.layers",
    ] {
        assert!(init.contains(key), "init --help does not list {key}");
    }
}

#[test]
fn low_level_messages_do_not_leak() {
    let Some((scratch, root, tar)) = store_with_image("messages") else {
        return;
    };
    let dir = scratch.path();
    let junk = dir.join("junk.bin");
    std::fs::write(
        &junk,
        (0..3000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "hello, not a tar\n").unwrap();
    for file in [&junk, &text] {
        let f = file.to_str().unwrap();
        let err = strata_err(&root, &["import", f, "demo/x"]);
        assert!(err.contains(&format!("not a tar archive ({f})")), "{err}");
        let err = strata_err(&root, &["load", "-i", f]);
        assert!(err.contains(&format!("not a tar archive ({f})")), "{err}");
        for leak in ["entire block", "numeric field", "cksum"] {
            assert!(!err.contains(leak), "{leak} leaked: {err}");
        }
    }
    let err = strata_err(&root, &["load", "-i", tar.to_str().unwrap()]);
    assert!(err.contains("strata import"), "{err}");
    // A corrupt gzip layer names its blob.
    let saved = dir.join("saved.tar");
    strata_ok(
        &root,
        &["save", "-o", saved.to_str().unwrap(), "demo/app:1"],
    );
    let corrupt = dir.join("corrupt.tar");
    let blob = corrupt_gzip_blob(&saved, &corrupt);
    let fresh = dir.join("fresh");
    strata_ok(&fresh, &["--driver", "vfs", "init"]);
    let err = strata_err(&fresh, &["load", "-i", corrupt.to_str().unwrap()]);
    assert!(err.contains(&format!("blob {blob}")), "{err}");
    assert!(!err.contains("extract-"), "{err}");
    // init on an existing store says so.
    let out = strata_ok(&root, &["--driver", "vfs", "init"]);
    assert!(out.contains("exists"), "{out}");
}

/// Copies the OCI archive `src` to `dst` with the CRC of its gzip layer
/// blob flipped; returns the blob's digest.
fn corrupt_gzip_blob(src: &Path, dst: &Path) -> String {
    let mut out = tar::Builder::new(std::fs::File::create(dst).unwrap());
    let mut digest = String::new();
    let mut ar = tar::Archive::new(std::fs::File::open(src).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let path = e.path().unwrap().into_owned();
        if data.starts_with(&[0x1f, 0x8b]) {
            let n = data.len();
            data[n - 8] ^= 0xff;
            digest = format!("sha256:{}", path.file_name().unwrap().to_str().unwrap());
        }
        let mut h = e.header().clone();
        out.append_data(&mut h, &path, &data[..]).unwrap();
    }
    out.finish().unwrap();
    assert!(!digest.is_empty(), "no gzip blob in {}", src.display());
    digest
}

#[test]
fn config_file_log_level_and_plain_stderr() {
    let Some((scratch, root, tar)) = store_with_image("config") else {
        return;
    };
    let dir = scratch.path();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "root = {:?}\ndriver = \"vfs\"\n[options]\n\"limits.layers\" = \"7\"\n",
            root.join("from-config")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("STRATA_ROOT")
            .env("STRATA_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = json(&String::from_utf8_lossy(
        &run(&["--format", "json", "info"]).stdout,
    ));
    assert_eq!(info["root"], root.join("from-config").to_str().unwrap());
    assert_eq!(info["options"]["limits.layers"], "7");
    // An explicit --root wins over the file.
    let out = run(&["--root", root.to_str().unwrap(), "images", "-q"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    std::fs::write(&config, "colour = \"red\"\n").unwrap();
    let out = run(&["images"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("config.toml"),
        "{err}"
    );
    assert!(err.contains("unknown field"), "{err}");
    // --log-level debug: events naming the verb and the store, no colour
    // codes off a terminal.
    let out = strata(&root, &["-l", "debug", "images"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("command=images") && err.contains("store opened"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "colour codes off a terminal: {err:?}"
    );
    // No progress drawn off a terminal.
    let out = strata(&root, &["import", tar.to_str().unwrap(), "demo/quiet"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kernel_has(fs: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs))
}

#[test]
fn info_and_inspect_describe_the_block_storage() {
    if !require_root("cli_docker::block_details") {
        return;
    }
    if !kernel_has("btrfs") {
        strata_driver_api::testing::skip("cli_docker::block_details", "no btrfs in this kernel");
        return;
    }
    let scratch = ScratchDir::new("cli-docker-block");
    let tar = scratch.path().join("rootfs.tar");
    busybox_rootfs_tar(&tar, "x\n");
    let root = scratch.path().join("btrfs");
    strata_ok(
        &root,
        &["--driver", "btrfs", "init", "--opt", "btrfs.size=300M"],
    );
    let info = json(&strata_ok(&root, &["--format", "json", "info"]));
    let total = info["space_total"].as_u64().unwrap();
    assert!(
        total <= 300 << 20 && total > 200 << 20,
        "btrfs store of 300M reports {total}"
    );
    assert!(info["space_of"]
        .as_str()
        .unwrap()
        .starts_with(root.to_str().unwrap()));
    strata_ok(&root, &["import", tar.to_str().unwrap(), "demo/a"]);
    let c = last_line(&strata_ok(&root, &["create", "demo/a"]));
    let data = json(&strata_ok(&root, &["inspect", &c]))[0]["GraphDriver"]["Data"].clone();
    assert_eq!(
        data["BackingFile"],
        root.join("btrfs/btrfs.img").to_str().unwrap(),
        "{data}"
    );

    let root = scratch.path().join("blockfile");
    strata_ok(
        &root,
        &[
            "--driver",
            "blockfile",
            "init",
            "--opt",
            "blockfile.size=256M",
        ],
    );
    strata_ok(&root, &["import", tar.to_str().unwrap(), "demo/a"]);
    let c = last_line(&strata_ok(&root, &["create", "demo/a"]));
    strata_ok(&root, &["mount", &c]);
    let data = json(&strata_ok(&root, &["inspect", &c]))[0]["GraphDriver"]["Data"].clone();
    assert_eq!(data["Capacity"], 256u64 << 20, "{data}");
    assert!(
        data["ImageFile"].as_str().unwrap().ends_with(".img"),
        "{data}"
    );
    assert!(
        data["LoopDevice"]
            .as_str()
            .unwrap()
            .starts_with("/dev/loop"),
        "{data}"
    );
    strata_ok(&root, &["umount", &c]);
}

/// The subcommand names `strata GROUP --help` lists (without `help`).
fn subcommands(root: &Path, group: &[&str]) -> Vec<String> {
    let mut args = group.to_vec();
    args.push("--help");
    let help = strata_ok(root, &args);
    let Some(start) = help.find("Commands:\n") else {
        return Vec::new();
    };
    help[start + "Commands:\n".len()..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn progress_is_drawn_on_a_terminal() {
    let Some((scratch, root, tar)) = store_with_image("progress") else {
        return;
    };
    if Command::new("script").arg("--version").output().is_err() {
        strata_driver_api::testing::skip("cli_docker::progress", "no script(1) for a pty");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_strata");
    let out_file = scratch.path().join("saved.tar");
    let line = format!(
        "{bin} --root {r} import {} demo/tty && {bin} --root {r} save -o {o} demo/tty \
         && {bin} --root {r} load -i {o}",
        tar.display(),
        r = root.display(),
        o = out_file.display()
    );
    // script(1) runs the commands on a pseudo-terminal.
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("importing {}", tar.display())),
        "{text}"
    );
    // The bar shows `{bytes}/{total_bytes}`: the total is there from the
    // first draw (a mid-way draw depends on the machine's speed).
    assert!(text.contains(" MiB"), "no byte counts: {text}");
    assert!(text.contains("saving demo/tty"), "{text}");
    // save shows the bytes written so far (from its first frame: 0 B).
    let after_saving = text.split("saving demo/tty").nth(1).unwrap_or_default();
    assert!(
        after_saving
            .trim_start()
            .starts_with(|c: char| c.is_ascii_digit()),
        "no byte count after saving: {text}"
    );
    assert!(text.contains("Loaded image: demo/tty"), "{text}");
    assert!(out_file.is_file());
    // Log lines are coloured on a terminal, unless NO_COLOR is set.
    let logs = |no_colour: bool| {
        let mut cmd = Command::new("script");
        let line = format!("{bin} --root {} -l debug images", root.display());
        cmd.args(["-qec", &line, "/dev/null"]);
        if no_colour {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
    };
    let coloured = logs(false);
    assert!(
        coloured.contains("store opened") && coloured.contains('\u{1b}'),
        "{coloured:?}"
    );
    let plain = logs(true);
    assert!(
        plain.contains("store opened") && !plain.contains('\u{1b}'),
        "{plain:?}"
    );
}
