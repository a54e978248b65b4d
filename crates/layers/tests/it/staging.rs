//! Staged layers through the overlay driver: a differ fills `overlay/staging/<random>`, the
//! store moves it into a layer and records it as `apply_diff` would; failures and crashes
//! leave neither a staging directory nor a listed layer behind.

use crate::common;

use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::{Scratch, ShutdownOnDrop, TarballDiffer, fixture_tar, uncompressed};
use layerstore_layers::{
    DiffOptions, Differ, DifferOptions, DifferOutput, LayerOptions, LayerStore, StoreOptions, crash,
};
use layerstore_testsupport::helper;
use layerstore_testsupport::{Capability, require_or_skip};

/// A differ that writes a file, then fails.
struct FailingDiffer;

impl Differ for FailingDiffer {
    fn apply_diff(
        &mut self,
        dest: &Path,
        _options: &DifferOptions,
    ) -> layerstore_driver::Result<DifferOutput> {
        fs::write(dest.join("half"), b"written before the failure").expect("write");
        Err(layerstore_driver::Error::Differ {
            message: "blob entry \"half\": digest mismatch".into(),
            source: None,
        })
    }
}

fn open_overlay(graph: &Path, run: &Path) -> ShutdownOnDrop {
    ShutdownOnDrop(
        LayerStore::open(StoreOptions::new(graph, run, "overlay")).expect("open overlay store"),
    )
}

fn staging_entries(graph: &Path) -> Vec<String> {
    match fs::read_dir(graph.join("overlay/staging")) {
        Ok(entries) => entries
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn diff_of(store: &LayerStore, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let options = DiffOptions {
        compression: Some(layerstore_layers::Compression::None),
    };
    store.diff(None, key, &options, &mut out).expect("diff");
    out
}

#[test]
fn a_staged_layer_gives_back_its_tarball_and_is_recorded_as_put_records_it() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let store = open_overlay(&scratch.graph(), &scratch.run());
    let base = fs::read(fixture_tar("basic.tar.gz")).expect("fixture");
    let (plain, _) = store
        .put(&LayerOptions::new().id("plain"), Some(&mut &base[..]))
        .expect("plain put");

    // No layer yet: the driver makes the staging directory and nothing is recorded.
    let output = store
        .apply_diff_with_differ(None, &DifferOptions::default(), &mut TarballDiffer(base))
        .expect("stage");
    assert_eq!(
        output.target.parent(),
        Some(scratch.graph().join("overlay/staging").as_path())
    );
    assert!(fs::read_dir(&output.target).expect("staged").count() > 0);
    assert_eq!(store.layers().expect("layers").len(), 1);

    let staged = store
        .create(&LayerOptions::new().id("staged"))
        .expect("create");
    assert!(staged.uncompressed_digest.is_none());
    store
        .apply_diff_from_staging_directory("staged", &output.target, &output)
        .expect("move into place");
    assert!(!output.target.exists(), "the staging directory is consumed");
    assert!(staging_entries(&scratch.graph()).is_empty());

    let staged = store.get("staged").expect("get");
    assert!(!staged.is_incomplete());
    for (field, a, b) in [
        (
            "compressed digest",
            format!("{:?}", staged.compressed_digest),
            format!("{:?}", plain.compressed_digest),
        ),
        (
            "uncompressed digest",
            format!("{:?}", staged.uncompressed_digest),
            format!("{:?}", plain.uncompressed_digest),
        ),
        (
            "sizes",
            format!("{} {}", staged.compressed_size, staged.uncompressed_size),
            format!("{} {}", plain.compressed_size, plain.uncompressed_size),
        ),
        (
            "compression",
            format!("{:?}", staged.compression),
            format!("{:?}", plain.compression),
        ),
        (
            "owners",
            format!("{:?} {:?}", staged.uids, staged.gids),
            format!("{:?} {:?}", plain.uids, plain.gids),
        ),
    ] {
        assert_eq!(a, b, "{field} differ between a staged and a plain layer");
    }
    assert_eq!(
        store
            .layers_by_uncompressed_digest(staged.uncompressed_digest.as_ref().unwrap())
            .expect("by digest")
            .len(),
        2
    );
    assert!(diff_of(&store, "staged") == uncompressed("basic.tar.gz"));
    assert_eq!(
        store.differ_target("staged").expect("target"),
        scratch.graph().join("overlay/staged/diff")
    );
    // The staged tree is a real overlay upper: mounting shows the files.
    let merged = store.mount("staged", &Default::default()).expect("mount");
    assert!(fs::read_dir(&merged).expect("read merged").count() > 0);
    store.unmount("staged", false).expect("unmount");
    assert!(store.check(&Default::default()).expect("check").is_clean());
}

#[test]
fn staging_into_an_existing_child_layer_keeps_whiteouts_in_overlay_form() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let store = open_overlay(&scratch.graph(), &scratch.run());
    store
        .put(
            &LayerOptions::new().id("base"),
            Some(&mut File::open(fixture_tar("basic.tar")).expect("fixture")),
        )
        .expect("base");
    store
        .create(&LayerOptions::new().id("child").parent("base"))
        .expect("child");
    let child_tar = fs::read(fixture_tar("child-whiteouts.tar")).expect("fixture");
    store
        .apply_diff_with_differ(
            Some("child"),
            &DifferOptions::default(),
            &mut TarballDiffer(child_tar.clone()),
        )
        .expect("stage into child");
    assert!(staging_entries(&scratch.graph()).is_empty());
    assert!(diff_of(&store, "child") == child_tar);
    let child = store.get("child").expect("child");
    assert_eq!(child.uncompressed_size, child_tar.len() as i64);
}

