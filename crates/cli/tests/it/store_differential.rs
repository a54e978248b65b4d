//! Differential test of the image, container and cross-kind commands: one script runs against
//! Go's `containers-storage` 1.43 and against `layerstore`, each on its own fresh store, on vfs
//! and on overlay; stdout, stderr and exit code of every command line must agree once IDs,
//! paths and timestamps are normalised (the machinery is `cli_differential`'s).
//!
//! The same script first runs against the Go tool twice: that proves the normalisation removes
//! everything that changes from run to run, so a difference against ours is ours.
//!
//! Left out on purpose: text output of `delete*` and `exists` for several arguments at once (Go
//! prints them in map order; `-j` forms with sorted keys are in), and the deliberate
//! deviations listed in [`DELIBERATE`], each with its reason.

use std::path::{Path, PathBuf};

use layerstore_testsupport::{Capability, go_fixtures, go_tool, require_or_skip};

use crate::cli_differential::{
    Outcome, Step, assert_agree, binary, describe, differences_between, raw, step, unordered,
    with_stdin,
};
use crate::suite::sha256_digest;

/// The base layer (basic.tar).
const LAYER_BASE: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
/// The top layer (child-whiteouts.tar on the base layer).
const LAYER_TOP: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";
/// A layer no image uses.
const LAYER_FREE: &str = "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c";
/// `img1` on the top layer.
const IMAGE_1: &str = "1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a";
/// `img2` on the base layer.
const IMAGE_2: &str = "1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b";
/// An image without layers.
const IMAGE_EMPTY: &str = "1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c";
/// An image created with a digest.
const IMAGE_DIGESTED: &str = "1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d";
/// Two images sharing the prefix `1e1e`, for ambiguity.
const IMAGE_PREFIX_A: &str = "1e1e0000000000000000000000000000000000000000000000000000000000aa";
const IMAGE_PREFIX_B: &str = "1e1e0000000000000000000000000000000000000000000000000000000000bb";
/// Containers.
const CONTAINER_1: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";
const CONTAINER_2: &str = "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b";
const CONTAINER_EMPTY: &str = "2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c";
/// A container with ID mappings, on its own image (last in the script).
const CONTAINER_MAPPED: &str = "2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d";
const IMAGE_MAPPED: &str = "1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f";
/// A layer, an image and a container all named `shared`.
const LAYER_SHARED: &str = "3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a";
const IMAGE_SHARED: &str = "3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b3b";
const CONTAINER_SHARED: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

/// The layer and image of the read-only additional image store.
const LAYER_RO: &str = "4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a";
const IMAGE_RO: &str = "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b";
const CONTAINER_RO: &str = "4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c";

/// Differences from the Go tool that are deliberate (store doc §7.2): the command line after the
/// store flags, and why. Each is still run, and the test checks that it still differs (else the
/// entry is stale and must go).
const DELIBERATE: &[(&str, &str)] = &[
    (
        "set-image-data -f /dev/null 1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c empty/",
        "§7.2.8: Go stores key `empty/` in the file of key `empty`; layerstore refuses the key",
    ),
    (
        "list-image-data 1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c",
        "§7.2.8: so the refused key `empty/` is not listed",
    ),
    (
        "set-container-data -f /dev/null dup userdata",
        "§7.2.8: Go writes key `userdata` over the container's userdata directory; layerstore \
         refuses the key",
    ),
    (
        "get-container-dir dup",
        "§7.2.8: so the userdata directory is still there (Go: `mkdir …: not a directory`)",
    ),
    (
        "image copyname",
        "§7.2.5: renaming a read-only image copies it up with all its names and big data (HEAD); \
         Go 1.43 drops the first name and the big data",
    ),
    (
        "list-image-data copyname",
        "§7.2.5: the copy keeps its big data",
    ),
    (
        "get-names -j 4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b",
        "§7.2.5: the copy keeps its first name",
    ),
];

/// Differences on overlay only, as [`DELIBERATE`]: Go 1.43 gives a container with ID mappings
/// ID-mapped mounts where the kernel has them and makes no copy of its image's top layer;
/// layerstore makes the chowned copy on every kernel, as Go does without them (overlay crate
/// doc, *Differences from Go 1.43*).
const DELIBERATE_ON_OVERLAY: &[(&str, &str)] = &[
    (
        "container-parent-owners mapped-ctr",
        "Go's container layer records no mappings (the mount shifts), so it has no parent \
         owners to look for; ours records them and needs the layer mounted, as Go on vfs",
    ),
    (
        "image mapped-img",
        "ours lists the mapped copy as a second `Top Layer:` and counts it in the size",
    ),
    (
        "delete-image mapped-img",
        "ours deletes the mapped copy too, and says so",
    ),
];

