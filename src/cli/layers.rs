//! `load`, `save`, `diff`, `commit`, `export`.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use strata::model::Reference;
use strata::ops::transfer;

use super::output::outln;
use super::output::print_json;
use super::progress;
use super::store_cmds::open;
use super::{Cli, Format};

/// `strata load -i FILE`: prints one `Loaded image: REF` line per tag (or
/// the id for an untagged image), as docker does.
pub fn load(cli: &Cli, file: &Path) -> Result<()> {
    let store = open(cli)?;
    let spooled;
    let (file, name) = if strata::ops::stdio::is_stdio(file) {
        if std::io::stdin().is_terminal() {
            bail!("load reads an archive from standard input, which is a terminal: give -i FILE or redirect");
        }
        let limits = store.limits()?;
        spooled = strata::ops::stdio::spool_stdin(&store, limits.image_size)
            .context("reading standard input")?;
        (spooled.path(), "standard input".to_owned())
    } else {
        (file, file.display().to_string())
    };
    // On a terminal: a spinner with the elapsed time, and a line per layer.
    let bar = progress::spinner(&format!("loading {name}"));
    let loaded = transfer::load_with_progress(&store, file, &mut |msg| bar.println(msg));
    bar.finish_and_clear();
    let images = loaded.with_context(|| format!("loading {name}"))?;
    for image in images {
        if image.tags.is_empty() {
            outln!("Loaded image ID: {}", image.id)?;
        }
        for t in &image.tags {
            outln!("Loaded image: {t}")?;
        }
    }
    Ok(())
}

/// `strata save -o FILE REF...`.
pub fn save(cli: &Cli, images: &[String], out: &Path, uncompressed: bool) -> Result<()> {
    let store = open(cli)?;
    let bar = progress::bytes(&format!("saving {}", images.join(" ")), None);
    let result =
        transfer::save_counted(&store, images, out, !uncompressed, &|n| bar.set_position(n));
    bar.finish_and_clear();
    result.with_context(|| format!("saving to {}", shown(out)))?;
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
        outln!("{c}")?;
    }
    Ok(())
}

/// `strata commit ID NAME[:TAG]`: prints the new image id last.
pub fn commit(cli: &Cli, container: &str, reference: &str) -> Result<()> {
    let reference = Reference::parse(reference).map_err(|e| anyhow!(e))?;
    let store = open(cli)?;
    let image = transfer::commit(&store, container, &reference)?;
    outln!("{}", image.id)?;
    Ok(())
}

/// `strata export ID -o FILE`.
pub fn export(cli: &Cli, container: &str, out: &Path) -> Result<()> {
    let store = open(cli)?;
    let bar = progress::bytes(&format!("exporting {container}"), None);
    let result = transfer::export_counted(&store, container, out, &|n| bar.set_position(n));
    bar.finish_and_clear();
    result.with_context(|| format!("exporting to {}", shown(out)))?;
    Ok(())
}

/// A path for messages: `-` is standard output.
fn shown(path: &Path) -> String {
    if strata::ops::stdio::is_stdio(path) {
        "standard output".into()
    } else {
        path.display().to_string()
    }
}
