//! Reading and editing records: `layers`, `layer`, `layer-parent-owners`, `delete`,
//! `delete-layer`, `exists`, names, metadata and layer data.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::Path;

use anyhow::Result;
use layerstore::{Container, Error, Image, Layer};
use serde::Serialize;

use super::content::open_input;
use super::{Context, go_error_text, go_io_text, go_lossy_utf8};
use crate::output::{TreeNode, go_int_list, print_tree, write_error, write_json};

/// The images and containers on each layer, indexed once: looking them up per layer by
/// scanning both lists made `layers` quadratic (2.5 s of CPU for 20,000 layers under 10,000
/// images and 10,000 containers, against Go's 0.6 s).
struct LayerUsers<'a> {
    /// Layer ID -> the images whose top layer (or a mapped copy of it) it is, in list order.
    images: HashMap<&'a str, Vec<&'a Image>>,
    /// Layer ID -> its container; as in Go's map, the last one listed wins.
    containers: HashMap<&'a str, &'a Container>,
}

impl<'a> LayerUsers<'a> {
    fn index(images: &'a [Image], containers: &'a [Container]) -> LayerUsers<'a> {
        let mut on_layer: HashMap<&'a str, Vec<&'a Image>> = HashMap::new();
        for image in images {
            let layers = std::iter::once(&image.top_layer).chain(&image.mapped_top_layers);
            for (i, layer) in layers.clone().enumerate() {
                // An image is listed once per layer even if it names that layer twice.
                if layers.clone().take(i).all(|earlier| earlier != layer) {
                    on_layer.entry(layer.as_str()).or_default().push(image);
                }
            }
        }
        let containers = containers
            .iter()
            .map(|c| (c.layer_id.as_str(), c))
            .collect();
        LayerUsers {
            images: on_layer,
            containers,
        }
    }

    fn images_on(&self, layer: &str) -> &[&'a Image] {
        self.images.get(layer).map_or(&[], Vec::as_slice)
    }

    fn container_on(&self, layer: &str) -> Option<&'a Container> {
        self.containers.get(layer).copied()
    }
}

pub(super) fn layers(ctx: &mut Context<'_>, tree: bool, json: bool) -> Result<i32> {
    let layers = match ctx.store.layers() {
        Ok(layers) => layers,
        Err(err) => return ctx.fail(&go_error_text(&err)),
    };
    if json {
        write_json(ctx.out, &layers)?;
        return Ok(0);
    }
    // As in Go, the images and containers are listed beside their layers when they can be
    // read, and left out when not.
    let images = ctx.store.images().unwrap_or_default();
    let containers = ctx.store.containers().unwrap_or_default();
    let users = LayerUsers::index(&images, &containers);
    if tree {
        let nodes = layers
            .iter()
            .map(|layer| {
                let mut notes: Vec<String> =
                    layer.names.iter().map(|n| format!("name: {n}")).collect();
                if let Some(mount) = layer.mount_point.as_ref().filter(|_| layer.mount_count > 0) {
                    notes.push(format!("mount: {}", mount.display()));
                }
                for image in users.images_on(&layer.id) {
                    notes.push(format!("image: {}", image.id));
                    notes.extend(image.names.iter().map(|n| format!("image name: {n}")));
                }
                if let Some(container) = users.container_on(&layer.id) {
                    notes.push(format!("container: {}", container.id));
                    notes.extend(
                        container
                            .names
                            .iter()
                            .map(|n| format!("container name: {n}")),
                    );
                }
                TreeNode {
                    left: layer.parent().unwrap_or("(base)").to_string(),
                    right: layer.id.clone(),
                    notes,
                }
            })
            .collect();
        print_tree(ctx.out, nodes)?;
    } else {
        for layer in &layers {
            writeln!(ctx.out, "{}", layer.id)?;
            for name in &layer.names {
                writeln!(ctx.out, "\tname: {name}")?;
            }
            for image in users.images_on(&layer.id) {
                writeln!(ctx.out, "\timage: {}", image.id)?;
                for name in &image.names {
                    writeln!(ctx.out, "\t\tname: {name}")?;
                }
            }
            if let Some(container) = users.container_on(&layer.id) {
                writeln!(ctx.out, "\tcontainer: {}", container.id)?;
                for name in &container.names {
                    writeln!(ctx.out, "\t\tname: {name}")?;
                }
            }
        }
    }
    Ok(0)
}

