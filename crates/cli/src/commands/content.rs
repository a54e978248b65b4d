//! Layers in and out: `create-layer`, `import-layer`, `applydiff`, `diff`, `changes` (and
//! `diffsize`), with their input files and ID-mapping flags.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use anyhow::Result;
use layerstore_layers::{Compression, DiffOptions, IDMap, Layer, LayerOptions};
use serde::Serialize;

use super::{Context, go_error_text, go_io_text};
use crate::args::CreateFlags;
use crate::output::{go_quote, write_json};
use crate::progress::Progress;

pub(super) fn open_input(
    path: Option<&Path>,
) -> Result<(Box<dyn Read + Send>, Option<u64>), String> {
    match path {
        Some(path) => {
            let file = File::open(path).map_err(|e| go_io_text("open", path, &e))?;
            let len = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            Ok((Box::new(BufReader::with_capacity(1 << 20, file)), len))
        }
        None => {
            let stdin = io::stdin();
            let len = rustix::fs::fstat(&stdin)
                .ok()
                .filter(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
                .and_then(|st| u64::try_from(st.st_size).ok());
            Ok((Box::new(BufReader::with_capacity(1 << 20, stdin)), len))
        }
    }
}

/// Parses `ctr:host:size[,ctr:host:size...]`.
fn parse_id_map(text: &str) -> Result<Vec<IDMap>, String> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let fields: Vec<&str> = part.split(':').collect();
            let numbers: Option<Vec<u32>> = fields.iter().map(|f| f.trim().parse().ok()).collect();
            match numbers.as_deref() {
                Some([container_id, host_id, size]) => Ok(IDMap {
                    container_id: *container_id,
                    host_id: *host_id,
                    size: *size,
                }),
                _ => Err(format!(
                    "error parsing ID map {part:?}: want container:host:size"
                )),
            }
        })
        .collect()
}

/// The ranges `/etc/subuid` (or subgid) gives `name`, mapped from container ID 0 upwards.
fn sub_id_map(file: &str, name: &str) -> Result<Vec<IDMap>, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| go_io_text("open", Path::new(file), &e))?;
    let mut next = 0u32;
    let mut maps = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.trim().split(':').collect();
        if let [user, start, count] = fields.as_slice()
            && *user == name
            && let (Ok(host_id), Ok(size)) = (start.parse::<u32>(), count.parse::<u32>())
        {
            maps.push(IDMap {
                container_id: next,
                host_id,
                size,
            });
            next = next.saturating_add(size);
        }
    }
    if maps.is_empty() {
        return Err(format!(
            "no subordinate ID ranges found for {name:?} in {file}"
        ));
    }
    Ok(maps)
}

fn layer_options(flags: &CreateFlags, parent: Option<&String>) -> Result<LayerOptions, String> {
    let mut options = LayerOptions::new();
    options.id = flags.id.clone().filter(|id| !id.is_empty());
    options.parent = parent.cloned();
    options.names = flags.names.clone();
    options.mount_label = flags.label.clone().unwrap_or_default();
    options.writeable = !flags.readonly.unwrap_or(false);
    if !flags.host_uid_map.unwrap_or(false) {
        if let Some(map) = &flags.uid_map {
            options.uid_map = parse_id_map(map)?;
        } else if let Some(user) = &flags.sub_uid_map {
            options.uid_map = sub_id_map("/etc/subuid", user)?;
        }
    }
    if !flags.host_gid_map.unwrap_or(false) {
        if let Some(map) = &flags.gid_map {
            options.gid_map = parse_id_map(map)?;
        } else if let Some(group) = &flags.sub_gid_map {
            options.gid_map = sub_id_map("/etc/subgid", group)?;
        }
    }
    Ok(options)
}

fn print_created(ctx: &mut Context<'_>, layer: &Layer, json: bool) -> Result<i32> {
    if json {
        write_json(ctx.out, layer)?;
    } else {
        writeln!(ctx.out, "{}", layer.id)?;
        for name in &layer.names {
            writeln!(ctx.out, "\t{name}")?;
        }
    }
    Ok(0)
}

