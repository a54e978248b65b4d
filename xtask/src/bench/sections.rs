//! The sections of the benchmark (import, diff, many layers, mount, child layer; the whole
//! store is in [`super::whole_store`], the pulls in [`super::pull`]) and the
//! physical baselines they are compared with; each section fills its rows of the results.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::bound::{COPY_ALONE, COPY_WAY_UNAVAILABLE, COPY_WAYS, HashOnly};
use super::exec::{Finished, Runner, Sample};
use super::fixtures::{self, Fixture};
use super::machine::load_average;
use super::options::{Options, Section};
use super::report::{Floor, FsResults, Goal, Row, Tool};
use super::settle::Settle;
use super::store::{self, Store};
use super::{layer_id, sync};

/// What every section needs.
pub(super) struct Context<'a> {
    pub(super) opts: &'a Options,
    pub(super) runner: Runner,
    pub(super) tools: [PathBuf; 2],
    pub(super) scratch: PathBuf,
    pub(super) plain_sha: HashMap<String, String>,
    pub(super) unavailable: Vec<(Fixture, String)>,
    /// What the current filesystem needs before a timed run that creates many files.
    pub(super) settle: Settle,
}

impl Context<'_> {
    pub(super) fn tool(&self, tool: Tool) -> &Path {
        &self.tools[tool.index()]
    }

    fn available(&self, f: &Fixture) -> bool {
        !self.unavailable.iter().any(|(u, _)| u == f)
    }

    /// Times `cmd`, a run that creates many files, after settling the filesystem for it
    /// ([`Settle::before`]; `inputs`: what it reads besides its program and file arguments).
    pub(super) fn timed_creating(
        &self,
        cmd: &mut Command,
        inputs: &[&Path],
    ) -> Result<Finished, String> {
        self.settle.before(cmd, inputs)?;
        self.runner.timed(cmd)
    }

    pub(super) fn fixture(&self, name: &str) -> PathBuf {
        self.opts.fixtures_dir.join(name)
    }

    pub(super) fn plain_sha(&mut self, plain: &str) -> Result<String, String> {
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
pub(super) struct Broken([bool; 2]);

impl Broken {
    pub(super) fn is(&self, tool: Tool) -> bool {
        self.0[tool.index()]
    }

    pub(super) fn mark(&mut self, tool: Tool, results: &mut FsResults, what: &str, err: &str) {
        if !self.0[tool.index()] {
            results.notes.push(format!("{tool:?} FAILED {what}: {err}"));
            eprintln!("bench: {tool:?} failed {what}: {err}");
        }
        self.0[tool.index()] = true;
    }
}

pub(super) fn run_sections(ctx: &mut Context<'_>, fs_root: &Path, results: &mut FsResults) {
    let opts = ctx.opts;
    let runner = ctx.runner.clone();
    let timed_section =
        |name: &str,
         results: &mut FsResults,
         f: &mut dyn FnMut(&mut FsResults) -> Result<(), String>| {
            if runner.interrupted() {
                // Every command would fail at once: the caller stops after this filesystem.
                return;
            }
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
    if opts.has(Section::Store) {
        timed_section("store", results, &mut |r| {
            super::whole_store::section_store(ctx, fs_root, r)
        });
    }
    if opts.has(Section::Pull) {
        timed_section("pull", results, &mut |r| {
            super::pull::section_pull(ctx, fs_root, r)
        });
    }
}

/// The one library an import of `f` is bound by, if any: (`bench-bound` kind, label).
/// Compressed layers: the decompressor (its thread feeds everything else). The 1 GiB plain
/// file: SHA-256 of the stream (the extracting thread hashes every byte it writes). The other
/// plain tars are bound by the filesystem calls, measured by the `tar -x` reference instead.
fn library_bound(f: Fixture) -> Option<(&'static str, &'static str)> {
    if f.name.ends_with(".gz") {
        Some(("gunzip", super::bound::GUNZIP_LABEL))
    } else if f.name.ends_with(".zst") {
        Some(("unzstd", "zstd decode alone"))
    } else if f.name == "bigfile.tar" {
        Some(("sha256", "SHA-256 alone"))
    } else {
        None
    }
}

/// What bounds the diff of `f`'s layer on `driver`, if one thing does: (label, baseline key).
/// A layer of a few big files (the 1 GiB file; compressible.tar and incompressible.tar, 16
/// and 2 files): the kernel's copy of those files' bytes into the output
/// (`bench-bound copy-alone`: two threads of `read(2)`/`write(2)`, or `copy_file_range(2)`,
/// whichever was faster in that run), which no user-space work of a diff can shorten. Trees
/// of many files are bound by the filesystem calls, measured by the `tar -c` reference
/// instead. The key is the row's own: the bound is timed right after each of our diffs, from
/// that layer's files into the same output path ([`time_diff_bound`]), so both see the same
/// moment of this noisy machine.
fn diff_bound(f: Fixture, driver: &str) -> Option<(&'static str, String)> {
    const FEW_BIG_FILES: &[&str] = &["bigfile.tar", "compressible.tar", "incompressible.tar"];
    FEW_BIG_FILES.contains(&f.plain()).then(|| {
        (
            "the kernel's copy of the layer's files alone: read(2)+write(2) on two threads, or copy_file_range(2) if faster",
            format!("bound-{COPY_ALONE}/{driver}/{}", f.name),
        )
    })
}

/// The baseline of one way of the copy bound (`threads`, `range`), or of writing a diff's
/// output alone without reading the layer (`write-alone`, the writing half of the copy):
/// shown beside the bound, in the physical baselines.
fn diff_part_key(part: &str, f: Fixture, driver: &str) -> String {
    format!("{part}/{driver}/{}", f.name)
}

/// Times the diff bound of the layer in `layer_dir` into `out`: each way of
/// `bench-bound copy-alone` as a process (`out` removed before and after, untimed, then
/// `sync(2)`, as for the diff it is compared with), the faster one into the baseline `key`;
/// then the write alone of as many bytes.
fn time_diff_bound(
    ctx: &Context<'_>,
    results: &mut FsResults,
    (driver, key): (&str, &str),
    f: Fixture,
    (layer_dir, out): (&Path, &Path),
) -> Result<(), String> {
    let xtask = std::env::current_exe().map_err(|e| format!("the xtask binary: {e}"))?;
    let mut fastest: Option<Sample> = None;
    for way in COPY_WAYS {
        let _ = fs::remove_file(out);
        sync();
        let done = ctx.runner.timed(
            Command::new(&xtask)
                .args(["bench-bound", COPY_ALONE, way])
                .arg(layer_dir)
                .arg(out),
        );
        let _ = fs::remove_file(out);
        let done = done?;
        if done.stdout.contains(COPY_WAY_UNAVAILABLE) {
            continue;
        }
        results
            .baselines
            .entry(diff_part_key(&format!("copy-{way}"), f, driver))
            .or_default()
            .push(done.sample);
        if fastest.is_none_or(|s| done.sample.wall < s.wall) {
            fastest = Some(done.sample);
        }
    }
    let fastest = fastest.ok_or_else(|| format!("no way of copy-alone ran for {key}"))?;
    results
        .baselines
        .entry(key.to_owned())
        .or_default()
        .push(fastest);
    sync();
    let written = ctx.runner.timed(
        Command::new(&xtask)
            .args(["bench-bound", "write-alone"])
            .arg(ctx.fixture(f.plain()))
            .arg(out),
    );
    let _ = fs::remove_file(out);
    results
        .baselines
        .entry(diff_part_key("write-alone", f, driver))
        .or_default()
        .push(written?.sample);
    Ok(())
}

/// Where `driver` keeps the files of layer `id` under the graph root `graph`.
fn layer_dir(graph: &Path, driver: &str, id: &str) -> PathBuf {
    match driver {
        "overlay" => graph.join("overlay").join(id).join("diff"),
        other => graph.join(other).join("dir").join(id),
    }
}

fn bound_key(kind: &str, f: Fixture) -> String {
    format!("bound-{kind}/{}", f.name)
}

/// The `bench-bound` kind that times SHA-256's hashing alone (a floor's part).
const HASH_ONLY: &str = "sha256-hash-only";

fn hash_only_key(file: &str) -> String {
    format!("bound-{HASH_ONLY}/{file}")
}

/// The two-core floor of importing `f`, where a decoder bounds it: decode, SHA-256 of the
/// blob, SHA-256 of the tar stream, GNU `tar -xf` of the tar (see [`Floor`]).
fn two_core_floor(f: Fixture) -> Option<Floor> {
    let (kind, _) = library_bound(f).filter(|_| f.decompressor().is_some())?;
    Some(Floor {
        decode: bound_key(kind, f),
        blob_sha: hash_only_key(f.name),
        tar_sha: hash_only_key(f.plain()),
        extract: format!("tar-x/{}", f.plain()),
    })
}

/// Times SHA-256's hashing of `file` alone, `runs` times, into the baseline `key` (once per
/// key): the process's own account of its hashing, with the process's peak RSS.
fn time_hash_only(
    ctx: &Context<'_>,
    results: &mut FsResults,
    xtask: &Path,
    file: &str,
) -> Result<(), String> {
    let key = hash_only_key(file);
    if results.baselines.contains_key(&key) {
        return Ok(());
    }
    for _ in 0..ctx.opts.runs {
        let done = ctx.runner.timed(
            Command::new(xtask)
                .args(["bench-bound", HASH_ONLY])
                .arg(ctx.fixture(file)),
        )?;
        let spent = HashOnly::parse(&done.stdout).ok_or_else(|| {
            format!(
                "bench-bound {HASH_ONLY} {file} printed no time: `{}`",
                done.stdout.trim()
            )
        })?;
        results
            .baselines
            .entry(key.clone())
            .or_default()
            .push(Sample {
                wall: spent.wall,
                cpu: spent.cpu,
                max_rss_kib: done.sample.max_rss_kib,
            });
    }
    Ok(())
}

pub(super) fn record(row: &mut Row, tool: Tool, sample: Sample) {
    row.samples[tool.index()].push(sample);
}

/// Physical baselines of one fixture on this filesystem: `tar -x` of its plain tar (and
/// `tar -c` of the tree, for diff), the decompressor alone, `cat`, the library bound and the
/// two-core floor's SHA-256 parts.
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
            let s = ctx
                .timed_creating(
                    Command::new("tar")
                        .arg("-xf")
                        .arg(ctx.fixture(plain))
                        .arg("-C")
                        .arg(&tree),
                    &[],
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
            let s = ctx
                .timed_creating(
                    Command::new("tar")
                        .arg("-xf")
                        .arg(ctx.fixture(f.name))
                        .arg("-C")
                        .arg(&tree),
                    &[],
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
    if let Some((kind, _)) = library_bound(f) {
        let xtask = std::env::current_exe().map_err(|e| format!("the xtask binary: {e}"))?;
        for _ in 0..runs {
            let s = ctx.runner.timed_discarding_stdout(
                Command::new(&xtask)
                    .args(["bench-bound", kind])
                    .arg(ctx.fixture(f.name)),
            )?;
            results
                .baselines
                .entry(bound_key(kind, f))
                .or_default()
                .push(s);
        }
        if two_core_floor(f).is_some() {
            time_hash_only(ctx, results, &xtask, f.name)?;
            time_hash_only(ctx, results, &xtask, f.plain())?;
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
            if let Some((kind, label)) = library_bound(f) {
                import.bound = Some((label.to_owned(), bound_key(kind, f)));
                import.goals.push(Goal::VsBound(1.1));
            }
            import.floor = two_core_floor(f);
            let mut diff = Row::new("diff", "diff -u", driver, f.name);
            diff.reference = Some((
                format!("tar -c of {}'s tree", f.plain()),
                vec![format!("tar-c/{}", f.plain())],
            ));
            diff.goals = vec![Goal::VsGo(0.25), Goal::VsReference(2.0)];
            let copy_bound = diff_bound(f, driver).map(|(label, key)| {
                diff.bound = Some((label.to_owned(), key.clone()));
                diff.goals.push(Goal::VsBound(1.1));
                key
            });
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
                    match ctx.timed_creating(
                        s.command(&bin)
                            .arg("applydiff")
                            .arg("--file")
                            .arg(&input)
                            .arg(&id),
                        &[],
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
                        if tool == Tool::Ours
                            && let Some(key) = &copy_bound
                        {
                            let layer_dir = layer_dir(&s.graph, driver, &id);
                            time_diff_bound(ctx, results, (driver, key), f, (&layer_dir, &out))?;
                        }
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
        let s = ctx
            .timed_creating(Command::new("cp").arg("-a").arg(&tree).arg(&copy), &[])?
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
            // The copy reads the parent's files: they are read back in after a cache drop.
            let parent_dir = s.graph.join("vfs/dir").join(&parent);
            match ctx.timed_creating(
                s.command(&bin)
                    .args(["create-layer", "--id", &child, &parent]),
                &[&parent_dir],
            ) {
                Ok(done) => record(&mut create, tool, done.sample),
                Err(e) => {
                    broken.mark(tool, results, "create-layer of a vfs child", &e);
                    continue;
                }
            }
            if let Some(layer2) = &layer2 {
                match ctx.timed_creating(
                    s.command(&bin)
                        .arg("applydiff")
                        .arg("--file")
                        .arg(layer2)
                        .arg(&child),
                    &[],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_imports_have_a_two_core_floor_of_the_baselines_timed_for_them() {
        let zst = Fixture::named("rootfs.tar.zst").expect("known");
        let floor = two_core_floor(zst).expect("a decoder bounds it");
        assert_eq!(floor.decode, "bound-unzstd/rootfs.tar.zst");
        assert_eq!(floor.blob_sha, "bound-sha256-hash-only/rootfs.tar.zst");
        assert_eq!(floor.tar_sha, "bound-sha256-hash-only/rootfs.tar");
        assert_eq!(floor.extract, "tar-x/rootfs.tar");
        let gz = Fixture::named("bigfile.tar.gz").expect("known");
        let floor = two_core_floor(gz).expect("a decoder bounds it");
        assert_eq!(floor.decode, bound_key("gunzip", gz));
        assert_eq!(floor.tar_sha, hash_only_key("bigfile.tar"));
        // Plain tars: no decoder, no floor (bigfile.tar is bound by SHA-256 alone).
        for plain in ["rootfs.tar", "bigfile.tar", "smallfiles.tar"] {
            let f = Fixture::named(plain).expect("known");
            assert!(two_core_floor(f).is_none(), "{plain}");
        }
    }

    #[test]
    fn the_diffs_of_layers_of_a_few_big_files_are_bound_by_copying_their_files() {
        for (name, plain) in [
            ("bigfile.tar", "bigfile.tar"),
            ("bigfile.tar.gz", "bigfile.tar"),
            ("compressible.tar", "compressible.tar"),
            ("incompressible.tar", "incompressible.tar"),
        ] {
            let f = Fixture::named(name).expect("known");
            assert_eq!(f.plain(), plain);
            let (label, key) = diff_bound(f, "overlay").expect("bound by the copy");
            assert!(label.contains("copy"), "{label}");
            // The row's own baseline: timed beside that row's diffs, not once per tar.
            assert_eq!(key, format!("bound-copy-alone/overlay/{name}"));
            assert_ne!(diff_bound(f, "vfs").expect("bound").1, key);
            assert_eq!(
                diff_part_key("write-alone", f, "vfs"),
                format!("write-alone/vfs/{name}")
            );
        }
        for name in ["rootfs.tar", "rootfs.tar.gz", "smallfiles.tar"] {
            let f = Fixture::named(name).expect("known");
            assert!(diff_bound(f, "vfs").is_none(), "{name}");
        }
    }
}