pub(super) fn layer(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let matched: Vec<Layer> = args
        .iter()
        .filter_map(|a| ctx.store.layer(a).ok())
        .collect();
    if json {
        write_json(ctx.out, &matched)?;
    } else {
        for layer in &matched {
            writeln!(ctx.out, "ID: {}", layer.id)?;
            for m in &layer.uid_map {
                writeln!(
                    ctx.out,
                    "UID mapping: (container={}, host={}, size={})",
                    m.container_id, m.host_id, m.size
                )?;
            }
            for m in &layer.gid_map {
                writeln!(
                    ctx.out,
                    "GID mapping: (container={}, host={}, size={})",
                    m.container_id, m.host_id, m.size
                )?;
            }
            if let Some(parent) = layer.parent() {
                writeln!(ctx.out, "Parent: {parent}")?;
            }
            for name in &layer.names {
                writeln!(ctx.out, "Name: {name}")?;
            }
            if layer.read_only {
                writeln!(ctx.out, "Read Only: true")?;
            }
        }
    }
    Ok(i32::from(matched.len() != args.len()))
}

#[derive(Serialize)]
struct ParentOwners<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "UIDs")]
    uids: Option<&'a [u32]>,
    #[serde(rename = "GIDs")]
    gids: Option<&'a [u32]>,
}

pub(super) fn layer_parent_owners(
    ctx: &mut Context<'_>,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let matched: Vec<Layer> = args
        .iter()
        .filter_map(|a| ctx.store.layer(a).ok())
        .collect();
    for layer in &matched {
        let (uids, gids) = match ctx.store.layer_parent_owners(&layer.id) {
            Ok(owners) => owners,
            Err(err) => return ctx.fail(&format!("LayerParentOwner: {}", go_error_text(&err))),
        };
        write_parent_owners(ctx, json, false, &layer.id, &uids, &gids)?;
    }
    Ok(i32::from(matched.len() != args.len()))
}

/// One item's unmapped parent owners, as `layer-parent-owners` and
/// `container-parent-owners` print them: JSON with `null` for an empty list, or `ID:`,
/// `UIDs:`, `GIDs:` lines (empty lists printed as `[]` only when `empty_lines`, as Go's
/// container command does).
pub(super) fn write_parent_owners(
    ctx: &mut Context<'_>,
    json: bool,
    empty_lines: bool,
    id: &str,
    uids: &[u32],
    gids: &[u32],
) -> Result<()> {
    if json {
        let owners = ParentOwners {
            id,
            uids: (!uids.is_empty()).then_some(uids),
            gids: (!gids.is_empty()).then_some(gids),
        };
        write_json(ctx.out, &owners)?;
    } else {
        writeln!(ctx.out, "ID: {id}")?;
        if empty_lines || !uids.is_empty() {
            writeln!(ctx.out, "UIDs: {}", go_int_list(uids))?;
        }
        if empty_lines || !gids.is_empty() {
            writeln!(ctx.out, "GIDs: {}", go_int_list(gids))?;
        }
    }
    Ok(())
}

/// `delete-layer` (`safe`) and `delete`: per-argument results.
pub(super) fn delete(
    ctx: &mut Context<'_>,
    json: bool,
    safe: bool,
    args: &[String],
) -> Result<i32> {
    let store = ctx.store;
    let results = per_argument(args, |arg| {
        if safe {
            store.delete_layer(arg)
        } else {
            store.delete(arg)
        }
    });
    finish_deletions(ctx, json, &results)
}

/// Runs `op` for each argument, in argument order: each argument with its error text
/// (empty for success).
pub(super) fn per_argument(
    args: &[String],
    op: impl Fn(&str) -> Result<(), Error>,
) -> Vec<(String, String)> {
    args.iter()
        .map(|arg| {
            let text = op(arg).err().map(|e| go_error_text(&e)).unwrap_or_default();
            (arg.clone(), text)
        })
        .collect()
}

/// The Go tool's report of `delete`, `delete-layer` and `delete-container`: a JSON object of
/// argument to error text (empty for success), or each error on stderr; exit 1 if any failed.
pub(super) fn finish_deletions(
    ctx: &mut Context<'_>,
    json: bool,
    results: &[(String, String)],
) -> Result<i32> {
    let failed = results.iter().any(|(_, e)| !e.is_empty());
    if json {
        let map: BTreeMap<&str, &str> = results
            .iter()
            .map(|(a, e)| (a.as_str(), e.as_str()))
            .collect();
        write_json(ctx.out, &map)?;
    } else {
        for (arg, text) in results {
            if !text.is_empty() {
                write_error(ctx.err, ctx.json_errors, &format!("{arg}: {text}"))?;
            }
        }
    }
    Ok(i32::from(failed))
}

