//! The container commands: `containers`, `container`, `create-container`,
//! `delete-container`, the container data and directory commands and
//! `container-parent-owners`, with the Go tool's output.

use std::path::Path;

use anyhow::Result;
use layerstore::{Container, ContainerOptions, Image};
use layerstore_containers::Error as ContainerError;
use layerstore_model::big_data_file_name;

use super::content::id_mappings;
use super::images::{metadata_text, read_item, write_item, write_keys};
use super::records::{finish_deletions, per_argument, write_parent_owners};
use super::table::{ListFormat, container_table};
use super::{Context, go_error_text};
use crate::args::MapFlags;
use crate::output::write_json;

/// `containers`: each container's ID, names and big-data keys; JSON; or a table on a terminal.
pub(super) fn containers(ctx: &mut Context<'_>, format: ListFormat, json: bool) -> Result<i32> {
    let store = ctx.store;
    // Borrowed from the store's session, not copied (as `images`).
    let reader = match store.container_store().read() {
        Ok(reader) => reader,
        Err(err) => return ctx.fail(&go_error_text(&err.into())),
    };
    let containers: Vec<&Container> = reader.containers().collect();
    if json {
        write_json(ctx.out, &containers)?;
    } else if format == ListFormat::Table {
        let image_readers = store.image_readers().unwrap_or_default();
        let images: Vec<&Image> = image_readers.iter().flat_map(|r| r.images()).collect();
        container_table(ctx.out, &containers, &images)?;
    } else {
        for container in containers {
            writeln!(ctx.out, "{}", container.id)?;
            for name in &container.names {
                writeln!(ctx.out, "\tname: {name}")?;
            }
            for key in &container.big_data_names {
                writeln!(ctx.out, "\tdata: {key}")?;
            }
        }
    }
    Ok(0)
}

/// `container ID...`: each container found, in the Go tool's words; exit 1 if one is not.
pub(super) fn container(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let images = match ctx.store.images() {
        Ok(images) => images,
        Err(err) => return ctx.fail(&go_error_text(&err)),
    };
    let matched: Vec<Container> = args
        .iter()
        .filter_map(|arg| ctx.store.container(arg).ok())
        .collect();
    if json {
        write_json(ctx.out, &matched)?;
    } else {
        for container in &matched {
            writeln!(ctx.out, "ID: {}", container.id)?;
            for name in &container.names {
                writeln!(ctx.out, "Name: {name}")?;
            }
            writeln!(ctx.out, "Image: {}", container.image_id)?;
            if let Some(image) = images.iter().find(|i| i.id == container.image_id) {
                for name in &image.names {
                    writeln!(ctx.out, "Image name: {name}")?;
                }
            }
            match ctx.store.container_size(&container.id) {
                Ok(size) => writeln!(ctx.out, "Size: {size}")?,
                Err(err) => writeln!(ctx.out, "Size unknown: {}", go_error_text(&err))?,
            }
            writeln!(ctx.out, "Layer: {}", container.layer_id)?;
            for key in &container.big_data_names {
                writeln!(ctx.out, "Data: {key}")?;
            }
        }
    }
    Ok(i32::from(matched.len() != args.len()))
}

/// The flags of `create-container`.
pub(super) struct CreateContainer<'a> {
    /// `--name` (repeatable).
    pub names: &'a [String],
    /// `--id`.
    pub id: Option<&'a str>,
    /// `--metadata`.
    pub metadata: Option<&'a str>,
    /// `--metadata-file`.
    pub metadata_file: Option<&'a Path>,
    /// `--volatile`.
    pub volatile: bool,
    /// The ID-mapping flags.
    pub maps: &'a MapFlags,
    /// `--json`.
    pub json: bool,
}

