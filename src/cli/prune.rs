//! `image prune`, `container prune`, `system prune` and `system df`.

use anyhow::Result;
use strata::ops::df;
use strata::ops::prune::{self, PruneReport};

use super::output::{human_size, outln, print_json, Table};
use super::store_cmds::open;
use super::{Cli, Format};

/// `strata image prune`: dangling images.
pub fn images(cli: &Cli) -> Result<()> {
    run(cli, prune::dangling_images)
}

/// `strata container prune`: unmounted containers.
pub fn containers(cli: &Cli) -> Result<()> {
    run(cli, prune::containers)
}

/// `strata system prune`: unmounted containers, then the images that left
/// dangling and unused.
pub fn system(cli: &Cli) -> Result<()> {
    run(cli, |store, report| {
        prune::containers(store, report)?;
        prune::dangling_images(store, report)
    })
}

fn run(
    cli: &Cli,
    prune: impl FnOnce(&strata::Store, &mut PruneReport) -> strata::Result<()>,
) -> Result<()> {
    let store = open(cli)?;
    let mut report = PruneReport::default();
    prune(&store, &mut report)?;
    if cli.format == Format::Json {
        return print_json(&report);
    }
    for item in &report.removed {
        let name = if item.name.is_empty() {
            String::new()
        } else {
            format!(" ({})", item.name)
        };
        outln!("Deleted {}: {}{name}", item.kind, item.id)?;
    }
    outln!("Total reclaimed space: {}", human_size(report.freed))?;
    Ok(())
}

/// `strata system df [-v]`.
pub fn df(cli: &Cli, verbose: bool) -> Result<()> {
    let store = open(cli)?;
    let mut report = df::df(&store)?;
    if !verbose {
        report.items.clear();
    }
    if cli.format == Format::Json {
        return print_json(&report);
    }
    let mut t = Table::new(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    for l in &report.summary {
        let pct = (l.reclaimable * 100).checked_div(l.size).unwrap_or(0);
        t.row(vec![
            l.kind.into(),
            l.total.to_string(),
            l.active.to_string(),
            human_size(l.size),
            format!("{} ({pct}%)", human_size(l.reclaimable)),
        ]);
    }
    t.print()?;
    if verbose {
        outln!()?;
        let mut t = Table::new(&["KIND", "ID", "NAME", "SIZE", "ACTIVE"]);
        for i in &report.items {
            let id = i.id.strip_prefix("sha256:").unwrap_or(&i.id);
            t.row(vec![
                i.kind.into(),
                id[..12.min(id.len())].to_owned(),
                if i.name.is_empty() {
                    "<none>".into()
                } else {
                    i.name.clone()
                },
                human_size(i.size),
                if i.active { "yes" } else { "no" }.into(),
            ]);
        }
        t.print()?;
    }
    Ok(())
}
