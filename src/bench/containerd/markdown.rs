//! The comparison as a markdown section, and both files of a run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{PairResult, Via, VsResults};
use crate::bench::cells::{ci_text, ratio_text};
use crate::bench::human_bytes;
use crate::bench::rig::{Backing, LOOP_SIZE};
use crate::bench::Result;

/// `12.3`, `4.56`, `129`: a latency with about three significant digits.
fn ms(v: f64) -> String {
    match v {
        v if !v.is_finite() => "-".into(),
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

/// What containerd's side of every pair is, for the section's preamble.
fn containerd_side(via: &Via) -> &'static str {
    match via {
        Via::Daemon => {
            "containerd's snapshots service through a private containerd daemon (its metadata \
             store in between, as every containerd client sees it; its Remove is a metadata \
             transaction and leaves the backend's deletion to its garbage collector)"
        }
        Via::Direct { .. } => {
            "containerd's own snapshotter package served directly by `ctrd-snapshotter` \
             (containerd's snapshots gRPC service over the snapshotter, as a proxy plug-in \
             serves one and as the issue measured; no metadata store in between, every call \
             does the backend's work and Remove deletes for real; overlayfs removes \
             synchronously)"
        }
    }
}

impl VsResults {
    /// The markdown section.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let h = &self.host;
        let version = self.containerd_version.as_deref().unwrap_or("(not found)");
        let _ = writeln!(md, "## Against containerd's own snapshotters\n");
        let _ = writeln!(
            md,
            "containerd {version}, strata {} build, kernel {}, {} CPUs, {} run, {:.0} s. \
             Both servers are driven by \
             the same client (Strata's `GrpcSnapshotter`) over their sockets: {} and \
             `strata serve`. Samples alternate between the two. Latencies in ms; ratio = \
             strata median ÷ containerd median (below 1: Strata is faster), with its 95% \
             bootstrap interval. {}\n",
            self.strata_build,
            h.kernel,
            h.cpus,
            self.plan.name,
            h.duration_s,
            containerd_side(&self.via),
            crate::bench::stats::NOISE_RULE
        );
        for p in &self.pairs {
            self.pair_markdown(&mut md, p);
        }
        md
    }

    fn pair_markdown(&self, md: &mut String, p: &PairResult) {
        let pair = &p.pair;
        let _ = writeln!(
            md,
            "### {}: {} vs strata `{}`\n",
            pair.label,
            self.via.describe(pair.containerd),
            pair.strata
        );
        if let Some(reason) = &p.skipped {
            let _ = writeln!(md, "Skipped: {}\n", reason.lines().next().unwrap_or(""));
            return;
        }
        let fstype = p.fstype.as_deref().unwrap_or("unknown");
        let place = match pair.backing {
            Backing::Host if pair.strata == "devmapper" => format!(
                "its own thin pool (100 GiB sparse loop file, 64 KiB blocks) in a directory of \
                 the host's filesystem ({fstype})"
            ),
            Backing::Host => format!("a directory of the host's filesystem ({fstype})"),
            _ => format!(
                "its own fresh loop {fstype} ({} sparse)",
                human_bytes(LOOP_SIZE)
            ),
        };
        let _ = writeln!(md, "Each server's data on {place}.\n");
        let _ = writeln!(
            md,
            "| operation | n | containerd median | containerd p95 | strata median | strata p95 | strata ÷ containerd | 95% CI |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---|");
        for r in &p.rows {
            let n = if r.containerd.n == r.strata.n {
                r.strata.n.to_string()
            } else {
                format!("{}/{}", r.containerd.n, r.strata.n)
            };
            let _ = writeln!(
                md,
                "| {} | {n} | {} | {} | {} | {} | {} | {} |",
                r.name,
                ms(r.containerd.median_ms),
                ms(r.containerd.p95_ms),
                ms(r.strata.median_ms),
                ms(r.strata.p95_ms),
                r.comparison
                    .as_ref()
                    .map_or_else(|| format!("{:.2}×", r.ratio), ratio_text),
                r.comparison.as_ref().map_or_else(|| "-".into(), ci_text),
            );
        }
        if let (Some(small), Some(large)) = (p.row("prepare"), p.row("prepare_large")) {
            let _ = writeln!(
                md,
                "\nPrepare on the {} parent ÷ on the {} one: containerd {:.2}×, strata {:.2}×.",
                human_bytes(self.plan.large_parent),
                human_bytes(self.plan.small_parent),
                large.containerd.median_ms / small.containerd.median_ms,
                large.strata.median_ms / small.strata.median_ms
            );
        }
        for e in &p.errors {
            let _ = writeln!(md, "\nFailed: {}", e.lines().next().unwrap_or(""));
        }
        md.push('\n');
    }

    /// Writes `STEM.json` (every sample) and `STEM.md` into `dir`, STEM
    /// being [`Via::file_stem`]; returns the markdown's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let stem = self.via.file_stem();
        let json = dir.join(format!("{stem}.json"));
        std::fs::write(&json, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("write {}", json.display()))?;
        let md = dir.join(format!("{stem}.md"));
        std::fs::write(&md, self.markdown()).with_context(|| format!("write {}", md.display()))?;
        Ok(md)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_keep_about_three_digits() {
        assert_eq!(ms(129.4), "129");
        assert_eq!(ms(12.34), "12.3");
        assert_eq!(ms(0.364), "0.36");
        assert_eq!(ms(f64::NAN), "-");
    }
}
