//! `cargo xtask bench`: whole-process benchmarks of our `layerstore` CLI against the Go
//! `containers-storage` tool and against the physical reference (GNU tar, the decompressors,
//! `cp -a`), in the same run, on a fresh tmpfs and on the disk. Writes `docs/BENCHMARKS.md`.
//!
//! Method: every timed command is one process, timed with `Instant` around spawn + `wait4`,
//! whose rusage gives peak RSS and CPU. Runs alternate the two tools (the first one swaps each
//! run); untimed prepare steps (create the layer, remove the output) end with `sync(2)`.
//! Each tool gets its own store for imports; the many-layer store and the overlay chain are
//! written once (see [`store`]) and shared by both tools. Criterion stays for micro benchmarks.

pub(crate) mod bound;
mod chart;
mod exec;
mod ext4loop;
pub(crate) mod fixtures;
mod machine;
mod options;
mod pull;
mod render;
mod report;
mod reporting;
mod scratch;
mod sections;
mod settle;
pub(crate) mod store;
mod whole_store;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use exec::Runner;
use fixtures::Fixture;
use machine::{describe_fs, load_average, utc_now};
use options::{BENCH_USAGE, FsKind, Options, Section};
use render::{kept_notes, render};
use report::{FsResults, GoalRule};
use scratch::ScratchRoot;
use sections::{Context, run_sections};

use crate::workspace_root;

/// The chart's file name, beside the report.
const CHART_FILE: &str = "benchmarks.svg";

fn sync() {
    rustix::fs::sync();
}

/// A fixed 64-hex layer ID per purpose, so prepare steps can delete and re-create "the same" layer.
fn layer_id(purpose: &str) -> String {
    layerstore_model::Sha256Hasher::digest(format!("lsbench-{purpose}").as_bytes())
        .hex()
        .to_string()
}

/// Builds our CLI in release mode and returns its path.
fn build_ours(workspace: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("bench: cargo build --release -p layerstore-cli");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "layerstore-cli"])
        .current_dir(workspace)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building layerstore-cli failed ({status}); pass --ours PATH to time another binary"
        ));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("release/layerstore");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} was not built", bin.display()))
    }
}

