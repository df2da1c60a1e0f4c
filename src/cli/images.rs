//! `import`, `images`, `tag`, `rmi`, `history`.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use strata::model::{ImageRecord, Reference};
use strata::ops;
use strata::StoreError;

use super::filters::{glob, print_template, Filters};
use super::output::outln;
use super::output::{age, human_size, print_json, Table};
use super::progress;
use super::store_cmds::open;
use super::{Cli, Format, ListArgs};

fn reference(text: &str) -> Result<Reference> {
    Reference::parse(text).map_err(|e| anyhow!(e))
}

/// `strata import FILE NAME[:TAG]`: prints the image id. On a terminal a
/// bar shows the bytes read.
pub fn import(cli: &Cli, file: &Path, name: &str) -> Result<()> {
    let reference = reference(name)?;
    let stdin = strata::ops::stdio::is_stdio(file);
    if stdin && std::io::stdin().is_terminal() {
        anyhow::bail!("import - reads a tar from standard input, which is a terminal: redirect it");
    }
    let store = open(cli)?;
    let image = if stdin || !progress::enabled() {
        ops::import::import(&store, file, &reference)
    } else {
        let input = std::fs::File::open(file)
            .map_err(|e| StoreError::io("open", file, e))
            .with_context(|| format!("importing {}", file.display()))?;
        let size = input.metadata().ok().map(|m| m.len());
        let bar = progress::bytes(&format!("importing {}", file.display()), size);
        let what = file.display().to_string();
        let result = ops::import::import_from(&store, bar.wrap_read(input), &what, &reference);
        bar.finish_and_clear();
        result
    }
    .with_context(|| format!("importing {}", file.display()))?;
    outln!("{}", image.id)?;
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

const IMAGE_FILTERS: &[&str] = &["dangling", "reference", "label", "before", "since"];

/// `strata images`.
pub fn list(cli: &Cli, args: &ListArgs) -> Result<()> {
    let filters = Filters::parse(&args.filters, IMAGE_FILTERS, "images")?
        .only("dangling", &["true", "false"])?;
    let store = open(cli)?;
    let mut images = store.meta()?.images()?;
    images.sort_by_key(|i| std::cmp::Reverse(i.created_ns));
    let created = |key: &str| -> Result<Option<u64>> {
        filters
            .last(key)
            .map(|text| Ok(store.resolve_image(text)?.created_ns))
            .transpose()
    };
    let (before, since) = (created("before")?, created("since")?);
    images.retain(|i| {
        image_matches(i, &filters)
            && before.is_none_or(|t| i.created_ns < t)
            && since.is_none_or(|t| i.created_ns > t)
    });
    let id = |i: &ImageRecord| {
        if args.no_trunc {
            i.id.0.clone()
        } else {
            i.id.short().to_owned()
        }
    };
    if args.quiet {
        for i in &images {
            outln!("{}", id(i))?;
        }
        return Ok(());
    }
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
    let rows: Vec<ImageRow> = images
        .iter()
        .zip(&lines)
        .flat_map(|(image, line)| image_rows(image, line, id(image)))
        .collect();
    match &cli.format {
        Format::Json => print_json(&lines),
        Format::Template(t) => print_template(t, &to_values(&rows)?),
        Format::Table => {
            let mut t = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "LAYERS", "CREATED", "SIZE"]);
            for r in rows {
                t.row(vec![
                    r.repository,
                    r.tag,
                    r.id,
                    r.layers.to_string(),
                    r.created_since,
                    r.size,
                ]);
            }
            t.print()?;
            Ok(())
        }
    }
}

/// Whether `image` passes the `dangling`, `reference` and `label` filters.
fn image_matches(image: &ImageRecord, filters: &Filters) -> bool {
    let labels = image.config_json()["config"]["Labels"].clone();
    filters.any("dangling", |v| (v == "true") == image.tags.is_empty())
        && filters.any("reference", |pattern| {
            image.tags.iter().any(|t| {
                glob(pattern, &t.0) || glob(pattern, t.0.rsplit_once(':').map_or(&t.0, |p| p.0))
            })
        })
        && filters.any("label", |l| match l.split_once('=') {
            Some((k, v)) => labels[k].as_str() == Some(v),
            None => !labels[l].is_null(),
        })
}

/// One line of the image table, and the fields of `--format` templates.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageRow {
    #[serde(rename = "ID")]
    id: String,
    repository: String,
    tag: String,
    digest: String,
    layers: usize,
    size: String,
    created_at: String,
    created_since: String,
}

