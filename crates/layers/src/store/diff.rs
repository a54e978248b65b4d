//! Apply and give back: applying a diff to a layer, and its diff, changes and size.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use layerstore_archive::InputEndHook;
use layerstore_driver::{ApplyDiffOpts, Change, DiffArgs, MountOpts};
use layerstore_model::{Compression, Layer};

use crate::crash;
use crate::error::{Error, Result};
use crate::options::DiffOptions;
use crate::state::{State, reindex_digests, unindex_digest};

use super::{
    Counting, LayerStore, LayerWriter, mappings_of, tar_split_name, tar_split_temp_name, usable,
};

impl LayerStore {
    /// Applies a layer diff (a tar stream, optionally bzip2/gzip/xz/zstd compressed) to an
    /// existing layer, recording digests, sizes, compression, uid/gid sets and the tar-split
    /// file. Returns the bytes of file content written.
    ///
    /// As in Go, the layer is not flagged `incomplete` meanwhile (it existed before the call):
    /// after a failure or a crash its files may hold part of the diff, and its records stay as
    /// they were (the new tar-split replaces the old one only after the diff applied). Use
    /// [`put`](Self::put) to create and fill a layer all-or-nothing.
    pub fn apply_diff(&self, key: &str, diff: &mut (dyn Read + Send)) -> Result<u64> {
        self.write_session()?.apply_diff(key, diff)
    }

    pub(super) fn apply_diff_locked(
        &self,
        state: &mut State,
        index: usize,
        diff: &mut (dyn Read + Send),
    ) -> Result<u64> {
        let layer = state.layers[index].clone();
        let id = layer.id.as_str();
        let dir = self.layers_dir_rw()?;
        let temp_name = tar_split_temp_name(id);
        let temp = dir.join(&temp_name);
        // A temp file a crash left is stale (we hold the write lock).
        dir.remove_file(&temp_name)?;
        let file = dir.create_new(&temp_name, 0o600)?;
        // Its fdatasync at the end commits the filesystem's journal, with the metadata of every
        // entry extracted (ext4: 8 ms for rootfs.tar, 20 ms for 50,000 small files). Started
        // once the input is read, most of that commit runs while the last entries are made.
        let early = file.try_clone().ok();
        let on_input_end = early.map(|early| {
            InputEndHook(Arc::new(move || {
                let _ = early.sync_data();
            }))
        });
        // The gzip runs on a thread of its own, off the extracting thread (crates/tarsplit
        // `gzip_thread`).
        let mut packer =
            layerstore_tarsplit::gzip_packer_on_thread(BufWriter::with_capacity(1 << 20, file));
        let applied = self.driver.apply_diff(
            id,
            layer.parent(),
            ApplyDiffOpts {
                diff,
                tar_split: Some(&mut packer),
                id_mappings: mappings_of(&layer),
                mount_label: layer.mount_label.clone(),
                ignore_chown_errors: false,
                max_uncompressed_size: self.max_layer_size,
                on_input_end,
            },
        );
        let report = match applied {
            Ok(report) => report,
            Err(e) => {
                drop(packer);
                let _ = dir.remove_file(&temp_name);
                return Err(Error::driver(id, "apply diff", e));
            }
        };
        crash::point(crash::PUT_AFTER_APPLY);
        let finished = packer
            .finish()
            .map_err(|e| Error::tar_split(id, &temp, e))
            .and_then(|w| {
                w.into_inner()
                    .map_err(|e| Error::io("write", &temp, e.into_error()))
            })
            // Its bytes and size are what must be durable (Go fdatasyncs it too); its mode was
            // set when it was made.
            .and_then(|f| f.sync_data().map_err(|e| Error::io("fdatasync", &temp, e)))
            // Durable before layers.json names the layer complete: its save fsyncs this
            // directory before it renames (`StoreDir::write_atomic`).
            .and_then(|()| dir.rename(&temp_name, &tar_split_name(id)));
        if let Err(e) = finished {
            let _ = dir.remove_file(&temp_name);
            return Err(e);
        }
        crash::point(crash::PUT_AFTER_TAR_SPLIT);
        let compressed = report.compressed_digest.clone();
        let uncompressed = report.uncompressed_digest.clone();
        {
            let State {
                layers,
                by_compressed,
                by_uncompressed,
                ..
            } = state;
            let record = &mut layers[index];
            unindex_digest(by_compressed, &record.compressed_digest, id);
            unindex_digest(by_uncompressed, &record.uncompressed_digest, id);
            record.compressed_digest = Some(compressed);
            record.compressed_size = i64::try_from(report.compressed_size).unwrap_or(i64::MAX);
            record.uncompressed_digest = Some(uncompressed);
            record.uncompressed_size = i64::try_from(report.uncompressed_size).unwrap_or(i64::MAX);
            record.compression = report.compression;
            record.uids = report.uids.iter().copied().collect();
            record.gids = report.gids.iter().copied().collect();
        }
        reindex_digests(state, index);
        Ok(report.size)
    }

