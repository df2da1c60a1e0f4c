//! Rough figures, not assertions: `copy_tree` of /usr/share onto ext4 (/tmp)
//! and a reflink xfs loop filesystem. Run with
//! `cargo test -p strata-vfs --test figures -- --ignored --nocapture`.

use std::time::Instant;

use strata_driver_api::du::disk_usage;
use strata_driver_api::testing::{require_root, skip, LoopFs, ScratchDir};
use strata_vfs::copy_tree;

fn measure(label: &str, base: &std::path::Path) {
    let src = base.join("src");
    let t = Instant::now();
    let first = copy_tree("/usr/share".as_ref(), &src).expect("seed copy");
    let seed = t.elapsed();
    let t = Instant::now();
    let again = copy_tree(&src, &base.join("dst")).expect("copy");
    let copy = t.elapsed();
    let usage = disk_usage(&src).expect("du");
    println!(
        "{label}: seed copy from /usr/share {seed:.2?}; copy of the {} MiB / {} inode tree {copy:.2?} \
         (files {}, reflinked {}, bytes copied {} MiB)",
        usage.size >> 20,
        usage.inodes,
        again.files,
        again.reflinked,
        again.bytes_copied >> 20,
    );
    let _ = first;
}

#[test]
#[ignore = "takes a while; prints figures"]
fn copy_figures() {
    if !require_root("copy_figures") {
        return;
    }
    let scratch = ScratchDir::new("vfs-figures");
    measure("ext4 /tmp", scratch.path());
    match LoopFs::new("xfs", 4 << 30, &["-m", "reflink=1"]) {
        Ok(fs) => measure("xfs reflink", fs.path()),
        Err(e) => skip("copy_figures", &format!("no xfs: {e}")),
    }
}
