//! One overlay store shared with the Go tool (`containers-storage` 1.43): chains built by
//! either side mount with the other, and both give back the original tarballs.

use crate::common;

use std::path::{Path, PathBuf};

use common::{Scratch, assert_same_tree, snapshot};
use layerstore_driver::{ApplyDiffOpts, CreateOpts, DiffArgs, Driver, MountOpts};
use layerstore_model::{Layer, Timestamp};
use layerstore_overlay::OverlayDriver;
use layerstore_testsupport::{Capability, require_or_skip};

/// The Go tool on one graph root; `shutdown -f` on drop (unmounts its layers and its home).
struct GoTool {
    graph: PathBuf,
    run: PathBuf,
}

impl GoTool {
    fn new(scratch: &Scratch) -> GoTool {
        GoTool {
            graph: scratch.graph_root(),
            run: scratch.run_root(),
        }
    }

    fn output(&self, args: &[&str]) -> std::process::Output {
        layerstore_testsupport::go::run_go(&self.graph, &self.run, "overlay", args)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "containers-storage {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new layer (on `parent`) holding the fixture tarball `name`, applied by the Go tool.
    fn layer_from_fixture(&self, parent: Option<&str>, name: &str) -> String {
        let id = self
            .run(&[&["create-layer"], parent.as_slice()].concat())
            .trim()
            .to_string();
        let tar = common::fixture_tar(name);
        self.run(&["applydiff", "-f", tar.to_str().unwrap(), &id]);
        id
    }

    fn diff_bytes(&self, id: &str, dir: &Path) -> Vec<u8> {
        let file = dir.join(format!("{id}.diff"));
        self.run(&["diff", "-u", "-f", file.to_str().unwrap(), id]);
        std::fs::read(file).unwrap()
    }

    fn changes(&self, id: &str) -> Vec<String> {
        let mut lines: Vec<String> = self
            .run(&["changes", id])
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }
}

impl Drop for GoTool {
    fn drop(&mut self) {
        let _ = self.output(&["shutdown", "-f"]);
    }
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(common::fixture_tar(name)).unwrap()
}

/// The layer's tarball as our file getter rebuilds it from the tar-split records the Go tool
/// wrote.
fn rebuilt_from_go_tar_split(scratch: &Scratch, overlay: &OverlayDriver, id: &str) -> Vec<u8> {
    let ts = scratch
        .graph_root()
        .join("overlay-layers")
        .join(format!("{id}.tar-split.gz"));
    let records = layerstore_tarsplit::read_tar_split_gz(std::fs::File::open(ts).unwrap());
    let getter = overlay.diff_getter(id).unwrap().unwrap();
    let mut rebuilt = Vec::new();
    layerstore_tarsplit::assemble(records, &*getter, &mut rebuilt).unwrap();
    rebuilt
}

#[test]
fn a_chain_the_go_tool_built_mounts_with_ours() {
    require_or_skip!(Capability::GoTool, Capability::Overlay);
    let scratch = Scratch::new();
    let go = GoTool::new(&scratch);
    let base = go.layer_from_fixture(None, "basic.tar");
    let child = go.layer_from_fixture(Some(&base), "child-whiteouts.tar");
    assert_eq!(go.changes(&child), common::fixture_child_changes());

    let go_merged = PathBuf::from(go.run(&["mount", &child]).trim());
    let go_view = snapshot(&go_merged);
    go.run(&["unmount", &child]);
    assert!(common::mountinfo_line(&go_merged).is_none());

    let overlay = scratch.overlay(&[]);
    let merged = overlay.get(&child, &MountOpts::default()).unwrap();
    assert_eq!(merged, go_merged);
    assert_same_tree("Go's chain mounted by us", &go_view, &snapshot(&merged));
    overlay.put(&child).unwrap();

    let changes = overlay
        .changes(&DiffArgs::new(&child, Some(&base)))
        .unwrap();
    assert_eq!(
        common::change_lines(&changes),
        common::fixture_child_changes()
    );

    // Go's tar-split records + our file getter give back the tarballs.
    for (id, name) in [(&base, "basic.tar"), (&child, "child-whiteouts.tar")] {
        assert_eq!(
            rebuilt_from_go_tar_split(&scratch, &overlay, id),
            fixture_bytes(name),
            "{name}"
        );
    }

    // A layer the Go tool mounted is released by our put (Go's refcount semantics), and
    // the Go tool's own unmount afterwards is not an error.
    let go_merged = PathBuf::from(go.run(&["mount", &base]).trim());
    assert!(common::mountinfo_line(&go_merged).is_some());
    overlay.put(&base).unwrap();
    assert!(common::mountinfo_line(&go_merged).is_none());
    go.run(&["unmount", &base]);
}

/// Go's getter never asks a file for the metacopy xattr; ours asks only where a lower could
/// hold the data. So a layer without lowers whose file carries the xattr (set by hand here: no
/// mount of a base layer makes one) gives its own bytes back, the tarball Go's diff gives.
#[test]
fn a_layer_without_lowers_gives_its_own_files_as_go_does() {
    require_or_skip!(Capability::GoTool, Capability::Overlay);
    let scratch = Scratch::new();
    let go = GoTool::new(&scratch);
    let base = go.layer_from_fixture(None, "basic.tar");
    let overlay = scratch.overlay(&[]);
    let tool = overlay.home().join(&base).join("diff/usr/bin/tool");
    rustix::fs::setxattr(
        &tool,
        "trusted.overlay.metacopy",
        b"",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();

    assert_eq!(
        go.diff_bytes(&base, scratch.path()),
        fixture_bytes("basic.tar")
    );
    assert_eq!(
        rebuilt_from_go_tar_split(&scratch, &overlay, &base),
        fixture_bytes("basic.tar")
    );
}

#[test]
fn a_chain_we_built_mounts_with_the_go_tool() {
    require_or_skip!(Capability::GoTool, Capability::Overlay);
    let scratch = Scratch::new();
    let overlay = scratch.overlay(&[]);
    let layers_dir = scratch.graph_root().join("overlay-layers");
    std::fs::create_dir_all(&layers_dir).unwrap();
    let base = layerstore_model::generate_id().unwrap();
    let child = layerstore_model::generate_id().unwrap();
    let mut records = Vec::new();
    for (id, parent, name) in [
        (&base, None, "basic.tar"),
        (&child, Some(base.as_str()), "child-whiteouts.tar"),
    ] {
        overlay.create(id, parent, &CreateOpts::default()).unwrap();
        let ts = std::fs::File::create(layers_dir.join(format!("{id}.tar-split.gz"))).unwrap();
        // `<id>.tar-split.gz`, as the store writes it.
        let mut packer = layerstore_tarsplit::gzip_packer(ts);
        let mut input = std::fs::File::open(common::fixture_tar(name)).unwrap();
        let mut opts = ApplyDiffOpts::new(&mut input);
        opts.tar_split = Some(&mut packer);
        let report = overlay.apply_diff(id, parent, opts).unwrap();
        packer.finish().unwrap();
        let mut layer = Layer::new(id.clone());
        layer.parent = parent.unwrap_or_default().to_string();
        layer.created = Timestamp::now();
        layer.compressed_digest = Some(report.compressed_digest.clone());
        layer.compressed_size = report.compressed_size as i64;
        layer.uncompressed_digest = Some(report.uncompressed_digest.clone());
        layer.uncompressed_size = report.uncompressed_size as i64;
        layer.uids = report.uids.iter().copied().collect();
        layer.gids = report.gids.iter().copied().collect();
        records.push(layer);
    }
    let json = std::fs::File::create(layers_dir.join("layers.json")).unwrap();
    layerstore_model::write_layers_json(json, &records).unwrap();

    let our_view = snapshot(&overlay.get(&child, &MountOpts::default()).unwrap());
    overlay.put(&child).unwrap();
    // Our driver lets go of the home before the Go tool takes over.
    overlay.cleanup().unwrap();

    let go = GoTool::new(&scratch);
    let listed = go.run(&["layers"]);
    assert!(
        listed.contains(&child) && listed.contains(&base),
        "{listed}"
    );
    let go_merged = PathBuf::from(go.run(&["mount", &child]).trim());
    assert_eq!(go_merged, overlay.home().join(&child).join("merged"));
    assert_same_tree("our chain mounted by Go", &our_view, &snapshot(&go_merged));
    go.run(&["unmount", &child]);

    assert_eq!(go.changes(&child), common::fixture_child_changes());
    assert_eq!(
        go.diff_bytes(&child, scratch.path()),
        fixture_bytes("child-whiteouts.tar")
    );
    assert_eq!(
        go.diff_bytes(&base, scratch.path()),
        fixture_bytes("basic.tar")
    );

    // Our side: the tar-split file we wrote + our file getter.
    for (id, name) in [(&base, "basic.tar"), (&child, "child-whiteouts.tar")] {
        let ts = std::fs::File::open(layers_dir.join(format!("{id}.tar-split.gz"))).unwrap();
        let getter = overlay.diff_getter(id).unwrap().unwrap();
        let mut rebuilt = Vec::new();
        layerstore_tarsplit::assemble(
            layerstore_tarsplit::read_tar_split_gz(ts),
            &*getter,
            &mut rebuilt,
        )
        .unwrap();
        assert_eq!(rebuilt, fixture_bytes(name), "{name}");
    }
}
