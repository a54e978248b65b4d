//! Crash suite: seeded trials that SIGKILL a `layerstore` process in the middle of an import,
//! create, delete, set-names, mount or unmount, on vfs and on overlay, either at a named crash
//! point (`LAYERSTORE_CRASH_AT`) or after a random few milliseconds. After each kill: the store
//! opens read-write (ours, then the Go tool, which must list the same layers); no layer is left
//! incomplete; every listed layer gives back its recorded diff and passes `check`; the layers
//! the call did not touch are all there with their names; the one it touched is either as
//! before or as after (never in between); no orphaned layer files remain.
//!
//! Rerun one trial: `LAYERSTORE_CRASH_SEED=<seed printed> LAYERSTORE_CRASH_TRIALS=1 cargo test
//! -p layerstore-cli --test crash_suite -- <driver test>`.

use crate::suite;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use layerstore_layers::crash;
use layerstore_testsupport::{Capability, require_or_skip};
use suite::{Layer, Rng, Scratch, Store};

/// The first trial's seed; trial `i` uses `seed + i`.
const DEFAULT_SEED: u64 = 0xc0a5_7ed5_0000_0000;
/// Trials per driver (two drivers: 120 in all).
const DEFAULT_TRIALS: usize = 60;
/// Timer kills land within this many milliseconds of the spawn at least; more on a machine
/// where the calibration calls (see [`Template::new`]) take longer.
const MIN_KILL_WINDOW_MS: u64 = 8;
/// Files in the largest trial import (the calibration import has as many).
const MAX_TRIAL_FILES: u64 = 220;

/// What one trial does to the store.
#[derive(Debug, Clone)]
enum Op {
    Import {
        parent: Option<String>,
        name: String,
        tar: Vec<u8>,
    },
    Create {
        parent: Option<String>,
        name: String,
    },
    Delete {
        target: String,
    },
    SetNames {
        target: String,
        names: Vec<String>,
    },
    Mount {
        target: String,
    },
    Unmount {
        target: String,
    },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Import { .. } => "import",
            Op::Create { .. } => "create",
            Op::Delete { .. } => "delete",
            Op::SetNames { .. } => "set-names",
            Op::Mount { .. } => "mount",
            Op::Unmount { .. } => "unmount",
        }
    }

    /// The crash points this operation passes (or may pass).
    fn points(&self) -> &'static [&'static str] {
        match self {
            Op::Import { .. } => &[
                crash::PUT_AFTER_INCOMPLETE_RECORD,
                crash::PUT_AFTER_DRIVER_CREATE,
                crash::PUT_AFTER_APPLY,
                crash::PUT_AFTER_TAR_SPLIT,
                crash::SAVE_AFTER_TOKEN,
                crash::PUT_DONE,
            ],
            Op::Create { .. } => &[
                crash::PUT_AFTER_INCOMPLETE_RECORD,
                crash::PUT_AFTER_DRIVER_CREATE,
                crash::SAVE_AFTER_TOKEN,
                crash::PUT_DONE,
            ],
            Op::Delete { .. } => &[
                crash::DELETE_AFTER_INCOMPLETE_RECORD,
                crash::DELETE_AFTER_DRIVER_REMOVE,
                crash::SAVE_AFTER_TOKEN,
            ],
            Op::SetNames { .. } | Op::Mount { .. } | Op::Unmount { .. } => {
                &[crash::SAVE_AFTER_TOKEN]
            }
        }
    }
}

/// How the process is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    AtPoint(&'static str),
    AfterMs(u64),
}

/// A store with four layers, copied for every trial.
struct Template {
    _scratch: Scratch,
    store: Store,
    layers: Vec<Layer>,
    /// Timer kills land within this many milliseconds of the spawn: for a call that moves no
    /// layer data, and for the largest trial import (smaller imports get a share of it).
    kill_window_ms: [u64; 2],
}

