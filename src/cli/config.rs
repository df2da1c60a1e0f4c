//! The config file (`/etc/strata/config.toml`, or `--config` /
//! `STRATA_CONFIG`) and logging setup.
//!
//! ```toml
//! root = "/srv/strata"      # default --root
//! driver = "btrfs"          # default --driver
//! [options]                 # default `init --opt` values
//! "btrfs.size" = "50G"
//! ```
//!
//! A flag or its environment variable wins over the file, the file over
//! the built-in default.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;

use super::Cli;

/// Where the config file is looked for without `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/strata/config.toml";

/// What the config file may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Default store root.
    pub root: Option<PathBuf>,
    /// Default driver.
    pub driver: Option<String>,
    /// Default driver options for `init` (`--opt` given on the command
    /// line wins per key).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Reads the config file: `explicit` (which must exist) or the default
/// path (skipped when missing).
pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(FileConfig::default())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config: FileConfig =
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
    tracing::debug!(path = %path.display(), ?config, "config file read");
    Ok(config)
}

/// Applies the file's defaults to what the command line left at its
/// built-in default.
pub fn apply(cli: &mut Cli, matches: &ArgMatches, file: &FileConfig) {
    let defaulted = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
    if let Some(root) = file.root.as_ref().filter(|_| defaulted("root")) {
        cli.root = root.clone();
    }
    if let Some(driver) = file.driver.as_ref().filter(|_| defaulted("driver")) {
        cli.driver = driver.clone();
    }
}

/// Sets up logging on stderr: `--log-level`, else `STRATA_LOG` (a
/// tracing filter such as `debug` or `strata=trace`), else `warn`.
/// Colour only on a terminal and without `NO_COLOR`.
pub fn init_logging(level: Option<&str>) {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::new(l),
        None => tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
            .unwrap_or_else(|_| "warn".into()),
    };
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
}