/// The deliberate differences on `driver`.
fn deliberate(driver: &str) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    let overlay: &[(&str, &str)] = if driver == "overlay" {
        DELIBERATE_ON_OVERLAY
    } else {
        &[]
    };
    DELIBERATE.iter().chain(overlay)
}

/// Whether the mismatch description `mismatch` is of the command line `line` (after any store
/// flags of a raw step).
fn is_of(mismatch: &str, line: &str) -> bool {
    let first = mismatch.lines().next().unwrap_or_default();
    first == format!("$ {line}") || first.ends_with(&format!(" {line}"))
}

/// `mismatches` without the deliberate ones; panics if a deliberate difference of a line that
/// `steps` runs has gone.
fn without_deliberate(mismatches: Vec<String>, steps: &[Step], driver: &str) -> Vec<String> {
    for (line, reason) in deliberate(driver) {
        let runs = steps.iter().any(|step| {
            let text = describe(step);
            text == *line || text.ends_with(&format!(" {line}"))
        });
        assert!(
            !runs || mismatches.iter().any(|m| is_of(m, line)),
            "{driver}: `{line}` now agrees with the Go tool ({reason}): drop it from DELIBERATE"
        );
    }
    mismatches
        .into_iter()
        .filter(|m| !deliberate(driver).any(|(line, _)| is_of(m, line)))
        .collect()
}

/// `sha256:<hex>` of a fixture tarball.
fn tar_digest(name: &str) -> String {
    let bytes = std::fs::read(go_fixtures().join("tars").join(name)).expect("fixture tarball");
    sha256_digest(&bytes)
}

/// The base layer and the top layer on it, imported from the fixtures' tarballs.
fn import_base_and_top() -> [Step; 2] {
    [
        step(&[
            "import-layer",
            "--id",
            LAYER_BASE,
            "-f",
            "{TARS}/basic.tar",
            "-n",
            "base-layer",
        ]),
        step(&[
            "import-layer",
            "--id",
            LAYER_TOP,
            "-f",
            "{TARS}/child-whiteouts.tar",
            "-n",
            "top-layer",
            LAYER_BASE,
        ]),
    ]
}

