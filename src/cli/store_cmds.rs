//! `init` and `info`, and opening the store for every other verb.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use strata::Store;

use super::output::outln;
use super::output::{human_size, print_json, Table};
use super::{Cli, Format};

/// Opens the existing store; without one, fails with `no Strata store at
/// PATH (run strata init)` and creates nothing.
pub fn open(cli: &Cli) -> Result<Store> {
    let mut store =
        strata::ops::init::open_existing(&cli.root, &cli.driver).map_err(|e| match e {
            e @ strata::StoreError::NotInitialized(_) => anyhow::Error::new(e),
            e => anyhow::Error::new(e)
                .context(format!("opening the store at {}", cli.root.display())),
        })?;
    tracing::debug!(driver = %store.config().driver, root = %store.root().display(), "store opened");
    if store.recovered().dead_sessions > 0 {
        let finished = strata::check::finish_interrupted(&store)
            .context("finishing what an interrupted strata process left")?;
        store.note_finished(finished);
    }
    if !store.recovered().is_empty() {
        eprintln!("{}", store.recovered().summary());
    }
    Ok(store)
}

fn parse_options(options: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for opt in options {
        let Some((k, v)) = opt.split_once('=') else {
            bail!("driver option {opt:?} is not KEY=VALUE");
        };
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// `strata init`.
pub fn init(cli: &Cli, options: &[String]) -> Result<()> {
    let existed = strata::store::StoreConfig::load(&cli.root)
        .ok()
        .flatten()
        .is_some();
    let mut options = parse_options(options)?;
    for (k, v) in &cli.config_options {
        options.entry(k.clone()).or_insert_with(|| v.clone());
    }
    // A bad `limits.*` option fails here, not at the first load.
    strata::limits::Limits::from_options(&options)?;
    let store = strata::ops::init::init(&cli.root, &cli.driver, options)
        .with_context(|| format!("creating the store at {}", cli.root.display()))?;
    let verb = if existed { "exists and uses" } else { "uses" };
    outln!(
        "store {} {verb} driver {} ({})",
        store.root().display(),
        store.config().driver,
        store.config().driver_reason
    )?;
    Ok(())
}

/// `strata info`.
pub fn info(cli: &Cli) -> Result<()> {
    let store = open(cli)?;
    let info = strata::ops::info::info(&store)?;
    if cli.format == Format::Json {
        return print_json(&info);
    }
    let mut t = Table::new(&["", ""]);
    t.row(vec!["Root".into(), info.root.clone()]);
    t.row(vec![
        "Driver".into(),
        format!("{} ({})", info.driver, info.driver_reason),
    ]);
    for (k, v) in &info.options {
        t.row(vec![format!("Option {k}"), v.clone()]);
    }
    for (k, v) in &info.driver_status {
        t.row(vec![format!(" {k}"), v.clone()]);
    }
    for b in &info.backing {
        t.row(vec!["Backing file".into(), b.file.display().to_string()]);
        let devices = if b.loop_devices.is_empty() {
            "none (attached by the next command)".to_owned()
        } else {
            let list: Vec<String> = b
                .loop_devices
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            list.join(", ")
        };
        t.row(vec![" loop devices".into(), devices]);
        if let Some(point) = &b.mount_point {
            let state = if b.mounted { "mounted" } else { "not mounted" };
            t.row(vec![
                " mount point".into(),
                format!("{} ({state})", point.display()),
            ]);
        }
        for u in &b.users {
            t.row(vec![" also held by".into(), u.clone()]);
        }
    }
    t.row(vec![
        "Space".into(),
        format!(
            "{} free of {} (on {})",
            human_size(info.space_free),
            human_size(info.space_total),
            info.space_of
        ),
    ]);
    t.row(vec!["Images".into(), info.images.to_string()]);
    t.row(vec!["Containers".into(), info.containers.to_string()]);
    t.row(vec!["Snapshots".into(), info.snapshots.to_string()]);
    t.row(vec!["Strata processes".into(), info.sessions.to_string()]);
    if info.operations_in_progress > 0 {
        t.row(vec![
            "Operations in progress".into(),
            info.operations_in_progress.to_string(),
        ]);
    }
    if info.incomplete_operations > 0 {
        t.row(vec![
            "Incomplete operations".into(),
            format!(
                "{} (run `strata check --repair`)",
                info.incomplete_operations
            ),
        ]);
    }
    t.print_without_header()?;
    Ok(())
}
