//! The `strata` command line: argument parsing and dispatch. Each group of
//! verbs sits in its own file; the work is done in [`strata::ops`].

mod bench;
mod check;
mod comforts;
mod config;
mod containers;
mod cp;
mod filters;
mod groups;
mod images;
mod layers;
mod output;
mod progress;
mod prune;
mod release;
mod serve;
mod snapshots;
mod store_cmds;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use groups::parse_format;
pub use groups::{ContainerCommand, Format, ImageCommand, ListArgs, SystemCommand};
use strata::check::CheckOptions;
use strata::interrupt::Interrupted;
use strata::StoreError;

/// The help section of the flags every verb takes (after the verb's own).
const GLOBAL: &str = "Global options";

/// Container layers on copy-on-write block storage (btrfs, dm-thin,
/// reflinked loop images), with overlay2 and vfs as the baseline.
#[derive(Debug, Parser)]
#[command(name = "strata", version, propagate_version = true)]
pub struct Cli {
    /// Store root directory.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "STRATA_ROOT",
        default_value = "/var/lib/strata"
    )]
    pub root: PathBuf,
    /// Storage driver: auto, btrfs, blockfile, devmapper, overlay2 or vfs.
    /// Chosen when the store is created and remembered; `auto` picks the
    /// best the host supports (see `strata info` for why).
    #[arg(long, global = true,
        help_heading = GLOBAL, env = "STRATA_DRIVER", default_value = "auto")]
    pub driver: String,
    /// Output format of listings: table, json, or a template such as
    /// '{{.ID}} {{.Size}}' (Go-template field syntax; `\t` is a tab).
    #[arg(long, global = true,
        help_heading = GLOBAL, default_value = "table", value_parser = parse_format)]
    pub format: Format,
    /// Config file with defaults for --root, --driver and init's --opt
    /// [default: /etc/strata/config.toml when it exists].
    #[arg(long, global = true,
        help_heading = GLOBAL, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level on stderr: error, warn, info, debug or trace (or a
    /// tracing filter); default: STRATA_LOG, else warn.
    #[arg(short = 'l', long, global = true,
        help_heading = GLOBAL, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Driver options from the config file (init's defaults).
    #[arg(skip)]
    pub config_options: std::collections::BTreeMap<String, String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs, as docker's storage commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a store (loop-backed by default for btrfs/blockfile/devmapper).
    #[command(after_help = "Examples:
  strata --driver btrfs init --opt btrfs.size=20G
  strata --driver overlay2 init

Options (--opt KEY=VALUE), per driver, with their defaults:
  btrfs.size=SIZE            loop file size when the root is not on btrfs
                             [80% of the root filesystem's free space, 128M..100G]
  btrfs.quota=on|simple|qgroups|off   quotas for sizes and usage [on]
  btrfs.qgroup_cleanup=auto|kernel|strata  who destroys a removed subvolume's
                             qgroup [auto: the kernel from Linux 6.10, else strata]
  blockfile.fs=ext4|xfs      filesystem of each image file [xfs; ext4 below 300M]
  blockfile.size=SIZE        apparent size of a base image file (sparse) [10G];
                             grown to fit a layer being applied
  blockfile.backing=auto|loop|direct  where image files live [auto: in the
                             root when it reflinks, else a loop xfs]
  blockfile.backing_size=SIZE  loop xfs file size (sparse) [100G]
  dm.data_size=SIZE          loop data file of the thin pool (sparse) [100G]
  dm.metadata_size=SIZE      loop metadata file [48 bytes per block, 2M..16G]
  dm.datadev=DEV, dm.metadatadev=DEV, dm.thinpooldev=NAME  use real devices / a pool
  dm.blocksize=SIZE          pool block size [64K]
  dm.basesize=SIZE           size of each thin device [10G]
  dm.fs=ext4|xfs [ext4], dm.mkfsarg=ARGS, dm.deferred_remove=BOOL [false]
  dm.min_free_space=PCT [10], dm.autoextend_threshold=PCT [80],
  dm.autoextend_percent=PCT [20]
  overlay2.index_off=BOOL [true], overlay2.native_diff=BOOL [true]
  vfs.reflink=auto|never     reflink copies where the filesystem can [auto]
  limits.layer_size=SIZE [16G], limits.image_size=SIZE [64G], limits.layers=N [128]
The config file's [options] table gives defaults for these.")]
    Init {
        /// Driver option KEY=VALUE (e.g. btrfs.size=20G, dm.fs=xfs); repeatable.
        #[arg(long = "opt", value_name = "KEY=VALUE")]
        options: Vec<String>,
    },
    /// Show the driver, why it was chosen, its backing, space and counts.
    #[command(after_help = "Examples:\n  strata info\n  strata info --format json")]
    Info,
    /// Unmount the driver's backing and detach its loop devices (they stay
    /// set up between commands); refuses, naming it, while anything holds it.
    #[command(
        after_help = "Examples:\n  strata release               # before moving or deleting the root"
    )]
    Release,
    /// Import a flat rootfs tar (plain, gzip or zstd) as a one-layer image.
    #[command(after_help = "Examples:
  strata import rootfs.tar demo/app:1.0
  zcat rootfs.tar.gz | strata import - demo/app")]
    Import {
        /// The tar file; `-` reads standard input.
        file: PathBuf,
        /// NAME[:TAG] for the new image.
        reference: String,
    },
    /// Load images from an OCI layout or docker save archive (tar, gz, zst).
    #[command(after_help = "Examples:
  strata load -i app.tar
  strata save demo/app | ssh host strata load")]
    Load {
        /// The archive; `-` (the default) reads standard input.
        #[arg(short, long = "input", default_value = "-")]
        input: PathBuf,
    },
    /// Save images as an OCI layout archive (also readable by `docker load`).
    #[command(after_help = "Examples:
  strata save -o app.tar demo/app:1.0
  strata save demo/app | gzip > app.tar.gz")]
    Save {
        /// Output file; `-` (the default) is standard output.
        #[arg(short, long, default_value = "-")]
        output: PathBuf,
        /// Write plain tar layer blobs instead of gzip.
        #[arg(long)]
        uncompressed: bool,
        /// Images (tags or ids).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// List images.
    #[command(after_help = "Examples:
  strata images -q --filter dangling=true
  strata images --format '{{.Repository}}:{{.Tag}} {{.Size}}'
Filters: dangling=true|false, reference=PATTERN (* matches), label=KEY[=VALUE],
before=IMAGE, since=IMAGE. Template fields: ID, Repository, Tag, Digest,
Layers, Size, CreatedAt, CreatedSince.")]
    Images {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Add a tag to an image.
    #[command(after_help = "Examples:\n  strata tag demo/app:1 registry.example.com/demo/app:1.0")]
    Tag {
        /// Existing image (tag or id).
        source: String,
        /// New NAME[:TAG].
        target: String,
    },
    /// Remove image tags, or images and their unshared layers.
    #[command(after_help = "Examples:
  strata rmi demo/app:1.0            # untags; removes the image with its last tag
  strata rmi -f 3f2a9c1b7d4e         # an image with several tags, by id")]
    Rmi {
        /// Remove an image named by id even when several tags point at it.
        #[arg(short, long)]
        force: bool,
        /// Images (tags or ids).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show an image's layers and the steps that made them.
    #[command(
        after_help = "Examples:\n  strata history demo/app:1\n  strata history --format json demo/app:1"
    )]
    History {
        /// Image (tag or id).
        image: String,
    },
    /// Create a container (a writable layer on an image); prints its id.
    #[command(
        after_help = "Examples:\n  strata create --name web demo/app:1\n  strata create --size 10G demo/app:1\n  strata create --label tier=web demo/app:1"
    )]
    Create {
        /// Container name (default: generated).
        #[arg(long)]
        name: Option<String>,
        /// Size limit of the writable layer, e.g. 10G: enforced (btrfs with
        /// quotas, blockfile, devmapper, overlay2 on a filesystem with project
        /// quotas) or refused; never 0.
        #[arg(long, value_parser = output::parse_size)]
        size: Option<u64>,
        /// A label, KEY=VALUE or KEY (repeatable); `ps --filter label=KEY[=VALUE]`
        /// selects by it.
        #[arg(long = "label", value_name = "KEY[=VALUE]", value_parser = containers::parse_label)]
        labels: Vec<(String, String)>,
        /// Image (tag or id).
        image: String,
    },
    /// List containers.
    #[command(after_help = "Examples:
  strata ps -q
  strata ps --filter status=mounted --format '{{.ID}} {{.Names}}'
