//! The Go tool's commands on the Store (layers, images, containers), with its output and exit
//! codes (observed from containers-storage 1.43; see `tests/go-1.43-study/`).
//!
//! Each command returns its exit code; only a failure to write the output is an `Err`.
//! Deliberate differences from the Go tool: `mount NAME` works (Go passes the name to the
//! driver and fails), `delete-layer NAME` keeps its safety checks (Go skips them for names),
//! `shutdown --force` terminates (Go loops forever), and texts that Go prints in map order
//! (`exists`, `delete-layer`) come in argument order.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;
use layerstore::Store;
use layerstore_layers::Error as LayerError;
use layerstore_model::error_chain;

use crate::args::Command;
use crate::config::StoreConfig;
use crate::output::write_error;

use content::{apply_diff, changes, create_layer, diff, diff_compression, import_layer};
use mounts::{mount, mounted, unmount};
use records::{
    KindFilter, change_names, delete, exists, get_layer_data, get_names, layer,
    layer_parent_owners, layers, list_layer_data, metadata, set_layer_data, set_metadata,
};
pub use store::rebuild_damaged_layers;
use store::{check, shutdown, status, wipe};
use table::ListFormat;

mod containers;
mod content;
mod copy;
mod images;
mod mounts;
pub mod pull;
mod records;
mod store;
mod table;

/// What a command runs against and writes to.
pub struct Context<'a> {
    /// The open store.
    pub store: &'a Store,
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

    /// Prints a one-line answer and exits 0, or prints the Store error as Go words it and
    /// exits 1.
    fn answer(&mut self, answer: layerstore::Result<impl std::fmt::Display>) -> Result<i32> {
        match answer {
            Ok(value) => {
                writeln!(self.out, "{value}")?;
                Ok(0)
            }
            Err(err) => self.fail(&go_error_text(&err)),
        }
    }
}

/// The text the Go tool prints for a Store error: the Store's own errors are Go's words
/// already; a layer store's error is said as [`layer_error_text`] says it.
pub fn go_error_text(err: &layerstore::Error) -> String {
    match err {
        layerstore::Error::Layers(inner) => layer_error_text(inner),
        layerstore::Error::DriverStart(inner) => error_chain(inner),
        // The Go container store's bare `ErrDuplicateID`, without the ID.
        layerstore::Error::Containers(layerstore_containers::Error::DuplicateId { .. }) => {
            "that ID is already in use".to_string()
        }
        other => error_chain(other),
    }
}