impl Template {
    fn new(driver: &str) -> Template {
        let scratch = Scratch::new();
        let store = Store::new(
            scratch.path().join("graph"),
            scratch.path().join("run"),
            driver,
        );
        let mut rng = Rng::new(7);
        let base = scratch.path().join("base.tar");
        suite::write_file(&base, &suite::random_tarball(&mut rng, "base", 24, 4096));
        let mid = scratch.path().join("mid.tar");
        suite::write_file(&mid, &suite::random_tarball(&mut rng, "mid", 16, 4096));
        let spare = scratch.path().join("spare.tar");
        suite::write_file(&spare, &suite::random_tarball(&mut rng, "spare", 8, 2048));
        let path = |p: &std::path::Path| p.display().to_string();
        store.run_ok(&["import-layer", "-n", "base", "-f", &path(&base)]);
        store.run_ok(&["import-layer", "-n", "mid", "-f", &path(&mid), "base"]);
        store.run_ok(&["create-layer", "-n", "leaf", "mid"]);
        store.run_ok(&[
            "import-layer",
            "-n",
            "spare",
            "-n",
            "spare2",
            "-f",
            &path(&spare),
        ]);
        // Calibrate the timer kills: the window is 1.25 times the time an import as large as
        // the largest trial import takes here, so the kills spread over the whole call.
        let calibration = scratch.path().join("calibration.tar");
        suite::write_file(
            &calibration,
            &suite::random_tarball(&mut rng, "calibration", MAX_TRIAL_FILES as usize, 8192),
        );
        let started = Instant::now();
        store.run_ok(&[
            "import-layer",
            "-n",
            "calibration",
            "-f",
            &path(&calibration),
        ]);
        let import_ms = started.elapsed().as_millis() as u64;
        let started = Instant::now();
        store.run_ok(&["delete-layer", "calibration"]);
        let light_ms = started.elapsed().as_millis() as u64;
        let kill_window_ms = [light_ms * 5 / 4, import_ms * 5 / 4];
        let layers = suite::verify(&store, &format!("{driver} template"));
        assert_eq!(layers.len(), 4);
        store.run_ok(&["shutdown"]);
        // The trial copies get fresh mounts from the tool; the template keeps none.
        suite::unmount_under(scratch.path());
        Template {
            _scratch: scratch,
            store,
            layers,
            kill_window_ms,
        }
    }

    fn id(&self, name: &str) -> String {
        self.layers
            .iter()
            .find(|l| l.names.iter().any(|n| n == name))
            .map(|l| l.id.clone())
            .expect("template layer by name")
    }
}

/// Counts for the summary line (and docs/RELIABILITY.md).
#[derive(Debug, Default)]
struct Tally {
    trials: usize,
    by_op: BTreeMap<&'static str, usize>,
    killed_at_point: usize,
    killed_by_timer: usize,
    completed: usize,
    new_layer_kept: usize,
    new_layer_dropped: usize,
    probe_dirs_left: usize,
    /// Problems `check` found after the open, by kind (all repaired by `check --repair`).
    repaired: BTreeMap<String, usize>,
}

/// The `check` problems a kill may leave that the next open does not clear.
const ALLOWED_AFTER_A_CRASH: &[&str] = &["stale-temp-file", "stale-mount-count", "uncounted-mount"];

fn choose_op(rng: &mut Rng, template: &Template, trial: usize) -> Op {
    let parents = [None, Some(template.id("base")), Some(template.id("mid"))];
    let any = ["base", "mid", "leaf", "spare"];
    match rng.below(6) {
        0 => Op::Import {
            parent: rng.pick(&parents).clone(),
            name: format!("new-{trial}"),
            tar: {
                let count = 20 + rng.below(MAX_TRIAL_FILES - 20) as usize;
                suite::random_tarball(rng, &format!("t{trial}"), count, 8192)
            },
        },
        1 => Op::Create {
            parent: rng.pick(&parents).clone(),
            name: format!("new-{trial}"),
        },
        // Only layers without children can be deleted.
        2 => Op::Delete {
            target: template.id(rng.pick::<&str>(&["leaf", "spare"])),
        },
        3 => Op::SetNames {
            target: template.id(rng.pick::<&str>(&any)),
            names: vec![format!("renamed-{trial}"), format!("alias-{trial}")],
        },
        4 => Op::Mount {
            target: template.id(rng.pick::<&str>(&any)),
        },
        _ => Op::Unmount {
            target: template.id(rng.pick::<&str>(&any)),
        },
    }
}

