//! `strata release`: unmount the driver's backing and detach its loop
//! devices (they otherwise stay set up between commands).

use anyhow::{Context, Result};

use super::output::outln;
use super::store_cmds::open;
use super::Cli;

/// `strata release`.
pub fn release(cli: &Cli) -> Result<()> {
    let store = open(cli)?;
    strata::ops::release::release(&store)
        .with_context(|| format!("releasing the backing of {}", cli.root.display()))?;
    outln!("released the backing of {}", store.root().display())?;
    Ok(())
}
