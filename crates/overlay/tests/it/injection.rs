//! Mount-option injection through the driver's API, below any ID rule of the store or the CLI
//! (issue 16 items 6 and 7): a layer ID and a forged `lower` file carrying
//! `,upperdir=up,workdir=wk` (relative paths, resolved against the working directory of the
//! mounting process), and IDs that are the driver's own names.
//!
//! This binary changes its working directory, so it holds nothing else.

use crate::common;

use std::fs;
use std::path::Path;

use common::Scratch;
use layerstore_driver::{CreateOpts, Driver, Error, MountOpts};
use layerstore_testsupport::{Capability, helper, require_or_skip};

/// Every entry below `dir`.
fn entries_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn ids_and_lower_files_cannot_inject_mount_options_and_own_names_are_refused() {
    require_or_skip!(Capability::Overlay);
    // It changes the working directory, which belongs to the whole process.
    if !helper::in_own_process() {
        return;
    }
    let scratch = Scratch::new();
    // What an attacker prepares where relative upper and work dirs would be looked up.
    let cwd = scratch.path().join("cwd");
    for dir in ["up", "wk/work", "wk/empty", "wk/diff"] {
        fs::create_dir_all(cwd.join(dir)).unwrap();
    }
    let prepared = entries_below(&cwd);
    std::env::set_current_dir(&cwd).unwrap();
    let overlay = scratch.overlay(&[]);
    let opts = CreateOpts::default();

    // An ID with mount options in it: refused, or harmless (the layer's own upper dir).
    let injected = "x,upperdir=up,workdir=wk";
    match overlay.create(injected, None, &opts) {
        Err(Error::InvalidId { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(()) => {
            let merged = overlay.get(injected, &MountOpts::default()).unwrap();
            fs::write(merged.join("written"), b"x").unwrap();
            overlay.put(injected).unwrap();
            let own = overlay.home().join(injected).join("diff/written");
            assert!(
                own.is_file(),
                "the write did not land in the layer's own diff"
            );
        }
    }

    // A forged `lower` file: a read-only mount would get the attacker's upper dir.
    overlay.create("base", None, &opts).unwrap();
    overlay.create("child", Some("base"), &opts).unwrap();
    let home = overlay.home().to_path_buf();
    let link = fs::read_to_string(home.join("base/link")).unwrap();
    let forged = format!("{link},upperdir=up,workdir=wk");
    std::os::unix::fs::symlink("../base/diff", home.join("l").join(&forged)).unwrap();
    fs::write(home.join("child/lower"), format!("l/{forged}")).unwrap();
    let ro = MountOpts {
        options: vec!["ro".into()],
        ..Default::default()
    };
    match overlay.get("child", &ro) {
        Ok(merged) => {
            let writable = fs::write(merged.join("injected"), b"x").is_ok();
            overlay.put("child").unwrap();
            panic!("mounted with a forged lower file (writable: {writable})");
        }
        Err(e) => {
            let message = e.to_string();
            let lower = home.join("child/lower");
            assert!(
                message.contains("child") && message.contains(&lower.display().to_string()),
                "{message}"
            );
        }
    }
    assert_eq!(
        entries_below(&cwd),
        prepared,
        "nothing written where the options pointed"
    );

    // The driver's own names: never layers, whatever the caller (`l` would be every short
    // link; removing it must not touch them).
    let links = || fs::read_dir(home.join("l")).unwrap().count();
    let before = links();
    for name in ["l", "staging", ".has-mount-program"] {
        let err = overlay.create(name, None, &opts).unwrap_err();
        assert!(matches!(err, Error::InvalidId { .. }), "{name}: {err}");
        overlay.remove(name).unwrap();
        assert!(!overlay.exists(name));
    }
    assert_eq!(links(), before);
    assert!(overlay.list_layers().unwrap().iter().all(|id| id != "l"));
    std::env::set_current_dir("/").unwrap();
}
