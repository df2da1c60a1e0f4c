//! `strata bench`: runs the shared workloads ([`strata::bench`]) over every
//! driver the host supports and writes the report.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use strata::bench::{plan::Plan, plot, rig, runner};

/// Runs the benchmarks into `out`.
pub fn run(drivers: &[String], quick: bool, out: &Path, only: &[String]) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("strata bench needs root (it makes loop devices, filesystems and mounts)");
    }
    let targets = rig::select_targets(drivers);
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
    let progress = progress_bar(runner::planned_steps(&plan, &targets));
    let results = runner::run(&plan, &targets, &progress);
    progress.finish_and_clear();
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
