//! The image commands: `images`, `images-by-digest`, `image`, `create-image`,
//! `delete-image` and the image data commands, with the Go tool's output.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::Result;
use layerstore::{Digest, Image, NewImage};
use layerstore_model::{DigestAlgorithm, validate_go_digest};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::content::open_input;
use super::table::{ListFormat, human_size, image_table};
use super::{Context, go_error_text, go_io_text, go_lossy_utf8};
use crate::output::{write_error, write_json};

/// Go's text listing of images (`images`, `images-by-digest`): the ID, then (unless `quiet`)
/// each name, digest and big-data key.
fn write_image_list(ctx: &mut Context<'_>, images: &[&Image], quiet: bool) -> Result<()> {
    for image in images {
        writeln!(ctx.out, "{}", image.id)?;
        if quiet {
            continue;
        }
        for name in &image.names {
            writeln!(ctx.out, "\tname: {name}")?;
        }
        for digest in image.digests().unwrap_or_default() {
            writeln!(ctx.out, "\tdigest: {}", digest.as_str())?;
        }
        for key in &image.big_data_names {
            writeln!(ctx.out, "\tdata: {key}")?;
        }
    }
    Ok(())
}

/// `images`: Go's listing, its JSON (`null` for none, as Go's nil list), or a table on a
/// terminal.
pub(super) fn images(
    ctx: &mut Context<'_>,
    quiet: bool,
    format: ListFormat,
    json: bool,
) -> Result<i32> {
    let store = ctx.store;
    // Borrowed from the stores' sessions, not copied: a listing of 10,000 images spent a
    // tenth of its time cloning them.
    let readers = match store.image_readers() {
        Ok(readers) => readers,
        Err(err) => return ctx.fail(&go_error_text(&err)),
    };
    let images: Vec<&Image> = readers.iter().flat_map(|r| r.images()).collect();
    if json {
        if images.is_empty() {
            writeln!(ctx.out, "null")?;
        } else {
            write_json(ctx.out, &images)?;
        }
    } else if format == ListFormat::Table && !quiet {
        let sizes: Vec<String> = images
            .iter()
            .map(|image| {
                store
                    .image_size(&image.id)
                    .map(human_size)
                    .unwrap_or_else(|_| "unknown".into())
            })
            .collect();
        image_table(ctx.out, &images, &sizes)?;
    } else {
        write_image_list(ctx, &images, quiet)?;
    }
    Ok(0)
}

/// `images-by-digest DIGEST`: the images found by a manifest digest or `--digest`.
pub(super) fn images_by_digest(
    ctx: &mut Context<'_>,
    quiet: bool,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let mut found = Vec::new();
    for arg in args {
        // The Go tool links only sha256: other algorithms are unsupported there.
        if let Err(reason) = validate_go_digest(arg, &[DigestAlgorithm::Sha256]) {
            return ctx.fail(&format!("{arg}: {reason}"));
        }
        match ctx.store.images_by_digest(arg) {
            Ok(images) => found.extend(images),
            Err(err) => return ctx.fail(&go_error_text(&err)),
        }
    }
    if json {
        write_json(ctx.out, &found)?;
    } else {
        write_image_list(ctx, &found.iter().collect::<Vec<_>>(), quiet)?;
    }
    Ok(0)
}

/// `image ID...`: each image found, in the Go tool's words; exit 1 if one is not found.
pub(super) fn image(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let matched: Vec<Image> = args
        .iter()
        .filter_map(|arg| ctx.store.image(arg).ok())
        .collect();
    if json {
        write_json(ctx.out, &matched)?;
    } else {
        for image in &matched {
            writeln!(ctx.out, "ID: {}", image.id)?;
            for name in &image.names {
                writeln!(ctx.out, "Name: {name}")?;
            }
            writeln!(ctx.out, "Top Layer: {}", image.top_layer)?;
            for layer in &image.mapped_top_layers {
                writeln!(ctx.out, "Top Layer: {layer}")?;
            }
            for digest in image.digests().unwrap_or_default() {
                writeln!(ctx.out, "Digest: {}", digest.as_str())?;
            }
            for key in &image.big_data_names {
                writeln!(ctx.out, "Data: {key}")?;
            }
            match ctx.store.image_size(&image.id) {
                Ok(size) => writeln!(ctx.out, "Size: {size}")?,
                Err(err) => writeln!(ctx.out, "Size unknown: {}", go_error_text(&err))?,
            }
            if image.read_only {
                writeln!(ctx.out, "Read Only: true")?;
            }
        }
    }
    Ok(i32::from(matched.len() != args.len()))
}

