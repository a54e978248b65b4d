//! `cargo xtask bench`: whole-process benchmarks of our `layerstore` CLI against the Go
//! `containers-storage` tool and against the physical reference (GNU tar, the decompressors,
//! `cp -a`), in the same run, on a fresh tmpfs and on the disk. Writes `docs/BENCHMARKS.md`.
//!
//! Method: every timed command is one process, timed with `Instant` around spawn + `wait4`,
//! whose rusage gives peak RSS and CPU. Runs alternate the two tools (the first one swaps each
//! run); untimed prepare steps (create the layer, remove the output) end with `sync(2)`.
//! Each tool gets its own store for imports; the many-layer store and the overlay chain are
//! written once (see [`store`]) and shared by both tools. Criterion stays for micro benchmarks.

mod exec;
pub(crate) mod fixtures;
mod report;
pub(crate) mod store;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use exec::{Runner, Sample};
use fixtures::Fixture;
use report::{FsResults, Goal, Row, Tool};
use store::Store;

use crate::workspace_root;

const BENCH_USAGE: &str = "\
usage: cargo xtask bench [options]
  --quick              a small subset: 3 runs, tmpfs only, the rootfs fixtures (plain, gzip, zstd),
                       the many-layer store on vfs only
  --runs N             runs per tool and row (default 5; --quick: 3)
  --sections LIST      import,diff,many,mount,child (default: all)
  --fs LIST            tmpfs,disk (default: both; --quick: tmpfs)
  --drivers LIST       vfs,overlay (default: both)
  --fixtures LIST      rootfs.tar,rootfs.tar.gz,rootfs.tar.zst,smallfiles.tar,bigfile.tar,bigfile.tar.gz
  --disk-fixtures LIST the fixtures imported on the disk (default: those of --fixtures)
  --layers N           size of the many-layer store (default 10000)
  --chain N            depth of the overlay chain to mount (default 100)
  --ours PATH          our binary (default: cargo build --release -p layerstore-cli)
  --go PATH            the Go tool (default /usr/bin/containers-storage)
  --fixtures-dir DIR   where the fixtures are kept, built if missing (default /tmp/lsbench-fixtures)
  --work DIR           scratch space for stores; a tmpfs is mounted under it (default /tmp)
  --out FILE           the report (default docs/BENCHMARKS.md)
  --timeout SECS       kill a command still running after SECS (default 900); it counts as failed
";

/// The benchmark sections, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Import,
    Diff,
    Many,
    Mount,
    Child,
}

