//! The command line: the Go tool's flags and commands, parsed with clap.
//!
//! `containers-storage` parses with `mflag`: global flags before and after the command,
//! `--long` and `-s` spellings, `--flag=value`, booleans that also take `=true`/`=false`,
//! hyphen-less command aliases (`createlayer`, `umount`, ...). The clap definitions below
//! reproduce that surface; [`crate::usage`] renders help in the Go tool's format and
//! [`crate::main`] maps clap's errors to the Go tool's messages and exit codes.
//!
//! Repeats follow mflag: a flag given twice keeps its last value (`--graph A --graph B`,
//! `--debug --debug=false`, `--json --json=false`), before and after the command alike; list
//! flags (`--storage-opt`, `--name`) collect every occurrence, and `--storage-opt` given both
//! before and after the command keeps both groups, in order ([`parse`]).
//! Differences kept on purpose: flags may also follow positional arguments (mflag stops at
//! the first positional and takes later `--json` as a layer name). Quotes in `--flag="value"`
//! and groups of one-letter flags (`-nj NAME`) are mflag's too: [`crate::mflag`] rewrites
//! them before clap parses.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Parses a Go boolean (`strconv.ParseBool`): `1 t T TRUE true True 0 f F FALSE false False`.
pub fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {value:?}: invalid syntax"
        )),
    }
}

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "layerstore",
    about = "Manage a container layer store (a drop-in for the layer commands of containers-storage)",
    disable_help_flag = true,
    disable_help_subcommand = true,
    disable_version_flag = true,
    allow_external_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalOptions,
    /// The command; `None` prints the usage.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The Go tool's global flags (its `makeFlags`), accepted before and after the command.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalOptions {
    /// `--run`/`-R`: the run root.
    #[arg(
        short = 'R',
        long = "run",
        global = true,
        allow_hyphen_values = true,
        help = "Root of the runtime state tree"
    )]
    pub run_root: Option<PathBuf>,
    /// `--graph`/`-g`: the graph root.
    #[arg(
        short = 'g',
        long = "graph",
        global = true,
        allow_hyphen_values = true,
        help = "Root of the storage tree"
    )]
    pub graph_root: Option<PathBuf>,
    /// `--storage-driver`/`-s`: the driver.
    #[arg(
        short = 's',
        long = "storage-driver",
        global = true,
        allow_hyphen_values = true,
        help = "Storage driver to use ($STORAGE_DRIVER)"
    )]
    pub storage_driver: Option<String>,
    /// `--storage-opt` (repeatable): driver options. Not a clap `global` argument: clap would
    /// let the occurrences after the command replace those before it, where mflag appends
    /// them; [`command`] gives every command its own `--storage-opt` and [`parse`] joins the two.
    #[arg(long = "storage-opt", action = ArgAction::Append, allow_hyphen_values = true, help = "Set storage driver options ($STORAGE_OPTS)")]
    pub storage_opts: Vec<String>,
    /// `--debug`/`-D`: debugging output on stderr.
    #[arg(short = 'D', long = "debug", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Print debugging information")]
    pub debug: Option<bool>,
    /// `--json-errors` (not in the Go tool): errors on stderr as one JSON object per line,
    /// `{"error":"..."}`.
    #[arg(
        long = "json-errors",
        global = true,
        help = "Print errors as JSON objects on stderr (layerstore only)"
    )]
    pub json_errors: bool,
    /// `--help`/`-h`: print the usage of the command.
    #[arg(short = 'h', long = "help", global = true, hide = true)]
    pub help: bool,
}

impl GlobalOptions {
    /// Whether any of the four store flags was given (then the Go tool ignores storage.conf's
    /// defaults and the environment for the driver and its options).
    pub fn any_store_flag(&self) -> bool {
        self.run_root.is_some()
            || self.graph_root.is_some()
            || self.storage_driver.is_some()
            || !self.storage_opts.is_empty()
    }

    /// Whether `--debug` is on.
    pub fn debug(&self) -> bool {
        self.debug.unwrap_or(false)
    }
}

