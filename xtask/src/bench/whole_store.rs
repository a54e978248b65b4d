//! The `store` section: the whole store (layers, images, containers) against the Go tool.
//!
//! One store per driver, written directly ([`store::write_image_store`]): `--images` one-layer
//! images, a container on each, and spare images whose top layer is a chain of
//! `--image-layers` layers. Both tools share it. Timed per run: `images`, `layers` (which
//! names each layer's images and containers), `containers`,
//! `create-container` then `mount` of it (what every `podman run` starts with; the row
//! `create-container + mount` is their sum per run), and `delete-image` of a chain image (each
//! run deletes another one). Then `exists -l` in a flat store of `--open-layers` layers: the
//! cost of opening a big store.

use std::path::Path;

use super::exec::Sample;
use super::layer_id;
use super::report::{FsResults, Goal, Row, Tool};
use super::sections::{Broken, Context, record};
use super::store::{self, Store};
use super::sync;

/// Goal of every whole-store row but the open: ours ÷ Go.
const STORE_GOAL: f64 = 0.3;
/// Goal of opening the big store: ours ÷ Go.
const OPEN_GOAL: f64 = 0.1;

/// The sum of two commands run back to back (wall and CPU add up; peak RSS is the larger).
fn sum(a: Sample, b: Sample) -> Sample {
    Sample {
        wall: a.wall + b.wall,
        cpu: a.cpu + b.cpu,
        max_rss_kib: a.max_rss_kib.max(b.max_rss_kib),
    }
}

/// Runs the section on every driver of the many-layer store (`--quick`: vfs only).
pub(super) fn section_store(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
) -> Result<(), String> {
    for driver in ctx.opts.many_drivers() {
        images_and_containers(ctx, fs_root, results, &driver)?;
        open_big_store(ctx, fs_root, results, &driver)?;
    }
    Ok(())
}

