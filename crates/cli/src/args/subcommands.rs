//! The commands' clap definitions: their names, aliases and flags (their descriptions are
//! [`crate::spec`]'s), and what every command shares.

use std::path::PathBuf;

use clap::{ArgAction, Subcommand};

use super::{CreateFlags, JsonFlag, Positional, parse_go_bool};

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// `layers`: list layers.
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
    Layer {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `create-layer`: create a layer.
    #[command(name = "create-layer", alias = "createlayer")]
    CreateLayer {
        /// Flags.
        #[command(flatten)]
        flags: CreateFlags,
        /// The parent.
        #[command(flatten)]
        pos: Positional,
    },
    /// `import-layer`: create a layer from a diff.
    #[command(name = "import-layer", alias = "importlayer")]
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
    #[command(name = "delete-layer", alias = "deletelayer")]
    DeleteLayer {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `delete`: delete layers, with no safety checks.
    Delete {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `exists`: check that layers exist.
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
    #[command(name = "applydiff", alias = "apply-diff")]
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
    #[command(name = "diffsize", alias = "diff-size")]
    DiffSize {
        /// The layer and an optional reference layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `changes`: the changes a layer makes.
    Changes {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// The layer and an optional reference layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `mount`: mount layers.
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
    #[command(alias = "umount")]
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
    Mounted {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-names`: a layer's names.
    #[command(name = "get-names", alias = "getnames")]
    GetNames {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// The layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `add-names`: add names to a layer.
    #[command(name = "add-names", alias = "addnames")]
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
    #[command(name = "set-names", alias = "setnames")]
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
    #[command(name = "set-metadata", alias = "setmetadata")]
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
    #[command(name = "list-layer-data", alias = "listlayerdata")]
    ListLayerData {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// The layer.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-layer-data`: read a big-data item.
    #[command(name = "get-layer-data", alias = "getlayerdata")]
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
    #[command(name = "set-layer-data", alias = "setlayerdata")]
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
    #[command(name = "layer-parent-owners")]
    LayerParentOwners {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Layers.
        #[command(flatten)]
        pos: Positional,
    },
    /// `status`: the store's driver status.
    Status {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments (ignored).
        #[command(flatten)]
        pos: Positional,
    },
    /// `wipe`: delete every layer.
    Wipe {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments (ignored).
        #[command(flatten)]
        pos: Positional,
    },
    /// `shutdown`: release the store.
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
    Version {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments (ignored).
        #[command(flatten)]
        pos: Positional,
    },
    /// `check` (Go ≥ 1.47 has one; not 1.43): check the layers and, with `--repair`, repair.
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
    /// `pull SOURCE [NAME]` (not in the Go tool): pull an image into the store.
    Pull {
        /// Registry and transport flags.
        #[command(flatten)]
        flags: crate::commands::pull::PullFlags,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `push IMAGE DEST` (not in the Go tool): push an image of the store.
    Push {
        /// Registry and transport flags.
        #[command(flatten)]
        flags: crate::commands::pull::PullFlags,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `completions SHELL` (not in the Go tool): print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Option<clap_complete::Shell>,
    },
    /// Any other word: an unknown command, or an image/container command of the Go tool.
    #[command(external_subcommand)]
    External(Vec<String>),
}

impl Command {
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
            | Command::Check { pos, .. }
            | Command::Pull { pos, .. }
            | Command::Push { pos, .. } => &pos.args,
            Command::Completions { .. } | Command::External(_) => &[],
        }
    }
}
