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
  bench-bound  one library alone, timed by bench (`bench-bound gunzip|unzstd|sha256 FILE`)
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
    /// Runs with a temp dir of its own (`TMPDIR`) and fails when anything is still mounted
    /// beneath it afterwards: a test whose scratch does not detach what podman, the Go tool
    /// or a killed driver left mounted.
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
        args: &["package", "--workspace", "--no-verify", "--allow-dirty"],
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
        let guard = step.guard_mounts.then(MountGuard::new).transpose()?;
        if let Some(guard) = &guard {
            command.env("TMPDIR", &guard.tmp);
        }
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

/// The temp dir of one CI step, checked for mounts the step left behind.
struct MountGuard {
    tmp: std::path::PathBuf,
}

impl MountGuard {
    fn new() -> Result<Self, String> {
        Self::at(std::env::temp_dir().join(format!("layerstore-ci-{}", std::process::id())))
    }

    fn at(tmp: std::path::PathBuf) -> Result<Self, String> {
        std::fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        Ok(MountGuard { tmp })
    }

    /// Fails naming every mount left beneath the temp dir (after detaching them, so that the
    /// next run starts clean), and removes the temp dir.
    fn check(self, step: &str) -> Result<(), String> {
        use layerstore_testsupport::scratch::{mounts_under, unmount_under};
        let leaked = mounts_under(&self.tmp);
        unmount_under(&self.tmp);
        let _ = std::fs::remove_dir_all(&self.tmp);
        if leaked.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = leaked.iter().map(|m| m.display().to_string()).collect();
        Err(format!(
            "step `{step}` left {} mounts under its temp dir (a test scratch that podman, the Go \
             tool or a killed process touches must be a testsupport::scratch::Scratch): {}",
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
        let guard = MountGuard::at(clean.path().join("ci")).unwrap();
        std::fs::create_dir(guard.tmp.join("scratch")).unwrap();
        guard.check("test").expect("nothing left mounted");
        assert!(!clean.path().join("ci").exists());

        require_or_skip!(Capability::Root);
        let leaky = tempfile::tempdir().unwrap();
        let guard = MountGuard::at(leaky.path().join("ci")).unwrap();
        let left = guard.tmp.join("lspull-1/graph/overlay");
        std::fs::create_dir_all(&left).unwrap();
        rustix::mount::mount_bind(&left, &left).unwrap();
        let err = guard.check("test").expect_err("a mount was left");
        assert!(err.contains("left 1 mounts"), "{err}");
        assert!(err.contains(&left.display().to_string()), "{err}");
        assert_eq!(
            layerstore_testsupport::scratch::mounts_under(leaky.path()),
            Vec::<std::path::PathBuf>::new()
        );
        assert!(!leaky.path().join("ci").exists());
    }
}
