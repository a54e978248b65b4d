//! The Go tool's facts about its commands (usage line, description, argument counts), in its
//! listing order: the one table of them. The clap definitions of [`crate::args`] take each
//! command's description from here, and a parsed command line carries its command's entry.

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

/// Every command, in the Go tool's listing order (observed from v1.43: minimum and maximum
/// argument counts included), then this tool's own.
pub const COMMANDS: &[CommandSpec] = &[
    spec(
        "container",
        "[options [...]] containerNameOrID [...]",
        "Examine a container",
        1,
        None,
    ),
    spec(
        "list-container-data",
        "[options [...]] containerNameOrID",
        "List data items that are attached to an container",
        1,
        Some(1),
    ),
    spec(
        "get-container-data",
        "[options [...]] containerNameOrID dataName",
        "Get data that is attached to an container",
        2,
        None,
    ),
    spec(
        "get-container-data-size",
        "[options [...]] containerNameOrID dataName",
        "Get size of data that is attached to an container",
        2,
        None,
    ),
    spec(
        "get-container-data-digest",
        "[options [...]] containerNameOrID dataName",
        "Get digest of data that is attached to an container",
        2,
        None,
    ),
    spec(
        "set-container-data",
        "[options [...]] containerNameOrID dataName",
        "Set data that is attached to an container",
        2,
        None,
    ),
    spec(
        "get-container-dir",
        "[options [...]] containerNameOrID",
        "Find the container's associated data directory",
        1,
        None,
    ),
    spec(
        "get-container-run-dir",
        "[options [...]] containerNameOrID",
        "Find the container's associated runtime directory",
        1,
        None,
    ),
    spec(
        "container-parent-owners",
        "[options [...]] containerNameOrID [...]",
        "Compute the set of unmapped parent UIDs and GIDs of the container",
        1,
        None,
    ),
    spec("containers", "[options [...]]", "List containers", 0, None),
    spec(
        "copy",
        "[options [...]] [sourceLayerNameOrID:]/path [...] targetLayerNameOrID:/path",
        "Copy files or directories into a layer, possibly from another layer",
        2,
        None,
    ),
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
        "create-image",
        "[options [...]] topLayerNameOrID",
        "Create a new image using layers",
        0,
        Some(1),
    ),
    spec(
        "create-container",
        "[options [...]] parentImageNameOrID",
        "Create a new container from an image",
        1,
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
        "delete-image",
        "[ImageNameOrID [...]]",
        "Delete an image, with safety checks",
        1,
        None,
    ),
    spec(
        "delete-container",
        "[ContainerNameOrID [...]]",
        "Delete a container, with safety checks",
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
        "image",
        "[options [...]] imageNameOrID [...]",
        "Examine an image",
        1,
        None,
    ),
    spec(
        "list-image-data",
        "[options [...]] imageNameOrID",
        "List data items that are attached to an image",
        1,
        Some(1),
    ),
    spec(
        "get-image-data",
        "[options [...]] imageNameOrID dataName",
        "Get data that is attached to an image",
        2,
        None,
    ),
    spec(
        "get-image-data-size",
        "[options [...]] imageNameOrID dataName",
        "Get size of data that is attached to an image",
        2,
        None,
    ),
    spec(
        "get-image-data-digest",
        "[options [...]] imageNameOrID dataName",
        "Get digest of data that is attached to an image",
        2,
        None,
    ),
    spec(
        "set-image-data",
        "[options [...]] imageNameOrID dataName",
        "Set data that is attached to an image (with sometimes wrong digest)",
        2,
        None,
    ),
    spec("images", "[options [...]]", "List images", 0, None),
    spec(
        "images-by-digest",
        "[options [...]] DIGEST",
        "List images by digest",
        1,
        Some(1),
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
        "[-r [-f]] [-q] [-j]",
        "Check storage consistency and optionally repair it (layers, images, containers)",
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
    spec(
        "pull",
        "[options [...]] SOURCE [NAME]",
        "Pull an image into the store (oci:, oci-archive:, docker-archive:, docker://)",
        1,
        Some(2),
    ),
    spec(
        "push",
        "[options [...]] IMAGE DEST",
        "Push an image of the store (oci:, oci-archive:, docker://)",
        2,
        Some(2),
    ),
];

/// The spec of a canonical command name.
pub fn command_spec(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| spec.name == name)
}
