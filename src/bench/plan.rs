//! What a run measures: sizes, depths and sample counts, for `--quick`
//! and for a full run.

use serde::Serialize;

use super::{GIB, KIB, MIB};

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
    /// A short run (under three minutes on two cores): every workload, the
    /// 1 GiB copy-up case included, few samples, no 500-layer image.
    pub fn quick() -> Self {
        Self {
            name: "quick",
            file_sizes: vec![MIB, 64 * MIB, GIB],
            write_sizes: vec![4 * KIB, 64 * KIB, MIB],
            copy_up_samples: 5,
            copy_up_samples_large: 3,
            write_sizes_large: vec![4 * KIB],
            image_sizes: vec![MIB, 10 * MIB, 64 * MIB, GIB],
            depths: vec![1, 16, 128],
            create_samples: 5,
            create_samples_large: 2,
            commit_samples: 5,
            usage_files: 10_000,
            usage_samples: 5,
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
            copy_up_samples: 15,
            copy_up_samples_large: 7,
            write_sizes_large: vec![4 * KIB, 64 * KIB, MIB],
            depths: vec![1, 16, 128, 500],
            create_samples: 15,
            create_samples_large: 5,
            commit_samples: 15,
            usage_samples: 15,
            read_size: 128 * MIB,
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
}