/// The text the Go tool prints for a layer store error.
///
/// Where Go has no fixed text, the store's own message is kept; a diff that ends too soon also
/// says `unexpected EOF`, the words Go's error carries and scripts (and the bats suite) look for.
pub fn layer_error_text(err: &LayerError) -> String {
    // Go's bare text, without the layer or the options (`mount -r IMAGE` on vfs).
    if let LayerError::Driver { source, .. } = err
        && let layerstore_driver::Error::MountOptions { driver, .. } = source.as_ref()
    {
        return format!("{driver} driver does not support mount options");
    }
    match err {
        LayerError::HasChildren { child, .. } => {
            format!("used by layer {child}: layer has children")
        }
        other => match other.go_text() {
            Some(text) => text.to_string(),
            None if truncated_tar(other) => format!("{}: unexpected EOF", error_chain(other)),
            None => error_chain(other),
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

/// `bytes` as a Go string becomes once JSON-encoded: every byte that is not part of a valid
/// UTF-8 sequence is one U+FFFD (`String::from_utf8_lossy` gives one per maximal invalid run,
/// so a metadata file would be stored differently than the Go tool stores it).
pub fn go_lossy_utf8(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                return text;
            }
            Err(err) => {
                let (valid, after) = rest.split_at(err.valid_up_to());
                // The first `valid_up_to` bytes are valid UTF-8: this cannot fail.
                text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = err.error_len().unwrap_or(after.len());
                text.extend(std::iter::repeat_n(char::REPLACEMENT_CHARACTER, bad));
                rest = &after[bad..];
            }
        }
    }
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
            layer,
            image,
            container,
            json,
            pos,
        } => exists(
            ctx,
            quiet.unwrap_or(false),
            KindFilter {
                layer: layer.unwrap_or(false),
                image: image.unwrap_or(false),
                container: container.unwrap_or(false),
            },
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
            opt,
            read_only,
            json,
            pos,
        } => mount(
            ctx,
            label.as_deref(),
            opt.as_deref(),
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
            force,
            quick,
            json,
            ..
        } => check(
            ctx,
            repair.unwrap_or(false),
            force.unwrap_or(false),
            quick.unwrap_or(false),
            json.on(),
        ),
        Command::Images {
            quiet,
            format,
            json,
            ..
        } => match ListFormat::choose(format.as_deref()) {
            Ok(format) => images::images(ctx, quiet.unwrap_or(false), format, json.on()),
            Err(text) => ctx.fail(&text),
        },
        Command::ImagesByDigest { quiet, json, pos } => {
            images::images_by_digest(ctx, quiet.unwrap_or(false), json.on(), &pos.args)
        }
        Command::Image { json, pos } => images::image(ctx, json.on(), &pos.args),
        Command::CreateImage {
            names,
            id,
            digest,
            metadata,
            metadata_file,
            json,
            pos,
        } => images::create_image(
            ctx,
            &images::CreateImage {
                names,
                id: id.as_deref(),
                digest: digest.as_deref(),
                metadata: metadata.as_deref(),
                metadata_file: metadata_file.as_deref(),
                json: json.on(),
            },
            &pos.args,
        ),
        Command::DeleteImage { test, json, pos } => {
            images::delete_image(ctx, test.unwrap_or(false), json.on(), &pos.args)
        }
        Command::ListImageData { json, pos } => images::list_image_data(ctx, json.on(), &pos.args),
        Command::GetImageData { file, pos } => {
            images::get_image_data(ctx, file.as_deref(), &pos.args)
        }
        Command::GetImageDataSize { pos } => images::get_image_data_size(ctx, &pos.args),
        Command::GetImageDataDigest { pos } => images::get_image_data_digest(ctx, &pos.args),
        Command::SetImageData { file, pos } => {
            images::set_image_data(ctx, file.as_deref(), &pos.args)
        }
        Command::Containers { format, json, .. } => match ListFormat::choose(format.as_deref()) {
            Ok(format) => containers::containers(ctx, format, json.on()),
            Err(text) => ctx.fail(&text),
        },
        Command::Container { json, pos } => containers::container(ctx, json.on(), &pos.args),
        Command::CreateContainer {
            names,
            volatile,
            id,
            metadata,
            metadata_file,
            json,
            maps,
            pos,
        } => containers::create_container(
            ctx,
            &containers::CreateContainer {
                names,
                id: id.as_deref(),
                metadata: metadata.as_deref(),
                metadata_file: metadata_file.as_deref(),
                volatile: volatile.unwrap_or(false),
                maps,
                json: json.on(),
            },
            &pos.args,
        ),
        Command::DeleteContainer { json, pos } => {
            containers::delete_container(ctx, json.on(), &pos.args)
        }
        Command::ListContainerData { json, pos } => {
            containers::list_container_data(ctx, json.on(), &pos.args)
        }
        Command::GetContainerData { file, pos } => {
            containers::get_container_data(ctx, file.as_deref(), &pos.args)
        }
        Command::GetContainerDataSize { pos } => {
            containers::get_container_data_size(ctx, &pos.args)
        }
        Command::GetContainerDataDigest { pos } => {
            containers::get_container_data_digest(ctx, &pos.args)
        }
        Command::SetContainerData { file, pos } => {
            containers::set_container_data(ctx, file.as_deref(), &pos.args)
        }
        Command::GetContainerDir { pos } => containers::container_dir(ctx, false, &pos.args),
        Command::GetContainerRunDir { pos } => containers::container_dir(ctx, true, &pos.args),
        Command::ContainerParentOwners { json, pos } => {
            containers::container_parent_owners(ctx, json.on(), &pos.args)
        }
        Command::Copy { chown, pos, .. } => copy::copy(ctx, chown.as_deref(), &pos.args),
        // Handled before the layer store opens (they open the whole Store).
        Command::Pull { .. } | Command::Push { .. } => Ok(1),
        Command::Completions { .. } | Command::External(_) => Ok(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go says `vfs driver does not support mount options` (then ` while mounting NAME`)
    /// for `mount -r IMAGE` on vfs, without the layer or the options.
    #[test]
    fn mount_option_errors_read_like_go() {
        let err = LayerError::Driver {
            id: "0a0a".into(),
            op: "mount",
            source: Box::new(layerstore_driver::Error::MountOptions {
                driver: "vfs".into(),
                id: "0a0a".into(),
                options: vec!["noexec".into(), "nosuid".into()],
            }),
        };
        assert_eq!(
            layer_error_text(&err),
            "vfs driver does not support mount options"
        );
    }

    #[test]
    fn io_errors_read_like_go() {
        let err = io::Error::from_raw_os_error(2);
        assert_eq!(
            go_io_text("open", Path::new("/x"), &err),
            "open /x: no such file or directory"
        );
    }

    #[test]
    fn invalid_utf8_is_one_replacement_per_byte_as_in_go() {
        // A truncated 3-byte sequence (2 bytes), a lone continuation byte, a truncated tail.
        assert_eq!(
            go_lossy_utf8(b"a\xe2\x82b\x80c\xf0\x9f"),
            "a\u{fffd}\u{fffd}b\u{fffd}c\u{fffd}\u{fffd}"
        );
        assert_eq!(go_lossy_utf8("é€".as_bytes()), "é€");
        assert_eq!(go_lossy_utf8(b""), "");
    }

    #[test]
    fn a_taken_container_id_is_gos_bare_text() {
        let err = layerstore::Error::Containers(layerstore_containers::Error::DuplicateId {
            id: "2a2a".into(),
        });
        assert_eq!(go_error_text(&err), "that ID is already in use");
    }
}
