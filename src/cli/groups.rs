//! The arguments the Docker-style verbs share: `--format`, the listing
//! flags, and the `image`, `container` and `system` groups.

use clap::{Args, Subcommand};

/// How listings are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for programs.
    Json,
    /// One line per item from a `{{.Field}}` template.
    Template(String),
}

/// `table`, `json`, or a template (anything holding `{{`).
pub fn parse_format(text: &str) -> Result<Format, String> {
    match text {
        "table" => Ok(Format::Table),
        "json" => Ok(Format::Json),
        t if t.contains("{{") => Ok(Format::Template(t.to_owned())),
        t => Err(format!(
            "{t:?} is not a format: use table, json or a template such as '{{{{.ID}}}}'"
        )),
    }
}

/// The options of every listing (`images`, `ps`, `image ls`, ...).
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// Only print ids, one a line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Only show items matching KEY=VALUE; repeatable (all must match).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Show full ids instead of 12 characters.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `strata image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show images' config, layers (diff and chain ids, sizes) and history as JSON.
    #[command(after_help = "Examples:
  strata image inspect demo/app
  strata image inspect --format '{{.Id}} {{.Size}}' demo/app")]
    Inspect {
        /// Images (tags or ids).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// List images (as `strata images`).
    #[command(visible_alias = "list")]
    #[command(after_help = "Examples:\n  strata image ls -q --filter dangling=true")]
    Ls {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Remove images (as `strata rmi`).
    #[command(after_help = "Examples:\n  strata image rm demo/app:1 demo/app:2")]
    Rm {
        /// Remove an image named by id even when several tags point at it.
        #[arg(short, long)]
        force: bool,
        /// Images (tags or ids).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove dangling images (no tag, no container): lists them and the space freed.
    #[command(after_help = "Example:\n  strata image prune")]
    Prune,
}

/// `strata container ...`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers (as `strata ps`).
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  strata container ls -q"
    )]
    Ls {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Remove containers (as `strata rm`).
    #[command(after_help = "Examples:\n  strata container rm -f web")]
    Rm {
        /// Unmount first if mounted.
        #[arg(short, long)]
        force: bool,
        /// Containers (id, id prefix or name).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove every unmounted container: lists them and the space freed.
    #[command(after_help = "Example:\n  strata container prune")]
    Prune,
}

/// `strata system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Space used by images, containers and layers, and how much is reclaimable.
    #[command(after_help = "Examples:\n  strata system df\n  strata system df -v --format json")]
    Df {
        /// One line per image, container and layer as well.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Remove unmounted containers, then dangling images.
    #[command(after_help = "Example:\n  strata system prune")]
    Prune,
    /// The store's driver, backing, space and counts (as `strata info`).
    #[command(after_help = "Examples:\n  strata system info --format json")]
    Info,
}