/// Entry point of `cargo xtask bench ARGS`.
pub fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{BENCH_USAGE}");
        return Ok(());
    }
    let opts = Options::parse(args)?;
    if !rustix::process::geteuid().is_root() {
        return Err("bench needs root (mounts, overlay, chown of layer contents)".into());
    }
    let workspace = workspace_root();
    let load_before = load_average();
    let started = utc_now();
    let load_number: f64 = load_before.parse().unwrap_or(0.0);
    if load_number > 3.0 && !opts.quick {
        eprintln!(
            "bench: WARNING: 1-min load is {load_before}; the machine is busy, timings will be noisy (consider --quick)"
        );
    }
    let ours = match &opts.ours {
        Some(path) => path.clone(),
        None => build_ours(&workspace)?,
    };
    if !opts.go.is_file() {
        return Err(format!(
            "the Go tool {} is not installed",
            opts.go.display()
        ));
    }
    let needs_fixtures = opts.has(Section::Import)
        || opts.has(Section::Diff)
        || opts.has(Section::Child)
        || opts.has(Section::Pull);
    let mut wanted = opts.all_fixtures();
    if opts.has(Section::Child) {
        wanted.extend(Fixture::named("rootfs.tar"));
    }
    if opts.has(Section::Pull) {
        for f in pull::FIXTURES
            .iter()
            .filter_map(|name| Fixture::named(name))
        {
            if !wanted.contains(&f) {
                wanted.push(f);
            }
        }
    }
    let unavailable = if needs_fixtures {
        fixtures::ensure(&opts.fixtures_dir, &wanted, opts.has(Section::Child))
    } else {
        Vec::new()
    };
    for (f, reason) in &unavailable {
        eprintln!("bench: skipping rows of {}: {reason}", f.name);
    }

    // A signal now unwinds the bench (the guards below put the machine back), not kills it.
    let interrupted = exec::stop_on_signals()?;
    // Held until the report is written (dropped at the end of `run`, or on an early error).
    let reporting = reporting::HeldOff::hold();
    let root = ScratchRoot::create(&opts.work)?;
    let scratch = root.tmpfs.join("scratch");
    fs::create_dir_all(&scratch).map_err(|e| format!("mkdir {}: {e}", scratch.display()))?;
    let warmed = reporting.warm_up();
    if warmed > 0 {
        eprintln!(
            "bench: touched {} MiB of free memory once, so the host backs it for the run",
            warmed >> 20
        );
    }
    let mut ctx = Context {
        opts: &opts,
        runner: Runner::new(&scratch, opts.time_limit).stopped_by(interrupted),
        tools: [ours, opts.go.clone()],
        scratch,
        plain_sha: HashMap::new(),
        unavailable,
        settle: settle::Settle::Sync,
    };
    let mut all = Vec::new();
    for &kind in &opts.fs {
        let (fs_root, description) = match (kind, &opts.disk) {
            (FsKind::Tmpfs, _) => {
                let fs_root = root.tmpfs.join("fs");
                fs::create_dir_all(&fs_root)
                    .map_err(|e| format!("mkdir {}: {e}", fs_root.display()))?;
                let description = describe_fs(&fs_root);
                (fs_root, description)
            }
            (FsKind::Disk, Some(dir)) => {
                let fs_root = dir.join(format!("lsbench-xtask-disk-{}", std::process::id()));
                fs::create_dir_all(&fs_root)
                    .map_err(|e| format!("mkdir {}: {e}", fs_root.display()))?;
                let description = describe_fs(&fs_root);
                (fs_root, description)
            }
            (FsKind::Disk, None) => {
                let disk = ext4loop::create(&root.base)?;
                (disk.mountpoint, disk.description)
            }
        };
        let mut results = FsResults {
            name: match kind {
                FsKind::Tmpfs => "tmpfs".into(),
                FsKind::Disk => "disk".into(),
            },
            description,
            rule: match kind {
                FsKind::Tmpfs => GoalRule::Always,
                FsKind::Disk => GoalRule::GoSteadierThanGap,
            },
            ..FsResults::default()
        };
        ctx.settle = settle::Settle::for_fs(&fs_root);
        results.notes.extend(ctx.settle.note().map(str::to_owned));
        eprintln!("bench: === {} ({})", results.name, results.description);
        run_sections(&mut ctx, &fs_root, &mut results);
        store::remove_tree(&fs_root)?;
        if ctx.runner.interrupted() {
            // No report from a cut-short run; the guards restore the machine as this returns.
            return Err(exec::INTERRUPTED.into());
        }
        all.push(results);
    }
    let load_after = load_average();
    let finished = utc_now();
    drop(root);

    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| workspace.join("docs/BENCHMARKS.md"));
    let out_dir = out.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(out_dir).map_err(|e| format!("mkdir {}: {e}", out_dir.display()))?;
    // The chart of the filesystem the goals are set for (tmpfs), else of the first one, beside
    // the report.
    let charted = all
        .iter()
        .find(|r| r.rule == GoalRule::Always)
        .or_else(|| all.first());
    let chart = charted.and_then(|r| {
        chart::svg(
            r,
            &format!(
                "layerstore against Go containers-storage{}, {} ({started})",
                if r.rows
                    .iter()
                    .any(|row| row.versus != report::Versus::GoTool)
                {
                    " (pulls: against podman and skopeo)"
                } else {
                    ""
                },
                r.name
            ),
        )
    });
    let chart_file = match chart {
        Some(svg) => {
            let path = out_dir.join(CHART_FILE);
            fs::write(&path, svg).map_err(|e| format!("write {}: {e}", path.display()))?;
            eprintln!("bench: wrote {}", path.display());
            Some(CHART_FILE)
        }
        None => None,
    };
    let report = render(
        &ctx,
        &all,
        &workspace,
        &started,
        &finished,
        &load_before,
        &load_after,
        chart_file,
        &reporting.fact,
    );
    let report = report + &kept_notes(&out);
    fs::write(&out, report).map_err(|e| format!("write {}: {e}", out.display()))?;
    eprintln!("bench: wrote {}", out.display());
    let missed: Vec<String> = all.iter().flat_map(FsResults::missed_goals).collect();
    let checked: usize = all
        .iter()
        .map(|r| {
            r.goal_checks()
                .iter()
                .filter(|c| c.verdict.counted())
                .count()
        })
        .sum();
    if checked == 0 {
        eprintln!(
            "bench: no goal counts in what ran (on the disk a row counts only where Go varies less than the gap)"
        );
    } else if missed.is_empty() {
        eprintln!("bench: every goal measured here is met");
    } else {
        eprintln!("bench: goals missed or not measured:");
        for m in &missed {
            eprintln!("  {m}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids_are_fixed_64_hex() {
        let id = layer_id("rootfs.tar");
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, layer_id("rootfs.tar"));
        assert_ne!(id, layer_id("rootfs.tar.gz"));
    }
}
