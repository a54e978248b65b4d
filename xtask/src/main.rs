//! `cargo xtask`: the project's automation, in Rust instead of shell scripts.
//!
//! - `cargo xtask ci`: what CI runs; fmt, clippy, tests, docs; stops at the first failure.
//! - `cargo xtask demo`: the README's main job (import a layer, give it back, verify).
//! - `cargo xtask fuzz --seconds N`: every fuzz target of `fuzz/`, N seconds each.
//! - `cargo xtask bench`: whole-process benchmarks against the Go tool and the physical
//!   reference; writes `docs/BENCHMARKS.md` (see `bench.rs`; never part of `ci`).
//! - `cargo xtask bench-fixtures`: builds the tarballs the benchmarks import (`bench` does it
//!   when they are missing).
//! - `cargo xtask fixtures`: makes `tests/fixtures/go-1.43` again from GNU tar and the Go tool.

use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench;
mod demo;
mod fixtures;
mod fuzz;
mod tidy;
mod tools;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo::run(&args[1..]).map_err(|e| format!("demo: {e}")),
        Some("fuzz") => fuzz::run(&args[1..]).map_err(|e| format!("fuzz: {e}")),
        Some("tidy") => tidy::check().map_err(|e| format!("tidy: {e}")),
        Some("bench") => bench::run(&args[1..]).map_err(|e| format!("bench: {e}")),
        Some("bench-bound") => {
            bench::bound::run(&args[1..]).map_err(|e| format!("bench-bound: {e}"))
        }
        Some("bench-fixtures") => {
            bench::fixtures::make_all(&args[1..]).map_err(|e| format!("bench-fixtures: {e}"))
        }
        Some("fixtures") => fixtures::run(&args[1..]).map_err(|e| format!("fixtures: {e}")),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "\
usage: cargo xtask <task>
tasks:
  ci     cargo fmt --check, clippy -D warnings, test --workspace, doc (warnings denied)
  demo   the README's main job: import examples/layer.tar.gz into the default store, give
         it back, verify its digest (`demo --keep`, `demo -- <global layerstore options>`)
  fuzz   every cargo-fuzz target of fuzz/ for N seconds each (`fuzz --seconds N [TARGET...]`)
  tidy   repository invariants (dependency arrows, crate docs, no paths of one machine)
  bench  whole-process benchmarks vs the Go tool -> docs/BENCHMARKS.md (`bench --help`)
  bench-bound  one library alone, timed by bench (`bench-bound gunzip|unzstd|sha256|sha256-hash-only FILE`, `write-alone FILE OUT`, `copy-alone threads|range DIR OUT`)
  bench-fixtures  the tarballs bench imports (`bench-fixtures [--dir DIR]`; bench runs it)
  fixtures  makes tests/fixtures/go-1.43 again from GNU tar and the Go tool (`fixtures --help`)
";

/// The workspace root (the directory holding the root `Cargo.toml`).
pub(crate) fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// One step of CI: a cargo command with extra environment.
struct Step {
    name: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// Fails when the step leaves a new mount under the temp dirs (`TMPDIR`, /var/tmp): a
    /// test whose scratch does not detach what podman, the Go tool or a killed driver left
    /// mounted. (The temp dir itself is kept: podman refuses run roots over 50 characters, so
    /// scratch paths must stay short.)
    guard_mounts: bool,
}

const CI_STEPS: &[Step] = &[
    Step {
        name: "format",
        args: &["fmt", "--all", "--check"],
        env: &[],
        guard_mounts: false,
    },
    Step {
        name: "clippy",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        env: &[],
        guard_mounts: false,
    },
    // Every publishable crate packs as crates.io would take it (manifest metadata, files,
    // dependencies on each other by version); nothing is built or uploaded.
    Step {
        name: "package",
        // The tooling and test-only crates (`publish = false`) are left out: xtask depends on
        // testsupport, which is never published.
        args: &[
            "package",
            "--workspace",
            "--no-verify",
            "--allow-dirty",
            "--exclude",
            "xtask",
            "--exclude",
            "layerstore-tests",
            "--exclude",
            "layerstore-testsupport",
        ],
        env: &[],
        guard_mounts: false,
    },
    Step {
        name: "test",
        args: &["test", "--workspace"],
        env: &[],
        guard_mounts: true,
    },
    Step {
        name: "doc",
        args: &["doc", "--workspace", "--no-deps"],
        env: &[("RUSTDOCFLAGS", "-D warnings")],
        guard_mounts: false,
    },
];

