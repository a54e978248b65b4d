//! Staged layers: a [`Differ`] fills a driver-made staging directory; the store moves it into
//! a layer and records what the differ reported (Go's `ApplyDiffWithDiffer`,
//! `ApplyDiffFromStagingDirectory`, `CleanupStagingDirectory`, `DifferTarget`).

use std::path::{Path, PathBuf};

use layerstore_driver::{Differ, DifferOptions, DifferOutput, IdMappings};
use layerstore_lockfile::WriteGuard;
use layerstore_model::Layer;

use super::{LayerStore, LayerWriter, mappings_of, tar_split_name, tar_split_temp_name, usable};
use crate::crash;
use crate::error::{Error, Result};
use crate::files::{StoreDir, big_data_file_name};
use crate::options::LayerOptions;
use crate::state::{State, reindex_digests, unindex_digest};

/// Which layer a staged tree moves into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StagedInto {
    /// One this call has just created, deleted if the move fails: the driver may use up its
    /// files ([`Driver::apply_diff_from_staging_directory_into_new`]).
    ///
    /// [`Driver::apply_diff_from_staging_directory_into_new`]: layerstore_driver::Driver::apply_diff_from_staging_directory_into_new
    NewLayer,
    /// One that existed before: its files stay whole until the one exchange.
    ExistingLayer,
}

/// The first bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl LayerWriter<'_> {
    /// Creates a layer and moves a staged tree into it, all or nothing (see
    /// [`LayerStore::put_with_differ`], whose second half this is): `output` is what
    /// [`LayerStore::apply_diff_with_differ`] with `to = None` returned, staged with the new
    /// layer's ID mappings. Any failure removes both the staging directory and the new layer.
    pub fn put_staged(&mut self, options: &LayerOptions, output: &DifferOutput) -> Result<Layer> {
        let store = self.store;
        self.run(|state, guard| store.put_staged_locked(state, guard, options, output))
    }
}