/// `--json`/`-j`: prefer JSON output.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonFlag {
    /// The flag's value.
    #[arg(short = 'j', long = "json", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Prefer JSON output")]
    pub json: Option<bool>,
}

impl JsonFlag {
    /// Whether JSON output was asked for.
    pub fn on(self) -> bool {
        self.json.unwrap_or(false)
    }
}

/// Positional arguments (layer IDs or names, keys, ...).
#[derive(Debug, Clone, Default, Args)]
pub struct Positional {
    /// The arguments, as given.
    #[arg(value_name = "ARG")]
    pub args: Vec<String>,
}

/// Flags of `create-layer` and `import-layer`.
#[derive(Debug, Clone, Default, Args)]
pub struct CreateFlags {
    /// `--id`/`-i`.
    #[arg(
        short = 'i',
        long = "id",
        allow_hyphen_values = true,
        help = "Layer ID"
    )]
    pub id: Option<String>,
    /// `--name`/`-n` (repeatable).
    #[arg(short = 'n', long = "name", action = ArgAction::Append, allow_hyphen_values = true, help = "Layer name")]
    pub names: Vec<String>,
    /// `--label`/`-l`.
    #[arg(
        short = 'l',
        long = "label",
        allow_hyphen_values = true,
        help = "Mount Label"
    )]
    pub label: Option<String>,
    /// `--readonly`/`-r`.
    #[arg(short = 'r', long = "readonly", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Mark as read-only")]
    pub readonly: Option<bool>,
    /// `--hostuidmap`.
    #[arg(long = "hostuidmap", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Force host UID map")]
    pub host_uid_map: Option<bool>,
    /// `--hostgidmap`.
    #[arg(long = "hostgidmap", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Force host GID map")]
    pub host_gid_map: Option<bool>,
    /// `--uidmap` (`ctr:host:size[,...]`).
    #[arg(long = "uidmap", allow_hyphen_values = true, help = "UID map")]
    pub uid_map: Option<String>,
    /// `--gidmap` (`ctr:host:size[,...]`).
    #[arg(long = "gidmap", allow_hyphen_values = true, help = "GID map")]
    pub gid_map: Option<String>,
    /// `--subuidmap USER`.
    #[arg(
        long = "subuidmap",
        allow_hyphen_values = true,
        help = "subuid UID map for a user"
    )]
    pub sub_uid_map: Option<String>,
    /// `--subgidmap GROUP`.
    #[arg(
        long = "subgidmap",
        allow_hyphen_values = true,
        help = "subgid GID map for a group"
    )]
    pub sub_gid_map: Option<String>,
    /// `--json`.
    #[command(flatten)]
    pub json: JsonFlag,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// `layers`: list layers.
    #[command(about = "List layers")]
    Layers {
        /// `--tree`/`-t`.
        #[arg(short = 't', long = "tree", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Use a tree")]
        tree: Option<bool>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments (ignored, as by the Go tool).
        #[command(flatten)]
        pos: Positional,
    },
    /// `layer`: examine layers.
    #[command(about = "Examine a layer")]
    Layer {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `create-layer`: create a layer.
    #[command(
        name = "create-layer",
        alias = "createlayer",
        about = "Create a new layer"
    )]
    CreateLayer {
        /// Flags.
        #[command(flatten)]
        flags: CreateFlags,
        /// The parent.
        #[command(flatten)]
        pos: Positional,
    },
    /// `import-layer`: create a layer from a diff.
    #[command(
        name = "import-layer",
        alias = "importlayer",
        about = "Import a new layer"
    )]
    ImportLayer {
        /// `--file`/`-f`.
        #[arg(
            short = 'f',
            long = "file",
            allow_hyphen_values = true,
            help = "Read from file instead of stdin"
        )]
        file: Option<PathBuf>,
        /// Flags.
        #[command(flatten)]
        flags: CreateFlags,
        /// The parent.
        #[command(flatten)]
        pos: Positional,
    },
    /// `delete-layer`: delete layers, with safety checks.
    #[command(
        name = "delete-layer",
        alias = "deletelayer",
        about = "Delete a layer, with safety checks"
    )]
    DeleteLayer {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `delete`: delete layers, with no safety checks.
    #[command(about = "Delete a layer or image or container, with no safety checks")]
    Delete {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `exists`: check that layers exist.
    #[command(about = "Check if a layer or image or container exists")]
    Exists {
        /// `--quiet`/`-q`.
        #[arg(short = 'q', long = "quiet", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Don't print names")]
        quiet: Option<bool>,
        /// `--layer`/`-l`.
        #[arg(short = 'l', long = "layer", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Only succeed if the match is a layer")]
        layer: Option<bool>,
        /// `--image`/`-i`.
        #[arg(short = 'i', long = "image", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Only succeed if the match is an image")]
        image: Option<bool>,
        /// `--container`/`-c`.
        #[arg(short = 'c', long = "container", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Only succeed if the match is a container")]
        container: Option<bool>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `applydiff`: apply a diff to a layer.
    #[command(
        name = "applydiff",
        alias = "apply-diff",
        about = "Apply a diff to a layer"
    )]
    ApplyDiff {
        /// `--file`/`-f`.
        #[arg(
            short = 'f',
            long = "file",
            allow_hyphen_values = true,
            help = "Read from file instead of stdin"
        )]
        file: Option<PathBuf>,
        /// The layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `diff`: write a layer's diff.
    #[command(about = "Compare two layers")]
    Diff {
        /// `--file`/`-f`.
        #[arg(
            short = 'f',
            long = "file",
            allow_hyphen_values = true,
            help = "Write to file instead of stdout"
        )]
        file: Option<PathBuf>,
        /// `--uncompressed`/`-u`.
        #[arg(short = 'u', long = "uncompressed", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Use no compression")]
        uncompressed: Option<bool>,
        /// `--gzip`/`-c`.
        #[arg(short = 'c', long = "gzip", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Compress using gzip")]
        gzip: Option<bool>,
        /// `--bzip2`/`--bz2`/`-b`.
        #[arg(short = 'b', long = "bzip2", visible_alias = "bz2", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Compress using bzip2 (not currently supported)")]
        bzip2: Option<bool>,
        /// `--xz`/`-x`.
        #[arg(short = 'x', long = "xz", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Compress using xz (not currently supported)")]
        xz: Option<bool>,
        /// The layer and an optional reference layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `diffsize`: the size of a layer's diff.
    #[command(name = "diffsize", alias = "diff-size", about = "Compare two layers")]
    DiffSize {
        /// The layer and an optional reference layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `changes`: the changes a layer makes.
    #[command(about = "Compare two layers")]
    Changes {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// The layer and an optional reference layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `mount`: mount layers.
    #[command(about = "Mount a layer or container")]
    Mount {
        /// `--label`/`-l`.
        #[arg(
            short = 'l',
            long = "label",
            allow_hyphen_values = true,
            help = "Mount Label"
        )]
        label: Option<String>,
        /// `--opt`/`-o` (accepted and ignored, as by the Go tool).
        #[arg(
            short = 'o',
            long = "opt",
            allow_hyphen_values = true,
            help = "Mount Options"
        )]
        opt: Option<String>,
        /// `--ro`/`-r` (images only: refused here).
        #[arg(short = 'r', long = "ro", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Mount image readonly")]
        read_only: Option<bool>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `unmount`: unmount layers.
    #[command(alias = "umount", about = "Unmount an image, layer or container")]
    Unmount {
        /// `--force`/`-f`.
        #[arg(short = 'f', long = "force", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Force the umount")]
        force: Option<bool>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers or mount points.
        #[command(flatten)]
        pos: Positional,
    },
    /// `mounted`: whether layers are mounted.
    #[command(about = "Check if a file system is mounted")]
    Mounted {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-names`: a layer's names.
    #[command(
        name = "get-names",
        alias = "getnames",
        about = "Get layer, image, or container name or names"
    )]
    GetNames {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// The layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `add-names`: add names to a layer.
    #[command(
        name = "add-names",
        alias = "addnames",
        about = "Add layer, image, or container name or names"
    )]
    AddNames {
        /// `--name`/`-n` (repeatable).
        #[arg(short = 'n', long = "name", action = ArgAction::Append, allow_hyphen_values = true, help = "New name")]
        names: Vec<String>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// The layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `set-names`: replace a layer's names.
    #[command(
        name = "set-names",
        alias = "setnames",
        about = "Set layer, image, or container name or names"
    )]
    SetNames {
        /// `--name`/`-n` (repeatable).
        #[arg(short = 'n', long = "name", action = ArgAction::Append, allow_hyphen_values = true, help = "New name")]
        names: Vec<String>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// The layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `metadata`: layers' metadata.
    #[command(about = "Retrieve layer, image, or container metadata")]
    Metadata {
        /// `--quiet`/`-q`.
        #[arg(short = 'q', long = "quiet", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Omit names and IDs")]
        quiet: Option<bool>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `set-metadata`: set a layer's metadata.
    #[command(
        name = "set-metadata",
        alias = "setmetadata",
        about = "Set layer, image, or container metadata"
    )]
    SetMetadata {
        /// `--metadata`/`-m`.
        #[arg(
            short = 'm',
            long = "metadata",
            allow_hyphen_values = true,
            help = "Metadata"
        )]
        metadata: Option<String>,
        /// `--metadata-file`/`-f`.
        #[arg(
            short = 'f',
            long = "metadata-file",
            allow_hyphen_values = true,
            help = "Metadata File"
        )]
        metadata_file: Option<PathBuf>,
        /// The layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `list-layer-data`: a layer's big-data keys.
    #[command(
        name = "list-layer-data",
        alias = "listlayerdata",
        about = "List data items that are attached to a layer"
    )]
    ListLayerData {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// The layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-layer-data`: read a big-data item.
    #[command(
        name = "get-layer-data",
        alias = "getlayerdata",
        about = "Get data that is attached to a layer"
    )]
    GetLayerData {
        /// `--file`/`-f`.
        #[arg(
            short = 'f',
            long = "file",
            allow_hyphen_values = true,
            help = "Write data to file"
        )]
        file: Option<PathBuf>,
        /// The layer and the key.
        #[command(flatten)]
        pos: Positional,
    },
    /// `set-layer-data`: write a big-data item.
    #[command(
        name = "set-layer-data",
        alias = "setlayerdata",
        about = "Set data that is attached to a layer"
    )]
    SetLayerData {
        /// `--file`/`-f`.
        #[arg(
            short = 'f',
            long = "file",
            allow_hyphen_values = true,
            help = "Read data from file"
        )]
        file: Option<PathBuf>,
        /// The layer and the key.
        #[command(flatten)]
        pos: Positional,
    },
    /// `layer-parent-owners`: the unmapped owners of a layer's parents.
    #[command(
        name = "layer-parent-owners",
        about = "Compute the set of unmapped parent UIDs and GIDs of the layer"
    )]
    LayerParentOwners {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `status`: the store's driver status.
    #[command(about = "Check on graph driver status")]
    Status {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments (ignored).
        #[command(flatten)]
        pos: Positional,
    },
    /// `wipe`: delete every layer.
    #[command(about = "Wipe all layers, images, and containers")]
    Wipe {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments (ignored).
        #[command(flatten)]
        pos: Positional,
    },
    /// `shutdown`: release the store.
    #[command(about = "Shut down layer storage")]
    Shutdown {
        /// `--force`/`-f`.
        #[arg(short = 'f', long = "force", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Unmount mounted layers first")]
        force: Option<bool>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments (ignored).
        #[command(flatten)]
        pos: Positional,
    },
    /// `version`: version information.
    #[command(about = "Return containers-storage version information")]
    Version {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments (ignored).
        #[command(flatten)]
        pos: Positional,
    },
    /// `check` (Go ≥ 1.47 has one; not 1.43): check the layers and, with `--repair`, repair.
    #[command(about = "Check storage consistency and optionally repair it")]
    Check {
        /// `--repair`/`-r`.
        #[arg(short = 'r', long = "repair", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Delete broken layers and leftovers")]
        repair: Option<bool>,
        /// `--quick`/`-q`.
        #[arg(short = 'q', long = "quick", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Skip rebuilding each layer's diff")]
        quick: Option<bool>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments (none allowed).
        #[command(flatten)]
        pos: Positional,
    },
    /// `completions SHELL` (not in the Go tool): print a shell completion script.
    #[command(about = "Print a shell completion script (bash, zsh, fish, elvish, powershell)")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Option<clap_complete::Shell>,
    },
    /// Any other word: an unknown command, or an image/container command of the Go tool.
    #[command(external_subcommand)]
    External(Vec<String>),
}

