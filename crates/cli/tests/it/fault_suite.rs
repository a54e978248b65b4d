//! Fault suite: the `layerstore` CLI against a filesystem that fills up mid-import, a layer
//! filesystem remounted read-only mid-import, a tar-split file truncated on disk, and a
//! layers.json that cannot be read. Each gives a clear error naming what failed, leaves the
//! store as it was before the failed call, and `layerstore check` says what is wrong.
//!
//! Real kernels only: tmpfs mounts with a size (`mount -t tmpfs -o size=8m`), removed by the
//! [`Scratch`] guard however the test ends.

use crate::suite;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use layerstore_testsupport::{Capability, require_or_skip};
use suite::{Rng, Scratch, Store};

/// Every path under `dir` except lock files (whose last-writer token changes on every write).
fn paths(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.extension().is_some_and(|e| e == "lock") {
            continue;
        }
        if let Ok(entries) = fs::read_dir(&path) {
            for entry in entries.flatten() {
                stack.push(entry.path());
            }
        }
        out.insert(path);
    }
    out
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn file_arg(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn a_full_filesystem_fails_the_call_and_leaves_the_store_as_it_was() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let fs_dir = scratch.path().join("fs");
    suite::mount_tmpfs(&fs_dir, 8);
    let store = Store::new(fs_dir.join("graph"), scratch.path().join("run"), "vfs");
    let mut rng = Rng::new(11);
    let base = scratch.path().join("base.tar");
    suite::write_file(&base, &suite::random_tarball(&mut rng, "base", 16, 4096));
    store.run_ok(&["import-layer", "-n", "base", "-f", &file_arg(&base)]);
    let records_before = store.records().expect("layers.json");
    let paths_before = paths(&store.graph);

    // 1. A 20 MiB layer on an 8 MiB filesystem: the disk fills mid-import.
    let big = scratch.path().join("big.tar");
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("big/{i}"), vec![i as u8; 1 << 20]))
        .collect();
    suite::write_file(&big, &suite::tarball(&files));
    let output = store.run(&["import-layer", "-n", "big", "-f", &file_arg(&big)]);
    assert!(!output.status.success(), "the import cannot fit");
    let stderr = stderr_of(&output);
    assert!(
        stderr.to_lowercase().contains("no space left on device"),
        "unclear error: {stderr}"
    );
    assert_eq!(store.records().expect("layers.json"), records_before);
    assert_eq!(
        paths(&store.graph),
        paths_before,
        "files left by the failed import"
    );
    suite::verify(&store, "after the disk filled mid-import");

    // 2. A full disk when layers.json is saved: set-names fails, layers.json is unchanged.
    let layers_json = fs::read(store.layers_json()).expect("layers.json");
    let filler = fs_dir.join("filler");
    {
        let mut file = fs::File::create(&filler).expect("filler");
        let block = vec![0xa5u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        // Down to the last byte.
        while file.write_all(&[0]).is_ok() {}
    }
    let output = store.run(&["set-names", "-n", "renamed", "base"]);
    assert!(!output.status.success(), "set-names on a full disk");
    let stderr = stderr_of(&output);
    assert!(
        stderr.to_lowercase().contains("no space left on device"),
        "unclear error: {stderr}"
    );
    assert_eq!(
        fs::read(store.layers_json()).expect("layers.json"),
        layers_json
    );
    fs::remove_file(&filler).expect("remove filler");
    let listed = suite::verify(&store, "after the disk filled while saving");
    assert_eq!(listed, records_before);

    // The store is usable again.
    let small = scratch.path().join("small.tar");
    suite::write_file(&small, &suite::random_tarball(&mut rng, "small", 4, 1024));
    store.run_ok(&["import-layer", "-n", "small", "-f", &file_arg(&small)]);
    suite::verify(&store, "after a later import");
}

