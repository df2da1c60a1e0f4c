//! Memory an apply keeps per entry: at most about the bytes of the entry's
//! name, never a multiple of it. Alone in its binary, so the process's
//! peak RSS is this test's. Needs root (chown); skips otherwise.

mod common;

use common::Sandbox;
use strata::archive::{apply_layer, ApplyOptions};

fn peak_rss_bytes() -> u64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    usage.max_rss() as u64 * 1024
}

/// `count` empty files and as many directories, each named by a path of
/// about 4000 bytes made of 2000 one-byte components.
fn deep_names_tar(count: usize) -> Vec<u8> {
    let deep = "a/".repeat(2000);
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..count {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(0);
        b.append_data(&mut h, format!("{deep}f{i}"), &[][..])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, format!("{deep}d{i}/"), &[][..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn deep_names_cost_no_more_memory_than_their_bytes() {
    if !strata_driver_api::testing::require_root("archive_memory") {
        return;
    }
    // 4000 entries of ~4 KB names: a 20 MB tar (a few KB gzipped). Kept
    // as one allocation per component, each name cost ~110 KB: 450 MB.
    let tar = deep_names_tar(2000);
    let sb = Sandbox::new();
    let before = peak_rss_bytes();
    apply_layer(&sb.root(), &tar[..], &ApplyOptions::default()).unwrap();
    let grown = peak_rss_bytes().saturating_sub(before);
    assert!(
        grown < 3 * tar.len() as u64,
        "applying a {} byte tar grew the peak RSS by {grown} bytes",
        tar.len()
    );
}