/// The ID of each command's own `--storage-opt` (the occurrences after the command word).
const STORAGE_OPT_AFTER_COMMAND: &str = "storage_opts_after_command";

/// The whole command line's clap definition: [`Cli`]'s, with `--storage-opt` added to every
/// command (see [`GlobalOptions::storage_opts`]).
pub fn command() -> clap::Command {
    let after = Arg::new(STORAGE_OPT_AFTER_COMMAND)
        .long("storage-opt")
        .action(ArgAction::Append)
        .allow_hyphen_values(true)
        .value_name("STORAGE_OPTS")
        .help("Set storage driver options ($STORAGE_OPTS)");
    Cli::command().mut_subcommands(|sub| sub.arg(after.clone()))
}

/// Parses a command line as the Go tool's two flag sets do: global flags before the command,
/// then the command's flags, where the global ones may come again.
pub fn parse<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(argv)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.global
        .storage_opts
        .extend(storage_opts_after_command(&matches));
    Ok(cli)
}

fn storage_opts_after_command(matches: &ArgMatches) -> Vec<String> {
    matches
        .subcommand()
        .and_then(|(_, sub)| {
            sub.try_get_many::<String>(STORAGE_OPT_AFTER_COMMAND)
                .ok()
                .flatten()
        })
        .map(|values| values.cloned().collect())
        .unwrap_or_default()
}

