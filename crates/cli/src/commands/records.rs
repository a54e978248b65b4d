//! Reading and editing records: `layers`, `layer`, `layer-parent-owners`, `delete`,
//! `delete-layer`, `exists`, names, metadata and layer data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;

use anyhow::Result;
use layerstore_layers::{Error, Layer};
use serde::Serialize;

use super::content::open_input;
use super::{Context, go_error_text, go_io_text};
use crate::output::{TreeNode, go_int_list, print_tree, write_error, write_json};

pub(super) fn layers(ctx: &mut Context<'_>, tree: bool, json: bool) -> Result<i32> {
    let layers = match ctx.store.layers() {
        Ok(layers) => layers,
        Err(err) => return ctx.fail(&go_error_text(&err)),
    };
    if json {
        write_json(ctx.out, &layers)?;
    } else if tree {
        let nodes = layers
            .iter()
            .map(|layer| {
                let mut notes: Vec<String> =
                    layer.names.iter().map(|n| format!("name: {n}")).collect();
                if let Some(mount) = layer.mount_point.as_ref().filter(|_| layer.mount_count > 0) {
                    notes.push(format!("mount: {}", mount.display()));
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
        }
    }
    Ok(0)
}

pub(super) fn layer(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let matched: Vec<Layer> = args.iter().filter_map(|a| ctx.store.get(a).ok()).collect();
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
    let matched: Vec<Layer> = args.iter().filter_map(|a| ctx.store.get(a).ok()).collect();
    for layer in &matched {
        let (uids, gids) = match ctx.store.parent_owners(&layer.id) {
            Ok(owners) => owners,
            Err(err) => return ctx.fail(&format!("LayerParentOwner: {}", go_error_text(&err))),
        };
        if json {
            let owners = ParentOwners {
                id: &layer.id,
                uids: (!uids.is_empty()).then_some(uids.as_slice()),
                gids: (!gids.is_empty()).then_some(gids.as_slice()),
            };
            write_json(ctx.out, &owners)?;
        } else {
            writeln!(ctx.out, "ID: {}", layer.id)?;
            if !uids.is_empty() {
                writeln!(ctx.out, "UIDs: {}", go_int_list(&uids))?;
            }
            if !gids.is_empty() {
                writeln!(ctx.out, "GIDs: {}", go_int_list(&gids))?;
            }
        }
    }
    Ok(i32::from(matched.len() != args.len()))
}

/// `delete-layer` (`safe`) and `delete`: per-argument results.
pub(super) fn delete(
    ctx: &mut Context<'_>,
    json: bool,
    safe: bool,
    args: &[String],
) -> Result<i32> {
    let mut results: Vec<(String, String)> = Vec::new();
    for arg in args {
        let text = match ctx.store.delete(arg) {
            Ok(()) => String::new(),
            Err(Error::LayerUnknown(_) | Error::AmbiguousId(_)) if safe => {
                "identifier is not a layer".to_string()
            }
            Err(err) => go_error_text(&err),
        };
        results.push((arg.clone(), text));
    }
    let failed = results.iter().any(|(_, e)| !e.is_empty());
    if json {
        let map: BTreeMap<&str, &str> = results
            .iter()
            .map(|(a, e)| (a.as_str(), e.as_str()))
            .collect();
        write_json(ctx.out, &map)?;
    } else {
        for (arg, text) in &results {
            if !text.is_empty() {
                write_error(ctx.err, ctx.json_errors, &format!("{arg}: {text}"))?;
            }
        }
    }
    Ok(i32::from(failed))
}

pub(super) fn exists(
    ctx: &mut Context<'_>,
    quiet: bool,
    want_image_or_container: bool,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let mut any_missing = false;
    let mut found: Vec<(String, bool)> = Vec::new();
    for arg in args {
        let exists = ctx.store.exists(arg).unwrap_or(false);
        // This tool holds no images or containers: `-i`/`-c` never match.
        if !exists || want_image_or_container {
            any_missing = true;
        }
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
    match ctx.store.get(key) {
        Ok(layer) => {
            if json {
                write_json(ctx.out, &layer.names)?;
            } else {
                for name in &layer.names {
                    writeln!(ctx.out, "{name}")?;
                }
            }
            Ok(0)
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

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
    let result = if add {
        ctx.store.add_names(key, names)
    } else {
        ctx.store.set_names(key, names)
    };
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
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return ctx.fail(&go_io_text("open", path, &e)),
        },
        // As in Go, `-m ""` is no metadata at all (an empty file is).
        (None, Some(text)) if !text.is_empty() => text.to_string(),
        (None, _) => return ctx.fail("no new metadata provided"),
    };
    match ctx.store.set_metadata(key, &text) {
        Ok(()) => Ok(0),
        Err(Error::LayerUnknown(_) | Error::AmbiguousId(_)) => {
            ctx.fail("identifier is not a layer, image, or container")
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

pub(super) fn list_layer_data(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let Some(key) = args.first() else {
        return Ok(1);
    };
    match ctx.store.big_data_names(key) {
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
    let mut data = match ctx.store.big_data(key, item) {
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
    let (mut input, _) = match open_input(file) {
        Ok(input) => input,
        Err(text) => return ctx.fail(&text),
    };
    match ctx.store.set_big_data(key, item, &mut input) {
        Ok(()) => Ok(0),
        Err(err @ Error::InvalidBigDataName(_)) => ctx.fail(&format!(
            "can't set empty name for layer big data item: {}",
            go_error_text(&err)
        )),
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}