/// `create-container IMAGE`: prints the ID and a newline, then each name after a tab with no
/// newline at all, exactly as the Go tool does.
pub(super) fn create_container(
    ctx: &mut Context<'_>,
    flags: &CreateContainer<'_>,
    args: &[String],
) -> Result<i32> {
    let metadata = match metadata_text(flags.metadata, flags.metadata_file) {
        Ok(text) => text,
        Err(text) => return ctx.fail(&text),
    };
    let (uid_map, gid_map, host_mapping) = match id_mappings(flags.maps) {
        Ok(maps) => maps,
        Err(text) => return ctx.fail(&text),
    };
    let options = ContainerOptions {
        id: flags.id.filter(|id| !id.is_empty()).map(str::to_owned),
        names: flags.names.to_vec(),
        image: args[0].clone(),
        metadata,
        uid_map,
        gid_map,
        host_mapping,
        volatile: flags.volatile,
        ..ContainerOptions::default()
    };
    match ctx.store.create_container(options) {
        Ok(container) => {
            if flags.json {
                write_json(ctx.out, &container)?;
            } else {
                writeln!(ctx.out, "{}", container.id)?;
                for name in &container.names {
                    write!(ctx.out, "\t{name}")?;
                }
            }
            Ok(0)
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

/// `delete-container ID...`.
pub(super) fn delete_container(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let store = ctx.store;
    let results = per_argument(args, |arg| store.delete_container(arg));
    finish_deletions(ctx, json, &results)
}

/// The full ID of the container `key` names, as the Go tool resolves it first.
fn container_id(ctx: &mut Context<'_>, key: &str) -> Result<Option<String>> {
    match ctx.store.container(key) {
        Ok(container) => Ok(Some(container.id)),
        Err(err) => {
            ctx.fail(&go_error_text(&err))?;
            Ok(None)
        }
    }
}

/// `list-container-data ID`.
pub(super) fn list_container_data(
    ctx: &mut Context<'_>,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let Some(id) = container_id(ctx, &args[0])? else {
        return Ok(1);
    };
    match ctx.store.list_container_big_data(&id) {
        Ok(keys) => {
            write_keys(ctx, &keys, json)?;
            Ok(0)
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

/// `get-container-data ID KEY`.
pub(super) fn get_container_data(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    let Some(id) = container_id(ctx, &args[0])? else {
        return Ok(1);
    };
    let store = ctx.store;
    write_item(ctx, file, || {
        store
            .container_big_data(&id, &args[1])
            .map_err(|err| missing_item_text(store, &err).unwrap_or_else(|| go_error_text(&err)))
    })
}

/// A missing container item in Go 1.43's words: it fails opening the item's file.
fn missing_item_text(store: &layerstore::Store, err: &layerstore::Error) -> Option<String> {
    let layerstore::Error::Containers(ContainerError::BigDataMissing { id, key }) = err else {
        return None;
    };
    let path = store
        .container_store()
        .dir()
        .join(id)
        .join(big_data_file_name(key));
    Some(format!(
        "open {}: no such file or directory",
        path.display()
    ))
}

/// `get-container-data-size ID KEY`.
pub(super) fn get_container_data_size(ctx: &mut Context<'_>, args: &[String]) -> Result<i32> {
    let Some(id) = container_id(ctx, &args[0])? else {
        return Ok(1);
    };
    let answer = ctx.store.container_big_data_size(&id, &args[1]);
    ctx.answer(answer)
}

/// `get-container-data-digest ID KEY`.
pub(super) fn get_container_data_digest(ctx: &mut Context<'_>, args: &[String]) -> Result<i32> {
    let Some(id) = container_id(ctx, &args[0])? else {
        return Ok(1);
    };
    let answer = ctx.store.container_big_data_digest(&id, &args[1]);
    ctx.answer(answer)
}

/// `set-container-data ID KEY`: the item from `-f FILE` or stdin.
pub(super) fn set_container_data(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    let Some(id) = container_id(ctx, &args[0])? else {
        return Ok(1);
    };
    let bytes = match read_item(file) {
        Ok(bytes) => bytes,
        Err(text) => return ctx.fail(&text),
    };
    match ctx.store.set_container_big_data(&id, &args[1], &bytes) {
        Ok(()) => Ok(0),
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

/// `get-container-dir ID` (`run = false`) and `get-container-run-dir ID`.
pub(super) fn container_dir(ctx: &mut Context<'_>, run: bool, args: &[String]) -> Result<i32> {
    let dir = if run {
        ctx.store.container_run_directory(&args[0])
    } else {
        ctx.store.container_directory(&args[0])
    };
    match dir {
        Ok(path) => {
            writeln!(ctx.out, "{}", path.display())?;
            Ok(0)
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

/// `container-parent-owners ID...`: unlike `layer-parent-owners`, the Go tool prints the
/// `UIDs:` and `GIDs:` lines even when empty.
pub(super) fn container_parent_owners(
    ctx: &mut Context<'_>,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let matched: Vec<Container> = args
        .iter()
        .filter_map(|arg| ctx.store.container(arg).ok())
        .collect();
    for container in &matched {
        let (uids, gids) = match ctx.store.container_parent_owners(&container.id) {
            Ok(owners) => owners,
            Err(err) => {
                return ctx.fail(&format!("ContainerParentOwner: {}", go_error_text(&err)));
            }
        };
        write_parent_owners(ctx, json, true, &container.id, &uids, &gids)?;
    }
    Ok(i32::from(matched.len() != args.len()))
}