/// The kinds `exists` must find (`-l`, `-i`, `-c`); none asked is any kind.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct KindFilter {
    /// `--layer`.
    pub layer: bool,
    /// `--image`.
    pub image: bool,
    /// `--container`.
    pub container: bool,
}

/// `exists`: prints whether each argument names anything (Go prints that, whatever the kind
/// flags), and exits 1 if one names nothing or not each kind asked for.
pub(super) fn exists(
    ctx: &mut Context<'_>,
    quiet: bool,
    kinds: KindFilter,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let mut any_missing = false;
    let mut found: Vec<(String, bool)> = Vec::new();
    for arg in args {
        let exists = ctx.store.exists(arg).unwrap_or(false);
        let kinds_found = (!kinds.container || ctx.store.container(arg).is_ok())
            && (!kinds.image || ctx.store.image(arg).is_ok())
            && (!kinds.layer || ctx.store.layer(arg).is_ok());
        any_missing |= !(exists && kinds_found);
        found.push((arg.clone(), exists));
    }
    if json {
        let map: BTreeMap<&str, bool> = found.iter().map(|(a, e)| (a.as_str(), *e)).collect();
        write_json(ctx.out, &map)?;
    } else if !quiet {
        for (arg, exists) in &found {
            writeln!(ctx.out, "{arg}: {exists}")?;
        }
    }
    Ok(i32::from(any_missing))
}

pub(super) fn get_names(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let Some(key) = args.first() else {
        return Ok(1);
    };
    let names = match ctx.store.lookup(key).and_then(|id| ctx.store.names(&id)) {
        Ok(names) => names,
        Err(err) => return ctx.fail(&go_error_text(&err)),
    };
    if json {
        write_json(ctx.out, &names)?;
    } else {
        for name in &names {
            writeln!(ctx.out, "{name}")?;
        }
    }
    Ok(0)
}