/// The metadata of `create-image`/`create-container`: the file's content (`-f`) wins over
/// `-m`, as in the Go tool.
pub(super) fn metadata_text(metadata: Option<&str>, file: Option<&Path>) -> Result<String, String> {
    match file {
        Some(path) => std::fs::read(path)
            .map(|bytes| go_lossy_utf8(&bytes))
            .map_err(|e| go_io_text("open", path, &e)),
        None => Ok(metadata.unwrap_or_default().to_owned()),
    }
}

/// The flags of `create-image`.
pub(super) struct CreateImage<'a> {
    /// `--name` (repeatable).
    pub names: &'a [String],
    /// `--id`.
    pub id: Option<&'a str>,
    /// `--digest`.
    pub digest: Option<&'a str>,
    /// `--metadata`.
    pub metadata: Option<&'a str>,
    /// `--metadata-file`.
    pub metadata_file: Option<&'a Path>,
    /// `--json`.
    pub json: bool,
}

/// `create-image [LAYER]`: prints the ID, then each name after a tab.
pub(super) fn create_image(
    ctx: &mut Context<'_>,
    flags: &CreateImage<'_>,
    args: &[String],
) -> Result<i32> {
    let metadata = match metadata_text(flags.metadata, flags.metadata_file) {
        Ok(text) => text,
        Err(text) => return ctx.fail(&text),
    };
    let new = NewImage {
        id: flags.id.filter(|id| !id.is_empty()).map(str::to_owned),
        names: flags.names.to_vec(),
        top_layer: args.first().cloned().unwrap_or_default(),
        metadata,
        created: None,
        digest: flags.digest.filter(|d| !d.is_empty()).map(str::to_owned),
    };
    match ctx.store.create_image(new) {
        Ok(image) => {
            if flags.json {
                write_json(ctx.out, &image)?;
            } else {
                writeln!(ctx.out, "{}", image.id)?;
                for name in &image.names {
                    writeln!(ctx.out, "\t{name}")?;
                }
            }
            Ok(0)
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

#[derive(Serialize)]
struct DeletedImage<'a> {
    #[serde(
        rename = "deleted-layers",
        skip_serializing_if = "<[String]>::is_empty"
    )]
    deleted_layers: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    error: &'a str,
}

/// `delete-image [--test] ID...`: the layers removed (or that would be) go to stderr, one
/// `<arg>: <layer>` line each, as the Go tool prints them.
pub(super) fn delete_image(
    ctx: &mut Context<'_>,
    test: bool,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let results: Vec<(String, Vec<String>, String)> = args
        .iter()
        .map(|arg| match ctx.store.delete_image(arg, !test) {
            Ok(layers) => (arg.clone(), layers, String::new()),
            Err(err) => (arg.clone(), Vec::new(), go_error_text(&err)),
        })
        .collect();
    if json {
        let map: BTreeMap<&str, DeletedImage<'_>> = results
            .iter()
            .map(|(arg, layers, error)| {
                (
                    arg.as_str(),
                    DeletedImage {
                        deleted_layers: layers,
                        error,
                    },
                )
            })
            .collect();
        write_json(ctx.out, &map)?;
    } else {
        for (arg, layers, error) in &results {
            if error.is_empty() {
                for layer in layers {
                    writeln!(ctx.err, "{arg}: {layer}")?;
                }
            } else {
                write_error(ctx.err, ctx.json_errors, &format!("{arg}: {error}"))?;
            }
        }
    }
    Ok(i32::from(results.iter().any(|(_, _, e)| !e.is_empty())))
}

