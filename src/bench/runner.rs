//! Runs a [`Plan`] over a list of targets: volume baselines first (one per
//! backing in use), then every driver, each on a fresh rig. A workload that
//! fails is recorded with its error and the run goes on. A stop request
//! ([`crate::interrupt`]) ends the run at the next sample: the rig in use is
//! dropped (unmounting and detaching what it made) and what was measured
//! so far is returned.

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::ProgressBar;

use super::plan::Plan;
use super::results::{Case, HostInfo, Results, TargetResult, AMPLIFICATION, AMPLIFICATION_USAGE};
use super::rig::{Backing, BenchTarget, Rig};
use super::workloads::{self, OwnBytes, Volume, WriteSample};
use super::{concurrency, deep, density, scale};
use super::{human_bytes, Result};
use crate::interrupt;
use anyhow::Context;
use strata_driver_api::SnapshotKey;

/// Steps of each target, in the order they run.
const STEP_FNS: [(&str, Step); 8] = [
    ("copy-up", copy_up_step),
    ("create", create_step),
    ("commit/remove", commit_remove_step),
    ("usage", usage_step),
    ("read", read_step),
    ("deep-stack", deep_step),
    ("density", density_step),
    ("concurrency", concurrency_step),
];

/// The scale step's name: it runs after the other steps, on a rig of its own.
const SCALE: &str = "scale";

/// Names of the steps in the order they run, for `--only`.
pub fn step_names() -> Vec<&'static str> {
    STEP_FNS
        .iter()
        .map(|(name, _)| *name)
        .chain([SCALE])
        .collect()
}

/// Samples to take for each workload, for sizing the progress bar.
pub fn planned_steps(plan: &Plan, targets: &[BenchTarget]) -> u64 {
    let copy: usize = plan
        .file_sizes
        .iter()
        .map(|&s| plan.copy_up_samples_for(s) * plan.write_sizes_for(s).len())
        .sum();
    let backings: std::collections::BTreeSet<Backing> = targets.iter().map(|t| t.backing).collect();
    let create: usize = plan
        .image_sizes
        .iter()
        .map(|&s| plan.create_samples_for(s))
        .sum::<usize>()
        + plan.depths.len() * plan.create_samples;
    let on = |step: &str| usize::from(plan.runs(step));
    let per_target = on("copy-up") * copy
        + (on("create") | on("read") | on("deep-stack")) * plan.max_depth()
        + on("create") * create
        + on("commit/remove") * plan.commit_samples
        + on("usage") * plan.usage_samples
        + on("read") * 2 * plan.read_samples
        + on("deep-stack") * 2 * plan.lookup_samples
        + on("concurrency")
        + on("density") * plan.density_containers
        + on("scale")
            * (plan.scale_counts.iter().max().copied().unwrap_or(0)
                + plan.scale_counts.len() * plan.scale_samples);
    (on("copy-up") * backings.len() * copy + targets.len() * per_target) as u64
}

/// Runs everything; `progress` advances by one per sample or layer built.
/// Volume baselines go in the work dir of the first target.
pub fn run(plan: &Plan, targets: &[BenchTarget], progress: &ProgressBar) -> Results {
    let started = Instant::now();
    let work_dir = targets.first().map_or_else(
        || super::workdir::default_work_dir(None),
        |t| t.work_dir.clone(),
    );
    let mut results = Results {
        host: HostInfo::current().in_work_dir(&work_dir),
        plan: plan.clone(),
        targets: Vec::new(),
    };
    // The volume baselines are the copy-up step's reference.
    let mut backings: Vec<Backing> = targets
        .iter()
        .filter(|t| plan.runs("copy-up") && t.unavailable().is_none())
        .map(|t| t.backing)
        .collect();
    backings.sort();
    backings.dedup();
    for backing in backings {
        if interrupt::requested().is_some() {
            break;
        }
        progress.set_message(format!("volume on {}", backing.as_str()));
        progress.suspend(|| eprintln!("bench: volume baseline on {}", backing.as_str()));
        results
            .targets
            .push(run_volume(plan, backing, &work_dir, progress));
    }
    for target in targets {
        if interrupt::requested().is_some() {
            break;
        }
        progress.set_message(target.label.clone());
        progress.suspend(|| {
            eprintln!(
                "bench: {} ({} on {})",
                target.label,
                target.driver,
                target.backing.as_str()
            )
        });
        results.targets.push(run_target(plan, target, progress));
    }
    results.host.duration_s = started.elapsed().as_secs_f64();
    results
}