Filters: status=mounted|unmounted, ancestor=IMAGE, name=TEXT, id=PREFIX,
label=KEY[=VALUE].
Template fields: ID, Names, Image, ImageID, CreatedAt, RunningFor, Mounts.")]
    Ps {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Describe a container as JSON, with its driver's mount data.
    #[command(
        after_help = "Examples:\n  strata inspect web\n  strata inspect web | jq '.[0].GraphDriver'"
    )]
    Inspect {
        /// Container (id, id prefix or name).
        container: String,
    },
    /// Mount a container's merged rootfs; prints the path. The mount is
    /// nosuid,nodev unless --suid / --dev say otherwise.
    #[command(
        after_help = "Examples:\n  path=$(strata mount web)\n  strata mount --suid web      # honour setuid bits"
    )]
    Mount {
        /// Container (id, id prefix or name).
        container: String,
        /// Honour setuid/setgid bits and file capabilities of the image
        /// (drops `nosuid`): any user who can reach the rootfs can then run
        /// the image's setuid binaries as their owner.
        #[arg(long)]
        suid: bool,
        /// Allow opening device nodes of the image (drops `nodev`): a device
        /// node in an image then gives access to that host device.
        #[arg(long)]
        dev: bool,
    },
    /// Unmount a container's merged rootfs.
    #[command(after_help = "Examples:\n  strata umount web")]
    Umount {
        /// Container (id, id prefix or name).
        container: String,
    },
    /// List what a container changed: `A|C|D /path` lines.
    #[command(after_help = "Examples:\n  strata diff web\n  strata diff --format json web")]
    Diff {
        /// Container (id, id prefix or name).
        container: String,
    },
    /// Turn a container's changes into a new image; prints its id.
    #[command(after_help = "Examples:\n  strata commit web demo/app:2")]
    Commit {
        /// Container (id, id prefix or name).
        container: String,
        /// NAME[:TAG] for the new image.
        reference: String,
    },
    /// Write a container's merged rootfs as one flat tar.
    #[command(after_help = "Examples:
  strata export -o rootfs.tar web
  strata export web | tar -t")]
    Export {
        /// Container (id, id prefix or name).
        container: String,
        /// Output file; `-` (the default) is standard output.
        #[arg(short, long, default_value = "-")]
        output: PathBuf,
    },
    /// Copy files between a container and the host.
    #[command(after_help = "Examples:
  strata cp web:/etc/motd ./motd
  strata cp ./app.conf web:/etc/app.conf
  strata cp web:/etc - | tar -t        # a tar stream
  tar -c conf | strata cp - web:/etc   # unpacked into /etc")]
    Cp {
        /// CONTAINER:PATH, a host path, or `-` (a tar stream).
        source: String,
        /// CONTAINER:PATH, a host path, or `-` (a tar stream).
        destination: String,
    },
    /// Rename a container.
    #[command(after_help = "Example:\n  strata rename strata_3f2a9c1b web")]
    Rename {
        /// Container (id, id prefix or name).
        container: String,
        /// Its new name.
        name: String,
    },
    /// Image commands: inspect, ls, rm, prune.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Container commands: ls, rm, prune.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Store-wide commands: df, prune, info.
    #[command(subcommand)]
    System(SystemCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Examples:
  strata completion bash > /etc/bash_completion.d/strata
  strata completion zsh > \"${fpath[1]}/_strata\"")]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (strata.1, strata-images.1, ...) into a directory.
    #[command(after_help = "Example:\n  strata man /usr/local/share/man/man1")]
    Man {
        /// Directory for the pages (created if missing).
        dir: PathBuf,
    },
    /// Print the version and which drivers this host supports.
    #[command(after_help = "Examples:\n  strata version\n  strata version --format json")]
    Version,
    /// Remove a container and its writable layer.
    #[command(after_help = "Examples:\n  strata rm web db\n  strata rm -f $(strata ps -q)")]
    Rm {
        /// Unmount first if mounted.
        #[arg(short, long)]
        force: bool,
        /// Containers (id, id prefix or name).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Serve the store as a containerd proxy snapshotter on a unix socket
    /// (mode 0600) until SIGTERM or SIGINT. containerd names it in
    /// `[proxy_plugins.strata]`; see contrib/containerd-config.toml.
    #[command(after_help = "Examples:\n  strata serve --socket /run/strata/strata.sock")]
    Serve {
        /// Socket path; a stale socket file from a crash is replaced.
        #[arg(long, default_value = "/run/strata/strata.sock")]
        socket: PathBuf,
    },
    /// Measure every driver the host supports side by side (copy-up against
    /// volume writes, create, commit, remove, usage, reads); writes
    /// results.json, report.md and plots. Needs root.
    #[command(
        after_help = "Examples:\n  strata bench --quick\n  strata bench --drivers btrfs,overlay2 --out bench-out --work-dir /srv/scratch\n  strata bench --containerd --drivers btrfs,overlay --quick\n  strata bench --containerd --direct --drivers btrfs,overlay   # needs scripts/build-ctrd-snapshotter.sh"
    )]
    Bench {
        /// Targets to run, comma-separated (driver names or labels such as
        /// overlay2-xfs; with --containerd: btrfs, overlay, devmapper);
        /// default: every driver the host supports.
        #[arg(long, value_delimiter = ',')]
        drivers: Vec<String>,
        /// A short run (under three minutes): fewer cases, 10 samples per
        /// headline row, no 500-layer image.
        #[arg(long)]
        quick: bool,
        /// Directory for results.json, report.md and the plots.
        #[arg(long, default_value = "strata-bench")]
        out: PathBuf,
        /// Directory for the loop files and scratch filesystems (emptied
        /// again at the end, on error and on Ctrl-C); default:
        /// ROOT/bench-work when the store root exists, else /var/tmp/strata-bench.
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Instead: Strata's servers against containerd's own snapshotters
        /// (btrfs, overlayfs, devmapper) through one client; writes
        /// containerd.json and containerd.md.
        #[arg(long)]
        containerd: bool,
        /// With --containerd: serve containerd's snapshotters directly
        /// (target/ctrd-snapshotter, built by
        /// scripts/build-ctrd-snapshotter.sh, or $STRATA_CTRD_SNAPSHOTTER)
        /// instead of through a containerd daemon and its metadata store;
        /// writes containerd-direct.json and containerd-direct.md.
        #[arg(long, requires = "containerd")]
        direct: bool,
        /// Run only these steps, comma-separated: copy-up, create,
        /// commit/remove, usage, read, deep-stack, density, concurrency,
        /// scale (default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// List every snapshot in the store (image layers, containers, and those
    /// a runtime made through `strata serve`): key, kind, parent, owner,
    /// labels and exclusive size.
    #[command(after_help = "Examples:
  strata snapshots                      # ls: one line per snapshot
  strata snapshots tree                 # parents and their children
  strata snapshots usage                # exclusive size per snapshot, and the total
  strata snapshots ls --format json     # for programs")]
    Snapshots {
        /// Only print snapshot keys (ls).
        #[arg(short, long, global = true)]
        quiet: bool,
        /// What to show (default: ls).
        #[command(subcommand)]
        view: Option<SnapshotsView>,
    },
    /// Compare metadata with the driver's storage, mounts and files; exit 1 on damage.
    #[command(after_help = "Examples:\n  strata check\n  strata check --repair --prune")]
    Check {
        /// Finish or undo half-done operations, remove what Strata left behind.
        #[arg(long)]
        repair: bool,
        /// Also re-read every committed layer against its CRC32 manifest.
        #[arg(long)]
        data: bool,
        /// With --repair, also remove committed layers no image references.
        #[arg(long, requires = "repair")]
        prune: bool,
        /// List every item of a finding that has several (e.g. the qgroups
        /// btrfs still reclaims in the background); JSON always has them.
        #[arg(short, long)]
        verbose: bool,
    },
}

