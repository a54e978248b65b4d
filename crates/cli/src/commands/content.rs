//! Layers in and out: `create-layer`, `import-layer`, `applydiff`, `diff`, `changes` (and
//! `diffsize`), with their input files and ID-mapping flags.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::Result;
use layerstore::{HostMapping, IDMap, Layer, LayerOptions};
use layerstore_layers::{Compression, DiffOptions};
use serde::Serialize;

use super::{Context, go_error_text, go_io_text};
use crate::args::{CreateFlags, MapFlags};
use crate::output::{go_quote, write_json};
use crate::progress::Progress;

/// The input named by `--file`, else stdin, unbuffered (a layer import reads in 1 MiB chunks
/// of its own; a buffer here only added a first 1 MiB copy before decompression could start),
/// and its length where it is a regular file (for the progress bar).
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
            Ok((Box::new(file), len))
        }
        None => {
            let stdin = io::stdin();
            let len = rustix::fs::fstat(&stdin)
                .ok()
                .filter(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
                .and_then(|st| u64::try_from(st.st_size).ok());
            Ok((Box::new(stdin), len))
        }
    }
}

/// Parses the Go tool's `--uidmap`/`--gidmap` value: colon-separated triples,
/// `ctr:host:size[:ctr:host:size...]` (Go's `idtools.ParseIDMap`; commas are refused, as
/// there). `kind` is `uid` or `gid`, for the error text.
fn parse_id_map(text: &str, kind: &str) -> Result<Vec<IDMap>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let malformed = || {
        format!(
            "initializing ID mappings: {kind} setting is malformed expected [\"uint32:uint32:uint32\"]: [{text:?}]"
        )
    };
    let numbers: Vec<u32> = text
        .split(':')
        .map(|field| field.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| malformed())?;
    if !numbers.len().is_multiple_of(3) {
        return Err(malformed());
    }
    Ok(numbers
        .chunks(3)
        .map(|triple| IDMap {
            container_id: triple[0],
            host_id: triple[1],
            size: triple[2],
        })
        .collect())
}

/// The ranges `/etc/subuid` (or subgid) gives `name`, mapped from container ID 0 upwards.
fn sub_id_map(file: &str, name: &str) -> Result<Vec<IDMap>, String> {
    let kind = if file.ends_with("subgid") {
        "subgid"
    } else {
        "subuid"
    };
    let who = if kind == "subgid" { "group" } else { "user" };
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
            "no {kind} ranges found for {who} {name:?} in {file}"
        ));
    }
    Ok(maps)
}

/// The mappings the ID-mapping flags ask for, as the Go tool's `paramIDMapping` builds them:
/// `--hostuidmap` with a UID mapping is an error; one of `--subuidmap`/`--subgidmap` serves
/// for both; the sub-ID ranges come first, then `--uidmap`/`--gidmap`.
pub(super) fn id_mappings(
    flags: &MapFlags,
) -> Result<(Vec<IDMap>, Vec<IDMap>, HostMapping), String> {
    let host = HostMapping {
        uid: flags.host_uid_map.unwrap_or(false),
        gid: flags.host_gid_map.unwrap_or(false),
    };
    let uid_map_text = flags.uid_map.clone().unwrap_or_default();
    let gid_map_text = flags.gid_map.clone().unwrap_or_default();
    let sub_uid = flags.sub_uid_map.clone().unwrap_or_default();
    let sub_gid = flags.sub_gid_map.clone().unwrap_or_default();
    if host.uid && (!uid_map_text.is_empty() || !sub_uid.is_empty()) {
        return Err("host uid map specified along with UID mapping".into());
    }
    if host.gid && (!gid_map_text.is_empty() || !sub_gid.is_empty()) {
        return Err("host gid map specified along with GID mapping".into());
    }
    let (sub_uid, sub_gid) = match (sub_uid.is_empty(), sub_gid.is_empty()) {
        (false, true) => (sub_uid.clone(), sub_uid),
        (true, false) => (sub_gid.clone(), sub_gid),
        _ => (sub_uid, sub_gid),
    };
    let mut uid_map = Vec::new();
    let mut gid_map = Vec::new();
    if !sub_uid.is_empty() {
        uid_map = sub_id_map("/etc/subuid", &sub_uid)?;
        gid_map = sub_id_map("/etc/subgid", &sub_gid)?;
    }
    uid_map.extend(parse_id_map(&uid_map_text, "uid")?);
    gid_map.extend(parse_id_map(&gid_map_text, "gid")?);
    Ok((uid_map, gid_map, host))
}

fn layer_options(
    flags: &CreateFlags,
    parent: Option<&String>,
) -> Result<(LayerOptions, HostMapping), String> {
    let mut options = LayerOptions::new();
    options.id = flags.id.clone().filter(|id| !id.is_empty());
    options.parent = parent.cloned().filter(|p| !p.is_empty());
    options.names = flags.names.clone();
    options.mount_label = flags.label.clone().unwrap_or_default();
    options.writeable = !flags.readonly.unwrap_or(false);
    let (uid_map, gid_map, host) = id_mappings(&flags.maps)?;
    options.uid_map = uid_map;
    options.gid_map = gid_map;
    Ok((options, host))
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
    let (options, host) = match layer_options(flags, args.first()) {
        Ok(options) => options,
        Err(text) => return ctx.fail(&text),
    };
    match ctx.store.create_layer(&options, host) {
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
    let (options, host) = match layer_options(flags, args.first()) {
        Ok(options) => options,
        Err(text) => return ctx.fail(&text),
    };
    let (input, len) = match open_input(file) {
        Ok(input) => input,
        Err(text) => return ctx.fail(&text),
    };
    let progress = Progress::new("import-layer", len);
    let mut reader = progress.reader(input);
    match ctx.store.put_layer(&options, host, Some(&mut reader)) {
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
        .layer_size(to)
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
        // Go's form: colon-separated triples, one after the other.
        assert_eq!(
            parse_id_map("0:100000:65536:65536:300000:10", "uid").expect("parses"),
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
        assert_eq!(parse_id_map("", "uid"), Ok(Vec::new()));
        // Go 1.43's words for what it refuses (commas included).
        assert_eq!(
            parse_id_map("0:1:1,2:3:4", "uid"),
            Err(r#"initializing ID mappings: uid setting is malformed expected ["uint32:uint32:uint32"]: ["0:1:1,2:3:4"]"#.to_string())
        );
        assert!(parse_id_map("0:1", "gid").is_err_and(|e| e.contains("gid setting")));
        assert!(parse_id_map("a:b:c", "uid").is_err());
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