fn record(result: &mut TargetResult, case: &Case, s: &WriteSample, write_size: u64) {
    for (metric, v) in [
        ("open", s.open_ns),
        ("write", s.write_ns),
        ("total", s.total_ns),
        ("second", s.second_ns),
    ] {
        result.push(
            &Case {
                metric: metric.into(),
                ..case.clone()
            },
            "ns",
            v,
        );
    }
    let (metric, bytes) = match s.own_bytes {
        Some(OwnBytes::Unshared(b)) => (AMPLIFICATION, b),
        Some(OwnBytes::UsageDelta(b)) => (AMPLIFICATION_USAGE, b),
        None => return,
    };
    result.push(
        &Case {
            metric: metric.into(),
            ..case.clone()
        },
        "ratio",
        bytes / write_size as f64,
    );
}

/// `Err(Interrupted)` once a stop was requested: a step's sample loop ends.
fn stop_point() -> Result<()> {
    interrupt::check().map_err(anyhow::Error::from)
}

fn write_case(workload: &str, file_size: u64, write_size: u64) -> Case {
    Case {
        file_size: Some(file_size),
        write_size: Some(write_size),
        ..Case::new(workload, "total")
    }
}

/// The volume baseline on a fresh filesystem of kind `backing` in `work_dir`.
pub fn run_volume(
    plan: &Plan,
    backing: Backing,
    work_dir: &std::path::Path,
    progress: &ProgressBar,
) -> TargetResult {
    let mut result = TargetResult {
        label: format!("volume-{}", backing.as_str()),
        driver: "volume".into(),
        backing_kind: Some(backing),
        ..TargetResult::default()
    };
    let fs = match backing.make_in(work_dir, "volume") {
        Ok(fs) => fs,
        Err(e) => {
            result.skipped = Some(format!("{e:#}"));
            return result;
        }
    };
    result.backing = Some(fs.info.clone());
    let t = Instant::now();
    let outcome = (|| -> Result<()> {
        let volume = Volume::new(
            &fs.path.join("volume"),
            &fs.scratch.path().join("volume-mnt"),
        )?;
        for &size in &plan.file_sizes {
            let file = volume.file(size)?;
            for &write in plan.write_sizes_for(size) {
                for _ in 0..plan.copy_up_samples_for(size) {
                    stop_point()?;
                    let s = volume.write(&file, write)?;
                    record(&mut result, &write_case("volume", size, write), &s, write);
                    progress.inc(1);
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        result.errors.push(format!("volume: {e:#}"));
    }
    result
        .wall_s
        .insert("volume".into(), t.elapsed().as_secs_f64());
    result
}

/// Every driver workload on a fresh rig for `target`.
pub fn run_target(plan: &Plan, target: &BenchTarget, progress: &ProgressBar) -> TargetResult {
    let mut result = TargetResult {
        label: target.label.clone(),
        driver: target.driver.clone(),
        backing_kind: Some(target.backing),
        options: target.options.clone(),
        ..TargetResult::default()
    };
    let rig = match Rig::new(target) {
        Ok(rig) => rig,
        Err(e) => {
            result.skipped = Some(format!("{e:#}"));
            return result;
        }
    };
    result.backing = Some(rig.backing.info.clone());
    result.status = rig.status.clone();
    let mut images = BTreeMap::new();
    let mut sizes = plan.all_image_sizes();
    if !plan.runs("copy-up") && !plan.runs("create") {
        // The other steps need only a small image (density builds its own).
        sizes.truncate(1);
    }
    let t = Instant::now();
    for size in sizes {
        if interrupt::requested().is_some() {
            break;
        }
        progress.set_message(format!(
            "{}: building a {} image",
            target.label,
            human_bytes(size)
        ));
        match rig.file_image(size) {
            Ok(image) => {
                images.insert(size, image);
            }
            Err(e) => result
                .errors
                .push(format!("building a {} image: {e:#}", human_bytes(size))),
        }
    }
    result
        .wall_s
        .insert("images".into(), t.elapsed().as_secs_f64());
    let mut ctx = StepContext {
        plan,
        rig: &rig,
        images: &images,
        stack: Vec::new(),
        progress,
    };
    for (name, step) in STEP_FNS.into_iter().filter(|(n, _)| plan.runs(n)) {
        if interrupt::requested().is_some() {
            break;
        }
        progress.set_message(format!("{}: {name}", target.label));
        let t = Instant::now();
        if let Err(e) = step(&mut ctx, &mut result) {
            result.errors.push(format!("{name}: {e:#}"));
        }
        result
            .wall_s
            .insert(name.to_owned(), t.elapsed().as_secs_f64());
    }
    drop(ctx);
    progress.set_message(format!("{}: cleaning up", target.label));
    let t = Instant::now();
    drop(rig);
    result
        .wall_s
        .insert("cleanup".into(), t.elapsed().as_secs_f64());
    if plan.runs(SCALE) {
        progress.set_message(format!("{}: {SCALE}", target.label));
        let t = Instant::now();
        if let Err(e) = scale_step(plan, target, progress, &mut result) {
            result.errors.push(format!("{SCALE}: {e:#}"));
        }
        result
            .wall_s
            .insert(SCALE.into(), t.elapsed().as_secs_f64());
    }
    result
}

/// What each workload step gets.
struct StepContext<'a> {
    plan: &'a Plan,
    rig: &'a Rig,
    images: &'a BTreeMap<u64, SnapshotKey>,
    /// Layer stack tops, built by the create step, reused by the read step.
    stack: Vec<SnapshotKey>,
    progress: &'a ProgressBar,
}

impl StepContext<'_> {
    fn image(&self, size: u64) -> Result<&SnapshotKey> {
        self.images
            .get(&size)
            .ok_or_else(|| anyhow::anyhow!("the {} image could not be built", human_bytes(size)))
    }

    /// The smallest image, used where the image hardly matters.
    fn small_image(&self) -> Result<&SnapshotKey> {
        self.images
            .values()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no image could be built"))
    }
}

type Step = fn(&mut StepContext<'_>, &mut TargetResult) -> Result<()>;

fn copy_up_step(ctx: &mut StepContext<'_>, result: &mut TargetResult) -> Result<()> {
    for &size in &ctx.plan.file_sizes {
        let image = ctx.image(size)?;
        for &write in ctx.plan.write_sizes_for(size) {
            for _ in 0..ctx.plan.copy_up_samples_for(size) {
                stop_point()?;
                let s = workloads::copy_up(ctx.rig, image, write)?;
                record(result, &write_case("copy_up", size, write), &s, write);
                ctx.progress.inc(1);
            }
        }
    }
    Ok(())
}

fn create_step(ctx: &mut StepContext<'_>, result: &mut TargetResult) -> Result<()> {
    for &size in &ctx.plan.image_sizes {
        let image = ctx.image(size)?;
        let case = Case {
            image_size: Some(size),
            ..Case::new("create", "latency")
        };
        for _ in 0..ctx.plan.create_samples_for(size) {
            stop_point()?;
            result.push(&case, "ns", workloads::create(ctx.rig, image)?);
            ctx.progress.inc(1);
        }
    }
    let progress = ctx.progress;
    ctx.progress.set_message(format!(
        "{}: building a {}-layer stack",
        ctx.rig.target.label,
        ctx.plan.max_depth()
    ));
    ctx.stack = ctx
        .rig
        .layer_stack(ctx.plan.max_depth(), ctx.plan.read_size, || progress.inc(1))?;
    for &depth in &ctx.plan.depths {
        let case = Case {
            layers: Some(depth),
            ..Case::new("create", "latency")
        };
        for _ in 0..ctx.plan.create_samples {
            stop_point()?;
            result.push(
                &case,
                "ns",
                workloads::create(ctx.rig, &ctx.stack[depth - 1])?,
            );
            ctx.progress.inc(1);
        }
    }
    Ok(())
}

fn commit_remove_step(ctx: &mut StepContext<'_>, result: &mut TargetResult) -> Result<()> {
    let image = ctx.small_image()?;
    for _ in 0..ctx.plan.commit_samples {
        stop_point()?;
        let (commit, remove) = workloads::commit_remove(ctx.rig, image)?;
        result.push(&Case::new("commit", "latency"), "ns", commit);
        result.push(&Case::new("remove", "latency"), "ns", remove);
        ctx.progress.inc(1);
    }
    Ok(())
}

fn usage_step(ctx: &mut StepContext<'_>, result: &mut TargetResult) -> Result<()> {
    let container = workloads::usage_container(ctx.rig, ctx.small_image()?, ctx.plan.usage_files)?;
    let case = Case {
        files: Some(ctx.plan.usage_files),
        ..Case::new("usage", "latency")
    };
    for _ in 0..ctx.plan.usage_samples {
        stop_point()?;
        result.push(&case, "ns", workloads::usage(ctx.rig, &container.key)?);
        ctx.progress.inc(1);
    }
    Ok(())
}

fn read_step(ctx: &mut StepContext<'_>, result: &mut TargetResult) -> Result<()> {
    ensure_stack(ctx)?;
    let deep = ctx
        .plan
        .depths
        .iter()
        .copied()
        .filter(|&d| d <= 128)
        .max()
        .unwrap_or(1);
    for depth in [1, deep] {
        let case = Case {
            layers: Some(depth),
            ..Case::new("read", "throughput")
        };
        for _ in 0..ctx.plan.read_samples {
            stop_point()?;
            result.push(
                &case,
                "bytes/s",
                workloads::read(ctx.rig, &ctx.stack[depth - 1])?.throughput(),
            );
            ctx.progress.inc(1);
        }
    }
    Ok(())
}

/// Builds the layer stack when the create step (which builds it) did not
/// run; fails when it ran and its build failed.
fn ensure_stack(ctx: &mut StepContext<'_>) -> Result<()> {
    if ctx.stack.is_empty() && !ctx.plan.runs("create") {
        let progress = ctx.progress;
        ctx.stack = ctx
            .rig
            .layer_stack(ctx.plan.max_depth(), ctx.plan.read_size, || progress.inc(1))?;
    }
    if ctx.stack.is_empty() {
        anyhow::bail!("no layer stack (its build failed)");
    }
    Ok(())
}

fn deep_step(ctx: &mut StepContext<'_>, result: &mut TargetResult) -> Result<()> {
    ensure_stack(ctx)?;
    for depth in [1, ctx.plan.max_depth()] {
        let case = |metric: &str| Case {
            layers: Some(depth),
            ..Case::new(deep::WORKLOAD, metric)
        };
        for _ in 0..ctx.plan.lookup_samples {
            let s = deep::mount_and_lookup(ctx.rig, &ctx.stack[depth - 1])?;
            result.push(&case("mount"), "ns", s.mount_ns);
            result.push(&case("lookup"), "ns", s.lookup_ns);
            ctx.progress.inc(1);
        }
    }
    Ok(())
}

fn density_step(ctx: &mut StepContext<'_>, result: &mut TargetResult) -> Result<()> {
    let (size, n) = (ctx.plan.density_file_size, ctx.plan.density_containers);
    let built;
    let image = match ctx.images.get(&size) {
        Some(image) => image,
        None => {
            built = ctx.rig.file_image(size)?;
            &built
        }
    };
    let s = density::measure(ctx.rig, image, n)?;
    let case = |metric: &str| Case {
        containers: Some(n),
        file_size: Some(size),
        ..Case::new(density::WORKLOAD, metric)
    };
    result.push(
        &case("cgroup_ratio"),
        "ratio",
        s.cgroup_bytes as f64 / size as f64,
    );
    result.push(
        &case("host_ratio"),
        "ratio",
        s.host_delta_bytes as f64 / size as f64,
    );
    ctx.progress.inc(n as u64);
    Ok(())
}

fn concurrency_step(ctx: &mut StepContext<'_>, result: &mut TargetResult) -> Result<()> {
    let n = ctx.plan.concurrent_prepares;
    let calls = concurrency::burst(ctx.rig, ctx.small_image()?, n)?;
    let summary = concurrency::summarise(&calls).context("no concurrent call returned")?;
    let case = |metric: &str| Case {
        concurrent: Some(n),
        ..Case::new(concurrency::WORKLOAD, metric)
    };
    for c in &calls {
        result.push(&case("latency"), "ns", c.latency_ns());
    }
    result.push(&case("spread"), "ns", summary.spread_ns);
    result.push(&case("makespan"), "ns", summary.makespan_ns);
    ctx.progress.inc(1);
    Ok(())
}

/// On a fresh rig, made once the main one is gone: what the other steps
/// left behind (btrfs' cleaner dropping their subvolumes, dirty data)
/// slowed the first samples 3-5x.
fn scale_step(
    plan: &Plan,
    target: &BenchTarget,
    progress: &ProgressBar,
    result: &mut TargetResult,
) -> Result<()> {
    let rig = Rig::new(target)?;
    scale::run(&rig, &plan.scale_counts, plan.scale_samples, result, || {
        progress.inc(1)
    })
}
