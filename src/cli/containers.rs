//! `create`, `ps`, `inspect`, `mount`, `umount`, `rm`.

use anyhow::Result;
use serde::Serialize;
use strata::ops::container::{self, CreateRequest};

use super::output::{age, print_json, Table};
use super::store_cmds::open;
use super::{Cli, Format};

/// `strata create`: prints the new container's id as its last line.
pub fn create(cli: &Cli, image: &str, name: Option<&str>, size: Option<u64>) -> Result<()> {
    let store = open(cli)?;
    let record = container::create(&store, &CreateRequest { image, name, size })?;
    println!("{}", record.id);
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
}

/// `strata ps`.
pub fn list(cli: &Cli) -> Result<()> {
    let store = open(cli)?;
    let lines: Vec<ContainerLine> = store
        .meta()?
        .containers()?
        .into_iter()
        .map(|c| ContainerLine {
            id: c.id.0.clone(),
            name: c.name.clone(),
            image: c.image_ref.clone(),
            image_id: c.image.0.clone(),
            mounted_at: c.mounted_at.as_ref().map(|p| p.display().to_string()),
            created_ns: c.created_ns,
        })
        .collect();
    if cli.format == Format::Json {
        return print_json(&lines);
    }
    let mut t = Table::new(&["CONTAINER ID", "IMAGE", "CREATED", "MOUNTED", "NAME"]);
    for c in &lines {
        t.row(vec![
            c.id[..12].to_owned(),
            c.image.clone(),
            age(c.created_ns),
            c.mounted_at.clone().unwrap_or_else(|| "-".into()),
            c.name.clone(),
        ]);
    }
    t.print();
    Ok(())
}

/// `strata inspect`.
pub fn inspect(cli: &Cli, text: &str) -> Result<()> {
    let store = open(cli)?;
    print_json(&[container::inspect(&store, text)?])
}

/// `strata mount`: prints the merged rootfs path.
pub fn mount(cli: &Cli, text: &str, options: strata::mounts::ContainerMountOptions) -> Result<()> {
    let store = open(cli)?;
    println!("{}", container::mount(&store, text, options)?.display());
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
                println!("{}", record.id);
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
