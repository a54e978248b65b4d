//! The layer commands, with the Go tool's output and exit codes (observed from
//! containers-storage 1.43; see `tests/go-1.43-study/`).
//!
//! Each command returns its exit code; only a failure to write the output is an `Err`.
//! Deliberate differences from the Go tool: `mount NAME` works (Go passes the name to the
//! driver and fails), `delete-layer NAME` keeps its safety checks (Go skips them for names),
//! `shutdown --force` terminates (Go loops forever), and texts that Go prints in map order
//! (`exists`, `delete-layer`) come in argument order.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use anyhow::Result;
use layerstore_layers::{
    CheckOptions, Compression, DiffOptions, Error, IDMap, Layer, LayerOptions, LayerStore,
    MountOptions,
};
use serde::Serialize;

use crate::args::{Command, CreateFlags};
use crate::config::StoreConfig;
use crate::output::{TreeNode, go_int_list, go_quote, print_tree, write_error, write_json};
use crate::progress::Progress;

/// What a command runs against and writes to.
pub struct Context<'a> {
    /// The open store.
    pub store: &'a LayerStore,
    /// Where the store is.
    pub config: &'a StoreConfig,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// `--json-errors`.
    pub json_errors: bool,
}

impl Context<'_> {
    /// Prints an error line and answers exit code 1.
    fn fail(&mut self, text: &str) -> Result<i32> {
        write_error(self.err, self.json_errors, text)?;
        Ok(1)
    }
}

/// The text the Go tool prints for a store error.
///
/// Where Go has no fixed text, the store's own message is kept; a diff that ends too soon also
/// says `unexpected EOF`, the words Go's error carries and scripts (and the bats suite) look for.
pub fn go_error_text(err: &Error) -> String {
    match err {
        Error::HasChildren { child, .. } => format!("used by layer {child}: layer has children"),
        other => match other.go_text() {
            Some(text) => text.to_string(),
            None if truncated_tar(other) => format!("{other}: unexpected EOF"),
            None => other.to_string(),
        },
    }
}

