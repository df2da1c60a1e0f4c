//! `create`, `ps`, `inspect`, `mount`, `umount`, `rm`.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;
use strata::ops::container::{self, CreateRequest};

use super::filters::{print_template, Filters};
use super::images::to_values;
use super::output::outln;
use super::output::{age, print_json, Table};
use super::store_cmds::open;
use super::{Cli, Format, ListArgs};

/// `strata create`: prints the new container's id as its last line.
pub fn create(
    cli: &Cli,
    image: &str,
    name: Option<&str>,
    size: Option<u64>,
    labels: BTreeMap<String, String>,
) -> Result<()> {
    let store = open(cli)?;
    let request = CreateRequest {
        image,
        name,
        size,
        labels,
    };
    let record = container::create(&store, &request)?;
    outln!("{}", record.id)?;
    Ok(())
}

#[derive(Serialize)]
struct ContainerLine {
    id: String,
    name: String,
    image: String,
    image_id: String,
    mounted_at: Option<String>,
    created_ns: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

/// One line of the container table, and the fields of `--format` templates.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerRow {
    #[serde(rename = "ID")]
    id: String,
    names: String,
    image: String,
    #[serde(rename = "ImageID")]
    image_id: String,
    status: &'static str,
    mounts: String,
    created_at: String,
    running_for: String,
}

const CONTAINER_FILTERS: &[&str] = &["status", "ancestor", "name", "id", "label"];

/// `strata ps`.
pub fn list(cli: &Cli, args: &ListArgs) -> Result<()> {
    let filters = Filters::parse(&args.filters, CONTAINER_FILTERS, "containers")?
        .only("status", &["mounted", "unmounted"])?;
    let store = open(cli)?;
    let ancestors = filters
        .values("ancestor")
        .map(|text| Ok(store.resolve_image(text)?.id))
        .collect::<Result<Vec<_>>>()?;
    let mut records = store.meta()?.containers()?;
    records.retain(|c| {
        let mounted = c.mounted_at.is_some();
        filters.any("status", |v| (v == "mounted") == mounted)
            && (ancestors.is_empty() || ancestors.contains(&c.image))
            && filters.any("name", |v| c.name.contains(v))
            && filters.any("id", |v| c.id.0.starts_with(v))
            && filters.all("label", |l| has_label(&c.labels, l))
    });
    let short = |id: &str| {
        if args.no_trunc {
            id.to_owned()
        } else {
            id[..12.min(id.len())].to_owned()
        }
    };
    if args.quiet {
        for c in &records {
            outln!("{}", short(&c.id.0))?;
        }
        return Ok(());
    }
    let lines: Vec<ContainerLine> = records
        .iter()
        .map(|c| ContainerLine {
            id: c.id.0.clone(),
            name: c.name.clone(),
            image: c.image_ref.clone(),
            image_id: c.image.0.clone(),
            mounted_at: c.mounted_at.as_ref().map(|p| p.display().to_string()),
            created_ns: c.created_ns,
            labels: c.labels.clone(),
        })
        .collect();
    let rows: Vec<ContainerRow> = lines
        .iter()
        .map(|c| ContainerRow {
            id: short(&c.id),
            names: c.name.clone(),
            image: c.image.clone(),
            image_id: short(c.image_id.strip_prefix("sha256:").unwrap_or(&c.image_id)),
            status: if c.mounted_at.is_some() {
                "mounted"
            } else {
                "unmounted"
            },
            mounts: c.mounted_at.clone().unwrap_or_default(),
            created_at: strata::model::rfc3339(c.created_ns / 1_000_000_000),
            running_for: age(c.created_ns),
        })
        .collect();
    match &cli.format {
        Format::Json => print_json(&lines),
        Format::Template(t) => print_template(t, &to_values(&rows)?),
        Format::Table => {
            let mut t = Table::new(&["CONTAINER ID", "IMAGE", "CREATED", "MOUNTED", "NAME"]);
            for r in rows {
                let mounted = if r.mounts.is_empty() {
                    "-".into()
                } else {
                    r.mounts
                };
                t.row(vec![r.id, r.image, r.running_for, mounted, r.names]);
            }
            t.print()?;
            Ok(())
        }
    }
}

/// `strata rename CONTAINER NAME`.
pub fn rename(cli: &Cli, text: &str, name: &str) -> Result<()> {
    let store = open(cli)?;
    let record = container::rename(&store, text, name)?;
    outln!("{}", record.id)?;
    Ok(())
}

/// `strata inspect`.
/// Like docker's, it describes an image when no container has that name.
pub fn inspect(cli: &Cli, text: &str) -> Result<()> {
    let store = open(cli)?;
    match container::inspect(&store, text) {
        Ok(c) => print_json(&[c]),
        Err(e @ strata::StoreError::UnknownContainer(_)) => {
            match strata::ops::image_inspect::inspect(&store, text) {
                Ok(image) => print_json(&[image]),
                Err(strata::StoreError::UnknownImage(_)) => Err(e.into()),
                Err(other) => Err(other.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// `strata mount`: prints the merged rootfs path.
pub fn mount(cli: &Cli, text: &str, options: strata::mounts::ContainerMountOptions) -> Result<()> {
    let store = open(cli)?;
    outln!("{}", container::mount(&store, text, options)?.display())?;
    Ok(())
}

/// `strata umount`.
pub fn umount(cli: &Cli, text: &str) -> Result<()> {
    let store = open(cli)?;
    container::umount(&store, text)?;
    Ok(())
}

/// `strata rm`: removes each container, reporting every failure.
pub fn remove(cli: &Cli, texts: &[String], force: bool) -> Result<()> {
    let store = open(cli)?;
    let mut failed = 0;
    let mut removed = 0;
    for text in texts {
        match container::remove(&store, text, force) {
            Ok(record) => {
                outln!("{}", record.id)?;
                removed += 1;
            }
            Err(e) if e.is_interrupted() => {
                let e = match removed {
                    0 => e,
                    n => e.undone(format!("{n} of {} removed before it", texts.len())),
                };
                return Err(e.into());
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} container(s) could not be removed",
            texts.len()
        );
    }
    Ok(())
}

/// Whether `labels` has `filter` (`KEY` present, or `KEY=VALUE` equal).
fn has_label(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
        None => labels.contains_key(filter),
    }
}

/// Parses `--label KEY=VALUE` (or `KEY`, an empty value).
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.is_empty() {
        return Err(format!("label {text:?} has no key (use KEY=VALUE)"));
    }
    Ok((key.to_owned(), value.to_owned()))
}
