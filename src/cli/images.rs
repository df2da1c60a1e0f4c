//! `import`, `images`, `tag`, `rmi`, `history`.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use strata::model::Reference;
use strata::ops;

use super::output::{age, human_size, print_json, Table};
use super::store_cmds::open;
use super::{Cli, Format};

fn reference(text: &str) -> Result<Reference> {
    Reference::parse(text).map_err(|e| anyhow!(e))
}

/// `strata import FILE NAME[:TAG]`: prints the image id.
pub fn import(cli: &Cli, file: &Path, name: &str) -> Result<()> {
    let reference = reference(name)?;
    let store = open(cli)?;
    let image = ops::import::import(&store, file, &reference)
        .with_context(|| format!("importing {}", file.display()))?;
    println!("{}", image.id);
    Ok(())
}

#[derive(Serialize)]
struct ImageLine {
    id: String,
    tags: Vec<String>,
    layers: Vec<String>,
    size: u64,
    created_ns: u64,
}

/// `strata images`.
pub fn list(cli: &Cli) -> Result<()> {
    let store = open(cli)?;
    let mut images = store.meta()?.images()?;
    images.sort_by_key(|i| std::cmp::Reverse(i.created_ns));
    let lines: Vec<ImageLine> = images
        .iter()
        .map(|i| ImageLine {
            id: i.id.0.clone(),
            tags: i.tags.iter().map(|t| t.0.clone()).collect(),
            layers: i.layers.iter().map(|l| l.chain_id.0.clone()).collect(),
            size: i.layers.iter().map(|l| l.size).sum(),
            created_ns: i.created_ns,
        })
        .collect();
    if cli.format == Format::Json {
        return print_json(&lines);
    }
    let mut t = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "LAYERS", "CREATED", "SIZE"]);
    for (image, line) in images.iter().zip(&lines) {
        let tags: Vec<(String, String)> = if image.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            image
                .tags
                .iter()
                .map(|t| {
                    let (repo, tag) = t.0.rsplit_once(':').unwrap_or((&t.0, "latest"));
                    (repo.to_owned(), tag.to_owned())
                })
                .collect()
        };
        for (repo, tag) in tags {
            t.row(vec![
                repo,
                tag,
                image.id.short().to_owned(),
                image.layers.len().to_string(),
                age(line.created_ns),
                human_size(line.size),
            ]);
        }
    }
    t.print();
    Ok(())
}

/// `strata tag SRC DST`.
pub fn tag(cli: &Cli, source: &str, target: &str) -> Result<()> {
    let target = reference(target)?;
    let store = open(cli)?;
    ops::image::tag(&store, source, &target)?;
    Ok(())
}

/// `strata rmi REF`.
pub fn rmi(cli: &Cli, image: &str) -> Result<()> {
    let store = open(cli)?;
    match ops::image::remove(&store, image)? {
        ops::image::Removed::Untagged(tag) => println!("Untagged: {tag}"),
        ops::image::Removed::Deleted { image, layers } => {
            println!("Deleted: {image} ({layers} layer(s) removed)")
        }
    }
    Ok(())
}

/// `strata history REF`.
pub fn history(cli: &Cli, image: &str) -> Result<()> {
    let store = open(cli)?;
    let entries = ops::image::history(&store, image)?;
    if cli.format == Format::Json {
        return print_json(&entries);
    }
    let mut t = Table::new(&["LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    for e in &entries {
        let layer = e
            .layer
            .strip_prefix("sha256:")
            .map(|h| h[..12].to_owned())
            .unwrap_or(e.layer.clone());
        t.row(vec![
            layer,
            e.created.clone(),
            e.created_by.clone(),
            human_size(e.size),
            e.comment.clone(),
        ]);
    }
    t.print();
    Ok(())
}