/// `add-names` (the old names, then the new ones, set at once, as the Go tool does) and
/// `set-names`.
pub(super) fn change_names(
    ctx: &mut Context<'_>,
    add: bool,
    names: &[String],
    json: bool,
    args: &[String],
) -> Result<i32> {
    let Some(key) = args.first() else {
        return Ok(1);
    };
    let store = ctx.store;
    let result = store.lookup(key).and_then(|id| {
        let mut new = if add { store.names(&id)? } else { Vec::new() };
        new.extend(names.iter().cloned());
        store.set_names(&id, &new)?;
        store.names(&id)
    });
    match result {
        Ok(names) => {
            if json {
                // Go prints `null` for an empty result.
                if names.is_empty() {
                    writeln!(ctx.out, "null")?;
                } else {
                    write_json(ctx.out, &names)?;
                }
            }
            Ok(0)
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

/// Go's `strings.TrimSuffix(metadata, "\n")`.
fn trim_one_newline(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

/// `metadata`: a layer with empty metadata is found (exit 0, `""` in JSON), as in Go; only
/// an argument that names no layer is missing.
pub(super) fn metadata(
    ctx: &mut Context<'_>,
    quiet: bool,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let mut any_missing = false;
    let mut found: Vec<(String, Option<String>)> = Vec::new();
    for arg in args {
        let metadata = ctx.store.metadata(arg).ok();
        any_missing |= metadata.is_none();
        found.push((arg.clone(), metadata));
    }
    if json {
        let map: BTreeMap<&str, &str> = found
            .iter()
            .filter_map(|(a, m)| Some((a.as_str(), trim_one_newline(m.as_deref()?))))
            .collect();
        write_json(ctx.out, &map)?;
    } else {
        for (arg, metadata) in &found {
            let metadata = trim_one_newline(metadata.as_deref().unwrap_or_default());
            if quiet {
                writeln!(ctx.out, "{metadata}")?;
            } else {
                writeln!(ctx.out, "{arg}: {metadata}")?;
            }
        }
    }
    Ok(i32::from(any_missing))
}

pub(super) fn set_metadata(
    ctx: &mut Context<'_>,
    metadata: Option<&str>,
    file: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    let Some(key) = args.first() else {
        return Ok(1);
    };
    let text = match (file, metadata) {
        (Some(path), _) => match std::fs::read(path) {
            Ok(bytes) => go_lossy_utf8(&bytes),
            Err(e) => return ctx.fail(&go_io_text("open", path, &e)),
        },
        // As in Go, `-m ""` is no metadata at all (an empty file is).
        (None, Some(text)) if !text.is_empty() => text.to_string(),
        (None, _) => return ctx.fail("no new metadata provided"),
    };
    match ctx.store.set_metadata(key, &text) {
        Ok(()) => Ok(0),
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

pub(super) fn list_layer_data(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let Some(key) = args.first() else {
        return Ok(1);
    };
    match ctx.store.list_layer_big_data(key) {
        Ok(names) => {
            if json {
                if names.is_empty() {
                    writeln!(ctx.out, "null")?;
                } else {
                    write_json(ctx.out, &names)?;
                }
            } else {
                for name in &names {
                    writeln!(ctx.out, "{name}")?;
                }
            }
            Ok(0)
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

pub(super) fn get_layer_data(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    let (Some(key), Some(item)) = (args.first(), args.get(1)) else {
        return Ok(1);
    };
    let mut data = match ctx.store.layer_big_data(key, item) {
        Ok(data) => data,
        Err(err) => return ctx.fail(&go_error_text(&err)),
    };
    match file {
        Some(path) => {
            let mut target = match File::create(path) {
                Ok(f) => f,
                Err(e) => return ctx.fail(&go_io_text("open", path, &e)),
            };
            io::copy(&mut data, &mut target)?;
        }
        None => {
            io::copy(&mut data, ctx.out)?;
        }
    }
    Ok(0)
}

pub(super) fn set_layer_data(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    let (Some(key), Some(item)) = (args.first(), args.get(1)) else {
        return Ok(1);
    };
    let mut input = match open_input(file) {
        Ok((input, _)) => io::BufReader::new(input),
        Err(text) => return ctx.fail(&text),
    };
    match ctx.store.set_layer_big_data(key, item, &mut input) {
        Ok(()) => Ok(0),
        Err(err @ Error::Layers(layerstore_layers::Error::InvalidBigDataName(_))) => {
            ctx.fail(&format!(
                "can't set empty name for layer big data item: {}",
                go_error_text(&err)
            ))
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

#[cfg(test)]
mod layer_users_tests {
    use super::*;

    fn image(id: &str, top: &str, mapped: &[&str]) -> Image {
        let mut image = Image::new(id);
        image.top_layer = top.to_owned();
        image.mapped_top_layers = mapped.iter().map(|m| (*m).to_owned()).collect();
        image
    }

    #[test]
    fn images_and_the_last_container_per_layer() {
        let images = [
            image("i1", "L1", &["M1"]),
            image("i2", "L2", &[]),
            image("i3", "L1", &["L1"]),
        ];
        let containers = [
            Container::new("c1", "i1", "C1"),
            Container::new("c2", "i1", "C1"),
            Container::new("c3", "i2", "C3"),
        ];
        let users = LayerUsers::index(&images, &containers);
        let ids = |layer: &str| -> Vec<&str> {
            users
                .images_on(layer)
                .iter()
                .map(|i| i.id.as_str())
                .collect()
        };
        assert_eq!(ids("L1"), ["i1", "i3"], "list order, i3 once");
        assert_eq!(ids("M1"), ["i1"]);
        assert!(ids("C1").is_empty());
        assert_eq!(users.container_on("C1").map(|c| c.id.as_str()), Some("c2"));
        assert_eq!(users.container_on("C3").map(|c| c.id.as_str()), Some("c3"));
        assert!(users.container_on("L1").is_none());
    }

    /// 100,000 images and containers looked up for 200,000 layers: linear. The scan per layer
    /// this replaces did 2·10¹⁰ comparisons here (minutes unoptimised); the index takes well
    /// under a second. The limit is generous: it only tells linear from quadratic.
    #[test]
    fn lookup_is_not_quadratic() {
        const N: usize = 100_000;
        let images: Vec<Image> = (0..N)
            .map(|i| image(&format!("i{i}"), &format!("L{i}"), &[]))
            .collect();
        let containers: Vec<Container> = (0..N)
            .map(|i| Container::new(format!("c{i}"), format!("i{i}"), format!("C{i}")))
            .collect();
        let started = std::time::Instant::now();
        let users = LayerUsers::index(&images, &containers);
        let mut found = 0;
        for i in 0..N {
            found += users.images_on(&format!("L{i}")).len();
            found += usize::from(users.container_on(&format!("C{i}")).is_some());
        }
        assert_eq!(found, 2 * N);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
