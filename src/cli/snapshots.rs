//! `strata snapshots [ls|tree|usage]`.

use anyhow::Result;
use strata::ops::snapshots::{self, SnapshotEntry, TreeNode};

use super::filters::print_template;
use super::images::to_values;
use super::output::outln;
use super::output::{age, human_size, print_json, Table};
use super::store_cmds::open;
use super::{Cli, Format, SnapshotsView};

/// Lists every snapshot (`ls`), their parent tree (`tree`) or their usage
/// with a total (`usage`); `quiet` prints only the keys.
pub fn snapshots(cli: &Cli, view: SnapshotsView, quiet: bool) -> Result<()> {
    let store = open(cli)?;
    if quiet {
        for s in snapshots::list(&store, false)? {
            outln!("{}", s.key)?;
        }
        return Ok(());
    }
    match view {
        SnapshotsView::Ls => {
            let all = snapshots::list(&store, true)?;
            match &cli.format {
                Format::Json => return print_json(&all),
                Format::Template(t) => return print_template(t, &to_values(&all)?),
                Format::Table => {}
            }
            let mut t = Table::new(&[
                "KEY", "KIND", "PARENT", "SIZE", "CREATED", "OWNER", "LABELS",
            ]);
            for s in &all {
                t.row(vec![
                    s.key.clone(),
                    s.kind.clone(),
                    s.parent.clone().unwrap_or_else(|| "-".into()),
                    size(s),
                    age(s.created_ns),
                    s.owner.clone(),
                    labels(s),
                ]);
            }
            t.print()?;
        }
        SnapshotsView::Tree => {
            let roots = snapshots::tree(snapshots::list(&store, true)?);
            if cli.format == Format::Json {
                return print_json(&roots);
            }
            for root in &roots {
                print_tree(root, "", "")?;
            }
        }
        SnapshotsView::Usage => {
            let report = snapshots::usage(&store)?;
            if cli.format == Format::Json {
                return print_json(&report);
            }
            let mut t = Table::new(&["KEY", "SIZE", "INODES", "OWNER"]);
            for s in &report.snapshots {
                t.row(vec![
                    s.key.clone(),
                    size(s),
                    s.inodes
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s.owner.clone(),
                ]);
            }
            t.row(vec![
                "TOTAL".into(),
                human_size(report.total_size),
                report.total_inodes.to_string(),
                format!("{} snapshot(s)", report.snapshots.len()),
            ]);
            t.print()?;
        }
    }
    Ok(())
}

fn size(s: &SnapshotEntry) -> String {
    match (s.size, &s.usage_error) {
        (Some(n), _) => human_size(n),
        (None, Some(e)) => format!("? ({e})"),
        (None, None) => "-".into(),
    }
}

fn labels(s: &SnapshotEntry) -> String {
    let all: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if all.is_empty() {
        "-".into()
    } else {
        all.join(",")
    }
}

/// `KEY (kind, size, owner)` lines with box-drawing branches, as `ctr
/// snapshots tree` draws them.
fn print_tree(node: &TreeNode, prefix: &str, branch: &str) -> std::io::Result<()> {
    let s = &node.snapshot;
    outln!(
        "{prefix}{branch}{} ({}, {}, {})",
        s.key,
        s.kind,
        size(s),
        s.owner
    )?;
    let child_prefix = match branch {
        "" => prefix.to_owned(),
        "├─ " => format!("{prefix}│  "),
        _ => format!("{prefix}   "),
    };
    for (i, child) in node.children.iter().enumerate() {
        let last = i + 1 == node.children.len();
        print_tree(child, &child_prefix, if last { "└─ " } else { "├─ " })?;
    }
    Ok(())
}