/// The script: every image, container and cross-kind command, in success and failure.
fn script() -> Vec<Step> {
    let basic_digest = tar_digest("basic.tar");
    let other_digest = tar_digest("child-whiteouts.tar");
    let s = |args: &[&str]| step(args);
    let [import_base, import_top] = import_base_and_top();
    let [import_base_again, import_top_again] = import_base_and_top();
    vec![
        // An empty store.
        s(&["images"]),
        s(&["images", "-j"]),
        s(&["images", "-q"]),
        s(&["containers"]),
        s(&["containers", "-j"]),
        // Layers for the images.
        import_base,
        import_top,
        s(&["create-layer", "--id", LAYER_FREE, "-n", "free-layer"]),
        // copy: into a layer, from the host or from another layer (by ID or name).
        s(&[
            "copy",
            &format!("{LAYER_BASE}:/etc/passwd"),
            &format!("{LAYER_FREE}:/copied"),
        ]),
        s(&["copy", "base-layer:/etc", "free-layer:/etc2"]),
        s(&[
            "copy",
            "--chown",
            "5:6",
            "{TARS}/basic.tar",
            &format!("{LAYER_FREE}:/from-host"),
        ]),
        s(&[
            "copy",
            &format!("{LAYER_BASE}:/nonexistent"),
            &format!("{LAYER_FREE}:/x"),
        ]),
        s(&["copy", "{TARS}/basic.tar", "nonexist:/x"]),
        s(&[
            "copy",
            "--chown",
            "x:y",
            "{TARS}/basic.tar",
            &format!("{LAYER_FREE}:/x"),
        ]),
        unordered(s(&["changes", LAYER_FREE])),
        s(&["diffsize", LAYER_FREE]),
        s(&["mounted", LAYER_FREE]),
        // create-image: names, IDs, digests, metadata, failures.
        s(&[
            "create-image",
            "--id",
            IMAGE_1,
            "-n",
            "img1",
            "-n",
            "img1:tag",
            "top-layer",
        ]),
        s(&["create-image", "--id", IMAGE_1, LAYER_BASE]),
        s(&["create-image", "-n", "img1", LAYER_BASE]),
        s(&["create-image", "-n", "orphan", "nonexist"]),
        s(&["create-image", "a", "b"]),
        s(&["create-image", "-f", "/nonexistent/file", LAYER_BASE]),
        s(&[
            "create-image",
            "-j",
            "--id",
            IMAGE_2,
            "-n",
            "img2",
            "-m",
            "image metadata",
            LAYER_BASE,
        ]),
        s(&["createimage", "--id", IMAGE_EMPTY, "-n", "empty-img", ""]),
        s(&[
            "create-image",
            "-i",
            IMAGE_DIGESTED,
            "-d",
            &basic_digest,
            "-m",
            "overridden",
            "-f",
            "/dev/null",
            "-n",
            "digested",
            LAYER_BASE,
        ]),
        s(&["create-image", "--id", IMAGE_PREFIX_A, LAYER_FREE]),
        s(&["create-image", "--id", IMAGE_PREFIX_B, LAYER_FREE]),
        // images, image.
        s(&["images"]),
        s(&["images", "-j"]),
        s(&["images", "-q"]),
        s(&["images", "ignored", "extra"]),
        s(&["image", "img1"]),
        s(&["image", "-j", "img1", IMAGE_EMPTY]),
        s(&["image", "digested"]),
        s(&["image", "img1", "nonexist"]),
        s(&["image", "-j", "nonexist"]),
        s(&["image", "nonexist"]),
        s(&["image", "1e1e"]),
        s(&[
            "image",
            "1e1e0000000000000000000000000000000000000000000000000000000000a",
        ]),
        s(&["image", "1a1a1a"]),
        s(&["image", "empty-img"]),
        s(&["images", "-q", "-j"]),
        s(&["images", "--json=false", "-q"]),
        s(&[
            "create-image",
            "-d",
            "bogus",
            "-n",
            "bad-digest",
            LAYER_BASE,
        ]),
        s(&["create-image", "-d", "sha256:1234", LAYER_BASE]),
        s(&[
            "create-image",
            "-n",
            "twice",
            "-n",
            "twice",
            "-n",
            "img1",
            LAYER_BASE,
        ]),
        s(&["image"]),
        // images-by-digest.
        s(&["images-by-digest", &basic_digest]),
        s(&["images-by-digest", "-j", &basic_digest]),
        s(&["images-by-digest", "-q", &basic_digest]),
        s(&["images-by-digest", &other_digest]),
        s(&["images-by-digest", "-j", &other_digest]),
        s(&["images-by-digest", "not-a-digest"]),
        s(&["images-by-digest", "sha256:1234"]),
        s(&["images-by-digest", "sha256:ABCDEF"]),
        s(&["images-by-digest", "foo:bar"]),
        s(&["images-by-digest", "sha512:abc"]),
        s(&[
            "images-by-digest",
            "sha256:6BCEB9A6EFA4429C91DB8E297A527AF4ADEE7BE24B40F43C145FF105D6042CBA",
        ]),
        s(&["images-by-digest"]),
        s(&["images-by-digest", "a", "b"]),
        // Image big data.
        s(&["list-image-data", "img1"]),
        s(&["list-image-data", "-j", "img1"]),
        s(&[
            "set-image-data",
            "-f",
            "{TARS}/basic.tar",
            "img1",
            "manifest",
        ]),
        with_stdin(
            s(&["set-image-data", "img1", "config/v1"]),
            "{TARS}/child-whiteouts.tar",
        ),
        s(&["set-image-data", "-f", "/dev/null", IMAGE_EMPTY, "empty"]),
        s(&["list-image-data", "img1"]),
        s(&["listimagedata", "-j", "img1"]),
        binary(s(&["get-image-data", "img1", "config/v1"])),
        s(&["get-image-data", "-f", "{TMP}/manifest", "img1", "manifest"]),
        s(&["get-image-data-size", "img1", "manifest"]),
        s(&["get-image-data-digest", "img1", "manifest"]),
        s(&["getimagedatasize", "img1", "config/v1"]),
        s(&["getimagedatadigest", "img1", "config/v1"]),
        s(&["get-image-data", IMAGE_EMPTY, "empty"]),
        s(&["get-image-data-size", IMAGE_EMPTY, "empty"]),
        s(&["get-image-data", "img1", "missing"]),
        s(&["get-image-data-size", "img1", "missing"]),
        s(&["get-image-data-digest", "img1", "missing"]),
        s(&["get-image-data", "nonexist", "manifest"]),
        s(&["get-image-data-size", "nonexist", "manifest"]),
        s(&["get-image-data-digest", "nonexist", "manifest"]),
        s(&["list-image-data", "nonexist"]),
        s(&["set-image-data", "-f", "/dev/null", "img1", ""]),
        s(&["set-image-data", "-f", "/dev/null", "nonexist", "key"]),
        s(&["set-image-data", "-f", "/nonexistent/file", "img1", "key"]),
        s(&["get-image-data", "img1"]),
        s(&["list-image-data"]),
        // The manifest made img1 findable by its digest.
        s(&["images-by-digest", &basic_digest]),
        // A second manifest key adds a second digest; the image's `digest` stays the first.
        s(&[
            "set-image-data",
            "-f",
            "{TARS}/child-whiteouts.tar",
            "img1",
            "manifest-second",
        ]),
        s(&["images-by-digest", "-q", &other_digest]),
        s(&["image", "-j", "img1"]),
        s(&["image", "img1"]),
        s(&["images"]),
        // Image names and metadata.
        s(&["add-names", "-n", "img1-extra", "img1"]),
        s(&["get-names", "img1"]),
        s(&["get-names", "-j", IMAGE_1]),
        s(&["set-names", "-n", "moved", "-n", "img1", "img2"]),
        s(&["get-names", "-j", IMAGE_1]),
        s(&["get-names", "-j", IMAGE_2]),
        s(&["add-names", "-j", "-n", "img1-extra", "empty-img"]),
        s(&["set-names", "-j", IMAGE_DIGESTED]),
        s(&["get-names", "-j", IMAGE_DIGESTED]),
        s(&["images"]),
        s(&["set-metadata", "-m", "new image metadata", "moved"]),
        s(&["metadata", "moved"]),
        s(&["metadata", "-j", IMAGE_1, IMAGE_2, "nonexist"]),
        s(&["metadata", "-q", IMAGE_DIGESTED]),
        s(&["set-metadata", "-f", "{TARS}/basic.tar", IMAGE_EMPTY]),
        s(&["metadata", "-j", IMAGE_EMPTY]),
        s(&["set-metadata", IMAGE_EMPTY]),
        s(&["set-metadata", "-m", "x", "nonexist"]),
        s(&["get-names", "nonexist"]),
        s(&["set-names", "-n", "x", "1e1e"]),
        // create-container.
        s(&[
            "create-container",
            "--id",
            CONTAINER_1,
            "-n",
            "ctr1",
            "-n",
            "ctr2",
            "-m",
            "container metadata",
            "img1:tag",
        ]),
        s(&["create-container", "--id", CONTAINER_1, "img1"]),
        s(&["create-container", "-n", "ctr1", "img1"]),
        s(&["create-container", "-n", "nothing", "nonexist"]),
        s(&["create-container", "a", "b"]),
        s(&["create-container"]),
        s(&["create-container", "--uidmap", "0:100000:bogus", "img1"]),
        s(&["create-container", "--gidmap", "0:1", "img1"]),
        s(&[
            "createcontainer",
            "-j",
            "--id",
            CONTAINER_2,
            "-n",
            "ctr3",
            "moved",
        ]),
        s(&[
            "create-container",
            "--volatile",
            "--id",
            CONTAINER_EMPTY,
            "-n",
            "empty-ctr",
            "",
        ]),
        s(&["create-container", "--subuidmap", "nosuchuser", "moved"]),
        s(&["create-container", "--subgidmap", "nosuchuser", "moved"]),
        s(&["create-container", "-f", "/nonexistent/file", "moved"]),
        s(&[
            "create-container",
            "--hostuidmap",
            "--hostgidmap",
            "-f",
            "/dev/null",
            "-n",
            "host-mapped",
            "moved",
        ]),
        s(&["container", "-j", "host-mapped"]),
        s(&["delete-container", "host-mapped"]),
        // containers, container.
        s(&["containers"]),
        s(&["containers", "-j"]),
        s(&["containers", "-q"]),
        s(&["container", "empty-ctr"]),
        s(&["container-parent-owners", "-j", "empty-ctr"]),
        s(&["metadata", "-q", "ctr1", "nonexist"]),
        s(&["exists", "-q", "-j", "ctr1", "nonexist"]),
        s(&[
            "create-container",
            "-n",
            "dup",
            "-n",
            "dup",
            "-j",
            "--volatile",
            "",
        ]),
        s(&["container", "ctr1"]),
        s(&["container", "-j", "ctr1", CONTAINER_EMPTY]),
        s(&["container", "ctr1", "nonexist"]),
        s(&["container", "-j", "nonexist"]),
        s(&["container"]),
        s(&["image", "img1"]),
        s(&["container-parent-owners", "ctr1"]),
        s(&["container-parent-owners", "-j", "ctr1"]),
        s(&["container-parent-owners", "nonexist"]),
        s(&["get-container-dir", "ctr1"]),
        s(&["getcontainerdir", CONTAINER_2]),
        s(&["get-container-run-dir", "ctr1"]),
        s(&["getcontainerrundir", "empty-ctr"]),
        s(&["get-container-dir", "nonexist"]),
        s(&["get-container-run-dir", "nonexist"]),
        s(&["get-container-dir"]),
        // Container big data.
        s(&["list-container-data", "ctr1"]),
        s(&["list-container-data", "-j", "ctr1"]),
        s(&[
            "set-container-data",
            "-f",
            "{TARS}/basic.tar",
            "ctr1",
            "key1",
        ]),
        with_stdin(
            s(&["setcontainerdata", "ctr1", "Key/2"]),
            "{TARS}/child-whiteouts.tar",
        ),
        s(&["set-container-data", "ctr1", "from-empty-stdin"]),
        s(&["get-container-data-size", "ctr1", "from-empty-stdin"]),
        s(&["list-container-data", "ctr1"]),
        s(&["listcontainerdata", "-j", "ctr1"]),
        binary(s(&["get-container-data", "ctr1", "Key/2"])),
        s(&[
            "get-container-data",
            "-f",
            "{TMP}/key1",
            CONTAINER_1,
            "key1",
        ]),
        s(&["get-container-data-size", "ctr1", "key1"]),
        s(&["get-container-data-digest", "ctr1", "key1"]),
        s(&["getcontainerdatasize", "ctr1", "Key/2"]),
        s(&["getcontainerdatadigest", "ctr1", "Key/2"]),
        s(&["get-container-data", "ctr1", "missing"]),
        s(&["get-container-data-size", "ctr1", "missing"]),
        s(&["get-container-data-digest", "ctr1", "missing"]),
        s(&["get-container-data", "nonexist", "key1"]),
        s(&["get-container-data-size", "nonexist", "key1"]),
        s(&["list-container-data", "nonexist"]),
        s(&["set-container-data", "-f", "/dev/null", "ctr1", ""]),
        s(&["set-container-data", "-f", "/dev/null", "nonexist", "key"]),
        s(&["get-container-data", "ctr1"]),
        s(&["container", "ctr1"]),
        s(&["containers"]),
        // Container names and metadata.
        s(&["add-names", "-n", "ctr-extra", "ctr1"]),
        s(&["get-names", "ctr1"]),
        s(&["set-names", "-j", "-n", "ctr3", "-n", "ctr4", CONTAINER_1]),
        s(&["get-names", "-j", CONTAINER_2]),
        s(&["set-names", "-n", "ctr1", "nonexist"]),
        s(&["metadata", "ctr3"]),
        s(&["set-metadata", "-m", "second container", CONTAINER_2]),
        s(&["metadata", "-j", CONTAINER_2, CONTAINER_1]),
        s(&["containers"]),
        // Layers show their images and containers.
        s(&["layers"]),
        s(&["layers", "-t"]),
        s(&["layers", "-j"]),
        // exists with the kind filters.
        unordered(s(&["exists", "img1", "ctr3"])),
        s(&["exists", "-i", "img1"]),
        s(&["exists", "-c", "img1"]),
        s(&["exists", "-l", "img1"]),
        s(&["exists", "-c", "ctr3"]),
        s(&["exists", "-i", "-q", "ctr3"]),
        s(&["exists", "-l", LAYER_TOP]),
        s(&["exists", "-j", "img1", "ctr3", LAYER_BASE, "nonexist"]),
        // Names are per kind: a container may take an image's name.
        s(&["add-names", "-n", "img1", "empty-ctr"]),
        s(&["exists", "-c", "img1"]),
        s(&["get-names", "-j", "img1"]),
        s(&["get-names", "-j", CONTAINER_EMPTY]),
        s(&["create-container", "-n", "img1", "moved"]),
        // A layer, an image and a container named alike: reads and renames take the layer,
        // `delete` takes the container, then the image, then the layer.
        s(&["create-layer", "--id", LAYER_SHARED, "-n", "shared"]),
        s(&[
            "create-image",
            "--id",
            IMAGE_SHARED,
            "-n",
            "shared",
            LAYER_SHARED,
        ]),
        s(&["create-image", "-n", "shared", LAYER_SHARED]),
        s(&[
            "create-container",
            "--id",
            CONTAINER_SHARED,
            "-n",
            "shared",
            IMAGE_SHARED,
        ]),
        s(&["get-names", "shared"]),
        s(&["set-metadata", "-m", "which one", "shared"]),
        s(&[
            "metadata",
            "-j",
            LAYER_SHARED,
            IMAGE_SHARED,
            CONTAINER_SHARED,
        ]),
        s(&["add-names", "-j", "-n", "shared2", "shared"]),
        s(&["exists", "-i", "shared"]),
        s(&["exists", "-c", "-j", "shared"]),
        s(&["container", "shared"]),
        s(&["image", "shared"]),
        s(&["layer", "shared"]),
        s(&["delete-layer", LAYER_SHARED]),
        s(&["delete", "shared"]),
        s(&["exists", "-c", "shared"]),
        s(&["delete", "-j", "shared"]),
        s(&["exists", "-i", "shared"]),
        s(&["delete", "shared"]),
        s(&["delete", "shared"]),
        s(&["exists", "-j", LAYER_SHARED, IMAGE_SHARED, CONTAINER_SHARED]),
        // Mounts of containers.
        s(&["mount", CONTAINER_1]),
        s(&["mounted", CONTAINER_1]),
        s(&["mount", "-j", "ctr3"]),
        s(&["mounted", "-j", "ctr3"]),
        s(&["unmount", CONTAINER_1]),
        s(&["mounted", CONTAINER_1]),
        s(&["umount", "-j", "ctr3"]),
        s(&["mount", CONTAINER_1]),
        s(&["mount", CONTAINER_1]),
        s(&["shutdown"]),
        s(&["unmount", CONTAINER_1]),
        s(&["mounted", CONTAINER_1]),
        s(&["unmount", "--force", CONTAINER_1]),
        s(&["mounted", CONTAINER_1]),
        s(&["unmount", CONTAINER_1]),
        s(&["mount", "nonexist"]),
        s(&["unmount", CONTAINER_2]),
        s(&["mounted", "-j", CONTAINER_2]),
        s(&["mount", "-r", "moved"]),
        s(&["unmount", "moved"]),
        s(&["mount", "moved"]),
        s(&["unmount", "-j", "moved"]),
        // Deletion refused: things in use.
        s(&["delete-layer", LAYER_TOP]),
        s(&["delete-layer", "-j", LAYER_BASE]),
        s(&["delete-image", "img1"]),
        s(&["delete-image", "-j", "moved"]),
        s(&["delete-image", "-t", "img1:tag"]),
        s(&["delete-image", "-t", "-j", IMAGE_DIGESTED]),
        s(&["delete-image", "-t", "digested"]),
        s(&["delete-image", "nonexist"]),
        s(&["delete-image", "-j", "nonexist"]),
        s(&["delete-image", "-j", "nonexist", "other", IMAGE_DIGESTED]),
        s(&["delete-image", "1e1e"]),
        s(&["delete-image"]),
        s(&["delete-container", "nonexist"]),
        s(&["delete-container", "-j", "nonexist"]),
        s(&["delete-container"]),
        // Deletion of each kind.
        s(&["delete-container", "-j", CONTAINER_1]),
        s(&["deletecontainer", "-j", "ctr3"]),
        s(&["containers"]),
        s(&["delete-image", "img1"]),
        s(&["layers"]),
        s(&["delete-image", "img1:tag"]),
        s(&["layers"]),
        s(&["deleteimage", "-j", IMAGE_DIGESTED]),
        // Big-data keys that collide with other keys or with the record's own files
        // (store doc §7.2.8).
        s(&["set-image-data", "-f", "/dev/null", IMAGE_EMPTY, "empty/"]),
        s(&["list-image-data", IMAGE_EMPTY]),
        s(&["set-container-data", "-f", "/dev/null", "dup", "userdata"]),
        s(&["get-container-dir", "dup"]),
        s(&["delete-container", "-j", "dup", "nonexist", "other"]),
        s(&["delete-image", "-j", IMAGE_EMPTY]),
        s(&["delete", "empty-ctr"]),
        s(&["delete", "-j", "moved"]),
        s(&["container", CONTAINER_2]),
        s(&["delete", IMAGE_PREFIX_A]),
        s(&["delete", "nonexist"]),
        s(&["delete", "-j", "nonexist"]),
        s(&["images"]),
        s(&["images", "-j"]),
        s(&["containers", "-j"]),
        s(&["layers"]),
        // A store with only an image in it is wiped.
        s(&["wipe"]),
        s(&["images", "-j"]),
        s(&["containers", "-j"]),
        s(&["layers", "-j"]),
        // Last, so that the mapped copy overlay makes here (and Go does not: see
        // DELIBERATE_ON_OVERLAY) numbers no random ID of the lines above: a container with ID
        // mappings on an image of two layers.
        import_base_again,
        import_top_again,
        s(&[
            "create-image",
            "--id",
            IMAGE_MAPPED,
            "-n",
            "mapped-img",
            LAYER_TOP,
        ]),
        s(&[
            "create-container",
            "--id",
            CONTAINER_MAPPED,
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:200000:65536",
            "-n",
            "mapped-ctr",
            "mapped-img",
        ]),
        s(&["container", "mapped-ctr"]),
        s(&["container", "-j", "mapped-ctr"]),
        s(&["container-parent-owners", "mapped-ctr"]),
        s(&["mount", "mapped-ctr"]),
        s(&["unmount", "mapped-ctr"]),
        s(&["image", "mapped-img"]),
        s(&["delete-container", "mapped-ctr"]),
        s(&["delete-image", "mapped-img"]),
        s(&["layers", "-j"]),
    ]
}