fn run_trial(template: &Template, driver: &str, trial: usize, seed: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    let scratch = Scratch::new();
    let graph = scratch.path().join("graph");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&template.store.graph)
        .arg(&graph)
        .status()
        .expect("runs cp");
    assert!(copied.success(), "copy the template store");
    let store = Store::new(graph, scratch.path().join("run"), driver);

    let op = choose_op(&mut rng, template, trial);
    let kill = if rng.coin() {
        Kill::AtPoint(op.points()[rng.below(op.points().len() as u64) as usize])
    } else {
        let [light, heavy] = template.kill_window_ms;
        let window = match &op {
            Op::Import { tar, .. } => {
                light.max(heavy * tar.len() as u64 / (MAX_TRIAL_FILES * 4096 + 1).max(1))
            }
            _ => light,
        };
        Kill::AfterMs(rng.below(window.max(MIN_KILL_WINDOW_MS) + 1))
    };
    let context = format!(
        "{driver} trial {trial} seed {seed:#x} ({} {kill:?})",
        op.kind()
    );

    let tar_path = scratch.path().join("layer.tar");
    let mut args: Vec<String> = Vec::new();
    match &op {
        Op::Import { parent, name, tar } => {
            suite::write_file(&tar_path, tar);
            args.extend(["import-layer".into(), "-n".into(), name.clone()]);
            args.extend(["-f".into(), tar_path.display().to_string()]);
            args.extend(parent.iter().cloned());
        }
        Op::Create { parent, name } => {
            args.extend(["create-layer".into(), "-n".into(), name.clone()]);
            args.extend(parent.iter().cloned());
        }
        Op::Delete { target } => args.extend(["delete-layer".into(), target.clone()]),
        Op::SetNames { target, names } => {
            args.push("set-names".into());
            for name in names {
                args.extend(["-n".into(), name.clone()]);
            }
            args.push(target.clone());
        }
        Op::Mount { target } => args.extend(["mount".into(), target.clone()]),
        Op::Unmount { target } => {
            store.run_ok(&["mount", target]);
            args.extend(["unmount".into(), target.clone()]);
        }
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = store.command(&arg_refs);
    if let Kill::AtPoint(point) = kill {
        command.env(crash::CRASH_ENV, point);
    }
    let mut child = command.spawn().expect("spawn layerstore");
    if let Kill::AfterMs(ms) = kill {
        std::thread::sleep(Duration::from_millis(ms));
        // SIGKILL; a process that already exited is not affected.
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("wait for layerstore");
    let killed = output.status.signal() == Some(9);
    if killed {
        match kill {
            Kill::AtPoint(_) => tally.killed_at_point += 1,
            Kill::AfterMs(_) => tally.killed_by_timer += 1,
        }
    } else {
        tally.completed += 1;
        assert!(
            output.status.success(),
            "{context}: the uninterrupted call failed: {}",
            suite::describe(&output)
        );
    }
    tally.trials += 1;
    *tally.by_op.entry(op.kind()).or_default() += 1;

    // The store opens read-write and cleans up. What `check` may still find then is only what
    // a killed process can leave outside the layer records (a temp file of mountpoints.json,
    // a mount count or a kernel mount of the dead process); `check --repair` clears it.
    store.listed();
    if suite::check_available() {
        let output = store.run(&["check", "--json"]);
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                panic!("{context}: check --json: {e}: {}", suite::describe(&output))
            });
        let problems = report["problems"].as_array().cloned().unwrap_or_default();
        for problem in &problems {
            let kind = problem["kind"].as_str().unwrap_or_default();
            assert!(
                ALLOWED_AFTER_A_CRASH.contains(&kind),
                "{context}: check found {problem}"
            );
            *tally.repaired.entry(kind.to_string()).or_default() += 1;
        }
        if !problems.is_empty() {
            store.run_ok(&["check", "--repair"]);
        }
    }
    // Every layer is whole.
    let after = suite::verify(&store, &context);
    let before: BTreeMap<&str, &Layer> =
        template.layers.iter().map(|l| (l.id.as_str(), l)).collect();
    let new: Vec<&Layer> = after
        .iter()
        .filter(|l| !before.contains_key(l.id.as_str()))
        .collect();
    match &op {
        Op::Import { parent, name, tar } => {
            assert!(new.len() <= 1, "{context}: more than one new layer");
            assert!(killed || new.len() == 1, "{context}: finished import lost");
            if let Some(layer) = new.first() {
                assert_eq!(layer.names, vec![name.clone()], "{context}");
                assert_eq!(&layer.parent, parent.as_ref().unwrap_or(&String::new()));
                assert_eq!(
                    layer.diff_digest.as_deref(),
                    Some(suite::sha256_digest(tar).as_str()),
                    "{context}: the kept layer is not the imported tarball"
                );
            }
        }
        Op::Create { parent, name } => {
            assert!(new.len() <= 1, "{context}: more than one new layer");
            assert!(killed || new.len() == 1, "{context}: finished create lost");
            if let Some(layer) = new.first() {
                assert_eq!(layer.names, vec![name.clone()], "{context}");
                assert_eq!(&layer.parent, parent.as_ref().unwrap_or(&String::new()));
            }
        }
        _ => assert!(new.is_empty(), "{context}: unexpected new layers {new:?}"),
    }
    match &op {
        Op::Import { .. } | Op::Create { .. } => {
            if new.is_empty() {
                tally.new_layer_dropped += 1;
            } else {
                tally.new_layer_kept += 1;
            }
        }
        _ => {}
    }
    for old in &template.layers {
        let now = after.iter().find(|l| l.id == old.id);
        match (&op, now) {
            (Op::Delete { target }, None) if *target == old.id => {}
            (Op::Delete { target }, Some(_)) if *target == old.id => {
                assert!(killed, "{context}: finished delete left the layer");
            }
            (Op::SetNames { target, names }, Some(now)) if *target == old.id => {
                assert!(
                    now.names == old.names || now.names == *names,
                    "{context}: names half-set: {:?}",
                    now.names
                );
                assert!(killed || now.names == *names, "{context}: set-names lost");
            }
            (_, Some(now)) => assert_eq!(now.names, old.names, "{context}: names changed"),
            (_, None) => panic!("{context}: layer {} ({:?}) lost", old.id, old.names),
        }
    }
    if !killed {
        let counts = store.mount_counts();
        match &op {
            Op::Mount { target } => {
                assert_eq!(counts.get(target), Some(&1), "{context}: mount not counted");
            }
            Op::Unmount { target } => {
                assert!(
                    counts.get(target).is_none_or(|c| *c == 0),
                    "{context}: unmount not counted"
                );
            }
            _ => {}
        }
    }
    tally.probe_dirs_left += assert_no_orphans(&store, &after, &context);
    suite::go_agrees(&store, &after, &context);
}