/// The Go tool's facts about one command: its usage line, description and argument count.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Canonical name.
    pub name: &'static str,
    /// Text after the command in the usage line.
    pub options_help: &'static str,
    /// One-line description.
    pub about: &'static str,
    /// Fewest positional arguments (0: none needed).
    pub min_args: usize,
    /// Most positional arguments (`None`: unlimited).
    pub max_args: Option<usize>,
}

const fn spec(
    name: &'static str,
    options_help: &'static str,
    about: &'static str,
    min_args: usize,
    max_args: Option<usize>,
) -> CommandSpec {
    CommandSpec {
        name,
        options_help,
        about,
        min_args,
        max_args,
    }
}

/// The layer commands, in the Go tool's listing order (observed from v1.43: minimum and
/// maximum argument counts included).
pub const COMMANDS: &[CommandSpec] = &[
    spec(
        "create-layer",
        "[options [...]] [parentLayerNameOrID]",
        "Create a new layer",
        0,
        Some(1),
    ),
    spec(
        "import-layer",
        "[options [...]] [parentLayerNameOrID]",
        "Import a new layer",
        0,
        Some(1),
    ),
    spec(
        "delete",
        "[LayerOrImageOrContainerNameOrID [...]]",
        "Delete a layer or image or container, with no safety checks",
        1,
        None,
    ),
    spec(
        "delete-layer",
        "[LayerNameOrID [...]]",
        "Delete a layer, with safety checks",
        1,
        None,
    ),
    spec(
        "changes",
        "[options [...]] layerNameOrID [referenceLayerNameOrID]",
        "Compare two layers",
        1,
        Some(2),
    ),
    spec(
        "diffsize",
        "[options [...]] layerNameOrID [referenceLayerNameOrID]",
        "Compare two layers",
        1,
        Some(2),
    ),
    spec(
        "diff",
        "[options [...]] layerNameOrID [referenceLayerNameOrID]",
        "Compare two layers",
        1,
        Some(2),
    ),
    spec(
        "applydiff",
        "[options [...]] layerNameOrID [referenceLayerNameOrID]",
        "Apply a diff to a layer",
        1,
        Some(1),
    ),
    spec(
        "exists",
        "[LayerOrImageOrContainerNameOrID [...]]",
        "Check if a layer or image or container exists",
        1,
        None,
    ),
    spec(
        "layer",
        "[options [...]] layerNameOrID [...]",
        "Examine a layer",
        1,
        None,
    ),
    spec(
        "layer-parent-owners",
        "[options [...]] layerNameOrID [...]",
        "Compute the set of unmapped parent UIDs and GIDs of the layer",
        1,
        None,
    ),
    spec(
        "list-layer-data",
        "[options [...]] layerNameOrID",
        "List data items that are attached to a layer",
        1,
        Some(1),
    ),
    spec(
        "get-layer-data",
        "[options [...]] layerID dataName",
        "Get data that is attached to a layer",
        2,
        None,
    ),
    spec(
        "set-layer-data",
        "[options [...]] layerID dataName",
        "Set data that is attached to a layer",
        2,
        None,
    ),
    spec("layers", "[options [...]]", "List layers", 0, None),
    spec(
        "metadata",
        "[LayerOrImageOrContainerNameOrID [...]]",
        "Retrieve layer, image, or container metadata",
        1,
        None,
    ),
    spec(
        "set-metadata",
        "[options [...]] layerOrImageOrContainerNameOrID",
        "Set layer, image, or container metadata",
        1,
        Some(1),
    ),
    spec(
        "mount",
        "[options [...]] LayerOrContainerNameOrID",
        "Mount a layer or container",
        1,
        None,
    ),
    spec(
        "unmount",
        "LayerOrContainerNameOrID",
        "Unmount an image, layer or container",
        1,
        None,
    ),
    spec(
        "mounted",
        "LayerOrContainerNameOrID",
        "Check if a file system is mounted",
        1,
        None,
    ),
    spec(
        "get-names",
        "[options [...]] imageOrContainerNameOrID",
        "Get layer, image, or container name or names",
        1,
        None,
    ),
    spec(
        "add-names",
        "[options [...]] imageOrContainerNameOrID",
        "Add layer, image, or container name or names",
        1,
        None,
    ),
    spec(
        "set-names",
        "[options [...]] imageOrContainerNameOrID",
        "Set layer, image, or container name or names",
        1,
        None,
    ),
    spec("shutdown", "", "Shut down layer storage", 0, None),
    spec("status", "", "Check on graph driver status", 0, None),
    spec(
        "version",
        "",
        "Return containers-storage version information",
        0,
        None,
    ),
    spec(
        "wipe",
        "",
        "Wipe all layers, images, and containers",
        0,
        None,
    ),
    spec(
        "check",
        "[-r] [-q] [-j]",
        "Check storage consistency and optionally repair it (layers)",
        0,
        Some(0),
    ),
    spec(
        "completions",
        "[bash|zsh|fish|elvish|powershell]",
        "Print a shell completion script (layerstore only)",
        0,
        None,
    ),
];