#[test]
fn a_read_only_remount_mid_import_fails_the_import_and_is_recovered_from() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        "vfs",
    );
    // The layers' files live on their own filesystem, remounted read-only while the import
    // waits for more input (between entries, so no file is open for writing and the remount
    // is allowed).
    let layer_fs = store.graph.join("vfs");
    suite::mount_tmpfs(&layer_fs, 64);
    let mut rng = Rng::new(12);
    let base = scratch.path().join("base.tar");
    suite::write_file(&base, &suite::random_tarball(&mut rng, "base", 8, 4096));
    store.run_ok(&["import-layer", "-n", "base", "-f", &file_arg(&base)]);
    let records_before = store.records().expect("layers.json");

    let first: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| (format!("part/{i}"), vec![i as u8; 64 << 10]))
        .collect();
    let whole: Vec<(String, Vec<u8>)> = first
        .iter()
        .cloned()
        .chain((16..32).map(|i| (format!("part/{i}"), vec![i as u8; 64 << 10])))
        .collect();
    let tar = suite::tarball(&whole);
    // The first half ends on an entry boundary: the tar of the first 16 files, less its end
    // marker (and the `tar` crate's record padding).
    let first_tar = suite::tarball(&first);
    let first_len = first_tar.len() - 1024;
    assert_eq!(tar[..first_len], first_tar[..first_len]);

    let mut child = store
        .command(&["import-layer", "-n", "interrupted"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn import");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&tar[..first_len]).expect("first half");
    stdin.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    let remounted = loop {
        match suite::remount(&layer_fs, true) {
            Ok(()) => break true,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                eprintln!("remount ro kept failing: {e}");
                break false;
            }
        }
    };
    // The import may already have failed and closed its input.
    let _ = stdin.write_all(&tar[first_len..]);
    drop(stdin);
    let output = child.wait_with_output().expect("wait for import");
    assert!(
        remounted,
        "could not remount the layer filesystem read-only"
    );
    assert!(
        !output.status.success(),
        "an import onto a read-only filesystem"
    );
    let stderr = stderr_of(&output);
    assert!(
        stderr.to_lowercase().contains("read-only file system"),
        "unclear error: {stderr}"
    );
    let left = store.records().expect("layers.json parses");
    eprintln!(
        "read-only remount mid-import: {}; layers.json then holds {} record(s), {} incomplete",
        stderr.trim(),
        left.len(),
        left.iter().filter(|l| l.incomplete).count()
    );
    // Whatever the failed call could not clean up is only ever an incomplete record.
    for layer in &left {
        assert!(
            records_before.contains(layer) || layer.incomplete,
            "the failed import left a complete-looking layer {layer:?}"
        );
    }

    suite::remount(&layer_fs, false).expect("remount rw");
    let listed = suite::verify(&store, "after the read-only remount");
    assert_eq!(
        listed, records_before,
        "the store is as before the failed import"
    );
    let leftovers: Vec<PathBuf> = fs::read_dir(layer_fs.join("dir"))
        .expect("vfs/dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| !listed.iter().any(|l| p.ends_with(&l.id)))
        .collect();
    assert!(leftovers.is_empty(), "leftover layer dirs {leftovers:?}");
}

#[test]
fn a_truncated_tar_split_is_an_error_and_check_names_the_layer() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        "vfs",
    );
    let mut rng = Rng::new(13);
    let base = scratch.path().join("base.tar");
    suite::write_file(&base, &suite::random_tarball(&mut rng, "base", 16, 4096));
    let child = scratch.path().join("child.tar");
    suite::write_file(&child, &suite::random_tarball(&mut rng, "child", 16, 4096));
    store.run_ok(&["import-layer", "-n", "base", "-f", &file_arg(&base)]);
    let child_id = store
        .run_ok(&[
            "import-layer",
            "-n",
            "child",
            "-f",
            &file_arg(&child),
            "base",
        ])
        .lines()
        .next()
        .expect("ID")
        .to_string();
    let tar_split = store.tar_split(&child_id);
    let length = fs::metadata(&tar_split).expect("tar-split").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&tar_split)
        .expect("open tar-split")
        .set_len(length / 2)
        .expect("truncate");
    let layers_json = fs::read(store.layers_json()).expect("layers.json");

    let output = store.run(&["diff", "-u", "child"]);
    assert!(!output.status.success(), "diff of a truncated tar-split");
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&tar_split.display().to_string()),
        "the error does not name the tar-split file: {stderr}"
    );
    assert_eq!(
        fs::read(store.layers_json()).expect("layers.json"),
        layers_json
    );
    assert_eq!(store.listed().len(), 2, "both layers still listed");
    let base_diff = store.run(&["diff", "-u", "base"]);
    assert!(
        base_diff.status.success(),
        "the intact layer still gives its diff"
    );

    if suite::check_available() {
        let output = store.run(&["check", "--json"]);
        assert!(
            !output.status.success(),
            "check passes a truncated tar-split"
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("check --json is JSON");
        let problems = report["problems"].as_array().expect("problems");
        assert!(
            problems
                .iter()
                .any(|p| p.to_string().contains(&child_id) && p.to_string().contains("tar-split")),
            "check does not name the layer and its tar-split: {report}"
        );
        assert_eq!(
            fs::read(store.layers_json()).expect("layers.json"),
            layers_json
        );
        // Repair drops the broken layer and nothing else.
        store.run_ok(&["check", "--repair"]);
        let listed = suite::verify(&store, "after check --repair");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].names, ["base"]);
    }
}