/// Runs the script with `first` and `second` on `driver`, leaves no mounts behind, and answers
/// the differences; `against_ours` leaves out the deliberate ones and checks that each still
/// differs.
fn run_on(first: &Path, second: &Path, driver: &str, against_ours: bool) -> Vec<String> {
    let steps = script();
    let (mismatches, first_out, first_dir, second_dir) =
        differences_between(first, second, driver, &steps);
    // Dropping the scratch directories detaches what the tools left mounted in them.
    drop((first_dir, second_dir));
    let failing = first_out
        .iter()
        .filter(|o: &&Outcome| o.code != Some(0))
        .count();
    eprintln!(
        "{driver}: {} command lines ({failing} failing ones), {} mismatches",
        steps.len(),
        mismatches.len()
    );
    assert!(steps.len() >= 60, "the script covers at least 60 lines");
    assert!(failing >= 40, "the script exercises failures too");
    if against_ours {
        without_deliberate(mismatches, &steps, driver)
    } else {
        mismatches
    }
}

fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_layerstore"))
}

#[test]
fn the_go_tool_agrees_with_itself_on_vfs() {
    require_or_skip!(Capability::GoTool, Capability::Root);
    let go = go_tool().expect("the Go tool");
    let mismatches = run_on(&go, &go, "vfs", false);
    assert_agree(&mismatches, script().len());
}

