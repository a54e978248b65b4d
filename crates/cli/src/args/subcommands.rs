//! The commands' clap definitions: their names, aliases and flags (their descriptions are
//! [`crate::spec`]'s), and what every command shares.

use std::path::PathBuf;

use clap::{ArgAction, Subcommand};

use super::{CreateFlags, JsonFlag, MapFlags, Positional, parse_go_bool};

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
        /// `--opt`/`-o`: comma-separated mount options (the Go tool ignores them; here they
        /// reach the driver, and `ro` is a read-only mount or an error).
        #[arg(
            short = 'o',
            long = "opt",
            allow_hyphen_values = true,
            help = "Mount Options"
        )]
        opt: Option<String>,
        /// `--ro`/`-r`: mount images read-only (their top layer).
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
    /// `container`: examine containers.
    #[command(name = "container")]
    Container {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `list-container-data`: a container's big-data keys.
    #[command(name = "list-container-data", alias = "listcontainerdata")]
    ListContainerData {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-container-data`: read a container's big-data item.
    #[command(name = "get-container-data", alias = "getcontainerdata")]
    GetContainerData {
        /// `--file`.
        #[arg(
            short = 'f',
            long = "file",
            allow_hyphen_values = true,
            help = "Write data to file"
        )]
        file: Option<PathBuf>,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-container-data-size`: the size of a container's big-data item.
    #[command(name = "get-container-data-size", alias = "getcontainerdatasize")]
    GetContainerDataSize {
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-container-data-digest`: the digest of a container's big-data item.
    #[command(name = "get-container-data-digest", alias = "getcontainerdatadigest")]
    GetContainerDataDigest {
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `set-container-data`: write a container's big-data item.
    #[command(name = "set-container-data", alias = "setcontainerdata")]
    SetContainerData {
        /// `--file`.
        #[arg(
            short = 'f',
            long = "file",
            allow_hyphen_values = true,
            help = "Read data from file"
        )]
        file: Option<PathBuf>,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-container-dir`: a container's data directory.
    #[command(name = "get-container-dir", alias = "getcontainerdir")]
    GetContainerDir {
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-container-run-dir`: a container's run directory.
    #[command(name = "get-container-run-dir", alias = "getcontainerrundir")]
    GetContainerRunDir {
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `container-parent-owners`: the unmapped owners of a container layer's parents.
    #[command(name = "container-parent-owners")]
    ContainerParentOwners {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `containers`: list containers.
    #[command(name = "containers")]
    Containers {
        /// `--format`.
        #[arg(
            long = "format",
            allow_hyphen_values = true,
            help = "Output format: table (on a terminal, the default there) or go (the Go tool's; the default otherwise) (layerstore only)"
        )]
        format: Option<String>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `copy`: copy files into a layer.
    #[command(name = "copy")]
    Copy {
        /// `--chown`.
        #[arg(
            long = "chown",
            allow_hyphen_values = true,
            help = "Set owner on new copies"
        )]
        chown: Option<String>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `create-image`: create an image.
    #[command(name = "create-image", alias = "createimage")]
    CreateImage {
        /// `--name`/`-n` (repeatable).
        #[arg(short = 'n', long = "name", action = ArgAction::Append, allow_hyphen_values = true, help = "Image name")]
        names: Vec<String>,
        /// `--id`.
        #[arg(
            short = 'i',
            long = "id",
            allow_hyphen_values = true,
            help = "Image ID"
        )]
        id: Option<String>,
        /// `--digest`.
        #[arg(
            short = 'd',
            long = "digest",
            allow_hyphen_values = true,
            help = "Image Digest"
        )]
        digest: Option<String>,
        /// `--metadata`.
        #[arg(
            short = 'm',
            long = "metadata",
            allow_hyphen_values = true,
            help = "Metadata"
        )]
        metadata: Option<String>,
        /// `--metadata-file`.
        #[arg(
            short = 'f',
            long = "metadata-file",
            allow_hyphen_values = true,
            help = "Metadata File"
        )]
        metadata_file: Option<PathBuf>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `create-container`: create a container from an image.
    #[command(name = "create-container", alias = "createcontainer")]
    CreateContainer {
        /// `--name`/`-n` (repeatable).
        #[arg(short = 'n', long = "name", action = ArgAction::Append, allow_hyphen_values = true, help = "Container name")]
        names: Vec<String>,
        /// `--volatile`.
        #[arg(long = "volatile", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Mark as volatile")]
        volatile: Option<bool>,
        /// `--id`.
        #[arg(
            short = 'i',
            long = "id",
            allow_hyphen_values = true,
            help = "Container ID"
        )]
        id: Option<String>,
        /// `--metadata`.
        #[arg(
            short = 'm',
            long = "metadata",
            allow_hyphen_values = true,
            help = "Metadata"
        )]
        metadata: Option<String>,
        /// `--metadata-file`.
        #[arg(
            short = 'f',
            long = "metadata-file",
            allow_hyphen_values = true,
            help = "Metadata File"
        )]
        metadata_file: Option<PathBuf>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// The ID-mapping flags.
        #[command(flatten)]
        maps: MapFlags,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `delete-image`: delete images, with safety checks.
    #[command(name = "delete-image", alias = "deleteimage")]
    DeleteImage {
        /// `--test`.
        #[arg(short = 't', long = "test", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Only test removal")]
        test: Option<bool>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `delete-container`: delete containers, with safety checks.
    #[command(name = "delete-container", alias = "deletecontainer")]
    DeleteContainer {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `image`: examine images.
    #[command(name = "image")]
    Image {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `list-image-data`: an image's big-data keys.
    #[command(name = "list-image-data", alias = "listimagedata")]
    ListImageData {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-image-data`: read an image's big-data item.
    #[command(name = "get-image-data", alias = "getimagedata")]
    GetImageData {
        /// `--file`.
        #[arg(
            short = 'f',
            long = "file",
            allow_hyphen_values = true,
            help = "Write data to file"
        )]
        file: Option<PathBuf>,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-image-data-size`: the size of an image's big-data item.
    #[command(name = "get-image-data-size", alias = "getimagedatasize")]
    GetImageDataSize {
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `get-image-data-digest`: the digest of an image's big-data item.
    #[command(name = "get-image-data-digest", alias = "getimagedatadigest")]
    GetImageDataDigest {
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `set-image-data`: write an image's big-data item.
    #[command(name = "set-image-data", alias = "setimagedata")]
    SetImageData {
        /// `--file`.
        #[arg(
            short = 'f',
            long = "file",
            allow_hyphen_values = true,
            help = "Read data from file"
        )]
        file: Option<PathBuf>,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `images`: list images.
    #[command(name = "images")]
    Images {
        /// `--quiet`.
        #[arg(short = 'q', long = "quiet", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Only print IDs")]
        quiet: Option<bool>,
        /// `--format`.
        #[arg(
            long = "format",
            allow_hyphen_values = true,
            help = "Output format: table (on a terminal, the default there) or go (the Go tool's; the default otherwise) (layerstore only)"
        )]
        format: Option<String>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `images-by-digest`: list images by digest.
    #[command(name = "images-by-digest")]
    ImagesByDigest {
        /// `--quiet`.
        #[arg(short = 'q', long = "quiet", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Only print IDs")]
        quiet: Option<bool>,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Arguments.
        #[command(flatten)]
        pos: Positional,
    },
    /// `check` (Go ≥ 1.47 has one; not 1.43): check layers, images and containers and, with
    /// `--repair`, repair.
    Check {
        /// `--repair`/`-r`.
        #[arg(short = 'r', long = "repair", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Remove damaged images and layers (never a layer an image or container keeps) and leftovers")]
        repair: Option<bool>,
        /// `--force`/`-f` (Go's `check -f`).
        #[arg(short = 'f', long = "force", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "With --repair, remove damaged containers too")]
        force: Option<bool>,
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
    /// Any other word: an unknown command.
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
            | Command::Container { pos, .. }
            | Command::ListContainerData { pos, .. }
            | Command::GetContainerData { pos, .. }
            | Command::GetContainerDataSize { pos, .. }
            | Command::GetContainerDataDigest { pos, .. }
            | Command::SetContainerData { pos, .. }
            | Command::GetContainerDir { pos, .. }
            | Command::GetContainerRunDir { pos, .. }
            | Command::ContainerParentOwners { pos, .. }
            | Command::Containers { pos, .. }
            | Command::Copy { pos, .. }
            | Command::CreateImage { pos, .. }
            | Command::CreateContainer { pos, .. }
            | Command::DeleteImage { pos, .. }
            | Command::DeleteContainer { pos, .. }
            | Command::Image { pos, .. }
            | Command::ListImageData { pos, .. }
            | Command::GetImageData { pos, .. }
            | Command::GetImageDataSize { pos, .. }
            | Command::GetImageDataDigest { pos, .. }
            | Command::SetImageData { pos, .. }
            | Command::Images { pos, .. }
            | Command::ImagesByDigest { pos, .. }
            | Command::Pull { pos, .. }
            | Command::Push { pos, .. } => &pos.args,
            Command::Completions { .. } | Command::External(_) => &[],
        }
    }
}