/// The views of `strata snapshots`.
#[derive(Debug, Clone, Copy, Default, Subcommand)]
pub enum SnapshotsView {
    /// One line per snapshot: key, kind, parent, size, age, owner, labels.
    #[default]
    #[command(
        after_help = "Examples:\n  strata snapshots ls -q\n  strata snapshots ls --format '{{.key}} {{.owner}}'"
    )]
    Ls,
    /// The parent tree: each committed snapshot with the ones built on it.
    #[command(after_help = "Examples:\n  strata snapshots tree")]
    Tree,
    /// Exclusive size and inodes per snapshot, and the total.
    #[command(after_help = "Examples:\n  strata snapshots usage --format json")]
    Usage,
}

/// Parses arguments and runs the command. SIGINT, SIGTERM and SIGHUP stop
/// every verb but `serve` (which handles them itself) at its next safe
/// point (`bench`: the next sample, after removing its scratch filesystems): the process then prints one `interrupted: ...` line
/// and exits with `128 + signal`.
pub fn run() -> Result<()> {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    config::init_logging(cli.log_level.as_deref());
    let file = config::load(cli.config.as_deref())?;
    config::apply(&mut cli, &matches, &file);
    cli.config_options = file.options;
    let what = describe(&cli.command);
    let _span = tracing::info_span!("strata", command = %what).entered();
    tracing::debug!(root = %cli.root.display(), driver = %cli.driver, "starting");
    let started = std::time::Instant::now();
    let stoppable = !matches!(cli.command, Command::Serve { .. });
    if stoppable {
        strata::interrupt::install().context("installing the signal handlers")?;
    }
    let result = dispatch(&cli);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "finished"
    );
    if stoppable {
        exit_if_interrupted(&cli.command, &result);
    }
    result
}