/// Makes layers.json unreadable in one way.
type Breaker<'a> = Box<dyn Fn() + 'a>;

#[test]
fn an_unreadable_layers_json_is_an_error_and_is_left_alone() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new();
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        "vfs",
    );
    let mut rng = Rng::new(14);
    let base = scratch.path().join("base.tar");
    suite::write_file(&base, &suite::random_tarball(&mut rng, "base", 8, 4096));
    store.run_ok(&["import-layer", "-n", "base", "-f", &file_arg(&base)]);
    store.run_ok(&["create-layer", "-n", "top", "base"]);
    let good = fs::read(store.layers_json()).expect("layers.json");
    let path = store.layers_json();
    let path_text = path.display().to_string();

    let variants: Vec<(&str, Breaker<'_>)> = vec![
        (
            "truncated",
            Box::new(|| fs::write(store.layers_json(), &good[..good.len() / 2]).expect("w")),
        ),
        (
            "garbage",
            Box::new(|| fs::write(store.layers_json(), b"\x00\xffnot json").expect("w")),
        ),
        (
            "a directory",
            Box::new(|| {
                fs::remove_file(store.layers_json()).expect("rm");
                fs::create_dir(store.layers_json()).expect("mkdir");
            }),
        ),
    ];
    for (variant, break_it) in &variants {
        break_it();
        let broken = fs::read(&path).ok();
        let tar = file_arg(&base);
        for args in [
            &["layers"][..],
            &["create-layer", "-n", "more"][..],
            &["import-layer", "-n", "more", "-f", &tar][..],
            &["set-names", "-n", "x", "top"][..],
        ] {
            let output = store.run(args);
            assert!(
                !output.status.success(),
                "{variant} layers.json: {args:?} succeeded"
            );
            // Like the Go tool, a store that cannot open says `error initializing: ...` on
            // stdout.
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                stderr_of(&output)
            );
            assert!(
                text.contains(&path_text),
                "{variant} layers.json: {args:?}: the error does not name the file: {text}"
            );
            assert_eq!(
                fs::read(&path).ok(),
                broken,
                "{variant} layers.json: {args:?} rewrote it"
            );
        }
        if suite::check_available() {
            let output = store.run(&["check"]);
            assert!(
                !output.status.success(),
                "check passes a {variant} layers.json"
            );
            let text = format!(
                "{}{}",
                stderr_of(&output),
                String::from_utf8_lossy(&output.stdout)
            );
            assert!(
                text.contains("layers.json"),
                "check does not say what is wrong: {text}"
            );
            assert_eq!(
                fs::read(&path).ok(),
                broken,
                "check rewrote a {variant} layers.json"
            );
        }
        eprintln!(
            "{variant} layers.json: {}",
            String::from_utf8_lossy(&store.run(&["layers"]).stdout).trim()
        );
        // Put the good file back: the store is whole again.
        if path.is_dir() {
            fs::remove_dir(&path).expect("rmdir");
        }
        fs::write(&path, &good).expect("restore");
        let listed = suite::verify(&store, &format!("after restoring a {variant} layers.json"));
        assert_eq!(listed.len(), 2);
    }
}