#[test]
fn the_go_tool_agrees_with_itself_on_overlay() {
    require_or_skip!(Capability::GoTool, Capability::Root, Capability::Overlay);
    let go = go_tool().expect("the Go tool");
    let mismatches = run_on(&go, &go, "overlay", false);
    assert_agree(&mismatches, script().len());
}

#[test]
fn go_tool_and_layerstore_agree_on_images_and_containers_on_vfs() {
    require_or_skip!(Capability::GoTool, Capability::Root);
    let go = go_tool().expect("the Go tool");
    let mismatches = run_on(&go, &ours(), "vfs", true);
    assert_agree(&mismatches, script().len());
}

#[test]
fn go_tool_and_layerstore_agree_on_images_and_containers_on_overlay() {
    require_or_skip!(Capability::GoTool, Capability::Root, Capability::Overlay);
    let go = go_tool().expect("the Go tool");
    let mismatches = run_on(&go, &ours(), "overlay", true);
    assert_agree(&mismatches, script().len());
}

/// A second store under the run's scratch folder, made by the same binary, then read by the
/// main store as an additional (read-only) image store: `Read Only: true`, listings of both
/// stores, containers on a read-only image, and the writes a read-only image refuses.
fn additional_store_script(driver: &str) -> Vec<Step> {
    let imagestore = format!("{driver}.imagestore={{TMP}}/ro");
    let ro = |args: &[&str]| {
        let mut all = vec!["--graph", "{TMP}/ro", "--run", "{TMP}/ro-run", "-s", driver];
        all.extend_from_slice(args);
        raw(&all)
    };
    let main = |args: &[&str]| {
        let mut all = vec![
            "--graph",
            "{ROOT}",
            "--run",
            "{RUN}",
            "-s",
            driver,
            "--storage-opt",
            &imagestore,
        ];
        all.extend_from_slice(args);
        raw(&all)
    };
    let manifest_digest = tar_digest("child-whiteouts.tar");
    vec![
        ro(&[
            "import-layer",
            "--id",
            LAYER_RO,
            "-f",
            "{TARS}/basic.tar",
            "-n",
            "ro-layer",
        ]),
        ro(&[
            "create-image",
            "--id",
            IMAGE_RO,
            "-n",
            "roimg",
            "-n",
            "roimg2",
            "-m",
            "read-only metadata",
            LAYER_RO,
        ]),
        ro(&[
            "set-image-data",
            "-f",
            "{TARS}/child-whiteouts.tar",
            "roimg",
            "manifest",
        ]),
        ro(&["shutdown"]),
        main(&["images"]),
        main(&["images", "-j"]),
        main(&["images", "-q"]),
        main(&["image", "roimg"]),
        main(&["image", "-j", "roimg2"]),
        main(&["images-by-digest", &manifest_digest]),
        main(&["list-image-data", "roimg"]),
        main(&["get-image-data-size", "roimg", "manifest"]),
        main(&["get-image-data-digest", "roimg", "manifest"]),
        main(&["metadata", "roimg"]),
        main(&["get-names", "-j", "roimg"]),
        main(&["exists", "-i", "roimg"]),
        main(&["layers"]),
        main(&["layer", "ro-layer"]),
        main(&[
            "create-container",
            "--id",
            CONTAINER_RO,
            "-n",
            "on-ro",
            "roimg",
        ]),
        main(&["container", "on-ro"]),
        main(&["layers"]),
        main(&["mount", "on-ro"]),
        main(&["unmount", "on-ro"]),
        main(&["delete-image", "roimg"]),
        main(&["delete-image", "-j", "-t", IMAGE_RO]),
        main(&["set-image-data", "-f", "/dev/null", "roimg", "key"]),
        main(&["set-metadata", "-m", "changed", "roimg"]),
        main(&["delete-layer", "ro-layer"]),
        main(&["delete-container", "on-ro"]),
        main(&["create-image", "-n", "rw-on-ro", LAYER_RO]),
        main(&["images"]),
        main(&["wipe"]),
        main(&["images"]),
        main(&["layers"]),
        // Renaming a read-only image copies it up into the RW store (store doc §7.2.5).
        main(&["add-names", "-n", "copyname", "roimg"]),
        main(&["image", "copyname"]),
        main(&["list-image-data", "copyname"]),
        main(&["get-names", "-j", IMAGE_RO]),
        ro(&["images"]),
        ro(&["layers"]),
    ]
}