/// After a signal, prints the one line saying what happened to the command
/// and exits with `128 + signal`: the command was undone (it failed at a
/// safe point and its rollback ran), or it had got too far and finished.
fn exit_if_interrupted(command: &Command, result: &Result<()>) {
    let requested = strata::interrupt::requested().map(Interrupted::new);
    let (interrupted, finished) = match result {
        Ok(()) => (requested, true),
        Err(e) => (
            e.downcast_ref::<StoreError>()
                .and_then(StoreError::interruption)
                .or(requested),
            false,
        ),
    };
    let Some(interrupted) = interrupted else {
        return;
    };
    let what = describe(command);
    if finished {
        eprintln!("interrupted: {what} finished (too far along to undo)");
    } else if interrupted.undone.is_empty() {
        eprintln!("interrupted: {what} undone");
    } else {
        eprintln!(
            "interrupted: {what} undone ({})",
            interrupted.undone.join("; ")
        );
    }
    std::process::exit(interrupted.exit_code());
}

/// `load of app.tar`, `commit of web as app:2`: the command, for the
/// interruption line.
fn describe(command: &Command) -> String {
    match command {
        Command::Init { .. } => "init".into(),
        Command::Import { file, reference } => {
            format!("import of {} as {reference}", file.display())
        }
        Command::Load { input } => format!("load of {}", input.display()),
        Command::Save { output, images, .. } => {
            format!("save of {} to {}", images.join(" "), output.display())
        }
        Command::Tag { source, target } => format!("tag of {source} as {target}"),
        Command::Rmi { images, .. } | Command::Image(ImageCommand::Rm { images, .. }) => {
            format!("rmi of {}", images.join(" "))
        }
        Command::Cp {
            source,
            destination,
        } => format!("cp of {source} to {destination}"),
        Command::Rename { container, name } => format!("rename of {container} to {name}"),
        Command::Image(ImageCommand::Prune) => "image prune".into(),
        Command::Container(ContainerCommand::Prune) => "container prune".into(),
        Command::System(SystemCommand::Prune) => "system prune".into(),
        Command::Create { image, .. } => format!("create on {image}"),
        Command::Mount { container, .. } => format!("mount of {container}"),
        Command::Umount { container } => format!("umount of {container}"),
        Command::Diff { container } => format!("diff of {container}"),
        Command::Commit {
            container,
            reference,
        } => format!("commit of {container} as {reference}"),
        Command::Export { container, output } => {
            format!("export of {container} to {}", output.display())
        }
        Command::Rm { containers, .. }
        | Command::Container(ContainerCommand::Rm { containers, .. }) => {
            format!("rm of {}", containers.join(" "))
        }
        Command::Check { repair: true, .. } => "check --repair".into(),
        other => format!("{other:?}")
            .split([' ', '{'])
            .next()
            .unwrap_or("command")
            .to_lowercase(),
    }
}