fn images_and_containers(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
    driver: &str,
) -> Result<(), String> {
    let opts = ctx.opts;
    let (n, chain_len, runs) = (opts.store_images, opts.image_layers, opts.runs);
    let base = fs_root.join(format!("stores/images-{driver}"));
    let s = Store::at(&base, driver);
    eprintln!("bench: writing a {n}-image {driver} store");
    // One chain image per tool and run, and one spare each for the warm-up.
    let ids = store::write_image_store(&s, n, 2 * (runs + 1), chain_len)?;
    sync();
    let input = format!("{n} images, {n} containers");
    let row = |op: &str, input: &str, goal: f64| {
        let mut r = Row::new("store", op, driver, input);
        r.goals = vec![Goal::VsGo(goal)];
        r
    };
    let mut images = row("images", &input, STORE_GOAL);
    let mut layers = row("layers", &input, STORE_GOAL);
    let mut containers = row("containers", &input, STORE_GOAL);
    let mut create = row("create-container", &input, STORE_GOAL);
    let mut mount = row("mount (container)", &input, STORE_GOAL);
    let mut start = row("create-container + mount", &input, STORE_GOAL);
    let mut delete = row(
        "delete-image",
        &format!("{chain_len}-layer image, {n} images"),
        STORE_GOAL,
    );
    let container = layer_id("store-container");
    let mut chains = ids.chain_images.iter();
    let mut broken = Broken::default();
    let first_image = ids.images.first().cloned().unwrap_or_default();
    let first_container = ids.containers.first().cloned().unwrap_or_default();
    // Warm-up (lock files, driver probe), then runs = 0.. timed.
    for run in 0..=runs {
        let timed = run > 0;
        for tool in Tool::order(run) {
            if broken.is(tool) {
                continue;
            }
            let bin = ctx.tool(tool).to_path_buf();
            // A listing must be complete: it names the first image (container); `layers`
            // names each layer's images and containers beside it.
            for (what, want, row) in [
                ("images", &first_image, &mut images),
                ("layers", &first_image, &mut layers),
                ("containers", &first_container, &mut containers),
            ] {
                match ctx.runner.timed(s.command(&bin).arg(what)) {
                    Ok(done) if done.stdout.contains(want.as_str()) => {
                        if timed {
                            record(row, tool, done.sample);
                        }
                    }
                    Ok(_) => broken.mark(
                        tool,
                        results,
                        &format!("{what} ({driver}, {n} images)"),
                        &format!("the listing lacks {want}"),
                    ),
                    Err(e) => broken.mark(tool, results, &format!("{what} ({driver})"), &e),
                }
            }
            if broken.is(tool) {
                continue;
            }
            // A run that failed half-way must not leave the container to the other tool.
            ctx.runner
                .run_ignoring_failure(s.command(&bin).args(["delete-container", &container]));
            sync();
            let created = match ctx.runner.timed(s.command(&bin).args([
                "create-container",
                "--id",
                &container,
                &first_image,
            ])) {
                Ok(done) => done.sample,
                Err(e) => {
                    broken.mark(tool, results, &format!("create-container ({driver})"), &e);
                    continue;
                }
            };
            let mounted = match ctx
                .runner
                .timed(s.command(&bin).args(["mount", &container]))
            {
                Ok(done) => {
                    let path = done.stdout.trim().to_owned();
                    let ok = if driver == "overlay" {
                        store::is_mount_point(Path::new(&path))
                    } else {
                        Path::new(&path).is_dir()
                    };
                    if !ok {
                        broken.mark(
                            tool,
                            results,
                            &format!("mount of a container ({driver})"),
                            &format!("printed `{path}`, which is not the container's root"),
                        );
                        continue;
                    }
                    done.sample
                }
                Err(e) => {
                    broken.mark(
                        tool,
                        results,
                        &format!("mount of a container ({driver})"),
                        &e,
                    );
                    continue;
                }
            };
            if timed {
                record(&mut create, tool, created);
                record(&mut mount, tool, mounted);
                record(&mut start, tool, sum(created, mounted));
            }
            ctx.runner
                .run_ignoring_failure(s.command(&bin).args(["unmount", &container]));
            ctx.runner
                .run_ignoring_failure(s.command(&bin).args(["delete-container", &container]));
            let Some(image) = chains.next() else {
                return Err("ran out of chain images to delete".into());
            };
            sync();
            match ctx
                .runner
                .timed(s.command(&bin).args(["delete-image", image]))
            {
                Ok(done) if timed => record(&mut delete, tool, done.sample),
                Ok(_) => {}
                Err(e) => broken.mark(
                    tool,
                    results,
                    &format!("delete-image of a {chain_len}-layer image ({driver})"),
                    &e,
                ),
            }
            sync();
        }
    }
    results
        .rows
        .extend([images, layers, containers, create, mount, start, delete]);
    store::remove_tree(&base)
}

fn open_big_store(
    ctx: &mut Context<'_>,
    fs_root: &Path,
    results: &mut FsResults,
    driver: &str,
) -> Result<(), String> {
    let n = ctx.opts.open_layers;
    let base = fs_root.join(format!("stores/open-{driver}"));
    let s = Store::at(&base, driver);
    eprintln!("bench: writing a {n}-layer {driver} store");
    let ids = store::write_flat_store(&s, n)?;
    sync();
    // The last record: a lookup that has to see the whole file.
    let wanted = ids.last().cloned().unwrap_or_default();
    let mut open = Row::new("store", "exists -l (open)", driver, &format!("{n} layers"));
    open.goals = vec![Goal::VsGo(OPEN_GOAL)];
    let mut broken = Broken::default();
    for run in 0..=ctx.opts.runs {
        for tool in Tool::order(run) {
            if broken.is(tool) {
                continue;
            }
            let bin = ctx.tool(tool).to_path_buf();
            match ctx
                .runner
                .timed(s.command(&bin).args(["exists", "-l", &wanted]))
            {
                Ok(done) if run > 0 => record(&mut open, tool, done.sample),
                Ok(_) => {}
                Err(e) => broken.mark(
                    tool,
                    results,
                    &format!("exists -l in a {n}-layer {driver} store"),
                    &e,
                ),
            }
        }
    }
    results.rows.push(open);
    store::remove_tree(&base)
}
