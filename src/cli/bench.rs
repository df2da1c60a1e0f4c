//! `strata bench`: runs the shared workloads ([`strata::bench`]) over every
//! driver the host supports and writes the report.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use strata::bench::workdir::{default_work_dir, WorkDir};
use strata::bench::{containerd, plan::Plan, plot, rig, runner};

/// Runs the benchmarks into `out` (only the steps in `only`, when given),
/// with scratch filesystems in `work_dir` (default: under the store `root`
/// if it exists, else /var/tmp).
pub fn run(
    drivers: &[String],
    quick: bool,
    out: &Path,
    only: &[String],
    work_dir: Option<&Path>,
    root: &Path,
) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("strata bench needs root (it makes loop devices, filesystems and mounts)");
    }
    let mut targets = rig::select_targets(drivers);
    if targets.is_empty() {
        let known: Vec<String> = rig::all_targets().into_iter().map(|t| t.label).collect();
        bail!(
            "no benchmark target matches {drivers:?}; known: {}",
            known.join(", ")
        );
    }
    let steps = runner::step_names();
    if let Some(unknown) = only.iter().find(|s| !steps.contains(&s.as_str())) {
        bail!("no benchmark step {unknown:?}; known: {}", steps.join(", "));
    }
    std::fs::create_dir_all(out).with_context(|| format!("mkdir {}", out.display()))?;
    let mut plan = if quick { Plan::quick() } else { Plan::full() };
    plan.only = only.to_vec();
    let work = WorkDir::prepare(
        &work_dir.map_or_else(|| default_work_dir(Some(root)), Path::to_path_buf),
        &plan,
        targets.iter().map(|t| t.driver.as_str()),
    )?;
    for t in &mut targets {
        t.work_dir = work.path().to_path_buf();
    }
    eprintln!("bench: work dir {}", work.path().display());
    let progress = progress_bar(runner::planned_steps(&plan, &targets));
    let results = runner::run(&plan, &targets, &progress);
    progress.finish_and_clear();
    drop(work);
    if let Some(signal) = strata::interrupt::requested() {
        return Err(strata::interrupt::Interrupted::new(signal).into());
    }
    results.write_json(out)?;
    results.write_markdown(out)?;
    match plot::write_plots(&results, out) {
        Ok(files) => eprintln!("wrote {} plots", files.len()),
        Err(e) => eprintln!("strata: warning: {e:#}"),
    }
    for t in &results.targets {
        if let Some(reason) = &t.skipped {
            eprintln!("skipped {}: {reason}", t.label);
        }
        for e in &t.errors {
            eprintln!("{} failed: {e}", t.label);
        }
    }
    println!("{}", out.join("report.md").display());
    Ok(())
}

/// Runs Strata's servers against containerd's own snapshotters into `out`,
/// those served `direct`ly by ctrd-snapshotter or through containerd's daemon.
pub fn run_containerd(
    pairs: &[String],
    quick: bool,
    direct: bool,
    out: &Path,
    work_dir: Option<&Path>,
    root: &Path,
) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("strata bench --containerd needs root (it starts containerd, makes loop devices and mounts)");
    }
    let selected = containerd::select_pairs(pairs);
    if selected.is_empty() {
        let known: Vec<&str> = containerd::all_pairs().iter().map(|p| p.label).collect();
        bail!(
            "no comparison matches {pairs:?}; known: {}",
            known.join(", ")
        );
    }
    let plan = if quick {
        containerd::VsPlan::quick()
    } else {
        containerd::VsPlan::full()
    };
    let strata = std::env::current_exe().context("finding the strata executable")?;
    let via = if direct {
        containerd::Via::Direct {
            binary: containerd::find_ctrd_snapshotter(&strata)?,
        }
    } else {
        containerd::Via::Daemon
    };
    let work_dir = work_dir.map_or_else(|| default_work_dir(Some(root)), Path::to_path_buf);
    let results = containerd::run(&plan, &selected, &via, &strata, &work_dir);
    let md = results.write(out)?;
    print!("{}", results.markdown());
    println!("{}", md.display());
    Ok(())
}

/// A progress bar on a terminal, hidden elsewhere (the runner still prints
/// one line per target).
fn progress_bar(len: u64) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(len);
        let style =
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    }
}