impl LayerStore {
    /// Lets `differ` fill a staging directory (Go's `ApplyDiffWithDiffer`).
    ///
    /// With `to = None` nothing is recorded: the returned output's `target` is the staging
    /// directory, to be handed to
    /// [`apply_diff_from_staging_directory`](Self::apply_diff_from_staging_directory) or
    /// [`cleanup_staging_directory`](Self::cleanup_staging_directory). With `to = Some(layer)`
    /// the staged tree goes into that layer at once, recorded as by
    /// [`apply_diff_from_staging_directory`](Self::apply_diff_from_staging_directory), with
    /// the layer's own ID mappings (Go applies straight into the layer and records only the
    /// owners; staging keeps the layer whole if the differ fails). A failed differ leaves no
    /// staging directory behind.
    pub fn apply_diff_with_differ(
        &self,
        to: Option<&str>,
        options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<DifferOutput> {
        if self.read_only {
            return Err(Error::ReadOnly(self.layers_dir.clone()));
        }
        let Some(key) = to else {
            return self
                .driver
                .apply_diff_with_differ(options, differ)
                .map_err(|e| Error::driver("(staging)", "apply diff with differ", e));
        };
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            let layer = usable(&state.layers[index])?.clone();
            let mut options = options.clone();
            options.id_mappings = mappings_of(&layer);
            let output = self
                .driver
                .apply_diff_with_differ(&options, differ)
                .map_err(|e| Error::driver(&layer.id, "apply diff with differ", e))?;
            let staging = output.target.clone();
            let recorded = self.record_staged_locked(
                state,
                guard,
                index,
                &staging,
                &output,
                StagedInto::ExistingLayer,
            );
            if recorded.is_err() {
                let _ = self.driver.cleanup_staging_directory(&staging);
            }
            recorded.map(|()| output)
        })
    }

    /// Creates a layer as [`put`](Self::put) does and fills it through `differ`, all or
    /// nothing: the differ fills a staging directory first (no lock held meanwhile), then,
    /// under the write lock, the layer is created and the staged tree recorded into it as by
    /// [`apply_diff_from_staging_directory`](Self::apply_diff_from_staging_directory). Any
    /// failure removes both the staging directory and the new layer. The layer's ID mappings
    /// (`options.uid_map`/`gid_map`) override `differ_options.id_mappings`.
    pub fn put_with_differ(
        &self,
        options: &LayerOptions,
        differ_options: &DifferOptions,
        differ: &mut dyn Differ,
    ) -> Result<(Layer, DifferOutput)> {
        if self.read_only {
            return Err(Error::ReadOnly(self.layers_dir.clone()));
        }
        let mut differ_options = differ_options.clone();
        differ_options.id_mappings =
            IdMappings::new(options.uid_map.clone(), options.gid_map.clone());
        let output = self.apply_diff_with_differ(None, &differ_options, differ)?;
        let recorded =
            self.write(|state, guard| self.put_staged_locked(state, guard, options, &output));
        recorded.map(|layer| (layer, output))
    }

    /// Creates a layer as [`put`](Self::put) does and moves into it the staging directory
    /// `output.target` that [`apply_diff_with_differ`](Self::apply_diff_with_differ) (with
    /// `to = None`) filled, all or nothing, recording `output`. The staged tree must have been
    /// made with the new layer's ID mappings. Any failure removes both the staging directory
    /// and the new layer.
    pub(super) fn put_staged_locked(
        &self,
        state: &mut State,
        guard: &WriteGuard<'_>,
        options: &LayerOptions,
        output: &DifferOutput,
    ) -> Result<Layer> {
        let staging = &output.target;
        let recorded = self
            .put_locked(state, guard, options, None)
            .and_then(|(layer, _)| {
                let index = state.resolve(&layer.id)?;
                match self.record_staged_locked(
                    state,
                    guard,
                    index,
                    staging,
                    output,
                    StagedInto::NewLayer,
                ) {
                    Ok(()) => Ok(state.layers[index].clone()),
                    Err(e) => {
                        if state.by_id.contains_key(&layer.id) {
                            let _ =
                                self.delete_locked(state, guard, std::slice::from_ref(&layer.id));
                        }
                        Err(e)
                    }
                }
            });
        if recorded.is_err() {
            let _ = self.driver.cleanup_staging_directory(staging);
        }
        recorded
    }

    /// Moves the staging directory `staging` into layer `key` (replacing its own files in one
    /// atomic exchange) and records `output` as [`apply_diff`](Self::apply_diff) records a
    /// tarball: digests, sizes, compression, uid/gid sets, `<id>.tar-split.gz` (removed when
    /// the output has no tar-split records, as the old one no longer describes the layer; the
    /// records may come gzipped already, then they are written as they are) and big data.
    ///
    /// The layer is flagged `incomplete` from before the move until everything is recorded:
    /// a failure before the move restores the record as it was; a failure or a crash after
    /// it deletes the layer (now or at the next read-write open), so a layer whose files and
    /// records disagree is never listed.
    pub fn apply_diff_from_staging_directory(
        &self,
        key: &str,
        staging: &Path,
        output: &DifferOutput,
    ) -> Result<()> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            usable(&state.layers[index])?;
            self.record_staged_locked(
                state,
                guard,
                index,
                staging,
                output,
                StagedInto::ExistingLayer,
            )
        })
    }

    /// Removes a staging directory made by
    /// [`apply_diff_with_differ`](Self::apply_diff_with_differ) and not used.
    pub fn cleanup_staging_directory(&self, staging: &Path) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly(self.layers_dir.clone()));
        }
        self.driver
            .cleanup_staging_directory(staging)
            .map_err(|e| Error::driver("(staging)", "clean up staging directory", e))
    }

    /// The directory holding layer `key`'s own files as a differ writes them (overlay:
    /// `<home>/<id>/diff`), where a differ finds files to reuse (Go's `DifferTarget`).
    pub fn differ_target(&self, key: &str) -> Result<PathBuf> {
        let id = self.read(|s| {
            s.resolve(key)
                .and_then(|i| usable(&s.layers[i]))
                .map(|l| l.id.clone())
        })?;
        self.driver
            .differ_target(&id)
            .map_err(|e| Error::driver(&id, "differ target", e))
    }

    fn record_staged_locked(
        &self,
        state: &mut State,
        guard: &WriteGuard<'_>,
        index: usize,
        staging: &Path,
        output: &DifferOutput,
        into: StagedInto,
    ) -> Result<()> {
        let id = state.layers[index].id.clone();
        // A new layer stays flagged after a failure: the driver may have used up its files,
        // and the caller deletes it (or, should that fail, the next open does).
        let was_incomplete = state.layers[index].is_incomplete() || into == StagedInto::NewLayer;
        state.layers[index].set_incomplete(true);
        self.save(state, guard)?;
        crash::point(crash::STAGING_AFTER_INCOMPLETE_RECORD);

        let dir = self.layers_dir_rw()?;
        let temp = tar_split_temp_name(&id);
        let before_move = output
            .tar_split
            .as_deref()
            .map_or(Ok(()), |records| {
                dir.write_atomic(&temp, 0o600, |out| {
                    // Records a differ gzipped already (JSON lines never start with gzip's
                    // magic) are written as they are: a pull compresses them as it stages,
                    // so the raw JSON (60 MB for 57,000 entries) is never held whole.
                    if records.starts_with(&GZIP_MAGIC) {
                        return out
                            .write_all(records)
                            .map_err(|e| Error::io("write", dir.join(&temp), e));
                    }
                    layerstore_tarsplit::write_gzipped_records(out, records)
                        .map(drop)
                        .map_err(|e| Error::tar_split(&id, dir.join(&temp), e))
                })
            })
            .and_then(|()| {
                match into {
                    StagedInto::NewLayer => self
                        .driver
                        .apply_diff_from_staging_directory_into_new(&id, staging),
                    StagedInto::ExistingLayer => {
                        self.driver.apply_diff_from_staging_directory(&id, staging)
                    }
                }
                .map_err(|e| Error::driver(&id, "apply diff from staging directory", e))
            });
        if let Err(e) = before_move {
            let _ = dir.remove_file(&temp);
            state.layers[index].set_incomplete(was_incomplete);
            let _ = self.save(state, guard);
            return Err(e);
        }
        crash::point(crash::STAGING_AFTER_MOVE);

        let after_move = self.finish_staged(state, index, &id, &dir, &temp, output);
        match after_move {
            Ok(()) => {
                state.layers[index].set_incomplete(false);
                reindex_digests(state, index);
                self.save(state, guard)
            }
            Err(e) => {
                let _ = self.delete_locked(state, guard, std::slice::from_ref(&id));
                Err(e)
            }
        }
    }

    /// After the move: tar-split into place, big data, the record's measures.
    fn finish_staged(
        &self,
        state: &mut State,
        index: usize,
        id: &str,
        layers_dir: &StoreDir,
        temp: &str,
        output: &DifferOutput,
    ) -> Result<()> {
        let tar_split = tar_split_name(id);
        if output.tar_split.is_some() {
            layers_dir.rename(temp, &tar_split)?;
            layers_dir.sync()?;
        } else {
            layers_dir.remove_file(&tar_split)?;
        }
        if !output.big_data.is_empty() {
            let dir = layers_dir.subdir(id, true)?.ok_or_else(|| {
                Error::io(
                    "open directory",
                    layers_dir.join(id),
                    std::io::ErrorKind::NotFound.into(),
                )
            })?;
            for (item, data) in &output.big_data {
                if item.is_empty() {
                    return Err(Error::InvalidBigDataName(id.to_string()));
                }
                layerstore_model::check_big_data_key(layerstore_model::BigDataOwner::Layer, item)?;
                let name = big_data_file_name(item);
                dir.write_atomic(&name, 0o600, |out| {
                    out.write_all(data)
                        .map_err(|e| Error::io("write", dir.join(&name), e))
                })?;
                let names = &mut state.layers[index].big_data_names;
                if !names.iter().any(|n| n == item) {
                    names.push(item.clone());
                }
            }
        }
        let State {
            layers,
            by_compressed,
            by_uncompressed,
            ..
        } = state;
        let record = &mut layers[index];
        unindex_digest(by_compressed, &record.compressed_digest, id);
        unindex_digest(by_uncompressed, &record.uncompressed_digest, id);
        record.compressed_digest = output.compressed_digest.clone();
        record.compressed_size = i64::try_from(output.compressed_size).unwrap_or(i64::MAX);
        record.uncompressed_digest = output.uncompressed_digest.clone();
        record.uncompressed_size = i64::try_from(output.uncompressed_size).unwrap_or(i64::MAX);
        record.compression = output.compression;
        record.uids = output.uids.iter().copied().collect();
        record.gids = output.gids.iter().copied().collect();
        Ok(())
    }
}