/// Nothing of an unlisted layer remains: no driver directory, no tar-split, no temp files.
/// Returns how many leftover driver probe directories it tolerated.
fn assert_no_orphans(store: &Store, listed: &[Layer], context: &str) -> usize {
    let mut probes = 0;
    let known = |name: &str| listed.iter().any(|l| l.id == name);
    let driver_layers = match store.driver.as_str() {
        "vfs" => store.graph.join("vfs").join("dir"),
        other => store.graph.join(other),
    };
    for entry in fs::read_dir(&driver_layers).expect("driver home").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "l" || name.starts_with('.') {
            continue; // overlay's short-link directory and feature marks
        }
        if !is_layer_id(&name) {
            // The overlay driver's feature probes (`d_type-check-*`, `compat-*`, as Go's): a
            // process killed while opening the store leaves them behind. Not layers, nothing
            // lost; counted for the report. (Every layer of this suite has a random 64-hex ID.)
            probes += 1;
            continue;
        }
        assert!(known(&name), "{context}: orphaned driver layer {name}");
    }
    for entry in fs::read_dir(store.layers_dir())
        .expect("layers dir")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "layers.json" || name == "layers.lock" {
            continue;
        }
        let id = name.strip_suffix(".tar-split.gz").unwrap_or(&name);
        assert!(
            known(id),
            "{context}: stray file {name} in the layers directory"
        );
    }
    probes
}

fn is_layer_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn crash_trials(driver: &str) {
    let started = Instant::now();
    let template = Template::new(driver);
    let first_seed = suite::seed_from_env("LAYERSTORE_CRASH_SEED", DEFAULT_SEED);
    let trials = suite::count_from_env("LAYERSTORE_CRASH_TRIALS", DEFAULT_TRIALS);
    let mut tally = Tally::default();
    for trial in 0..trials {
        let seed = first_seed.wrapping_add(trial as u64);
        run_trial(&template, driver, trial, seed, &mut tally);
    }
    eprintln!(
        "crash suite {driver}: {} trials (seeds {first_seed:#x}..+{trials}), ops {:?}; \
         timer windows {:?} ms; \
         killed at a crash point {}, killed by timer {}, finished before the kill {}; \
         new layer kept {} / rolled back {}; driver probe dirs left {}; check {} (problems found then repaired: {:?}); {:.1?}",
        tally.trials,
        tally.by_op,
        template.kill_window_ms,
        tally.killed_at_point,
        tally.killed_by_timer,
        tally.completed,
        tally.new_layer_kept,
        tally.new_layer_dropped,
        tally.probe_dirs_left,
        if suite::check_available() {
            "run"
        } else {
            "absent"
        },
        tally.repaired,
        started.elapsed()
    );
    // A binary without crash points would let every trial aimed at one run to its end.
    assert!(
        trials < DEFAULT_TRIALS || tally.killed_at_point > 0,
        "no trial was killed at a crash point: the binary under test lacks them (the cli's tests \
         build it with layerstore-layers' crash-points feature)"
    );
    assert_eq!(tally.trials, trials);
}

#[test]
fn crashes_on_vfs_leave_a_whole_store() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    crash_trials("vfs");
}

#[test]
fn crashes_on_overlay_leave_a_whole_store() {
    require_or_skip!(Capability::Root, Capability::Overlay, Capability::GoTool);
    crash_trials("overlay");
}