/// Whether the error comes from a tar stream that ended in the middle of an entry.
fn truncated_tar(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        let tar_error = e.downcast_ref::<layerstore_tarsplit::Error>().or_else(|| {
            // `archive::Error::Tar` is transparent: its source skips the tar error itself.
            match e.downcast_ref::<layerstore_archive::Error>() {
                Some(layerstore_archive::Error::Tar(inner)) => Some(inner),
                _ => None,
            }
        });
        if matches!(
            tar_error,
            Some(layerstore_tarsplit::Error::Truncated { .. })
        ) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// An I/O error in Go's words: `open /x: no such file or directory`.
pub fn go_io_text(op: &str, path: &Path, err: &io::Error) -> String {
    let reason = match err.raw_os_error() {
        Some(code) => {
            let text = io::Error::from_raw_os_error(code).to_string();
            let text = text
                .split(" (os error")
                .next()
                .unwrap_or_default()
                .to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
        None => err.to_string(),
    };
    format!("{op} {}: {reason}", path.display())
}

fn open_input(path: Option<&Path>) -> Result<(Box<dyn Read + Send>, Option<u64>), String> {
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

fn create_layer(ctx: &mut Context<'_>, flags: &CreateFlags, args: &[String]) -> Result<i32> {
    let options = match layer_options(flags, args.first()) {
        Ok(options) => options,
        Err(text) => return ctx.fail(&text),
    };
    match ctx.store.create(&options) {
        Ok(layer) => print_created(ctx, &layer, flags.json.on()),
        Err(err) => ctx.fail(&go_error_text(&err)),
    }
}

fn import_layer(
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

fn apply_diff(ctx: &mut Context<'_>, file: Option<&Path>, args: &[String]) -> Result<i32> {
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
fn diff_compression(uncompressed: bool, gzip: bool, bzip2: bool, xz: bool) -> Option<Compression> {
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

fn diff(
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

fn changes(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
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

fn layers(ctx: &mut Context<'_>, tree: bool, json: bool) -> Result<i32> {
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

fn layer(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
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

fn layer_parent_owners(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
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
fn delete(ctx: &mut Context<'_>, json: bool, safe: bool, args: &[String]) -> Result<i32> {
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

fn exists(
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

fn get_names(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
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

fn change_names(
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
fn metadata(ctx: &mut Context<'_>, quiet: bool, json: bool, args: &[String]) -> Result<i32> {
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

fn set_metadata(
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

fn list_layer_data(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
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

fn get_layer_data(ctx: &mut Context<'_>, file: Option<&Path>, args: &[String]) -> Result<i32> {
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

fn set_layer_data(ctx: &mut Context<'_>, file: Option<&Path>, args: &[String]) -> Result<i32> {
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

#[derive(Serialize)]
struct MountResult<'a> {
    id: &'a str,
    mountpoint: String,
    error: String,
}

fn mount(
    ctx: &mut Context<'_>,
    label: Option<&str>,
    read_only: bool,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let options = MountOptions {
        mount_label: label.unwrap_or_default().to_string(),
        ..MountOptions::default()
    };
    let results: Vec<MountResult<'_>> = args
        .iter()
        .map(|arg| {
            if read_only {
                // `--ro` mounts images, which this tool does not hold.
                return MountResult {
                    id: arg,
                    mountpoint: String::new(),
                    error: format!("locating image with ID {arg:?}: image not known"),
                };
            }
            match ctx.store.mount(arg, &options) {
                Ok(path) => MountResult {
                    id: arg,
                    mountpoint: path.display().to_string(),
                    error: String::new(),
                },
                Err(err) => MountResult {
                    id: arg,
                    mountpoint: String::new(),
                    error: go_error_text(&err),
                },
            }
        })
        .collect();
    if json {
        write_json(ctx.out, &results)?;
    } else {
        for result in &results {
            if !result.error.is_empty() {
                write_error(
                    ctx.err,
                    ctx.json_errors,
                    &format!("{} while mounting {}", result.error, result.id),
                )?;
            }
            writeln!(ctx.out, "{}", result.mountpoint)?;
        }
    }
    Ok(i32::from(results.iter().any(|r| !r.error.is_empty())))
}

#[derive(Serialize)]
struct IdError<'a> {
    id: &'a str,
    error: String,
}

/// The common end of `unmount` and `mounted`: the results as JSON, or each error on stderr
/// in the Go tool's words (`describe`); exit 1 when any argument failed.
fn finish_id_errors(
    ctx: &mut Context<'_>,
    json: bool,
    results: &[IdError<'_>],
    describe: impl Fn(&IdError<'_>) -> String,
) -> Result<i32> {
    if json {
        write_json(ctx.out, &results)?;
    } else {
        for result in results.iter().filter(|r| !r.error.is_empty()) {
            write_error(ctx.err, ctx.json_errors, &describe(result))?;
        }
    }
    Ok(i32::from(results.iter().any(|r| !r.error.is_empty())))
}

fn unmount(ctx: &mut Context<'_>, force: bool, json: bool, args: &[String]) -> Result<i32> {
    let mut results = Vec::new();
    for arg in args {
        match ctx.store.unmount(arg, force) {
            Ok(remaining) => {
                if remaining == 0 {
                    writeln!(ctx.out, "{arg} mountpoint unmounted")?;
                }
                results.push(IdError {
                    id: arg,
                    error: String::new(),
                });
            }
            Err(err) => results.push(IdError {
                id: arg,
                error: go_error_text(&err),
            }),
        }
    }
    finish_id_errors(ctx, json, &results, |r| {
        format!("{} while unmounting {}", r.error, r.id)
    })
}

fn mounted(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let mut results = Vec::new();
    for arg in args {
        match ctx.store.mounted(arg) {
            Ok(count) => {
                // Printed even with --json, as the Go tool does.
                if count > 0 {
                    writeln!(ctx.out, "{arg} mounted")?;
                }
                results.push(IdError {
                    id: arg,
                    error: String::new(),
                });
            }
            Err(err) => results.push(IdError {
                id: arg,
                error: go_error_text(&err),
            }),
        }
    }
    finish_id_errors(ctx, json, &results, |r| {
        format!("{} checking if {} is mounted", r.error, r.id)
    })
}

fn status(ctx: &mut Context<'_>, json: bool) -> Result<i32> {
    let mut lines = vec![
        (
            "Root".to_string(),
            ctx.store.graph_root().display().to_string(),
        ),
        (
            "Run Root".to_string(),
            ctx.store.run_root().display().to_string(),
        ),
        (
            "Driver Name".to_string(),
            ctx.store.driver_name().to_string(),
        ),
        (
            "Driver Options".to_string(),
            format!("[{}]", ctx.config.options.join(" ")),
        ),
    ];
    lines.extend(ctx.store.status());
    if json {
        let pairs: Vec<[&str; 2]> = lines
            .iter()
            .map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        write_json(ctx.out, &pairs)?;
    } else {
        for (key, value) in &lines {
            writeln!(ctx.err, "{key}: {value}")?;
        }
    }
    Ok(0)
}

/// `wipe` and `shutdown` answer `""` in JSON on success, `{}` (a Go error value) on failure.
fn json_outcome(
    ctx: &mut Context<'_>,
    json: bool,
    op: &str,
    outcome: Result<(), String>,
) -> Result<i32> {
    match (outcome, json) {
        (Ok(()), true) => {
            writeln!(ctx.out, "\"\"")?;
            Ok(0)
        }
        (Ok(()), false) => Ok(0),
        (Err(_), true) => {
            writeln!(ctx.out, "{{}}")?;
            Ok(1)
        }
        (Err(text), false) => ctx.fail(&format!("{op}: {text}")),
    }
}

fn wipe(ctx: &mut Context<'_>, json: bool) -> Result<i32> {
    let outcome = ctx.store.wipe().map_err(|e| go_error_text(&e));
    json_outcome(ctx, json, "wipe", outcome)
}

fn shutdown(ctx: &mut Context<'_>, force: bool, json: bool) -> Result<i32> {
    // The store's shutdown also releases the driver (overlay and btrfs undo the private bind
    // mount of their home) and records a write in storage.lock, as Go's does.
    let outcome = ctx.store.shutdown(force).map_err(|e| go_error_text(&e));
    json_outcome(ctx, json, "shutdown", outcome)
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    message: String,
    repaired: bool,
}

#[derive(Serialize)]
struct ActionJson {
    action: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct CheckJson<'a> {
    problems: Vec<ProblemJson<'a>>,
    actions: Vec<ActionJson>,
}

/// `check [--repair] [--quick] [--json]`: one line per problem, then one per action; exit 1
/// while problems remain.
fn check(ctx: &mut Context<'_>, repair: bool, quick: bool, json: bool) -> Result<i32> {
    let options = CheckOptions {
        verify_contents: !quick,
        repair,
    };
    let report = match ctx.store.check(&options) {
        Ok(report) => report,
        Err(err) => return ctx.fail(&format!("check: {}", go_error_text(&err))),
    };
    if json {
        let problems = report
            .problems
            .iter()
            .map(|p| ProblemJson {
                kind: p.kind(),
                layer: p.layer(),
                path: p.path().map(|path| path.display().to_string()),
                message: p.to_string(),
                repaired: repair && !report.remaining.contains(p),
            })
            .collect();
        let actions = report
            .actions
            .iter()
            .map(|a| ActionJson {
                action: a.repair.to_string(),
                ok: a.error.is_none(),
                error: a.error.clone(),
            })
            .collect();
        write_json(ctx.out, &CheckJson { problems, actions })?;
    } else {
        for problem in &report.problems {
            writeln!(ctx.out, "{}: {problem}", problem.kind())?;
        }
        for action in &report.actions {
            writeln!(ctx.out, "{action}")?;
        }
    }
    Ok(i32::from(!report.is_clean()))
}

/// Runs a store command and answers its exit code.
pub fn run(ctx: &mut Context<'_>, command: &Command) -> Result<i32> {
    match command {
        Command::Layers { tree, json, .. } => layers(ctx, tree.unwrap_or(false), json.on()),
        Command::Layer { json, pos } => layer(ctx, json.on(), &pos.args),
        Command::CreateLayer { flags, pos } => create_layer(ctx, flags, &pos.args),
        Command::ImportLayer { file, flags, pos } => {
            import_layer(ctx, file.as_deref(), flags, &pos.args)
        }
        Command::DeleteLayer { json, pos } => delete(ctx, json.on(), true, &pos.args),
        Command::Delete { json, pos } => delete(ctx, json.on(), false, &pos.args),
        Command::Exists {
            quiet,
            layer: _,
            image,
            container,
            json,
            pos,
        } => exists(
            ctx,
            quiet.unwrap_or(false),
            image.unwrap_or(false) || container.unwrap_or(false),
            json.on(),
            &pos.args,
        ),
        Command::ApplyDiff { file, pos } => apply_diff(ctx, file.as_deref(), &pos.args),
        Command::Diff {
            file,
            uncompressed,
            gzip,
            bzip2,
            xz,
            pos,
        } => {
            let compression = diff_compression(
                uncompressed.unwrap_or(false),
                gzip.unwrap_or(false),
                bzip2.unwrap_or(false),
                xz.unwrap_or(false),
            );
            diff(ctx, file.as_deref(), compression, &pos.args)
        }
        Command::DiffSize { pos } => {
            let Some(to) = pos.args.first() else {
                return Ok(1);
            };
            match ctx.store.diff_size(pos.args.get(1).map(String::as_str), to) {
                Ok(size) => {
                    writeln!(ctx.out, "{size}")?;
                    Ok(0)
                }
                Err(err) => ctx.fail(&go_error_text(&err)),
            }
        }
        Command::Changes { json, pos } => changes(ctx, json.on(), &pos.args),
        Command::Mount {
            label,
            opt: _,
            read_only,
            json,
            pos,
        } => mount(
            ctx,
            label.as_deref(),
            read_only.unwrap_or(false),
            json.on(),
            &pos.args,
        ),
        Command::Unmount { force, json, pos } => {
            unmount(ctx, force.unwrap_or(false), json.on(), &pos.args)
        }
        Command::Mounted { json, pos } => mounted(ctx, json.on(), &pos.args),
        Command::GetNames { json, pos } => get_names(ctx, json.on(), &pos.args),
        Command::AddNames { names, json, pos } => {
            change_names(ctx, true, names, json.on(), &pos.args)
        }
        Command::SetNames { names, json, pos } => {
            change_names(ctx, false, names, json.on(), &pos.args)
        }
        Command::Metadata { quiet, json, pos } => {
            metadata(ctx, quiet.unwrap_or(false), json.on(), &pos.args)
        }
        Command::SetMetadata {
            metadata,
            metadata_file,
            pos,
        } => set_metadata(
            ctx,
            metadata.as_deref(),
            metadata_file.as_deref(),
            &pos.args,
        ),
        Command::ListLayerData { json, pos } => list_layer_data(ctx, json.on(), &pos.args),
        Command::GetLayerData { file, pos } => get_layer_data(ctx, file.as_deref(), &pos.args),
        Command::SetLayerData { file, pos } => set_layer_data(ctx, file.as_deref(), &pos.args),
        Command::LayerParentOwners { json, pos } => layer_parent_owners(ctx, json.on(), &pos.args),
        Command::Status { json, .. } => status(ctx, json.on()),
        Command::Wipe { json, .. } => wipe(ctx, json.on()),
        Command::Shutdown { force, json, .. } => shutdown(ctx, force.unwrap_or(false), json.on()),
        Command::Version { json, .. } => {
            // containers-storage 1.43 reports an empty list; so do we, for drop-in output.
            if json.on() {
                writeln!(ctx.out, "[]")?;
            }
            Ok(0)
        }
        Command::Check {
            repair,
            quick,
            json,
            ..
        } => check(
            ctx,
            repair.unwrap_or(false),
            quick.unwrap_or(false),
            json.on(),
        ),
        Command::Completions { .. } | Command::External(_) => Ok(1),
    }
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

    /// Runs `check` with the given flags; answers the exit code and stdout.
    fn run_check(store: &LayerStore, repair: bool, json: bool) -> (i32, String) {
        let config = StoreConfig {
            graph_root: store.graph_root().to_path_buf(),
            run_root: store.run_root().to_path_buf(),
            driver: "vfs".into(),
            options: Vec::new(),
            driver_explicit: true,
            config_file: None,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut ctx = Context {
            store,
            config: &config,
            out: &mut out,
            err: &mut err,
            json_errors: false,
        };
        let code = check(&mut ctx, repair, false, json).expect("writes");
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        (code, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn check_reports_repairs_and_exits_by_what_remains() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LayerStore::open(layerstore_layers::StoreOptions::new(
            dir.path().join("graph"),
            dir.path().join("run"),
            "vfs",
        ))
        .expect("open");
        store.create(&LayerOptions::new()).expect("create");
        assert_eq!(run_check(&store, false, false), (0, String::new()));
        assert_eq!(
            run_check(&store, false, true),
            (0, "{\"problems\":[],\"actions\":[]}\n".to_string())
        );

        let orphan = store.layers_dir().join("gone.tar-split.gz");
        std::fs::write(&orphan, b"").expect("orphan");
        let (code, text) = run_check(&store, false, false);
        assert_eq!(code, 1);
        assert_eq!(
            text,
            format!(
                "orphan-tar-split: {}: tar-split without a record\n",
                orphan.display()
            )
        );
        let (code, text) = run_check(&store, false, true);
        assert_eq!(code, 1);
        let report: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(report["problems"][0]["kind"], "orphan-tar-split");
        assert_eq!(report["problems"][0]["path"], orphan.display().to_string());
        assert_eq!(report["problems"][0]["repaired"], false);
        assert_eq!(report["actions"], serde_json::json!([]));

        let (code, text) = run_check(&store, true, true);
        assert_eq!(code, 0, "{text}");
        let report: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(report["problems"][0]["repaired"], true);
        assert_eq!(report["actions"][0]["ok"], true);
        assert!(!orphan.exists());
        assert_eq!(run_check(&store, false, false), (0, String::new()));
    }

    #[test]
    fn io_errors_read_like_go() {
        let err = io::Error::from_raw_os_error(2);
        assert_eq!(
            go_io_text("open", Path::new("/x"), &err),
            "open /x: no such file or directory"
        );
    }
}