pub(super) fn create_layer(
    ctx: &mut Context<'_>,
    flags: &CreateFlags,
    args: &[String],
) -> Result<i32> {
    let options = match layer_options(flags, args.first()) {
        Ok(options) => options,
        Err(text) => return ctx.fail(&text),
    };
    match ctx.store.create(&options) {
        Ok(layer) => print_created(ctx, &layer, flags.json.on()),
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

pub(super) fn import_layer(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    flags: &CreateFlags,
    args: &[String],
) -> Result<i32> {
    let options = match layer_options(flags, args.first()) {
        Ok(options) => options,
        Err(text) => return ctx.fail(&text),
    };
    let (input, len) = match open_input(file) {
        Ok(input) => input,
        Err(text) => return ctx.fail(&text),
    };
    let progress = Progress::new("import-layer", len);
    let mut reader = progress.reader(input);
    match ctx.store.put(&options, Some(&mut reader)) {
        Ok((layer, _)) => {
            progress.finish();
            print_created(ctx, &layer, flags.json.on())
        }
        Err(err) => {
            progress.abandon();
            ctx.fail(&go_error_text(&err))
        }
    }
}

pub(super) fn apply_diff(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    let Some(key) = args.first() else {
        return Ok(1);
    };
    let (input, len) = match open_input(file) {
        Ok(input) => input,
        Err(text) => return ctx.fail(&text),
    };
    let progress = Progress::new("applydiff", len);
    let mut reader = progress.reader(input);
    match ctx.store.apply_diff(key, &mut reader) {
        Ok(_) => {
            progress.finish();
            Ok(0)
        }
        Err(err) => {
            progress.abandon();
            ctx.fail(&go_error_text(&err))
        }
    }
}

/// The compression `diff`'s flags ask for (later flags win, as in the Go tool).
pub(super) fn diff_compression(
    uncompressed: bool,
    gzip: bool,
    bzip2: bool,
    xz: bool,
) -> Option<Compression> {
    let mut compression = None;
    if uncompressed {
        compression = Some(Compression::None);
    }
    if gzip {
        compression = Some(Compression::Gzip);
    }
    if bzip2 {
        compression = Some(Compression::Bzip2);
    }
    if xz {
        compression = Some(Compression::Xz);
    }
    compression
}

pub(super) fn diff(
    ctx: &mut Context<'_>,
    file: Option<&Path>,
    compression: Option<Compression>,
    args: &[String],
) -> Result<i32> {
    let Some(to) = args.first() else { return Ok(1) };
    let from = args.get(1).map(String::as_str);
    if let Some(c @ (Compression::Bzip2 | Compression::Xz)) = compression {
        let ext = if c == Compression::Bzip2 {
            "tar.bz2"
        } else {
            "tar.xz"
        };
        return ctx.fail(&format!("unsupported compression format {ext}"));
    }
    let total = ctx
        .store
        .size(to)
        .ok()
        .flatten()
        .and_then(|s| u64::try_from(s).ok());
    let options = DiffOptions { compression };
    let mut target: Box<dyn Write> = match file {
        Some(path) => match File::create(path) {
            Ok(f) => Box::new(io::BufWriter::with_capacity(1 << 20, f)),
            Err(e) => return ctx.fail(&go_io_text("open", path, &e)),
        },
        None => Box::new(&mut *ctx.out),
    };
    let progress = Progress::new(
        "diff",
        if compression == Some(Compression::None) {
            total
        } else {
            None
        },
    );
    let mut writer = progress.writer(&mut target);
    let result = ctx.store.diff(from, to, &options, &mut writer);
    let flushed = writer.flush();
    drop(target);
    match result {
        Ok(_) => {
            progress.finish();
            flushed?;
            Ok(0)
        }
        Err(err) => {
            progress.abandon();
            ctx.fail(&go_error_text(&err))
        }
    }
}

#[derive(Serialize)]
struct ChangeJson<'a> {
    #[serde(rename = "Path")]
    path: &'a str,
    #[serde(rename = "Kind")]
    kind: u8,
}

pub(super) fn changes(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let Some(to) = args.first() else { return Ok(1) };
    let from = args.get(1).map(String::as_str);
    let changes = match ctx.store.changes(from, to) {
        Ok(changes) => changes,
        Err(err) => return ctx.fail(&go_error_text(&err)),
    };
    if json {
        let paths: Vec<String> = changes
            .iter()
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect();
        let items: Vec<ChangeJson<'_>> = changes
            .iter()
            .zip(&paths)
            .map(|(c, path)| ChangeJson {
                path,
                kind: c.kind as u8,
            })
            .collect();
        // Go encodes its nil slice of no changes as `null`.
        write_json(ctx.out, &(!items.is_empty()).then_some(items))?;
    } else {
        use std::os::unix::ffi::OsStrExt;
        for change in &changes {
            writeln!(
                ctx.out,
                "{} {}",
                change.kind,
                go_quote(change.path.as_os_str().as_bytes())
            )?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_parse_like_the_go_flag() {
        assert_eq!(
            parse_id_map("0:100000:65536,65536:300000:10").expect("parses"),
            vec![
                IDMap {
                    container_id: 0,
                    host_id: 100000,
                    size: 65536
                },
                IDMap {
                    container_id: 65536,
                    host_id: 300000,
                    size: 10
                },
            ]
        );
        assert!(parse_id_map("0:1").is_err());
        assert!(parse_id_map("a:b:c").is_err());
    }

    #[test]
    fn later_compression_flags_win() {
        assert_eq!(diff_compression(false, false, false, false), None);
        assert_eq!(
            diff_compression(true, false, false, false),
            Some(Compression::None)
        );
        assert_eq!(
            diff_compression(true, true, false, false),
            Some(Compression::Gzip)
        );
        assert_eq!(
            diff_compression(false, true, true, false),
            Some(Compression::Bzip2)
        );
    }
}
