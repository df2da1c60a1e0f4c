//! What a run measures: sizes, depths and sample counts, for `--quick`
//! and for a full run. Every headline row (copy-up and volume writes,
//! create, commit, remove) has at least [`MIN_HEADLINE_SAMPLES_QUICK`]
//! samples in a quick run and [`MIN_HEADLINE_SAMPLES_FULL`] in a full one:
//! a quick run measures fewer cases, not fewer samples.

use serde::Serialize;

use super::{GIB, KIB, MIB};

/// Fewest samples of a headline row in `--quick`.
pub const MIN_HEADLINE_SAMPLES_QUICK: usize = 10;
/// Fewest samples of a headline row in a full run.
pub const MIN_HEADLINE_SAMPLES_FULL: usize = 20;

/// Sizes, depths and sample counts of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `quick` or `full`.
    pub name: &'static str,
    /// Sizes of the file in the image layer for copy-up (bytes).
    pub file_sizes: Vec<u64>,
    /// Sizes of the first write (bytes).
    pub write_sizes: Vec<u64>,
    /// Copy-up and volume samples per case for files below 1 GiB.
    pub copy_up_samples: usize,
    /// Copy-up and volume samples per case for files of 1 GiB and more.
    pub copy_up_samples_large: usize,
    /// Write sizes used with files of 1 GiB and more.
    pub write_sizes_large: Vec<u64>,
    /// One-layer image sizes for create latency (bytes); the copy-up images
    /// are reused, so sizes in both lists cost nothing extra.
    pub image_sizes: Vec<u64>,
    /// Layer depths for create latency and the deep-stack read.
    pub depths: Vec<usize>,
    /// Create samples per image.
    pub create_samples: usize,
    /// Create samples for images of 1 GiB and more (vfs copies them whole).
    pub create_samples_large: usize,
    /// Commit and remove samples.
    pub commit_samples: usize,
    /// Files in the container whose usage is timed.
    pub usage_files: usize,
    /// Usage samples.
    pub usage_samples: usize,
    /// Size of the file at the bottom of the layer stack that is read back (bytes).
    pub read_size: u64,
    /// Read samples per depth.
    pub read_samples: usize,
    /// Scale: counts of existing committed snapshots at which the snapshot
    /// operations are timed, ascending.
    pub scale_counts: Vec<usize>,
    /// Scale: samples of each operation at each count.
    pub scale_samples: usize,
    /// Concurrency: Prepare calls sent at once through the socket.
    pub concurrent_prepares: usize,
    /// Deep stack: mount and lookup samples per depth.
    pub lookup_samples: usize,
    /// Density: containers of one image reading the same file.
    pub density_containers: usize,
    /// Density: size of the file they read (bytes).
    pub density_file_size: u64,
    /// Steps to run (names from [`super::runner::step_names`]); all when empty.
    pub only: Vec<String>,
}

impl Plan {
    /// A short run (about two minutes on two cores): every workload, the
    /// 1 GiB copy-up case included, 10 samples per headline row; fewer
    /// image sizes and no 500-layer image.
    pub fn quick() -> Self {
        Self {
            name: "quick",
            file_sizes: vec![MIB, 64 * MIB, GIB],
            write_sizes: vec![4 * KIB, 64 * KIB, MIB],
            copy_up_samples: MIN_HEADLINE_SAMPLES_QUICK,
            copy_up_samples_large: MIN_HEADLINE_SAMPLES_QUICK,
            write_sizes_large: vec![4 * KIB],
            image_sizes: vec![MIB, 64 * MIB, GIB],
            depths: vec![1, 16, 128],
            create_samples: MIN_HEADLINE_SAMPLES_QUICK,
            create_samples_large: MIN_HEADLINE_SAMPLES_QUICK,
            commit_samples: MIN_HEADLINE_SAMPLES_QUICK,
            usage_files: 10_000,
            usage_samples: 10,
            read_size: 16 * MIB,
            read_samples: 2,
            scale_counts: vec![10, 1_000],
            scale_samples: 10,
            concurrent_prepares: 20,
            lookup_samples: 5,
            density_containers: 5,
            density_file_size: 64 * MIB,
            only: Vec::new(),
        }
    }

    /// The full run.
    pub fn full() -> Self {
        Self {
            name: "full",
            copy_up_samples: MIN_HEADLINE_SAMPLES_FULL,
            copy_up_samples_large: MIN_HEADLINE_SAMPLES_FULL,
            write_sizes_large: vec![4 * KIB, 64 * KIB, MIB],
            image_sizes: vec![MIB, 10 * MIB, 64 * MIB, GIB],
            depths: vec![1, 16, 128, 500],
            create_samples: MIN_HEADLINE_SAMPLES_FULL,
            create_samples_large: MIN_HEADLINE_SAMPLES_FULL,
            commit_samples: MIN_HEADLINE_SAMPLES_FULL,
            usage_samples: 20,
            // vfs copies it into each of the 500 layers: 16 GiB.
            read_size: 32 * MIB,
            read_samples: 5,
            scale_counts: vec![10, 1_000, 10_000],
            scale_samples: 20,
            concurrent_prepares: 100,
            lookup_samples: 20,
            density_containers: 20,
            density_file_size: 256 * MIB,
            ..Self::quick()
        }
    }

    /// The smallest sample count of any headline row.
    pub fn min_headline_samples(&self) -> usize {
        [
            self.copy_up_samples,
            self.copy_up_samples_large,
            self.create_samples,
            self.create_samples_large,
            self.commit_samples,
        ]
        .into_iter()
        .min()
        .unwrap_or(0)
    }

    /// Samples for a copy-up (or volume) case with a file of `file_size` bytes.
    pub fn copy_up_samples_for(&self, file_size: u64) -> usize {
        if file_size >= GIB {
            self.copy_up_samples_large
        } else {
            self.copy_up_samples
        }
    }

    /// Write sizes for a copy-up case with a file of `file_size` bytes.
    pub fn write_sizes_for(&self, file_size: u64) -> &[u64] {
        if file_size >= GIB {
            &self.write_sizes_large
        } else {
            &self.write_sizes
        }
    }

    /// Create samples for an image of `size` bytes.
    pub fn create_samples_for(&self, size: u64) -> usize {
        if size >= GIB {
            self.create_samples_large
        } else {
            self.create_samples
        }
    }

    /// Whether step `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == name)
    }

    /// The deepest layer stack needed.
    pub fn max_depth(&self) -> usize {
        self.depths.iter().copied().max().unwrap_or(1)
    }

    /// Every one-layer image size the run builds (copy-up files and create
    /// images), smallest first, each once.
    pub fn all_image_sizes(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = self
            .file_sizes
            .iter()
            .chain(&self.image_sizes)
            .copied()
            .collect();
        sizes.sort();
        sizes.dedup();
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_rows_have_enough_samples() {
        assert!(Plan::quick().min_headline_samples() >= MIN_HEADLINE_SAMPLES_QUICK);
        assert!(Plan::full().min_headline_samples() >= MIN_HEADLINE_SAMPLES_FULL);
    }

    #[test]
    fn both_plans_keep_the_1_gib_4_kib_headline_case() {
        for plan in [Plan::quick(), Plan::full()] {
            assert!(plan.file_sizes.contains(&GIB), "{}", plan.name);
            assert!(
                plan.write_sizes_for(GIB).contains(&(4 * KIB)),
                "{}",
                plan.name
            );
        }
    }
}
