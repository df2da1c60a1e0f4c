//! `strata cp`.

use anyhow::{Context, Result};
use strata::ops::cp::{copy, Endpoint};

use super::store_cmds::open;
use super::Cli;

/// `strata cp SRC DST`: one side `CONTAINER:PATH`, the other a host path
/// or `-` (a tar stream).
pub fn cp(cli: &Cli, source: &str, destination: &str) -> Result<()> {
    let (from, to) = (Endpoint::parse(source), Endpoint::parse(destination));
    let store = open(cli)?;
    copy(&store, &from, &to).with_context(|| format!("copying {source} to {destination}"))?;
    Ok(())
}