impl Section {
    fn parse(name: &str) -> Result<Section, String> {
        Ok(match name {
            "import" => Section::Import,
            "diff" => Section::Diff,
            "many" => Section::Many,
            "mount" => Section::Mount,
            "child" => Section::Child,
            other => return Err(format!("unknown section `{other}`")),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FsKind {
    Tmpfs,
    Disk,
}

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    runs: usize,
    sections: Vec<Section>,
    fs: Vec<FsKind>,
    drivers: Vec<String>,
    fixtures: Vec<Fixture>,
    disk_fixtures: Option<Vec<Fixture>>,
    many_layers: usize,
    chain_depth: usize,
    ours: Option<PathBuf>,
    go: PathBuf,
    fixtures_dir: PathBuf,
    work: PathBuf,
    out: Option<PathBuf>,
    time_limit: std::time::Duration,
    command_line: String,
}

fn list(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn fixture_list(flag: &str, value: &str) -> Result<Vec<Fixture>, String> {
    list(value)
        .into_iter()
        .map(|f| Fixture::named(f).ok_or_else(|| format!("{flag}: unknown `{f}`")))
        .collect()
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut values: HashMap<&str, &str> = HashMap::new();
        let mut quick = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                flag @ ("--runs" | "--sections" | "--fs" | "--drivers" | "--fixtures"
                | "--layers" | "--chain" | "--ours" | "--go" | "--fixtures-dir"
                | "--work" | "--out" | "--timeout" | "--disk-fixtures") => {
                    let value = it
                        .next()
                        .ok_or_else(|| format!("{flag} needs a value\n{BENCH_USAGE}"))?;
                    values.insert(flag, value);
                }
                other => return Err(format!("unknown option `{other}`\n{BENCH_USAGE}")),
            }
        }
        let number = |flag: &str, default: usize| -> Result<usize, String> {
            match values.get(flag) {
                None => Ok(default),
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag}: `{v}` is not a positive number")),
            }
        };
        let sections = match values.get("--sections") {
            None => vec![
                Section::Import,
                Section::Diff,
                Section::Many,
                Section::Mount,
                Section::Child,
            ],
            Some(v) => list(v)
                .into_iter()
                .map(Section::parse)
                .collect::<Result<_, _>>()?,
        };
        let fs = match values.get("--fs") {
            None if quick => vec![FsKind::Tmpfs],
            None => vec![FsKind::Tmpfs, FsKind::Disk],
            Some(v) => list(v)
                .into_iter()
                .map(|f| match f {
                    "tmpfs" => Ok(FsKind::Tmpfs),
                    "disk" => Ok(FsKind::Disk),
                    other => Err(format!("--fs: unknown filesystem `{other}` (tmpfs, disk)")),
                })
                .collect::<Result<_, _>>()?,
        };
        let drivers = match values.get("--drivers") {
            None => vec!["vfs".to_owned(), "overlay".to_owned()],
            Some(v) => list(v)
                .into_iter()
                .map(|d| match d {
                    "vfs" | "overlay" => Ok(d.to_owned()),
                    other => Err(format!("--drivers: `{other}` is not vfs or overlay")),
                })
                .collect::<Result<_, _>>()?,
        };
        let fixtures = match values.get("--fixtures") {
            None if quick => fixtures::ALL
                .iter()
                .copied()
                .filter(|f| f.name.starts_with("rootfs."))
                .collect(),
            None => fixtures::ALL.to_vec(),
            Some(v) => fixture_list("--fixtures", v)?,
        };
        let disk_fixtures = match values.get("--disk-fixtures") {
            None => None,
            Some(v) => Some(fixture_list("--disk-fixtures", v)?),
        };
        Ok(Options {
            quick,
            runs: number("--runs", if quick { 3 } else { 5 })?,
            sections,
            fs,
            drivers,
            fixtures,
            disk_fixtures,
            many_layers: number("--layers", 10_000)?,
            chain_depth: number("--chain", 100)?,
            ours: values.get("--ours").map(PathBuf::from),
            go: PathBuf::from(
                values
                    .get("--go")
                    .copied()
                    .unwrap_or("/usr/bin/containers-storage"),
            ),
            fixtures_dir: PathBuf::from(
                values
                    .get("--fixtures-dir")
                    .copied()
                    .unwrap_or(fixtures::DEFAULT_DIR),
            ),
            work: PathBuf::from(values.get("--work").copied().unwrap_or("/tmp")),
            out: values.get("--out").map(PathBuf::from),
            time_limit: std::time::Duration::from_secs(number("--timeout", 900)? as u64),
            command_line: std::iter::once("cargo xtask bench")
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// The fixtures imported on filesystem `fs` (`tmpfs` or `disk`).
    fn fixtures_on(&self, fs: &str) -> &[Fixture] {
        match (&self.disk_fixtures, fs) {
            (Some(disk), "disk") => disk,
            _ => &self.fixtures,
        }
    }

    /// Every fixture some filesystem imports.
    fn all_fixtures(&self) -> Vec<Fixture> {
        let mut all = self.fixtures.clone();
        for f in self.disk_fixtures.iter().flatten() {
            if !all.contains(f) {
                all.push(*f);
            }
        }
        all
    }

    fn has(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }

    /// Drivers for the many-layer store (`--quick`: vfs only).
    fn many_drivers(&self) -> Vec<String> {
        if self.quick {
            self.drivers
                .iter()
                .filter(|d| *d == "vfs")
                .cloned()
                .collect()
        } else {
            self.drivers.clone()
        }
    }
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn sync() {
    rustix::fs::sync();
}

/// A fixed 64-hex layer ID per purpose, so prepare steps can delete and re-create "the same" layer.
fn layer_id(purpose: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(format!("lsbench-{purpose}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

/// A tmpfs mounted for the run; unmounted (with everything under it) and removed on drop.
struct ScratchRoot {
    base: PathBuf,
    tmpfs: PathBuf,
}

impl ScratchRoot {
    /// Removes what an interrupted earlier run left: `lsbench-xtask-<pid>` whose pid is gone.
    fn remove_stale(work: &Path) {
        let Ok(entries) = fs::read_dir(work) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("lsbench-xtask-"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!(
                    "bench: removing {} left by an interrupted run",
                    entry.path().display()
                );
                if let Err(e) = store::remove_tree(&entry.path()) {
                    eprintln!("bench: {e}");
                }
            }
        }
    }

    fn create(work: &Path) -> Result<ScratchRoot, String> {
        ScratchRoot::remove_stale(work);
        let base = work.join(format!("lsbench-xtask-{}", std::process::id()));
        let tmpfs = base.join("tmpfs");
        fs::create_dir_all(&tmpfs).map_err(|e| format!("mkdir {}: {e}", tmpfs.display()))?;
        let root = ScratchRoot { base, tmpfs };
        rustix::mount::mount(
            "lsbench",
            &root.tmpfs,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            Some(c"size=16g,mode=0755"),
        )
        .map_err(|e| format!("mount tmpfs on {}: {e}", root.tmpfs.display()))?;
        Ok(root)
    }
}

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        store::unmount_under(&self.base, false);
        if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!("bench: cannot remove {}: {e}", self.base.display());
        }
    }
}

/// What every section needs.
struct Context<'a> {
    opts: &'a Options,
    runner: Runner,
    tools: [PathBuf; 2],
    scratch: PathBuf,
    plain_sha: HashMap<String, String>,
    unavailable: Vec<(Fixture, String)>,
}

impl Context<'_> {
    fn tool(&self, tool: Tool) -> &Path {
        &self.tools[tool.index()]
    }

    fn available(&self, f: &Fixture) -> bool {
        !self.unavailable.iter().any(|(u, _)| u == f)
    }

    fn fixture(&self, name: &str) -> PathBuf {
        self.opts.fixtures_dir.join(name)
    }

    fn plain_sha(&mut self, plain: &str) -> Result<String, String> {
        if let Some(sha) = self.plain_sha.get(plain) {
            return Ok(sha.clone());
        }
        let sha = crate::tools::sha256_file(&self.fixture(plain))?;
        self.plain_sha.insert(plain.to_owned(), sha.clone());
        Ok(sha)
    }
}

/// Per-row bookkeeping of a tool that failed: it is skipped for the rest of the row.
#[derive(Default)]
struct Broken([bool; 2]);

impl Broken {
    fn is(&self, tool: Tool) -> bool {
        self.0[tool.index()]
    }

