//! `load`, `save`, `diff`, `commit`, `export`.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use strata::model::Reference;
use strata::ops::transfer;

use super::output::print_json;
use super::store_cmds::open;
use super::{Cli, Format};

/// `strata load -i FILE`: prints one `Loaded image: REF` line per tag (or
/// the id for an untagged image), as docker does.
pub fn load(cli: &Cli, file: &Path) -> Result<()> {
    let store = open(cli)?;
    let images =
        transfer::load(&store, file).with_context(|| format!("loading {}", file.display()))?;
    for image in images {
        if image.tags.is_empty() {
            println!("Loaded image ID: {}", image.id);
        }
        for t in &image.tags {
            println!("Loaded image: {t}");
        }
    }
    Ok(())
}

/// `strata save -o FILE REF...`.
pub fn save(cli: &Cli, images: &[String], out: &Path, uncompressed: bool) -> Result<()> {
    let store = open(cli)?;
    transfer::save(&store, images, out, !uncompressed)
        .with_context(|| format!("saving to {}", out.display()))?;
    Ok(())
}

#[derive(Serialize)]
struct DiffLine {
    kind: char,
    path: String,
}

/// `strata diff ID`: `A|C|D /path` lines.
pub fn diff(cli: &Cli, container: &str) -> Result<()> {
    let store = open(cli)?;
    let changes = transfer::diff(&store, container)?;
    if cli.format == Format::Json {
        let lines: Vec<DiffLine> = changes
            .iter()
            .map(|c| DiffLine {
                kind: c.kind.letter(),
                path: format!("/{}", c.path.display()),
            })
            .collect();
        return print_json(&lines);
    }
    for c in changes {
        println!("{c}");
    }
    Ok(())
}

/// `strata commit ID NAME[:TAG]`: prints the new image id last.
pub fn commit(cli: &Cli, container: &str, reference: &str) -> Result<()> {
    let reference = Reference::parse(reference).map_err(|e| anyhow!(e))?;
    let store = open(cli)?;
    let image = transfer::commit(&store, container, &reference)?;
    println!("{}", image.id);
    Ok(())
}

/// `strata export ID -o FILE`.
pub fn export(cli: &Cli, container: &str, out: &Path) -> Result<()> {
    let store = open(cli)?;
    transfer::export(&store, container, out)
        .with_context(|| format!("exporting to {}", out.display()))?;
    Ok(())
}