/// A list of keys: one a line, or JSON (`null` for none, Go's nil list).
pub(super) fn write_keys(ctx: &mut Context<'_>, keys: &[String], json: bool) -> Result<()> {
    if json {
        if keys.is_empty() {
            writeln!(ctx.out, "null")?;
        } else {
            write_json(ctx.out, keys)?;
        }
    } else {
        for key in keys {
            writeln!(ctx.out, "{key}")?;
        }
    }
    Ok(())
}

/// The full ID of the image `key` names (any store), as the Go tool resolves it first.
fn image_id(ctx: &mut Context<'_>, key: &str) -> Result<Option<String>> {
    match ctx.store.image(key) {
        Ok(image) => Ok(Some(image.id)),
        Err(err) => {
            ctx.fail(&go_error_text(&err))?;
            Ok(None)
        }
    }
}

/// `list-image-data ID`.
pub(super) fn list_image_data(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let Some(id) = image_id(ctx, &args[0])? else {
        return Ok(1);
    };
    match ctx.store.list_image_big_data(&id) {
        Ok(keys) => {
            write_keys(ctx, &keys, json)?;
            Ok(0)
        }
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

/// Writes item bytes to `file` (created first, as the Go tool does) or stdout.
pub(super) fn write_item(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    read: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<i32> {
    let mut target = match file {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(f),
            Err(e) => return ctx.fail(&go_io_text("open", path, &e)),
        },
        None => None,
    };
    let bytes = match read() {
        Ok(bytes) => bytes,
        Err(text) => return ctx.fail(&text),
    };
    match target.as_mut() {
        Some(f) => std::io::Write::write_all(f, &bytes)?,
        None => ctx.out.write_all(&bytes)?,
    }
    Ok(0)
}

/// Reads a whole item from `file`, else stdin.
pub(super) fn read_item(file: Option<&Path>) -> Result<Vec<u8>, String> {
    let (mut input, _) = open_input(file)?;
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| format!("read: {e}"))?;
    Ok(bytes)
}

/// `get-image-data ID KEY`.
pub(super) fn get_image_data(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    let Some(id) = image_id(ctx, &args[0])? else {
        return Ok(1);
    };
    let store = ctx.store;
    write_item(ctx, file, || {
        store
            .image_big_data(&id, &args[1])
            .map_err(|e| go_error_text(&e))
    })
}

/// `get-image-data-size ID KEY`.
pub(super) fn get_image_data_size(ctx: &mut Context<'_>, args: &[String]) -> Result<i32> {
    let Some(id) = image_id(ctx, &args[0])? else {
        return Ok(1);
    };
    let answer = ctx.store.image_big_data_size(&id, &args[1]);
    ctx.answer(answer)
}

/// `get-image-data-digest ID KEY`.
pub(super) fn get_image_data_digest(ctx: &mut Context<'_>, args: &[String]) -> Result<i32> {
    let Some(id) = image_id(ctx, &args[0])? else {
        return Ok(1);
    };
    let answer = ctx.store.image_big_data_digest(&id, &args[1]);
    ctx.answer(answer)
}

/// The Go tool's manifest digester for `set-image-data`: the SHA-256 of the bytes as given
/// (it calls it `wrongManifestDigest`: a signed manifest's digest differs).
fn digest_of_bytes(bytes: &[u8]) -> Result<Digest, String> {
    Digest::from_hash(DigestAlgorithm::Sha256, &Sha256::digest(bytes)).map_err(|e| e.to_string())
}

/// `set-image-data ID KEY`: the item from `-f FILE` or stdin.
pub(super) fn set_image_data(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    let Some(id) = image_id(ctx, &args[0])? else {
        return Ok(1);
    };
    let bytes = match read_item(file) {
        Ok(bytes) => bytes,
        Err(text) => return ctx.fail(&text),
    };
    match ctx
        .store
        .set_image_big_data(&id, &args[1], &bytes, Some(&digest_of_bytes))
    {
        Ok(()) => Ok(0),
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}