/// Whether the verb prints rows a `--format` template can render.
fn renders_templates(command: &Command) -> bool {
    matches!(
        command,
        Command::Images { .. }
            | Command::Ps { .. }
            | Command::Image(ImageCommand::Ls { .. } | ImageCommand::Inspect { .. })
            | Command::Container(ContainerCommand::Ls { .. })
            | Command::Snapshots {
                view: None | Some(SnapshotsView::Ls),
                ..
            }
    )
}

fn dispatch(cli: &Cli) -> Result<()> {
    if matches!(cli.format, Format::Template(_)) && !renders_templates(&cli.command) {
        anyhow::bail!(
            "--format with a template works on images, ps, image ls/inspect, container ls and snapshots ls; use --format json here"
        );
    }
    match &cli.command {
        Command::Init { options } => store_cmds::init(cli, options),
        Command::Info => store_cmds::info(cli),
        Command::Release => release::release(cli),
        Command::Import { file, reference } => images::import(cli, file, reference),
        Command::Load { input } => layers::load(cli, input),
        Command::Save {
            output,
            uncompressed,
            images,
        } => layers::save(cli, images, output, *uncompressed),
        Command::Images { list } | Command::Image(ImageCommand::Ls { list }) => {
            images::list(cli, list)
        }
        Command::Tag { source, target } => images::tag(cli, source, target),
        Command::Rmi { force, images } | Command::Image(ImageCommand::Rm { force, images }) => {
            images::rmi(cli, images, *force)
        }
        Command::Image(ImageCommand::Inspect { images }) => images::inspect(cli, images),
        Command::Image(ImageCommand::Prune) => prune::images(cli),
        Command::Container(ContainerCommand::Prune) => prune::containers(cli),
        Command::System(SystemCommand::Prune) => prune::system(cli),
        Command::System(SystemCommand::Df { verbose }) => prune::df(cli, *verbose),
        Command::System(SystemCommand::Info) => store_cmds::info(cli),
        Command::Cp {
            source,
            destination,
        } => cp::cp(cli, source, destination),
        Command::Rename { container, name } => containers::rename(cli, container, name),
        Command::Completion { shell } => comforts::completion(*shell),
        Command::Man { dir } => comforts::man(dir),
        Command::Version => comforts::version(cli),
        Command::History { image } => images::history(cli, image),
        Command::Create {
            name,
            size,
            labels,
            image,
        } => {
            let labels = labels.iter().cloned().collect();
            containers::create(cli, image, name.as_deref(), *size, labels)
        }
        Command::Ps { list } | Command::Container(ContainerCommand::Ls { list }) => {
            containers::list(cli, list)
        }
        Command::Inspect { container } => containers::inspect(cli, container),
        Command::Mount {
            container,
            suid,
            dev,
        } => containers::mount(
            cli,
            container,
            strata::mounts::ContainerMountOptions {
                suid: *suid,
                dev: *dev,
            },
        ),
        Command::Umount { container } => containers::umount(cli, container),
        Command::Diff { container } => layers::diff(cli, container),
        Command::Commit {
            container,
            reference,
        } => layers::commit(cli, container, reference),
        Command::Export { container, output } => layers::export(cli, container, output),
        Command::Rm { force, containers }
        | Command::Container(ContainerCommand::Rm { force, containers }) => {
            containers::remove(cli, containers, *force)
        }
        Command::Serve { socket } => serve::serve(cli, socket),
        Command::Snapshots { view, quiet } => {
            snapshots::snapshots(cli, view.unwrap_or_default(), *quiet)
        }
        Command::Bench {
            drivers,
            quick,
            out,
            work_dir,
            containerd,
            direct,
            only,
        } => {
            if *containerd {
                bench::run_containerd(
                    drivers,
                    *quick,
                    *direct,
                    out,
                    work_dir.as_deref(),
                    &cli.root,
                )
            } else {
                bench::run(drivers, *quick, out, only, work_dir.as_deref(), &cli.root)
            }
        }
        Command::Check {
            repair,
            data,
            prune,
            verbose,
        } => check::check(
            cli,
            CheckOptions {
                repair: *repair,
                data: *data,
                prune: *prune,
            },
            *verbose,
        ),
    }
}
