//! The report document: header, machine facts, the results of each filesystem, how to run it,
//! the method, and the hand-written notes a rerun keeps.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use super::fixtures;
use super::machine::{first_line_of, machine_facts};
use super::options::Section;
use super::pull;
use super::report::{FsResults, GoalRule, Tool};
use super::sections::Context;

#[allow(clippy::too_many_arguments)]
pub(super) fn render(
    ctx: &Context<'_>,
    all: &[FsResults],
    workspace: &Path,
    started: &str,
    finished: &str,
    load_before: &str,
    load_after: &str,
    chart_file: Option<&str>,
    page_reporting: &str,
) -> String {
    let opts = ctx.opts;
    let mut md = String::new();
    md.push_str("# Benchmarks: `layerstore` against Go `containers-storage`\n\n");
    md.push_str(
        "Written by `cargo xtask bench` (xtask/src/bench.rs); do not edit the tables by hand — rerun \
         it. Only the hand-written part at the end (from its marker on) survives a rerun.\n\n",
    );
    let complete = opts.runs >= 5
        && opts.sections.len() == Section::ALL.len()
        && opts.fs.len() == 2
        && opts.drivers.len() == 2
        && opts.all_fixtures().len() == fixtures::ALL.len()
        && opts.disk_fixtures.is_none()
        && opts.disk.is_none()
        && opts.many_layers == 10_000
        && opts.chain_depth == 100
        && (opts.store_images, opts.image_layers, opts.open_layers) == (10_000, 50, 100_000);
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
    if let Some(file) = chart_file {
        let _ = writeln!(
            md,
            "![Each row's median wall time divided by the comparison tool's: ours, the comparison tool (1.0), the bound; the red tick is the goal]({file})\n\n\
             The chart ({file}, drawn by the same run) shows each row of the {} tables as median wall time ÷ the comparison tool's: the Go tool, or for the pull rows `podman pull` (from the registry) and `skopeo copy` (from the OCI layout); grey is the row's bound: the library alone where one bounds it, else the physical reference.\n",
            all.iter()
                .find(|r| r.rule == GoalRule::Always)
                .or_else(|| all.first())
                .map_or("", |r| r.name.as_str())
        );
    }
    md.push_str("## How to run\n\n");
    md.push_str(HOW_TO_RUN);
    md.push_str("\n## Machine and tools\n\n| fact | value |\n|---|---|\n");
    for (k, v) in machine_facts() {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(
        md,
        "| free page reporting (VM balloon) | {page_reporting} |"
    );
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
    if opts.has(Section::Pull) {
        listed.extend(pull::FIXTURES);
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
    for r in all {
        let _ = writeln!(md, "\n## Goals ({})\n\n{}\n", r.name, r.goal_summary());
        md.push_str("| row | goal | measured | |\n|---|---|---|---|\n");
        for c in r.goal_checks() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                c.row,
                c.goal,
                c.measured,
                c.verdict.mark()
            );
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
    apt-get install -y podman skopeo docker-registry            # once, for the pull section
    cargo xtask bench                  # everything: tmpfs and disk, 5 runs (~1 hour on 2 cores)
    cargo xtask bench --quick          # ~2 minutes: tmpfs, the rootfs fixtures, 3 runs
    cargo xtask bench --sections many,mount --fs tmpfs --runs 10
    cargo xtask bench --sections store --fs tmpfs --images 1000 --open-layers 10000 --runs 3
    cargo xtask bench --sections pull --fs tmpfs --runs 3
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
- store: a store of N one-layer images (named), a container on each, and spare images whose
  top layer is a chain of `--image-layers` layers, written the same way (images.json and
  containers.json by layerstore-model) and shared by both tools: `images`, `layers`, `containers`,
  `create-container --id C IMAGE` then `mount C` (their sum per run is the
  `create-container + mount` row; `unmount C` and `delete-container C` follow, untimed),
  `delete-image` of a chain image (a different one each run: its layers go with it). A
  warm-up run of each tool comes first, untimed. Then `exists -l ID` (the last record) in a
  flat store of `--open-layers` layers: the cost of opening a big store.
- bound: where one library bounds a row (gzip inflate by ISA-L, or zlib-rs in a build without
  libisal; zstd decode; SHA-256 of a
  1 GiB stream), `cargo xtask bench-bound KIND FILE` runs that library alone on the row's
  input, as one process timed like the others (1 MiB reads, output discarded; the debug xtask
  binary runs its dependencies optimised), in the same run; the row reports ours ÷ bound.
  The diffs of layers of a few big files (the 1 GiB file, compressible.tar and
  incompressible.tar) are bound by the kernel's copy of those files' bytes into the output:
  `bench-bound copy-alone WAY DIR OUT` copies the layer's regular files (in path order) into
  the diffs' output path one of two ways, `threads` (one thread `read(2)`s 1 MiB chunks while
  another `write(2)`s them, 4 in flight) or `range` (`copy_file_range(2)` per file; skipped
  where the kernel refuses it across the two filesystems). Each way is one process timed like
  the others, after the same removal of the output and `sync(2)` as a diff; the faster of the
  two in each run is the bound's sample. No tar header, tar-split record or checksum is in it:
  only the bytes' move, which a diff cannot avoid. It runs right after each of our diffs of
  that row, from that layer's own files, so a row's bound and ours see the same moments of
  the machine; its baseline is the row's own (`bound-copy-alone/DRIVER/FIXTURE`; each way's
  own as `copy-threads/…` and `copy-range/…`). The write alone, `bench-bound write-alone FILE
  OUT` (as many bytes from one 1 MiB buffer, the file not read), follows as a physical
  baseline (`write-alone/DRIVER/FIXTURE`): the writing half, below what a diff can reach.
- two-core floor (compressed imports: **the row's bound**): the least wall time any import of
  the layer can take on these two cores, measured in the same run. Its parts are the work
  every import must do: (a) the decoder alone (the library bound), (b) SHA-256 of the blob
  and (c) SHA-256 of the uncompressed tar (`bench-bound sha256-hash-only`: the process times
  its own hashing and leaves the file's reads out, as an import hashes bytes it already
  holds), (d) GNU `tar -xf` of the uncompressed tar into an empty directory on the same
  filesystem (the entries' creation). Each of a, b, c is one sequential stream, so no split
  over threads shortens it (a + b is not a floor: the blob can be hashed on a thread of its
  own, as ours does for gzip); all of it shares two cores. floor = max(a, b, c, (a + b + c +
  d) ÷ 2), each part its median CPU time (user + system), which load does not inflate. The
  floor holds the decoder's own time (a), so it is never below the library alone; where the
  decoder is fast (zstd) or the stream big (the 1 GiB gzip file) the SHA-256s and the file
  creation are what two cores cannot fit under 1.1 × the decoder. The bound goal (≤ 1.1)
  divides our median wall time by the floor; the decoder alone is shown beside it. The floor
  leaves out tar-split packing and handing the stream between threads, so it is below what
  an import can reach.
- settling before a run that creates many files: `sync(2)`; on ext4 without a journal also
  the page cache dropped and the command's program and input files read back in, because
  that ext4 will not reuse an inode freed in the last 60 s while its inode-table block is
  cached, and scans past every such inode for each new one (fs/ext4/ialloc.c,
  `recently_deleted`): right after the previous run's `delete-layer` an import of rootfs.tar
  took 3.6 s instead of 0.39 s (the Go tool 4.5 s instead of 1.3 s), the cost of the bench's
  delete-and-recreate cadence, not of the tools. The report's notes say when this applied
  (only with `--disk DIR` on such a filesystem: the default disk has a journal).
- free page reporting: in a VM whose balloon driver reports free pages to the host, the bench
  holds it off for the run (`page_reporting_order` above the largest free block, restored
  after; the machine table says what it found and did). A reporting pass during a 1 GiB
  tmpfs write made that write 2–7× slower at random (xtask/src/bench/reporting.rs has the
  numbers), for every tool alike. Memory reported before the run is faulted back in once at
  its start (all free memory but 1 GiB touched, untimed), so no timed run pays for it.
- goals on the disk: a row's goal checks count only where the comparison tool against itself
  varies by less than the gap between the tools: the spread of its wall times over the runs
  (max − min, with at least two runs) must be less than |its median − ours|. Other rows are
  shown as `not counted: Go varies by X against a gap of Y` and are left out of the met/total
  count of `Goals (disk)`. On tmpfs every check counts.
- pull: one image of two gzip layers (rootfs.tar.gz as it is, smallfiles.tar by `gzip -6 -n`),
  in an OCI layout the bench writes into the fixtures directory (`pull-oci`), and pushed by
  `skopeo copy` into a Debian `docker-registry` on a free port of 127.0.0.1 (plain HTTP, config
  and storage on the tmpfs, stopped after). Here the comparison tool is not the Go tool:
  `layerstore pull docker://…` against `podman --root G --runroot R --storage-driver D pull
  --tls-verify=false`, and `layerstore pull oci:DIR NAME` against `skopeo copy oci:DIR
  containers-storage:[D@G+R]NAME`; each run into a fresh store (unmounted and removed before:
  podman and skopeo leave the overlay home bind-mounted), with `--quiet` and `TMPDIR` on the
  tmpfs for every tool (containers/image stages big files there) and podman's libpod
  `--tmpdir` in the store. The re-pull pulls from the registry again into the store the
  tool's pull just filled (every layer present). A pull counts only when the store then holds
  the image (its directory under `<driver>-images`, named by the config digest). Physical
  reference: GNU `tar -xzf` of both layer blobs, in order, into one empty tree on the same
  filesystem (no network, no digests, no records), timed before the pulls.
- child: `create-layer --id C P` on vfs where P holds rootfs.tar (a full copy); reference
  `cp -a` of the extracted tree; then `applydiff` of layer2.tar (whiteouts, opaque dir) onto C.
- The physical baselines are timed on the same filesystem right before the tools' import and
  diff runs (same number of runs), not interleaved with them.
- Under load (other jobs on the 2 cores), wall times of a single-threaded process suffer more
  than those of the multi-threaded Go tool, which gets more run-queue shares; the CPU columns
  and the CPU ratio in parentheses are the steadier numbers then.
- No command has a time limit: a hung tool hangs the run. An interrupted run leaves
  `<work>/lsbench-xtask-<pid>` (and its mounts); the next run removes it.
- tmpfs: a fresh tmpfs mounted for the run (the goals are set for this case: it isolates the
  software's cost from the shared machine's disk). disk: a fresh ext4 made by `mkfs.ext4`
  with its defaults (a journal included) on a sparse loop file under `--work`, so that \"ext4\"
  means the same on every machine (xtask/src/bench/ext4loop.rs says why: an ext4 made without
  a journal, as this VM's root is, makes the bench's delete-before-every-import cadence cost
  both tools seconds); `--disk DIR` measures DIR's filesystem as it is instead. The table of
  machine facts names it, under the disk rule above.
";

/// The line from which the report's hand-written part (profiles, experiments) starts; a rerun
/// keeps that part as it is, below the fresh tables.
const NOTES_MARKER: &str = "<!-- hand-written below: kept by `cargo xtask bench` -->";

/// The hand-written part of the report at `out`, marker included, or nothing.
pub(super) fn kept_notes(out: &Path) -> String {
    let old = fs::read_to_string(out).unwrap_or_default();
    notes_after_marker(&old).map_or_else(String::new, |notes| format!("\n{notes}"))
}

fn notes_after_marker(report: &str) -> Option<&str> {
    report.find(NOTES_MARKER).map(|at| &report[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_the_part_from_the_marker_on_is_kept() {
        let report = format!("# table\n| a |\n\n{NOTES_MARKER}\n## Why\nprofile\n");
        assert_eq!(
            notes_after_marker(&report),
            Some(format!("{NOTES_MARKER}\n## Why\nprofile\n").as_str())
        );
        assert_eq!(notes_after_marker("# table only\n"), None);
    }
}