/// The Go tool's image and container commands: this tool answers them with "not supported".
pub const UNSUPPORTED_COMMANDS: &[&str] = &[
    "container",
    "list-container-data",
    "get-container-data",
    "get-container-data-size",
    "get-container-data-digest",
    "set-container-data",
    "get-container-dir",
    "get-container-run-dir",
    "container-parent-owners",
    "containers",
    "copy",
    "create-image",
    "create-container",
    "delete-image",
    "delete-container",
    "image",
    "list-image-data",
    "get-image-data",
    "get-image-data-size",
    "get-image-data-digest",
    "set-image-data",
    "images",
    "images-by-digest",
    "createimage",
    "createcontainer",
    "deleteimage",
    "deletecontainer",
    "listimagedata",
    "getimagedata",
    "setimagedata",
    "listcontainerdata",
    "getcontainerdata",
    "setcontainerdata",
    "getcontainerdir",
    "getcontainerrundir",
];

/// The spec of a canonical command name.
pub fn command_spec(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| spec.name == name)
}

impl Command {
    /// The canonical name (as in [`COMMANDS`]); `None` for [`Command::External`].
    pub fn name(&self) -> Option<&'static str> {
        Some(match self {
            Command::Layers { .. } => "layers",
            Command::Layer { .. } => "layer",
            Command::CreateLayer { .. } => "create-layer",
            Command::ImportLayer { .. } => "import-layer",
            Command::DeleteLayer { .. } => "delete-layer",
            Command::Delete { .. } => "delete",
            Command::Exists { .. } => "exists",
            Command::ApplyDiff { .. } => "applydiff",
            Command::Diff { .. } => "diff",
            Command::DiffSize { .. } => "diffsize",
            Command::Changes { .. } => "changes",
            Command::Mount { .. } => "mount",
            Command::Unmount { .. } => "unmount",
            Command::Mounted { .. } => "mounted",
            Command::GetNames { .. } => "get-names",
            Command::AddNames { .. } => "add-names",
            Command::SetNames { .. } => "set-names",
            Command::Metadata { .. } => "metadata",
            Command::SetMetadata { .. } => "set-metadata",
            Command::ListLayerData { .. } => "list-layer-data",
            Command::GetLayerData { .. } => "get-layer-data",
            Command::SetLayerData { .. } => "set-layer-data",
            Command::LayerParentOwners { .. } => "layer-parent-owners",
            Command::Status { .. } => "status",
            Command::Wipe { .. } => "wipe",
            Command::Shutdown { .. } => "shutdown",
            Command::Version { .. } => "version",
            Command::Check { .. } => "check",
            Command::Completions { .. } => "completions",
            Command::External(_) => return None,
        })
    }

    /// The positional arguments, for the argument-count check.
    pub fn positional(&self) -> &[String] {
        match self {
            Command::Layers { pos, .. }
            | Command::Layer { pos, .. }
            | Command::CreateLayer { pos, .. }
            | Command::ImportLayer { pos, .. }
            | Command::DeleteLayer { pos, .. }
            | Command::Delete { pos, .. }
            | Command::Exists { pos, .. }
            | Command::ApplyDiff { pos, .. }
            | Command::Diff { pos, .. }
            | Command::DiffSize { pos }
            | Command::Changes { pos, .. }
            | Command::Mount { pos, .. }
            | Command::Unmount { pos, .. }
            | Command::Mounted { pos, .. }
            | Command::GetNames { pos, .. }
            | Command::AddNames { pos, .. }
            | Command::SetNames { pos, .. }
            | Command::Metadata { pos, .. }
            | Command::SetMetadata { pos, .. }
            | Command::ListLayerData { pos, .. }
            | Command::GetLayerData { pos, .. }
            | Command::SetLayerData { pos, .. }
            | Command::LayerParentOwners { pos, .. }
            | Command::Status { pos, .. }
            | Command::Wipe { pos, .. }
            | Command::Shutdown { pos, .. }
            | Command::Version { pos, .. }
            | Command::Check { pos, .. } => &pos.args,
            Command::Completions { .. } | Command::External(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        super::parse(args).expect("parses")
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn global_flags_before_and_after_the_command() {
        let cli = parse(&[
            "cs",
            "-g",
            "/g",
            "layers",
            "--run=/r",
            "-s",
            "vfs",
            "--storage-opt",
            "a=b",
            "--storage-opt=c=d",
        ]);
        assert_eq!(cli.global.graph_root, Some(PathBuf::from("/g")));
        assert_eq!(cli.global.run_root, Some(PathBuf::from("/r")));
        assert_eq!(cli.global.storage_driver.as_deref(), Some("vfs"));
        assert_eq!(cli.global.storage_opts, ["a=b", "c=d"]);
        assert!(cli.global.any_store_flag());
    }

    #[test]
    fn repeats_keep_the_last_value_and_lists_keep_every_one() {
        let cli = parse(&[
            "cs",
            "--debug",
            "-g",
            "/a",
            "--debug=false",
            "--storage-opt",
            "o1",
            "-g",
            "/b",
            "layers",
            "--storage-opt=o2",
            "-R",
            "/r1",
            "--run",
            "/r2",
            "-j",
            "--json=false",
        ]);
        assert_eq!(cli.global.graph_root, Some(PathBuf::from("/b")));
        assert_eq!(cli.global.run_root, Some(PathBuf::from("/r2")));
        assert!(!cli.global.debug());
        assert_eq!(cli.global.storage_opts, ["o1", "o2"]);
        let Some(Command::Layers { json, .. }) = cli.command else {
            panic!("not layers")
        };
        assert!(!json.on());
        let cli = parse(&[
            "cs",
            "create-layer",
            "--id",
            "a",
            "--id",
            "b",
            "-n",
            "x",
            "--name",
            "y",
            "--uidmap",
            "0:1:1",
            "--uidmap",
            "0:2:1",
        ]);
        let Some(Command::CreateLayer { flags, .. }) = cli.command else {
            panic!("not create-layer")
        };
        assert_eq!(flags.id.as_deref(), Some("b"));
        assert_eq!(flags.names, ["x", "y"]);
        assert_eq!(flags.uid_map.as_deref(), Some("0:2:1"));
    }

    #[test]
    fn booleans_take_go_values_and_combine() {
        let cli = parse(&["cs", "layers", "-jt"]);
        let Some(Command::Layers { tree, json, .. }) = cli.command else {
            panic!("not layers")
        };
        assert_eq!((tree, json.on()), (Some(true), true));
        let cli = parse(&["cs", "layers", "--json=false", "--tree=T"]);
        let Some(Command::Layers { tree, json, .. }) = cli.command else {
            panic!("not layers")
        };
        assert_eq!((tree, json.on()), (Some(true), false));
        assert!(super::parse(["cs", "layers", "--json=maybe"]).is_err());
    }

    #[test]
    fn aliases_name_the_same_command() {
        for (alias, name) in [
            ("createlayer", "create-layer"),
            ("umount", "unmount"),
            ("diff-size", "diffsize"),
            ("apply-diff", "applydiff"),
            ("getnames", "get-names"),
            ("setlayerdata", "set-layer-data"),
        ] {
            let cli = parse(&["cs", alias, "x", "y"]);
            assert_eq!(cli.command.and_then(|c| c.name()), Some(name), "{alias}");
        }
    }

    #[test]
    fn unknown_words_are_external() {
        let cli = parse(&["cs", "images", "-j"]);
        assert!(matches!(cli.command, Some(Command::External(ref words)) if words[0] == "images"));
    }

    #[test]
    fn values_may_start_with_a_hyphen() {
        let cli = parse(&["cs", "set-metadata", "-m", "-x-", "layer"]);
        let Some(Command::SetMetadata { metadata, pos, .. }) = cli.command else {
            panic!("not set-metadata")
        };
        assert_eq!(metadata.as_deref(), Some("-x-"));
        assert_eq!(pos.args, ["layer"]);
    }

    #[test]
    fn every_command_has_a_spec() {
        for sub in Cli::command().get_subcommands() {
            assert!(command_spec(sub.get_name()).is_some(), "{}", sub.get_name());
        }
    }

    #[test]
    fn go_bool_accepts_what_strconv_accepts() {
        for word in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(word), Ok(true));
        }
        for word in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(word), Ok(false));
        }
        assert!(parse_go_bool("yes").is_err());
    }
}
