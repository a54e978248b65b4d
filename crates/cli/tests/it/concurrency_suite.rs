//! Concurrency suite: 8 processes at a time (6 of ours, 2 of the Go tool) spend a bounded time
//! making, naming, mounting, diffing and deleting layers on one vfs store. Each worker owns
//! its layers and names and records every operation that reported success. Afterwards every
//! such operation is visible (the layers created and not deleted are there with their last
//! names, the deleted ones are gone), the store passes `check` and gives back every diff,
//! mount counts are zero, and the Go tool lists the same layers.
//!
//! `LAYERSTORE_CONCURRENCY_SECS` sets the duration (default 12), `LAYERSTORE_CONCURRENCY_SEED`
//! the seed.

use crate::suite;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use layerstore_testsupport::{Capability, require_or_skip};
use suite::{Rng, Scratch, Store};

const WORKERS: usize = 8;
const GO_WORKERS: usize = 2;
const DEFAULT_SECONDS: usize = 12;
const DEFAULT_SEED: u64 = 0xc0c0_0000_0000_0001;

/// A layer a worker made and still owns.
#[derive(Debug, Clone)]
struct Owned {
    id: String,
    names: Vec<String>,
    parent: Option<String>,
    /// sha256 of the imported tarball (none for a created layer).
    digest: Option<String>,
}

struct Worker {
    index: usize,
    go: bool,
    rng: Rng,
    store: Store,
    dir: std::path::PathBuf,
    owned: Vec<Owned>,
    counter: usize,
    ops: BTreeMap<&'static str, usize>,
}

