//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs every cargo-fuzz target of `fuzz/` (or
//! the ones named) for N seconds each (default 60), one after the other, and fails on the
//! first crash. Corpora grow in `fuzz/corpus/<target>`, crashes land in
//! `fuzz/artifacts/<target>` (both ignored by git); a crash found becomes a regression test in
//! the crate it concerns.
//!
//! Needs `cargo install cargo-fuzz`. cargo-fuzz passes nightly-only flags to rustc; on this
//! project's stable toolchain they are enabled with `RUSTC_BOOTSTRAP=1` (fuzzing only, never
//! for the build that ships), and no sanitizer is used (`-s none`): the targets check their
//! own invariants with assertions.

use std::process::Command;
use std::time::Instant;

/// Runs the fuzz targets; the error names the target that failed.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut seconds: u64 = 60;
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = it.next().ok_or("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .map_err(|_| format!("--seconds takes whole seconds, not `{value}`"))?;
            }
            "-h" | "--help" => {
                println!("usage: cargo xtask fuzz [--seconds N] [TARGET...]");
                return Ok(());
            }
            target => chosen.push(target.to_string()),
        }
    }
    let root = crate::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let probe = Command::new(&cargo).args(["fuzz", "--version"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return Err("cargo-fuzz is not installed: run `cargo install cargo-fuzz`".into());
    }
    let listed = Command::new(&cargo)
        .args(["fuzz", "list", "--fuzz-dir", "fuzz"])
        .current_dir(&root)
        .output()
        .map_err(|e| format!("cargo fuzz list: {e}"))?;
    let all: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if let Some(unknown) = chosen.iter().find(|t| !all.contains(t)) {
        return Err(format!(
            "no fuzz target `{unknown}` (targets: {})",
            all.join(", ")
        ));
    }
    let targets = if chosen.is_empty() { all } else { chosen };
    for target in &targets {
        println!("==> fuzzing {target} for {seconds}s");
        let started = Instant::now();
        let status = Command::new(&cargo)
            .args([
                "fuzz",
                "run",
                "--fuzz-dir",
                "fuzz",
                "-O",
                "-s",
                "none",
                target,
                "--",
            ])
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=4096")
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&root)
            .status()
            .map_err(|e| format!("cargo fuzz run {target}: {e}"))?;
        if !status.success() {
            return Err(format!(
                "{target} failed ({status}); the input is in fuzz/artifacts/{target}"
            ));
        }
        println!(
            "==> {target}: no crash in {:.0}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
