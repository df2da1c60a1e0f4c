//! `completion`, `man` and `version`.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use serde::Serialize;

use super::output::{outln, print_json, Table};
use super::{Cli, Format};

/// `strata completion SHELL`: the completion script on standard output.
pub fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "strata", &mut script);
    use std::io::Write as _;
    std::io::stdout().lock().write_all(&script)?;
    Ok(())
}

/// `strata man DIR`: `strata.1` and one page per subcommand
/// (`strata-image-inspect.1`, ...).
pub fn man(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    outln!("man pages written to {}", dir.display())?;
    Ok(())
}

#[derive(Serialize)]
struct Version {
    version: &'static str,
    drivers: Vec<DriverSupport>,
}

/// One driver in `strata version`: built into this binary, and usable on
/// this host (and if not, why).
#[derive(Serialize)]
struct DriverSupport {
    name: &'static str,
    built: bool,
    host: bool,
    note: String,
}

/// `strata version`: the version and each driver's support on this host.
pub fn version(cli: &Cli) -> Result<()> {
    let v = Version {
        version: env!("CARGO_PKG_VERSION"),
        drivers: strata::drivers::DRIVER_NAMES
            .iter()
            .map(|&name| support(name))
            .collect(),
    };
    if cli.format == Format::Json {
        return print_json(&v);
    }
    outln!("strata {}", v.version)?;
    let mut t = Table::new(&["DRIVER", "BUILT IN", "HOST", "NOTE"]);
    for d in &v.drivers {
        let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
        t.row(vec![
            d.name.into(),
            yes(d.built),
            yes(d.host),
            d.note.clone(),
        ]);
    }
    t.print()?;
    Ok(())
}

fn support(name: &'static str) -> DriverSupport {
    let built = match name {
        "btrfs" => cfg!(feature = "btrfs"),
        "blockfile" => cfg!(feature = "blockfile"),
        "devmapper" => cfg!(feature = "devmapper"),
        "overlay2" => cfg!(feature = "overlay2"),
        _ => cfg!(feature = "vfs"),
    };
    let has = strata::drivers::kernel_has_fs;
    let (host, note) = match name {
        "btrfs" => (has("btrfs"), "kernel btrfs (loop file, or a btrfs root)"),
        "blockfile" => (
            has("xfs") || has("btrfs"),
            "a reflink filesystem: xfs or btrfs (loop file, or such a root)",
        ),
        "devmapper" => (dm_thin(), "device-mapper thin provisioning (dm-thin)"),
        "overlay2" => (has("overlay"), "kernel overlayfs"),
        _ => (true, "any filesystem (full copies)"),
    };
    DriverSupport {
        name,
        built,
        host: built && host,
        note: note.into(),
    }
}

fn dm_thin() -> bool {
    #[cfg(feature = "devmapper")]
    return strata_devmapper::dm_thin_available();
    #[cfg(not(feature = "devmapper"))]
    return false;
}