impl Worker {
    fn tool(&self) -> &'static str {
        if self.go { "go" } else { "layerstore" }
    }

    fn run(&self, args: &[&str]) -> Output {
        if self.go {
            self.store.go(args)
        } else {
            self.store.run(args)
        }
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "worker {} ({}) {args:?}: {}",
            self.index,
            self.tool(),
            suite::describe(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn fresh_name(&mut self) -> String {
        self.counter += 1;
        format!("w{}-{}", self.index, self.counter)
    }

    fn has_children(&self, id: &str) -> bool {
        self.owned.iter().any(|o| o.parent.as_deref() == Some(id))
    }

    fn step(&mut self) {
        let choice = self.rng.below(100);
        if self.owned.is_empty() || choice < 30 {
            self.import();
        } else if choice < 45 {
            self.create();
        } else if choice < 60 {
            self.set_names();
        } else if choice < 75 {
            self.mount_unmount();
        } else if choice < 85 {
            self.diff();
        } else {
            self.delete();
        }
    }

    fn parent(&mut self) -> Option<String> {
        if self.owned.is_empty() || self.rng.coin() {
            None
        } else {
            Some(self.rng.pick(&self.owned).id.clone())
        }
    }

    fn import(&mut self) {
        let parent = self.parent();
        let name = self.fresh_name();
        let count = 2 + self.rng.below(10) as usize;
        let tar = suite::random_tarball(&mut self.rng, &name, count, 2048);
        let file = self.dir.join(format!("{name}.tar"));
        suite::write_file(&file, &tar);
        let file_arg = file.display().to_string();
        let mut args = vec!["import-layer", "-n", &name, "-f", &file_arg];
        args.extend(parent.as_deref());
        let id = first_line(&self.run_ok(&args));
        let _ = std::fs::remove_file(&file);
        self.owned.push(Owned {
            id,
            names: vec![name],
            parent,
            digest: Some(suite::sha256_digest(&tar)),
        });
        *self.ops.entry("import").or_default() += 1;
    }

    fn create(&mut self) {
        let parent = self.parent();
        let name = self.fresh_name();
        let mut args = vec!["create-layer", "-n", &name];
        args.extend(parent.as_deref());
        let id = first_line(&self.run_ok(&args));
        self.owned.push(Owned {
            id,
            names: vec![name],
            parent,
            digest: None,
        });
        *self.ops.entry("create").or_default() += 1;
    }

    fn set_names(&mut self) {
        let at = self.rng.below(self.owned.len() as u64) as usize;
        let names = vec![self.fresh_name(), self.fresh_name()];
        let id = self.owned[at].id.clone();
        self.run_ok(&["set-names", "-n", &names[0], "-n", &names[1], &id]);
        self.owned[at].names = names;
        *self.ops.entry("set-names").or_default() += 1;
    }

    fn mount_unmount(&mut self) {
        let id = self.rng.pick(&self.owned).id.clone();
        // Mount by ID: the Go tool cannot mount by name.
        let path = first_line(&self.run_ok(&["mount", &id]));
        assert!(
            Path::new(&path).is_dir(),
            "worker {} ({}) mount {id}: {path} is not a directory",
            self.index,
            self.tool()
        );
        *self.ops.entry("mount").or_default() += 1;
        self.run_ok(&["unmount", &id]);
        *self.ops.entry("unmount").or_default() += 1;
    }

    fn diff(&mut self) {
        let imported: Vec<Owned> = self
            .owned
            .iter()
            .filter(|o| o.digest.is_some())
            .cloned()
            .collect();
        let Some(layer) = imported.get(self.rng.below(imported.len().max(1) as u64) as usize)
        else {
            return;
        };
        let output = self.run(&["diff", "-u", &layer.id]);
        assert!(
            output.status.success(),
            "worker {} ({}) diff {}: {}",
            self.index,
            self.tool(),
            layer.id,
            suite::describe(&output)
        );
        assert_eq!(
            Some(suite::sha256_digest(&output.stdout)),
            layer.digest,
            "worker {} ({}) diff {} differs from the imported tarball",
            self.index,
            self.tool(),
            layer.id
        );
        *self.ops.entry("diff").or_default() += 1;
    }

    fn delete(&mut self) {
        let leaves: Vec<usize> = (0..self.owned.len())
            .filter(|&i| !self.has_children(&self.owned[i].id))
            .collect();
        let at = *self.rng.pick(&leaves);
        let id = self.owned[at].id.clone();
        self.run_ok(&["delete-layer", &id]);
        self.owned.remove(at);
        *self.ops.entry("delete").or_default() += 1;
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[test]
fn eight_processes_share_one_store() {
    require_or_skip!(Capability::Root, Capability::GoTool);
    let scratch = Scratch::new();
    let store = Store::new(
        scratch.path().join("graph"),
        scratch.path().join("run"),
        "vfs",
    );
    // Create the store before the workers race to.
    store.run_ok(&["layers"]);
    let seconds = suite::count_from_env("LAYERSTORE_CONCURRENCY_SECS", DEFAULT_SECONDS);
    let seed = suite::seed_from_env("LAYERSTORE_CONCURRENCY_SEED", DEFAULT_SEED);
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let started = Instant::now();

    let handles: Vec<_> = (0..WORKERS)
        .map(|index| {
            let dir = scratch.path().join(format!("worker-{index}"));
            std::fs::create_dir(&dir).expect("worker dir");
            let mut worker = Worker {
                index,
                go: index >= WORKERS - GO_WORKERS,
                rng: Rng::new(seed.wrapping_add(index as u64)),
                store: store.clone(),
                dir,
                owned: Vec::new(),
                counter: 0,
                ops: BTreeMap::new(),
            };
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    worker.step();
                }
                worker
            })
        })
        .collect();
    let workers: Vec<Worker> = handles
        .into_iter()
        .map(|h| match h.join() {
            Ok(worker) => worker,
            Err(panic) => std::panic::resume_unwind(panic),
        })
        .collect();
    let ran_for = started.elapsed();

    // Every success is visible, and nothing else is there.
    let listed = suite::verify(&store, &format!("concurrency (seed {seed:#x})"));
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for worker in &workers {
        for owned in &worker.owned {
            expected.insert(owned.id.clone(), owned.names.clone());
        }
    }
    let actual: BTreeMap<String, Vec<String>> = listed
        .iter()
        .map(|l| (l.id.clone(), l.names.clone()))
        .collect();
    assert_eq!(
        actual, expected,
        "layers and names after the run (seed {seed:#x})"
    );
    for worker in &workers {
        for owned in &worker.owned {
            let layer = listed.iter().find(|l| l.id == owned.id).expect("listed");
            assert_eq!(
                layer.parent,
                owned.parent.clone().unwrap_or_default(),
                "parent of {}",
                owned.id
            );
        }
    }
    let counts = store.mount_counts();
    assert!(
        counts.values().all(|&c| c == 0),
        "mount counts left: {counts:?}"
    );
    suite::go_agrees(&store, &listed, "after the concurrency run");

    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for worker in &workers {
        for (op, n) in &worker.ops {
            *totals.entry(op).or_default() += n;
        }
    }
    let total: usize = totals.values().sum();
    let go_total: usize = workers
        .iter()
        .filter(|w| w.go)
        .flat_map(|w| w.ops.values())
        .sum();
    assert!(total >= WORKERS * 5, "too few operations ran: {totals:?}");
    assert!(go_total > 0, "the Go workers did nothing");
    eprintln!(
        "concurrency suite: {WORKERS} processes ({GO_WORKERS} Go) for {ran_for:.1?}, seed \
         {seed:#x}: {total} successful operations ({go_total} by Go) {totals:?}; {} layers at \
         the end; verified in {:.1?}",
        listed.len(),
        started.elapsed() - ran_for
    );
}