/// One row per tag (`<none>` for an untagged image), as docker lists them.
fn image_rows(image: &ImageRecord, line: &ImageLine, id: String) -> Vec<ImageRow> {
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
    tags.into_iter()
        .map(|(repository, tag)| ImageRow {
            id: id.clone(),
            repository,
            tag,
            digest: "<none>".into(),
            layers: image.layers.len(),
            size: human_size(line.size),
            created_at: strata::model::rfc3339(line.created_ns / 1_000_000_000),
            created_since: age(line.created_ns),
        })
        .collect()
}

/// Rows as JSON values, for templates.
pub fn to_values<T: Serialize>(rows: &[T]) -> Result<Vec<serde_json::Value>> {
    rows.iter()
        .map(|r| serde_json::to_value(r).map_err(Into::into))
        .collect()
}

/// `strata tag SRC DST`.
pub fn tag(cli: &Cli, source: &str, target: &str) -> Result<()> {
    let target = reference(target)?;
    let store = open(cli)?;
    ops::image::tag(&store, source, &target)?;
    Ok(())
}

/// `strata rmi REF...`: removes each, reporting every failure. An image
/// named by id that has several tags needs `-f` (then every tag goes).
pub fn rmi(cli: &Cli, texts: &[String], force: bool) -> Result<()> {
    let store = open(cli)?;
    let mut failed = 0;
    for (done, text) in texts.iter().enumerate() {
        match rmi_one(&store, text, force) {
            Ok(()) => {}
            Err(e)
                if e.downcast_ref::<StoreError>()
                    .is_some_and(StoreError::is_interrupted) =>
            {
                let e = e.downcast::<StoreError>().expect("checked above");
                let e = match done {
                    0 => e,
                    n => e.undone(format!("{n} of {} removed before it", texts.len())),
                };
                return Err(e.into());
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} image(s) could not be removed", texts.len());
    }
    Ok(())
}

fn rmi_one(store: &strata::Store, text: &str, force: bool) -> Result<()> {
    let image = store.resolve_image(text)?;
    let by_tag = image.tags.contains(&Reference::lookup(text));
    if !by_tag && image.tags.len() > 1 && !force {
        let tags: Vec<&str> = image.tags.iter().map(|t| t.0.as_str()).collect();
        anyhow::bail!(
            "image {text} has several tags ({}): remove them one by one, or use -f to remove them all with the image",
            tags.join(", ")
        );
    }
    match ops::image::remove(store, text)? {
        ops::image::Removed::Untagged(tag) => outln!("Untagged: {tag}")?,
        ops::image::Removed::Deleted { image: id, layers } => {
            for t in &image.tags {
                outln!("Untagged: {t}")?;
            }
            outln!("Deleted: {id} ({layers} layer(s) removed)")?;
        }
    }
    Ok(())
}

/// `strata image inspect REF...`: a JSON array, or a template per image.
pub fn inspect(cli: &Cli, texts: &[String]) -> Result<()> {
    let store = open(cli)?;
    let all = texts
        .iter()
        .map(|t| ops::image_inspect::inspect(&store, t))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    match &cli.format {
        Format::Template(t) => print_template(t, &to_values(&all)?),
        _ => print_json(&all),
    }
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
    t.print()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(labels: serde_json::Value, tags: &[&str]) -> ImageRecord {
        let config =
            serde_json::to_vec(&serde_json::json!({ "config": { "Labels": labels } })).unwrap();
        ImageRecord {
            id: strata::model::Digest::of(&config),
            config,
            layers: Vec::new(),
            tags: tags.iter().map(|t| Reference::parse(t).unwrap()).collect(),
            created_ns: 0,
        }
    }

    fn filters(texts: &[&str]) -> Filters {
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        Filters::parse(&texts, IMAGE_FILTERS, "images").unwrap()
    }

    #[test]
    fn label_dangling_and_reference_filters() {
        let tagged = image(serde_json::json!({ "tier": "web" }), &["demo/app:1"]);
        let bare = image(serde_json::json!(null), &[]);
        assert!(image_matches(&tagged, &filters(&["label=tier"])));
        assert!(image_matches(&tagged, &filters(&["label=tier=web"])));
        assert!(!image_matches(&tagged, &filters(&["label=tier=db"])));
        assert!(!image_matches(&bare, &filters(&["label=tier"])));
        assert!(image_matches(&bare, &filters(&["dangling=true"])));
        assert!(!image_matches(&tagged, &filters(&["dangling=true"])));
        assert!(image_matches(&tagged, &filters(&["reference=demo/app"])));
        assert!(image_matches(&tagged, &filters(&["reference=*:1"])));
        assert!(!image_matches(&tagged, &filters(&["reference=other/*"])));
        assert!(image_matches(
            &tagged,
            &filters(&["reference=other/*", "reference=demo/*"])
        ));
    }
}