#[test]
fn a_failed_differ_leaves_no_staging_directory_and_bad_paths_are_refused() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let store = open_overlay(&scratch.graph(), &scratch.run());
    let err = store
        .apply_diff_with_differ(None, &DifferOptions::default(), &mut FailingDiffer)
        .expect_err("the differ fails");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(staging_entries(&scratch.graph()).is_empty());

    // Into an existing layer: the layer stays as it was.
    store
        .create(&LayerOptions::new().id("target"))
        .expect("create");
    store
        .apply_diff_with_differ(
            Some("target"),
            &DifferOptions::default(),
            &mut FailingDiffer,
        )
        .expect_err("the differ fails");
    assert!(staging_entries(&scratch.graph()).is_empty());
    assert!(!store.get("target").expect("kept").is_incomplete());

    // Only the driver's own staging directories are moved or removed.
    let outside = scratch.dir.path().join("not-staging");
    fs::create_dir(&outside).expect("mkdir");
    let output = DifferOutput::default();
    let err = store
        .apply_diff_from_staging_directory("target", &outside, &output)
        .expect_err("refused");
    assert!(err.to_string().contains("not a staging directory"), "{err}");
    assert!(!store.get("target").expect("kept").is_incomplete());
    store
        .cleanup_staging_directory(&scratch.graph().join("overlay/target"))
        .expect_err("refused");
    assert!(scratch.graph().join("overlay/target/diff").is_dir());
    assert!(outside.is_dir());

    // A mounted layer's files are not swapped under the mount.
    let output = store
        .apply_diff_with_differ(
            None,
            &DifferOptions::default(),
            &mut TarballDiffer(fs::read(fixture_tar("basic.tar")).expect("fixture")),
        )
        .expect("stage");
    store.mount("target", &Default::default()).expect("mount");
    let err = store
        .apply_diff_from_staging_directory("target", &output.target, &output)
        .expect_err("mounted");
    assert!(err.to_string().contains("mounted"), "{err}");
    store.unmount("target", false).expect("unmount");
    assert!(!store.get("target").expect("kept").is_incomplete());
    store
        .apply_diff_from_staging_directory("target", &output.target, &output)
        .expect("unmounted now");
    assert!(diff_of(&store, "target") == fs::read(fixture_tar("basic.tar")).expect("fixture"));

    // A staged result nobody wants is removed.
    let output = store
        .apply_diff_with_differ(
            None,
            &DifferOptions::default(),
            &mut TarballDiffer(fs::read(fixture_tar("basic.tar")).expect("fixture")),
        )
        .expect("stage");
    store
        .cleanup_staging_directory(&output.target)
        .expect("cleanup");
    assert!(staging_entries(&scratch.graph()).is_empty());
}

