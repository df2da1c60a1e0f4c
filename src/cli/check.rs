//! `strata check [--repair] [--data]`: prints what is inconsistent and
//! exits 1 while damage remains.

use anyhow::Result;
use strata::check::{check as run_check, CheckOptions, Report};

use super::output::outln;
use super::output::{print_json, Table};
use super::store_cmds::open;
use super::{Cli, Format};

/// `strata check`. Exits the process with status 1 (after closing the
/// store) when damage is found, or remains after `--repair`. `verbose`
/// lists the items of findings that have several.
pub fn check(cli: &Cli, options: CheckOptions, verbose: bool) -> Result<()> {
    let damaged = {
        let store = open(cli)?;
        let report = run_check(&store, options)?;
        if cli.format == Format::Json {
            print_json(&report)?;
        } else {
            print_table(&report, verbose)?;
        }
        report.damaged()
    };
    if damaged {
        std::process::exit(1);
    }
    Ok(())
}

fn print_table(report: &Report, verbose: bool) -> std::io::Result<()> {
    if !report.findings.is_empty() {
        let mut t = Table::new(&["PROBLEM", "SUBJECT", "DETAIL", "REPAIR"]);
        for f in &report.findings {
            let repair = match (&f.repaired, &f.repair_error) {
                (Some(done), _) => done.clone(),
                (None, Some(e)) => format!("failed: {e}"),
                (None, None) if f.damage => "-".into(),
                (None, None) => "(note)".into(),
            };
            let detail = if verbose && !f.items.is_empty() {
                format!("{}: {}", f.detail, f.items.join(", "))
            } else {
                f.detail.clone()
            };
            t.row(vec![f.kind.into(), f.subject.clone(), detail, repair]);
        }
        t.print()?;
    }
    let damage = report.findings.iter().filter(|f| f.damage).count();
    let data = if report.data {
        format!(", {} layer(s) verified", report.layers_verified)
    } else {
        String::new()
    };
    if report.damaged() {
        let hint = if report.repair {
            ""
        } else {
            "; run `strata check --repair`"
        };
        outln!(
            "{damage} problem(s) found, {} repaired, {} remain{data}{hint}",
            report.repaired(),
            report.remaining.len()
        )?;
    } else if damage > 0 {
        outln!("{damage} problem(s) found and repaired{data}; the store is consistent")?;
    } else {
        outln!("the store is consistent{data}")?;
    }
    Ok(())
}