/// Runs the additional-store script with `first` and `second` on `driver`.
fn additional_store_run(
    first: &Path,
    second: &Path,
    driver: &str,
    against_ours: bool,
) -> Vec<String> {
    let steps = additional_store_script(driver);
    let (mismatches, _, first_dir, second_dir) = differences_between(first, second, driver, &steps);
    // Dropping the scratch directories detaches what the tools left mounted in them.
    drop((first_dir, second_dir));
    eprintln!(
        "{driver}, additional image store: {} command lines, {} mismatches",
        steps.len(),
        mismatches.len()
    );
    if against_ours {
        without_deliberate(mismatches, &steps, driver)
    } else {
        mismatches
    }
}

#[test]
fn the_go_tool_agrees_with_itself_on_additional_image_stores() {
    require_or_skip!(Capability::GoTool, Capability::Root, Capability::Overlay);
    let go = go_tool().expect("the Go tool");
    for driver in ["vfs", "overlay"] {
        let mismatches = additional_store_run(&go, &go, driver, false);
        assert_agree(&mismatches, additional_store_script(driver).len());
    }
}

#[test]
fn go_tool_and_layerstore_agree_on_additional_image_stores() {
    require_or_skip!(Capability::GoTool, Capability::Root, Capability::Overlay);
    let go = go_tool().expect("the Go tool");
    for driver in ["vfs", "overlay"] {
        let mismatches = additional_store_run(&go, &ours(), driver, true);
        assert_agree(&mismatches, additional_store_script(driver).len());
    }
}