fn ci() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let total = Instant::now();
    for (n, step) in CI_STEPS.iter().enumerate() {
        println!(
            "==> [{}/{}] {}: cargo {}",
            n + 1,
            CI_STEPS.len(),
            step.name,
            step.args.join(" ")
        );
        let started = Instant::now();
        let mut command = Command::new(&cargo);
        command.args(step.args).envs(step.env.iter().copied());
        let guard = step.guard_mounts.then(MountGuard::new);
        let status = command
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if let Some(guard) = guard {
            guard.check(step.name)?;
        }
        println!(
            "==> {} {} in {:.1}s",
            step.name,
            if status.success() { "passed" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if !status.success() {
            return Err(format!("step `{}` failed ({status})", step.name));
        }
    }
    println!("==> ci passed in {:.1}s", total.elapsed().as_secs_f64());
    Ok(())
}

/// The mounts under the temp dirs before a CI step, to find the ones the step leaves.
struct MountGuard {
    watched: Vec<std::path::PathBuf>,
    before: Vec<std::path::PathBuf>,
}

impl MountGuard {
    fn new() -> Self {
        Self::watching(vec![std::env::temp_dir(), "/var/tmp".into()])
    }

    fn watching(watched: Vec<std::path::PathBuf>) -> Self {
        let before = Self::mounts(&watched);
        MountGuard { watched, before }
    }

    fn mounts(watched: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
        watched
            .iter()
            .flat_map(|dir| layerstore_testsupport::scratch::mounts_under(dir))
            .collect()
    }

    /// Fails naming every mount under the watched dirs that was not there before (after
    /// detaching them, so that the next run starts clean); mounts that were there before are
    /// left alone.
    fn check(self, step: &str) -> Result<(), String> {
        let leaked: Vec<_> = Self::mounts(&self.watched)
            .into_iter()
            .filter(|m| !self.before.contains(m))
            .collect();
        if leaked.is_empty() {
            return Ok(());
        }
        for mount in &leaked {
            layerstore_testsupport::scratch::unmount_under(mount);
        }
        let names: Vec<String> = leaked.iter().map(|m| m.display().to_string()).collect();
        Err(format!(
            "step `{step}` left {} mounts under the temp dirs (a test scratch that podman, the \
             Go tool or a killed process touches must be a testsupport::scratch::Scratch): {}",
            leaked.len(),
            names.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layerstore_testsupport::{Capability, require_or_skip};

    #[test]
    fn the_mount_guard_fails_naming_what_a_step_left_mounted_and_detaches_it() {
        let clean = tempfile::tempdir().unwrap();
        let guard = MountGuard::watching(vec![clean.path().to_path_buf()]);
        std::fs::create_dir(clean.path().join("scratch")).unwrap();
        guard.check("test").expect("nothing left mounted");

        require_or_skip!(Capability::Root);
        let leaky = tempfile::tempdir().unwrap();
        let earlier = leaky.path().join("earlier");
        std::fs::create_dir_all(&earlier).unwrap();
        rustix::mount::mount_bind(&earlier, &earlier).unwrap();
        let guard = MountGuard::watching(vec![leaky.path().to_path_buf()]);
        let left = leaky.path().join("lspull-1/graph/overlay");
        std::fs::create_dir_all(&left).unwrap();
        rustix::mount::mount_bind(&left, &left).unwrap();
        let err = guard.check("test").expect_err("a mount was left");
        assert!(err.contains("left 1 mounts"), "{err}");
        assert!(err.contains(&left.display().to_string()), "{err}");
        // What was mounted before the step is not the step's: named nowhere, still there.
        assert!(!err.contains(&earlier.display().to_string()), "{err}");
        assert_eq!(
            layerstore_testsupport::scratch::mounts_under(leaky.path()),
            vec![earlier.clone()]
        );
        layerstore_testsupport::scratch::unmount_under(&earlier);
    }
}
