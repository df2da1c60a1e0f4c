//! The shared conformance suite: containerd's snapshot semantics checked
//! on a [`Snapshotter`] (a driver under the store's metadata, or the gRPC
//! client of `strata serve`). A test binary declares `#[macro_use] mod
//! conformance_suite;` and runs it through `conformance_tests!`, which
//! expands to one `#[test]` per case, each on a fresh [`Fixture`].
#![allow(dead_code)]

mod cases;
mod tree;

pub use cases::*;
pub use tree::Entry;

use strata::snapshotter::Snapshotter;
use strata_driver_api::testing::ScratchDir;

/// What a case runs against. Fields drop in order: snapshotter, keep, scratch.
pub struct Fixture {
    /// The snapshotter under test.
    pub snapshotter: Box<dyn Snapshotter>,
    /// Backing objects to drop after the snapshotter (loop filesystems, servers).
    pub keep: Vec<Box<dyn std::any::Any + Send>>,
    /// Scratch space for mount points; removed last.
    pub scratch: ScratchDir,
}

/// Expands to one `#[test]` per conformance case. `$make` is a
/// `fn() -> Option<Fixture>`; `None` means the case is skipped (the maker
/// reports why with [`strata_driver_api::testing::skip`]). Attributes after
/// the maker (`#[ignore = "..."]`) go on every case.
macro_rules! conformance_tests {
    ($make:expr $(, #[$attr:meta])* $(,)?) => {
        conformance_tests!(@cases $make; [$(#[$attr])*];
            basic_flattened_view,
            stat_active_and_committed,
            three_level_chain,
            duplicate_keys_fail,
            labels_and_timestamps,
            remove_then_reuse_key,
            walk_filters,
            update_lower_file,
            delete_and_recreate_lower_dir,
            chown_lower_files,
            dir_ownership_across_three_layers,
            remove_parent_with_children_fails,
            deletions_hidden_in_descendants,
            hard_link_and_rename_across_layers,
            view_rejects_writes,
            stat_inside_walk,
            new_root_is_0755,
            parent_rules,
            usage_grows_with_writes,
            chain_of_128_layers
        );
    };
    (@cases $make:expr; $attrs:tt; $($case:ident),*) => {
        $( conformance_tests!(@case $make; $attrs; $case); )*
    };
    (@case $make:expr; [$(#[$attr:meta])*]; $case:ident) => {
        #[test]
        $(#[$attr])*
        fn $case() {
            let make: fn() -> Option<$crate::conformance_suite::Fixture> = $make;
            if let Some(fixture) = make() {
                $crate::conformance_suite::$case(&fixture);
            }
        }
    };
}