/// The child's side of the crash tests: the test, re-run as a helper with the graph root as role.
fn staging_crash_child(graph: &str) {
    let run = std::env::var("LAYERSTORE_TEST_RUN").expect("run");
    let store = LayerStore::open(StoreOptions::new(graph, run, "overlay")).expect("child open");
    let base = fs::read(fixture_tar("basic.tar")).expect("fixture");
    let output = store
        .apply_diff_with_differ(None, &DifferOptions::default(), &mut TarballDiffer(base))
        .expect("stage");
    store
        .create(&LayerOptions::new().id("victim"))
        .expect("create");
    store
        .apply_diff_from_staging_directory("victim", &output.target, &output)
        .expect("record");
}

#[test]
fn a_crash_between_staging_and_recording_leaves_nothing_listed() {
    if let Some(role) = helper::role() {
        return staging_crash_child(&role);
    }
    require_or_skip!(Capability::Overlay);
    for point in [
        crash::STAGING_AFTER_INCOMPLETE_RECORD,
        crash::STAGING_AFTER_MOVE,
    ] {
        let scratch = Scratch::new();
        let status = helper::command(&scratch.graph().to_string_lossy())
            .env("LAYERSTORE_TEST_RUN", scratch.run())
            .env(crash::CRASH_ENV, point)
            .status()
            .expect("spawn child");
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: the child was killed there"
        );
        let store = open_overlay(&scratch.graph(), &scratch.run());
        assert!(store.layers().expect("layers").is_empty(), "{point}");
        assert!(!scratch.graph().join("overlay/victim").exists(), "{point}");
        assert!(
            !scratch
                .graph()
                .join("overlay-layers/victim.tar-split.gz")
                .exists(),
            "{point}"
        );
        // The child's bind mount of the home is gone with it; a leftover staging directory
        // (only before the move) is removed by whoever knows its path.
        for leftover in staging_entries(&scratch.graph()) {
            store
                .cleanup_staging_directory(&scratch.graph().join("overlay/staging").join(leftover))
                .expect("cleanup leftover");
        }
        assert!(
            store.check(&Default::default()).expect("check").is_clean(),
            "{point}"
        );
    }
}

#[test]
fn records_a_differ_gzipped_are_stored_as_they_are() {
    require_or_skip!(Capability::Overlay);
    let scratch = Scratch::new();
    let store = open_overlay(&scratch.graph(), &scratch.run());
    let base = fs::read(fixture_tar("basic.tar.gz")).expect("fixture");
    let mut output = store
        .apply_diff_with_differ(None, &DifferOptions::default(), &mut TarballDiffer(base))
        .expect("stage");
    // A pull gzips the records as it stages (the raw JSON of a big layer is tens of MB).
    let raw = output.tar_split.take().expect("records");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).expect("gzip");
    let gzipped = gz.finish().expect("gzip");
    output.tar_split = Some(gzipped.clone());

    store
        .create(&LayerOptions::new().id("staged"))
        .expect("create");
    store
        .apply_diff_from_staging_directory("staged", &output.target, &output)
        .expect("move into place");
    let stored = fs::read(scratch.graph().join("overlay-layers/staged.tar-split.gz"))
        .expect("tar-split file");
    assert_eq!(stored, gzipped, "gzipped records are written as they are");
    assert!(diff_of(&store, "staged") == uncompressed("basic.tar.gz"));
    assert!(store.check(&Default::default()).expect("check").is_clean());
}