    /// Writes the diff of layer `to` against `from` (default: its parent) to `out` and returns
    /// the bytes written.
    ///
    /// Against the parent, and when the layer has a tar-split file, the stream is the original
    /// tarball byte for byte, rebuilt from the tar-split records and the layer's files;
    /// otherwise the driver exports the differences. The output is compressed as
    /// `options.compression` says, else as the layer's diff was when applied (as Go does);
    /// bzip2 and xz cannot be produced ([`Error::UnsupportedCompression`]). An unknown `from`
    /// falls back to the parent, as in Go. Streams with bounded memory.
    pub fn diff(
        &self,
        from: Option<&str>,
        to: &str,
        options: &DiffOptions,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let guard = self.layers_lock.rlock()?;
        let (layer, from_layer) = self.read_under(&guard, |s| {
            let layer = usable(&s.layers[s.resolve(to)?])?.clone();
            let from_layer = match from {
                Some(f) if !f.is_empty() => s.resolve(f).ok().map(|i| s.layers[i].clone()),
                _ => None,
            }
            .or_else(|| {
                layer
                    .parent()
                    .and_then(|p| s.by_id.get(p))
                    .map(|&i| s.layers[i].clone())
            });
            if let Some(from) = &from_layer {
                usable(from)?;
            }
            Ok((layer, from_layer))
        })?;
        let compression = options.compression.unwrap_or(layer.compression);
        let mut counting = Counting {
            inner: out,
            count: 0,
        };
        match compression {
            Compression::None | Compression::Gzip | Compression::Zstd => {
                // The archive crate's encoders (parallel gzip at the Go tool's level, zstd).
                let mut encoder =
                    layerstore_archive::encoder(&mut counting, compression).map_err(|e| {
                        Error::io("compress the diff of", &layer.id, std::io::Error::other(e))
                    })?;
                self.diff_uncompressed(&layer, from_layer.as_ref(), &mut encoder)?;
                encoder
                    .finish()
                    .map_err(|e| Error::io("compress the diff of", &layer.id, e))?;
            }
            Compression::Bzip2 => return Err(Error::UnsupportedCompression("tar.bz2")),
            Compression::Xz => return Err(Error::UnsupportedCompression("tar.xz")),
            Compression::Unknown(_) => {
                return Err(Error::UnsupportedCompression("(unknown)"));
            }
        }
        counting
            .flush()
            .map_err(|e| Error::io("write the diff of", &layer.id, e))?;
        drop(guard);
        Ok(counting.count)
    }

    fn diff_uncompressed(
        &self,
        layer: &Layer,
        from: Option<&Layer>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let id = layer.id.as_str();
        let against_parent = from.map(|f| f.id.as_str()) == layer.parent();
        if against_parent && let Some(file) = self.open_in_layers_dir(&tar_split_name(id))? {
            return self.assemble(layer, file, &self.tar_split_path(id), out);
        }
        let mappings = mappings_of(layer);
        let from_mappings = from.map(mappings_of).unwrap_or_default();
        let args = DiffArgs {
            id,
            id_mappings: &mappings,
            parent: from.map(|f| f.id.as_str()),
            parent_mappings: &from_mappings,
            mount_label: &layer.mount_label,
        };
        self.driver
            .diff(&args, out)
            .map(drop)
            .map_err(|e| Error::driver(id, "diff", e))
    }

    pub(super) fn assemble(
        &self,
        layer: &Layer,
        file: File,
        path: &Path,
        out: &mut dyn Write,
    ) -> Result<()> {
        let id = layer.id.as_str();
        let entries = layerstore_tarsplit::read_tar_split_gz(file);
        match self
            .driver
            .diff_getter(id)
            .map_err(|e| Error::driver(id, "open the layer's files", e))?
        {
            // Decoding the entries, reading the files and writing the stream overlap (three
            // threads, see `assemble_pipelined`); `out` stays on this thread.
            Some(getter) => layerstore_tarsplit::assemble_pipelined(entries, getter, out)
                .map(drop)
                .map_err(|e| Error::tar_split(id, path, e)),
            None => {
                let mount_opts = MountOpts {
                    mount_label: layer.mount_label.clone(),
                    options: vec!["ro".to_string()],
                    ..MountOpts::default()
                };
                let dir = self
                    .driver
                    .get(id, &mount_opts)
                    .map_err(|e| Error::driver(id, "mount", e))?;
                let result = layerstore_tarsplit::DirFileGetter::new(&dir)
                    .and_then(|getter| {
                        layerstore_tarsplit::assemble_pipelined(entries, &getter, out)
                    })
                    .map(drop)
                    .map_err(|e| Error::tar_split(id, path, e));
                let put = self
                    .driver
                    .put(id)
                    .map_err(|e| Error::driver(id, "unmount", e));
                result.and(put)
            }
        }
    }

    /// Runs `f` on fresh records while the caller holds a read guard for longer (diff).
    pub(super) fn read_under<T>(
        &self,
        guard: &layerstore_lockfile::ReadGuard<'_>,
        f: impl FnOnce(&State) -> Result<T>,
    ) -> Result<T> {
        let current = guard.get_last_write()?;
        if self.is_stale(&self.state.read(), &current)? {
            // The caller keeps its shared lock, so it cannot upgrade: read the records as they
            // are; the next call cleans up what another process left.
            let mut state = self.state.write();
            self.refresh(&mut state, current, None, true)?;
        }
        let state = self.state.read();
        f(&state)
    }

    /// The paths layer `to` adds, modifies or deletes relative to `from` (default: its parent).
    pub fn changes(&self, from: Option<&str>, to: &str) -> Result<Vec<Change>> {
        self.read_session()?.records().changes(from, to)
    }

    /// The size of what layer `to` adds or modifies relative to `from` (default: its parent).
    pub fn diff_size(&self, from: Option<&str>, to: &str) -> Result<u64> {
        self.read_session()?.records().diff_size(from, to)
    }
}

impl LayerWriter<'_> {
    /// Applies a layer diff to an existing layer (see [`LayerStore::apply_diff`]).
    pub fn apply_diff(&mut self, key: &str, diff: &mut (dyn Read + Send)) -> Result<u64> {
        let store = self.store;
        self.run(|state, guard| {
            let index = state.resolve(key)?;
            usable(&state.layers[index])?;
            let size = store.apply_diff_locked(state, index, diff)?;
            store.save(state, guard)?;
            Ok(size)
        })
    }
}