    fn mark(&mut self, tool: Tool, results: &mut FsResults, what: &str, err: &str) {
        if !self.0[tool.index()] {
            results.notes.push(format!("{tool:?} FAILED {what}: {err}"));
            eprintln!("bench: {tool:?} failed {what}: {err}");
        }
        self.0[tool.index()] = true;
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
    let needs_fixtures =
        opts.has(Section::Import) || opts.has(Section::Diff) || opts.has(Section::Child);
    let mut wanted = opts.all_fixtures();
    if opts.has(Section::Child) {
        wanted.extend(Fixture::named("rootfs.tar"));
    }
    let unavailable = if needs_fixtures {
        fixtures::ensure(&opts.fixtures_dir, &wanted, opts.has(Section::Child))
    } else {
        Vec::new()
    };
    for (f, reason) in &unavailable {
        eprintln!("bench: skipping rows of {}: {reason}", f.name);
    }

    let root = ScratchRoot::create(&opts.work)?;
    let scratch = root.tmpfs.join("scratch");
    fs::create_dir_all(&scratch).map_err(|e| format!("mkdir {}: {e}", scratch.display()))?;
    let mut ctx = Context {
        opts: &opts,
        runner: Runner::new(&scratch, opts.time_limit),
        tools: [ours, opts.go.clone()],
        scratch,
        plain_sha: HashMap::new(),
        unavailable,
    };
    let mut all = Vec::new();
    for &kind in &opts.fs {
        let fs_root = match kind {
            FsKind::Tmpfs => root.tmpfs.join("fs"),
            FsKind::Disk => root.base.join("disk"),
        };
        fs::create_dir_all(&fs_root).map_err(|e| format!("mkdir {}: {e}", fs_root.display()))?;
        let mut results = FsResults {
            name: match kind {
                FsKind::Tmpfs => "tmpfs".into(),
                FsKind::Disk => "disk".into(),
            },
            description: describe_fs(&fs_root),
            goals_apply: kind == FsKind::Tmpfs,
            ..FsResults::default()
        };
        eprintln!("bench: === {} ({})", results.name, results.description);
        run_sections(&mut ctx, &fs_root, &mut results);
        store::remove_tree(&fs_root)?;
        all.push(results);
    }
    let load_after = load_average();
    let finished = utc_now();
    drop(root);

    let report = render(
        &ctx,
        &all,
        &workspace,
        &started,
        &finished,
        &load_before,
        &load_after,
    );
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| workspace.join("docs/BENCHMARKS.md"));
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    let report = report + &kept_notes(&out);
    fs::write(&out, report).map_err(|e| format!("write {}: {e}", out.display()))?;
    eprintln!("bench: wrote {}", out.display());
    let missed: Vec<String> = all.iter().flat_map(FsResults::missed_goals).collect();
    let checked: usize = all
        .iter()
        .filter(|r| r.goals_apply)
        .map(|r| r.goal_checks().len())
        .sum();
    if checked == 0 {
        eprintln!("bench: no goal applies to what ran (goals are checked on tmpfs only)");
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

fn run_sections(ctx: &mut Context<'_>, fs_root: &Path, results: &mut FsResults) {
    let opts = ctx.opts;
    let timed_section =
        |name: &str,
         results: &mut FsResults,
         f: &mut dyn FnMut(&mut FsResults) -> Result<(), String>| {
            let before = load_average();
            eprintln!("bench: --- {name} (load {before})");
            // A section that cannot go on is reported; the others still run.
            if let Err(e) = f(results) {
                eprintln!("bench: section {name} aborted: {e}");
                results.notes.push(format!("section {name} ABORTED: {e}"));
            }
            results.load.push((name.to_owned(), before, load_average()));
        };
    if opts.has(Section::Import) || opts.has(Section::Diff) {
        // import and diff run interleaved (import, diff, delete per run): one load record each.
        timed_section("import", results, &mut |r| section_import(ctx, fs_root, r));
        if let Some((_, before, after)) = results.load.last().cloned() {
            results.load.push(("diff".into(), before, after));
        }
    }
    if opts.has(Section::Many) {
        timed_section("many", results, &mut |r| section_many(ctx, fs_root, r));
    }
    if opts.has(Section::Mount) {
        timed_section("mount", results, &mut |r| section_mount(ctx, fs_root, r));
    }
    if opts.has(Section::Child) {
        timed_section("child", results, &mut |r| section_child(ctx, fs_root, r));
    }
}

fn record(row: &mut Row, tool: Tool, sample: Sample) {
    row.samples[tool.index()].push(sample);
}

/// Physical baselines of one fixture on this filesystem: `tar -x` of its plain tar (and
/// `tar -c` of the tree, for diff), the decompressor alone, `cat`.
fn baselines(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
    f: Fixture,
) -> Result<(), String> {
    let runs = ctx.opts.runs;
    let plain = f.plain();
    let tree = fs_root.join("baseline-tree");
    let tar_out = ctx.scratch.join("baseline.tar");
    let x_key = format!("tar-x/{plain}");
    if !results.baselines.contains_key(&x_key) {
        for _ in 0..runs {
            store::remove_tree(&tree)?;
            fs::create_dir_all(&tree).map_err(|e| format!("mkdir {}: {e}", tree.display()))?;
            sync();
            let s = ctx
                .runner
                .timed(
                    Command::new("tar")
                        .arg("-xf")
                        .arg(ctx.fixture(plain))
                        .arg("-C")
                        .arg(&tree),
                )?
                .sample;
            results.baselines.entry(x_key.clone()).or_default().push(s);
            if ctx.opts.has(Section::Diff) {
                let _ = fs::remove_file(&tar_out);
                sync();
                let s = ctx
                    .runner
                    .timed(
                        Command::new("tar")
                            .args(["--numeric-owner", "-C"])
                            .arg(&tree)
                            .arg("-cf")
                            .arg(&tar_out)
                            .arg("."),
                    )?
                    .sample;
                results
                    .baselines
                    .entry(format!("tar-c/{plain}"))
                    .or_default()
                    .push(s);
                let _ = fs::remove_file(&tar_out);
            }
        }
        store::remove_tree(&tree)?;
    }
    if f.decompressor().is_some() {
        // GNU tar -xf of the compressed file: tar runs the decompressor in a pipe, in parallel.
        for _ in 0..runs {
            store::remove_tree(&tree)?;
            fs::create_dir_all(&tree).map_err(|e| format!("mkdir {}: {e}", tree.display()))?;
            sync();
            let s = ctx
                .runner
                .timed(
                    Command::new("tar")
                        .arg("-xf")
                        .arg(ctx.fixture(f.name))
                        .arg("-C")
                        .arg(&tree),
                )?
                .sample;
            results
                .baselines
                .entry(format!("tar-x/{}", f.name))
                .or_default()
                .push(s);
        }
        store::remove_tree(&tree)?;
    }
    if let Some(decompressor) = f.decompressor() {
        let key = format!("{}-dc/{}", decompressor[0], f.name);
        for _ in 0..runs {
            let s = ctx.runner.timed_discarding_stdout(
                Command::new(decompressor[0])
                    .args(&decompressor[1..])
                    .arg(ctx.fixture(f.name)),
            )?;
            results.baselines.entry(key.clone()).or_default().push(s);
        }
    }
    let cat_key = format!("cat/{}", f.name);
    if !results.baselines.contains_key(&cat_key) {
        for _ in 0..runs {
            let s = ctx
                .runner
                .timed_discarding_stdout(Command::new("cat").arg(ctx.fixture(f.name)))?;
            results
                .baselines
                .entry(cat_key.clone())
                .or_default()
                .push(s);
        }
    }
    Ok(())
}

/// import (applydiff into a new layer), diff -u of it, delete-layer; per fixture and driver.
fn section_import(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
) -> Result<(), String> {
    let opts = ctx.opts;
    let wanted = opts.fixtures_on(&results.name);
    let fixtures: Vec<Fixture> = wanted
        .iter()
        .copied()
        .filter(|f| ctx.available(f))
        .collect();
    for (f, reason) in &ctx.unavailable {
        if wanted.contains(f) {
            results.notes.push(format!("{} skipped: {reason}", f.name));
        }
    }
    for &f in &fixtures {
        baselines(ctx, fs_root, results, f)?;
    }
    let out = ctx.scratch.join("diff.tar");
    let mut identical: Vec<String> = Vec::new();
    for driver in &opts.drivers {
        let stores: Vec<Store> = [Tool::Ours, Tool::Go]
            .iter()
            .map(|t| Store::at(&fs_root.join(format!("stores/{t:?}-{driver}")), driver))
            .collect();
        for &f in &fixtures {
            let id = layer_id(f.name);
            let input = ctx.fixture(f.name);
            let plain_sha = ctx.plain_sha(f.plain())?;
            let mut import = Row::new("import", "applydiff", driver, f.name);
            import.reference = Some(match f.decompressor() {
                None => (
                    format!("tar -x {}", f.name),
                    vec![format!("tar-x/{}", f.name)],
                ),
                Some(d) => (
                    format!("tar -x {} + {} {}", f.plain(), d.join(" "), f.name),
                    vec![
                        format!("tar-x/{}", f.plain()),
                        format!("{}-dc/{}", d[0], f.name),
                    ],
                ),
            });
            if f.decompressor().is_some() {
                import.also = Some((
                    format!("pipelined tar -xf {}", f.name),
                    format!("tar-x/{}", f.name),
                ));
            }
            import.goals = vec![
                Goal::VsGo(0.2),
                Goal::VsReference(1.5),
                Goal::PeakRssMib(64.0),
            ];
            let mut diff = Row::new("diff", "diff -u", driver, f.name);
            diff.reference = Some((
                format!("tar -c of {}'s tree", f.plain()),
                vec![format!("tar-c/{}", f.plain())],
            ));
            diff.goals = vec![Goal::VsGo(0.25), Goal::VsReference(2.0)];
            // gzip-compressed diff (Go: pgzip at its default level): no slower than Go.
            let mut diff_gzip = Row::new("diff", "diff -c (gzip)", driver, f.name);
            diff_gzip.goals = vec![Goal::VsGo(1.0)];
            let time_gzip = fixtures::COMPRESSED_DIFF.contains(&f.name);
            let mut delete = Row::new("import", "delete-layer", driver, f.name);
            let mut broken = Broken::default();
            for run in 0..opts.runs {
                for tool in Tool::order(run) {
                    if broken.is(tool) {
                        continue;
                    }
                    let s = &stores[tool.index()];
                    let bin = ctx.tool(tool).to_path_buf();
                    eprintln!(
                        "bench: {tool:?} applydiff {driver} {} run {}",
                        f.name,
                        run + 1
                    );
                    ctx.runner
                        .run_ignoring_failure(s.command(&bin).args(["delete-layer", &id]));
                    if let Err(e) =
                        ctx.runner
                            .run(s.command(&bin).args(["create-layer", "--id", &id]))
                    {
                        broken.mark(tool, results, &format!("create-layer on {driver}"), &e);
                        continue;
                    }
                    sync();
                    match ctx.runner.timed(
                        s.command(&bin)
                            .arg("applydiff")
                            .arg("--file")
                            .arg(&input)
                            .arg(&id),
                    ) {
                        Ok(done) => record(&mut import, tool, done.sample),
                        Err(e) => {
                            broken.mark(
                                tool,
                                results,
                                &format!("applydiff {} on {driver}", f.name),
                                &e,
                            );
                            continue;
                        }
                    }
                    if opts.has(Section::Diff) {
                        let _ = fs::remove_file(&out);
                        sync();
                        match ctx.runner.timed(
                            s.command(&bin)
                                .args(["diff", "-u", "--file"])
                                .arg(&out)
                                .arg(&id),
                        ) {
                            Ok(done) => {
                                record(&mut diff, tool, done.sample);
                                if run < 2 {
                                    let got = crate::tools::sha256_file(&out)?;
                                    let what = format!("{tool:?} {} {driver}", f.name);
                                    if got != plain_sha {
                                        results.notes.push(format!(
                                            "{what}: `diff -u` DIFFERS from the input tar (sha256 {got}, want {plain_sha})"
                                        ));
                                    } else if !identical.contains(&what) {
                                        identical.push(what);
                                    }
                                }
                            }
                            Err(e) => broken.mark(
                                tool,
                                results,
                                &format!("diff {} on {driver}", f.name),
                                &e,
                            ),
                        }
                        let _ = fs::remove_file(&out);
                        if time_gzip {
                            sync();
                            match ctx.runner.timed(
                                s.command(&bin)
                                    .args(["diff", "-c", "--file"])
                                    .arg(&out)
                                    .arg(&id),
                            ) {
                                Ok(done) => record(&mut diff_gzip, tool, done.sample),
                                Err(e) => broken.mark(
                                    tool,
                                    results,
                                    &format!("diff -c {} on {driver}", f.name),
                                    &e,
                                ),
                            }
                            let _ = fs::remove_file(&out);
                        }
                    }
                    sync();
                    match ctx
                        .runner
                        .timed(s.command(&bin).args(["delete-layer", &id]))
                    {
                        Ok(done) => record(&mut delete, tool, done.sample),
                        Err(e) => broken.mark(
                            tool,
                            results,
                            &format!("delete-layer {} on {driver}", f.name),
                            &e,
                        ),
                    }
                }
            }
            if opts.has(Section::Import) {
                results.rows.push(import);
                results.rows.push(delete);
            }
            if opts.has(Section::Diff) {
                results.rows.push(diff);
                if time_gzip {
                    results.rows.push(diff_gzip);
                }
            }
        }
        for s in &stores {
            store::remove_tree(s.graph.parent().unwrap_or(&s.graph))?;
        }
    }
    if !identical.is_empty() {
        results.notes.push(format!(
            "`diff -u` gave back the uncompressed input byte for byte (sha256, first two runs of each tool) for: {}",
            identical.join(", ")
        ));
    }
    Ok(())
}

/// `layers`, create-layer and delete-layer in a store of `--layers` empty layers.
fn section_many(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
) -> Result<(), String> {
    let opts = ctx.opts;
    let n = opts.many_layers;
    let extra = layer_id("many-extra");
    for driver in opts.many_drivers() {
        let base = fs_root.join(format!("stores/many-{driver}"));
        let s = Store::at(&base, &driver);
        eprintln!("bench: writing a {n}-layer {driver} store");
        store::write_flat_store(&s, n)?;
        sync();
        let input = format!("{n} layers");
        let mut layers = Row::new("many", "layers", &driver, &input);
        layers.goals = vec![Goal::VsGo(0.3)];
        let mut create = Row::new("many", "create-layer", &driver, &input);
        create.goals = vec![Goal::VsGo(0.3)];
        let mut delete = Row::new("many", "delete-layer", &driver, &input);
        delete.goals = vec![Goal::VsGo(0.3)];
        let mut broken = Broken::default();
        // Warm-up: the first call of a tool creates lock files and probes the driver.
        for tool in [Tool::Ours, Tool::Go] {
            let bin = ctx.tool(tool).to_path_buf();
            if let Err(e) = ctx.runner.run(s.command(&bin).arg("layers")) {
                broken.mark(
                    tool,
                    results,
                    &format!("layers of the {n}-layer {driver} store"),
                    &e,
                );
            }
        }
        for run in 0..opts.runs {
            for tool in Tool::order(run) {
                if broken.is(tool) {
                    continue;
                }
                let bin = ctx.tool(tool).to_path_buf();
                match ctx.runner.timed(s.command(&bin).arg("layers")) {
                    Ok(done) => {
                        let listed = done.stdout.lines().filter(|l| !l.trim().is_empty()).count();
                        if listed != n {
                            broken.mark(
                                tool,
                                results,
                                &format!("layers ({driver})"),
                                &format!("listed {listed} layers, want {n}"),
                            );
                            continue;
                        }
                        record(&mut layers, tool, done.sample);
                    }
                    Err(e) => {
                        broken.mark(tool, results, &format!("layers ({driver})"), &e);
                        continue;
                    }
                }
                // A run that failed half-way must not leave the extra layer to the other tool.
                ctx.runner
                    .run_ignoring_failure(s.command(&bin).args(["delete-layer", &extra]));
                sync();
                match ctx
                    .runner
                    .timed(s.command(&bin).args(["create-layer", "--id", &extra]))
                {
                    Ok(done) => record(&mut create, tool, done.sample),
                    Err(e) => {
                        broken.mark(
                            tool,
                            results,
                            &format!("create-layer ({driver}, {n} layers)"),
                            &e,
                        );
                        continue;
                    }
                }
                sync();
                match ctx
                    .runner
                    .timed(s.command(&bin).args(["delete-layer", &extra]))
                {
                    Ok(done) => record(&mut delete, tool, done.sample),
                    Err(e) => broken.mark(
                        tool,
                        results,
                        &format!("delete-layer ({driver}, {n} layers)"),
                        &e,
                    ),
                }
                sync();
            }
        }
        results.rows.extend([layers, create, delete]);
        store::remove_tree(&base)?;
    }
    Ok(())
}

/// mount + unmount of the top of a `--chain`-deep overlay chain.
fn section_mount(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
) -> Result<(), String> {
    let opts = ctx.opts;
    if !opts.drivers.iter().any(|d| d == "overlay") {
        results
            .notes
            .push("mount section skipped: overlay is not among --drivers".into());
        return Ok(());
    }
    let depth = opts.chain_depth;
    let base = fs_root.join("stores/chain-overlay");
    let s = Store::at(&base, "overlay");
    let ids = store::write_chain_store(&s, depth)?;
    let top = ids.last().cloned().unwrap_or_default();
    sync();
    let input = format!("{depth}-layer chain");
    let mut mount = Row::new("mount", "mount", "overlay", &input);
    let mut unmount = Row::new("mount", "unmount", "overlay", &input);
    let mut broken = Broken::default();
    let mount_once = |ctx: &Context<'_>,
                      tool: Tool,
                      broken: &mut Broken,
                      results: &mut FsResults|
     -> Option<(Sample, Sample)> {
        let bin = ctx.tool(tool);
        let m = match ctx.runner.timed(s.command(bin).args(["mount", &top])) {
            Ok(done) => done,
            Err(e) => {
                broken.mark(
                    tool,
                    results,
                    &format!("mount of the {depth}-layer chain"),
                    &e,
                );
                return None;
            }
        };
        let path = m.stdout.trim().to_owned();
        if !store::is_mount_point(Path::new(&path)) {
            broken.mark(
                tool,
                results,
                "mount",
                &format!("printed `{path}`, which is not a mount point"),
            );
        }
        match ctx.runner.timed(s.command(bin).args(["unmount", &top])) {
            Ok(u) => Some((m.sample, u.sample)),
            Err(e) => {
                broken.mark(
                    tool,
                    results,
                    &format!("unmount of the {depth}-layer chain"),
                    &e,
                );
                None
            }
        }
    };
    for tool in [Tool::Ours, Tool::Go] {
        mount_once(ctx, tool, &mut broken, results);
    }
    for run in 0..opts.runs {
        for tool in Tool::order(run) {
            if broken.is(tool) {
                continue;
            }
            if let Some((m, u)) = mount_once(ctx, tool, &mut broken, results) {
                record(&mut mount, tool, m);
                record(&mut unmount, tool, u);
            }
        }
    }
    results.rows.extend([mount, unmount]);
    store::remove_tree(&base)
}

/// A vfs child of the rootfs layer (a full copy), and layer2.tar applied onto it.
fn section_child(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
) -> Result<(), String> {
    let opts = ctx.opts;
    let Some(rootfs) = Fixture::named("rootfs.tar").filter(|f| ctx.available(f)) else {
        results
            .notes
            .push("child section skipped: rootfs.tar is not available".into());
        return Ok(());
    };
    let parent = layer_id("child-parent");
    let child = layer_id("child");
    let layer2 = ctx.fixture(fixtures::CHILD_LAYER);
    let layer2 = layer2.is_file().then_some(layer2);
    // The physical reference: cp -a of the extracted tree.
    let tree = fs_root.join("baseline-tree");
    let copy = fs_root.join("baseline-copy");
    store::remove_tree(&tree)?;
    fs::create_dir_all(&tree).map_err(|e| format!("mkdir {}: {e}", tree.display()))?;
    ctx.runner.run(
        Command::new("tar")
            .arg("-xf")
            .arg(ctx.fixture(rootfs.name))
            .arg("-C")
            .arg(&tree),
    )?;
    for _ in 0..opts.runs {
        store::remove_tree(&copy)?;
        sync();
        let s = ctx
            .runner
            .timed(Command::new("cp").arg("-a").arg(&tree).arg(&copy))?
            .sample;
        results
            .baselines
            .entry("cp-a/rootfs".into())
            .or_default()
            .push(s);
    }
    store::remove_tree(&copy)?;
    store::remove_tree(&tree)?;

    let mut create = Row::new("child", "create-layer PARENT", "vfs", "child of rootfs.tar");
    create.reference = Some((
        "cp -a of the rootfs tree".into(),
        vec!["cp-a/rootfs".into()],
    ));
    create.goals = vec![Goal::VsGo(0.5)];
    let mut apply = Row::new("child", "applydiff", "vfs", "layer2.tar onto the child");
    let mut broken = Broken::default();
    let stores: Vec<Store> = [Tool::Ours, Tool::Go]
        .iter()
        .map(|t| Store::at(&fs_root.join(format!("stores/{t:?}-child")), "vfs"))
        .collect();
    for tool in [Tool::Ours, Tool::Go] {
        let s = &stores[tool.index()];
        let bin = ctx.tool(tool).to_path_buf();
        let made = ctx
            .runner
            .run(s.command(&bin).args(["create-layer", "--id", &parent]))
            .and_then(|_| {
                ctx.runner.run(
                    s.command(&bin)
                        .arg("applydiff")
                        .arg("--file")
                        .arg(ctx.fixture(rootfs.name))
                        .arg(&parent),
                )
            });
        if let Err(e) = made {
            broken.mark(tool, results, "importing rootfs.tar as the parent", &e);
        }
    }
    for run in 0..opts.runs {
        for tool in Tool::order(run) {
            if broken.is(tool) {
                continue;
            }
            let s = &stores[tool.index()];
            let bin = ctx.tool(tool).to_path_buf();
            ctx.runner
                .run_ignoring_failure(s.command(&bin).args(["delete-layer", &child]));
            sync();
            match ctx.runner.timed(
                s.command(&bin)
                    .args(["create-layer", "--id", &child, &parent]),
            ) {
                Ok(done) => record(&mut create, tool, done.sample),
                Err(e) => {
                    broken.mark(tool, results, "create-layer of a vfs child", &e);
                    continue;
                }
            }
            if let Some(layer2) = &layer2 {
                sync();
                match ctx.runner.timed(
                    s.command(&bin)
                        .arg("applydiff")
                        .arg("--file")
                        .arg(layer2)
                        .arg(&child),
                ) {
                    Ok(done) => record(&mut apply, tool, done.sample),
                    Err(e) => broken.mark(tool, results, "applydiff layer2.tar onto the child", &e),
                }
            }
        }
    }
    results.rows.push(create);
    if layer2.is_some() {
        results.rows.push(apply);
    }
    for s in &stores {
        store::remove_tree(s.graph.parent().unwrap_or(&s.graph))?;
    }
    Ok(())
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

fn first_line_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "?".into())
}

/// `ext4 on /dev/vda at /tmp/...`, from statfs and /proc/self/mountinfo.
fn describe_fs(path: &Path) -> String {
    let kind = match rustix::fs::statfs(path) {
        Ok(st) => match st.f_type as u64 {
            0x0102_1994 => "tmpfs".to_owned(),
            0xEF53 => "ext4".to_owned(),
            0x9123_683E => "btrfs".to_owned(),
            0x5846_5342 => "xfs".to_owned(),
            0x794C_7630 => "overlay".to_owned(),
            other => format!("fs type {other:#x}"),
        },
        Err(e) => format!("statfs failed: {e}"),
    };
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // The longest mount point that contains `path` is the filesystem holding it.
    let source = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            let source = fields.get(dash + 2)?;
            path.starts_with(point)
                .then(|| (point.len(), source.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "?".into());
    format!("{kind} on {source} (`{}`)", path.display())
}

fn machine_facts() -> Vec<(&'static str, String)> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map(str::trim)
        .unwrap_or("?")
        .to_owned();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let features: Vec<&str> = ["avx2", "sha_ni", "avx512f"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let uname = rustix::system::uname();
    vec![
        ("CPU", format!("{model} ({})", features.join(", "))),
        ("cores", cores.to_string()),
        (
            "memory",
            format!("{:.1} GiB", mem_kib as f64 / (1024.0 * 1024.0)),
        ),
        (
            "kernel",
            format!(
                "{} {}",
                uname.sysname().to_string_lossy(),
                uname.release().to_string_lossy()
            ),
        ),
        ("GNU tar", first_line_of("tar", &["--version"])),
        (
            "gzip / zstd",
            format!(
                "{}; {}",
                first_line_of("gzip", &["--version"]),
                first_line_of("zstd", &["--version"])
            ),
        ),
    ]
}

fn render(
    ctx: &Context<'_>,
    all: &[FsResults],
    workspace: &Path,
    started: &str,
    finished: &str,
    load_before: &str,
    load_after: &str,
) -> String {
    let opts = ctx.opts;
    let mut md = String::new();
    md.push_str("# Benchmarks: `layerstore` against Go `containers-storage`\n\n");
    md.push_str(
        "Written by `cargo xtask bench` (xtask/src/bench.rs); do not edit the tables by hand — rerun \
         it. Only the hand-written part at the end (from its marker on) survives a rerun.\n\n",
    );
    let complete = opts.runs >= 5
        && opts.sections.len() == 5
        && opts.fs.len() == 2
        && opts.drivers.len() == 2
        && opts.all_fixtures().len() == fixtures::ALL.len()
        && opts.disk_fixtures.is_none()
        && opts.many_layers == 10_000
        && opts.chain_depth == 100;
    let kind = if opts.quick {
        "**QUICK RUN** (`--quick`: a small subset, few runs; not the full benchmark)"
    } else if complete {
        "Full run"
    } else {
        "**PARTIAL RUN** (a subset of the full benchmark: see the command line)"
    };
    let sections: Vec<String> = opts
        .sections
        .iter()
        .map(|s| format!("{s:?}").to_lowercase())
        .collect();
    let _ = writeln!(
        md,
        "{kind}: `{}`, {started} → {finished}; {} runs per tool and row; sections {}; 1-min load average {load_before} before, {load_after} after.\n",
        opts.command_line,
        opts.runs,
        sections.join(", "),
    );
    md.push_str("## How to run\n\n");
    md.push_str(HOW_TO_RUN);
    md.push_str("\n## Machine and tools\n\n| fact | value |\n|---|---|\n");
    for (k, v) in machine_facts() {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let built = if opts.ours.is_none() {
        let commit = first_line_of(
            "git",
            &[
                "-C",
                &workspace.display().to_string(),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        );
        format!(
            " (`cargo build --release -p layerstore-cli` of the workspace at commit {commit} and its uncommitted changes)"
        )
    } else {
        " (given with `--ours`)".to_owned()
    };
    let _ = writeln!(
        md,
        "| ours | `{}`{built} |",
        shown_path(ctx.tool(Tool::Ours), workspace)
    );
    let go_version = first_line_of(
        "dpkg-query",
        &["-W", "-f", "${Package} ${Version}", "containers-storage"],
    );
    let _ = writeln!(
        md,
        "| Go tool | `{}` ({go_version}) |",
        ctx.tool(Tool::Go).display()
    );
    for r in all {
        let _ = writeln!(md, "| {} | {} |", r.name, r.description);
    }
    md.push_str("\n## Fixtures\n\n| fixture | bytes | source |\n|---|---:|---|\n");
    let all_fixtures = opts.all_fixtures();
    let mut listed: Vec<&str> = all_fixtures.iter().map(|f| f.name).collect();
    if opts.has(Section::Child) {
        listed.extend(["rootfs.tar", fixtures::CHILD_LAYER]);
    }
    let mut seen = Vec::new();
    for name in listed {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let path = ctx.fixture(name);
        let size = fs::metadata(&path).map_or("missing".into(), |m| m.len().to_string());
        let _ = writeln!(
            md,
            "| {name} | {size} | {} |",
            fixtures::source(&opts.fixtures_dir, name)
        );
    }
    for (f, reason) in &ctx.unavailable {
        let _ = writeln!(md, "\n{} could not be made: {reason}", f.name);
    }
    md.push_str("\n## Goals (tmpfs)\n\n");
    if !all.iter().any(|r| r.goals_apply) {
        md.push_str("Not checked: this run has no tmpfs results.\n");
    }
    for r in all.iter().filter(|r| r.goals_apply) {
        let checks = r.goal_checks();
        let met = checks.iter().filter(|c| c.3 == Some(true)).count();
        let _ = writeln!(
            md,
            "{met} of {} goal checks met on {}.\n",
            checks.len(),
            r.name
        );
        md.push_str("| row | goal | measured | |\n|---|---|---|---|\n");
        for (row, goal, measured, verdict) in checks {
            let mark = match verdict {
                Some(true) => "✔",
                Some(false) => "✘",
                None => "?",
            };
            let _ = writeln!(md, "| {row} | {goal} | {measured} | {mark} |");
        }
    }
    md.push('\n');
    for r in all {
        md.push_str(&r.markdown());
    }
    md.push_str(METHOD);
    md
}

/// A binary's path as the report shows it: relative inside the workspace, as it is under
/// `/usr`, else its last two components (a target directory's place is one machine's).
fn shown_path(path: &Path, workspace: &Path) -> String {
    if let Ok(relative) = path.strip_prefix(workspace) {
        return relative.display().to_string();
    }
    if path.starts_with("/usr") {
        return path.display().to_string();
    }
    let tail: Vec<_> = path.components().rev().take(2).collect();
    let tail: PathBuf = tail.into_iter().rev().collect();
    format!("…/{}", tail.display())
}

const HOW_TO_RUN: &str = "\
As root, on an otherwise idle machine (the 1-minute load average is recorded; above ~3 the
numbers are noise):

    apt-get install -y containers-storage debootstrap zstd npm   # once
    cargo xtask bench                  # everything: tmpfs and disk, 5 runs (~45 min on 2 cores)
    cargo xtask bench --quick          # ~2 minutes: tmpfs, the rootfs fixtures, 3 runs
    cargo xtask bench --sections many,mount --fs tmpfs --runs 10
    cargo xtask bench --ours /usr/bin/containers-storage   # Go against itself: the noise floor

The fixtures are made once, by `cargo xtask bench-fixtures` or by the first `bench` that needs
them (`xtask/src/bench/fixtures.rs`: a Debian rootfs by debootstrap, an npm tree, a 1 GiB
file, a child layer); without npm `smallfiles.tar` is synthetic, without debootstrap the rootfs
rows are skipped with the reason. `--help` lists every option.
";

const METHOD: &str = "\
## Method

- Every timed command is one process: `Instant` around spawn and `wait4(2)`; peak RSS and CPU
  (user + system) come from wait4's rusage. Medians, min–max over the runs; peak RSS is the
  largest of the runs.
- The two tools alternate run by run (the first one swaps every run). Untimed prepare steps
  (`delete-layer`, `create-layer --id`, removing the output) end with `sync(2)`. Inputs are
  in the page cache; `diff` writes to a tmpfs scratch file in both the tmpfs and disk cases.
- import = `applydiff --file F ID` into a new empty layer; each tool has its own store. Its
  physical reference is GNU `tar -xf` of the uncompressed tar into an empty directory on the
  same filesystem, plus the decompressor alone to /dev/null (`gzip -dc`, `zstd -dcq`) for a
  compressed input (the goal's reference); shown beside it, GNU `tar -xf` of the compressed
  file itself (tar pipes it through the decompressor, on both cores). diff = `diff -u --file OUT ID` (the uncompressed tar back; its sha256 is
  checked against the input's); reference: `tar --numeric-owner -cf` of the extracted tree.
- many: a store of N empty layers written directly (layers.json records by
  layerstore-model, driver dirs as Go lays them out), read by both tools: `layers` (its line
  count is checked), `create-layer --id X`, `delete-layer X`.
- mount: a chain of empty overlay layers written the same way; `mount TOP`, `unmount TOP`.
- child: `create-layer --id C P` on vfs where P holds rootfs.tar (a full copy); reference
  `cp -a` of the extracted tree; then `applydiff` of layer2.tar (whiteouts, opaque dir) onto C.
- The physical baselines are timed on the same filesystem right before the tools' import and
  diff runs (same number of runs), not interleaved with them.
- Under load (other jobs on the 2 cores), wall times of a single-threaded process suffer more
  than those of the multi-threaded Go tool, which gets more run-queue shares; the CPU columns
  and the CPU ratio in parentheses are the steadier numbers then.
- No command has a time limit: a hung tool hangs the run. An interrupted run leaves
  `<work>/lsbench-xtask-<pid>` (and its mounts); the next run removes it.
- tmpfs: a fresh tmpfs mounted for the run (the goals are for this case: it isolates the
  software's cost from the shared machine's disk). disk: a directory under `--work`.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_report_shows_no_machine_s_directories() {
        let workspace = Path::new("/src/layerstore");
        let shown = |p: &str| shown_path(Path::new(p), workspace);
        assert_eq!(
            shown("/src/layerstore/target/release/layerstore"),
            "target/release/layerstore"
        );
        assert_eq!(
            shown("/usr/bin/containers-storage"),
            "/usr/bin/containers-storage"
        );
        assert_eq!(
            shown("/opt/t/bench/release/layerstore"),
            "…/release/layerstore"
        );
    }

    #[test]
    fn defaults_cover_everything() {
        let o = Options::parse(&[]).expect("no options is fine");
        assert_eq!(o.runs, 5);
        assert_eq!(o.fs, vec![FsKind::Tmpfs, FsKind::Disk]);
        assert_eq!(o.sections.len(), 5);
        assert_eq!(o.fixtures.len(), fixtures::ALL.len());
        assert_eq!(o.many_layers, 10_000);
        assert_eq!(o.chain_depth, 100);
        assert_eq!(
            o.many_drivers(),
            vec!["vfs".to_owned(), "overlay".to_owned()]
        );
    }

    #[test]
    fn quick_is_a_small_subset_and_flags_override_it() {
        let o = Options::parse(&args("--quick")).expect("valid");
        assert_eq!((o.runs, o.fs.clone()), (3, vec![FsKind::Tmpfs]));
        assert_eq!(
            o.fixtures.iter().map(|f| f.name).collect::<Vec<_>>(),
            ["rootfs.tar", "rootfs.tar.gz", "rootfs.tar.zst"]
        );
        assert_eq!(o.many_drivers(), vec!["vfs".to_owned()]);
        let o = Options::parse(&args(
            "--quick --runs 7 --fs disk --sections many,child --layers 500",
        ))
        .expect("valid");
        assert_eq!(o.runs, 7);
        assert_eq!(o.fs, vec![FsKind::Disk]);
        assert_eq!(o.sections, vec![Section::Many, Section::Child]);
        assert_eq!(o.many_layers, 500);
        assert!(o.command_line.ends_with("--layers 500"));
        let o = Options::parse(&args("--disk-fixtures rootfs.tar --fixtures bigfile.tar"))
            .expect("valid");
        assert_eq!(o.fixtures_on("tmpfs")[0].name, "bigfile.tar");
        assert_eq!(o.fixtures_on("disk")[0].name, "rootfs.tar");
        assert_eq!(o.all_fixtures().len(), 2);
    }

    #[test]
    fn bad_options_are_errors_naming_the_problem() {
        for (line, want) in [
            ("--runs 0", "--runs"),
            ("--runs", "needs a value"),
            ("--sections import,bogus", "bogus"),
            ("--fs nfs", "nfs"),
            ("--drivers btrfs", "btrfs"),
            ("--fixtures nope.tar", "nope.tar"),
            ("--frobnicate", "--frobnicate"),
        ] {
            let err = Options::parse(&args(line)).expect_err(line);
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn layer_ids_are_fixed_64_hex() {
        let id = layer_id("rootfs.tar");
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, layer_id("rootfs.tar"));
        assert_ne!(id, layer_id("rootfs.tar.gz"));
    }

    #[test]
    fn filesystem_description_names_the_type() {
        let d = describe_fs(Path::new("/proc"));
        assert!(d.contains("/proc"), "{d}");
    }
}

/// The line from which the report's hand-written part (profiles, experiments) starts; a rerun
/// keeps that part as it is, below the fresh tables.
const NOTES_MARKER: &str = "<!-- hand-written below: kept by `cargo xtask bench` -->";

/// The hand-written part of the report at `out`, marker included, or nothing.
fn kept_notes(out: &Path) -> String {
    let old = fs::read_to_string(out).unwrap_or_default();
    notes_after_marker(&old).map_or_else(String::new, |notes| format!("\n{notes}"))
}

fn notes_after_marker(report: &str) -> Option<&str> {
    report.find(NOTES_MARKER).map(|at| &report[at..])
}

#[cfg(test)]
mod kept_notes_tests {
    use super::*;

    #[test]
    fn only_the_part_from_the_marker_on_is_kept() {
        let report = format!("# table\n| a |\n\n{NOTES_MARKER}\n## Why\nprofile\n");
        assert_eq!(
            notes_after_marker(&report),
            Some(format!("{NOTES_MARKER}\n## Why\nprofile\n").as_str())
        );
        assert_eq!(notes_after_marker("# table only\n"), None);
    }
}
