//! The layer commands, with the Go tool's output and exit codes (observed from
//! containers-storage 1.43; see `tests/go-1.43-study/`).
//!
//! Each command returns its exit code; only a failure to write the output is an `Err`.
//! Deliberate differences from the Go tool: `mount NAME` works (Go passes the name to the
//! driver and fails), `delete-layer NAME` keeps its safety checks (Go skips them for names),
//! `shutdown --force` terminates (Go loops forever), and texts that Go prints in map order
//! (`exists`, `delete-layer`) come in argument order.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;
use layerstore_layers::{Error, LayerStore};

use crate::args::Command;
use crate::config::StoreConfig;
use crate::output::write_error;

use content::{apply_diff, changes, create_layer, diff, diff_compression, import_layer};
use mounts::{mount, mounted, unmount};
use records::{
    change_names, delete, exists, get_layer_data, get_names, layer, layer_parent_owners, layers,
    list_layer_data, metadata, set_layer_data, set_metadata,
};
use store::{check, shutdown, status, wipe};

mod content;
mod mounts;
pub mod pull;
mod records;
mod store;

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
        // Handled before the layer store opens (they open the whole Store).
        Command::Pull { .. } | Command::Push { .. } => Ok(1),
        Command::Completions { .. } | Command::External(_) => Ok(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_go() {
        let err = io::Error::from_raw_os_error(2);
        assert_eq!(
            go_io_text("open", Path::new("/x"), &err),
            "open /x: no such file or directory"
        );
    }
}
