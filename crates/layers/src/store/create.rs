//! Creating a layer: the record flagged `incomplete` first, then the driver, then the diff.

use std::io::Read;

use layerstore_driver::CreateOpts;
use layerstore_lockfile::WriteGuard;
use layerstore_model::{Layer, generate_id_unused, validate_store_id};
use serde_json::Value;

use crate::crash;
use crate::error::{Error, Result};
use crate::options::LayerOptions;
use crate::state::{State, reindex_digests};

use super::{LayerStore, LayerWriter, mappings_of, tar_split_name, usable};

impl LayerStore {
    /// Creates an empty layer (Go's `CreateWithFlags` with no flags).
    pub fn create(&self, options: &LayerOptions) -> Result<Layer> {
        self.put(options, None).map(|(layer, _)| layer)
    }

    /// Creates an empty layer carrying `flags` besides those of `options`.
    pub fn create_with_flags(
        &self,
        options: &LayerOptions,
        flags: &std::collections::BTreeMap<String, Value>,
    ) -> Result<Layer> {
        let mut options = options.clone();
        options
            .flags
            .extend(flags.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.create(&options)
    }

    /// Creates a layer and, if `diff` is given, applies it (Go's `Put`). Returns the record and
    /// the bytes of file content written.
    ///
    /// The record is saved flagged `incomplete` before anything else is done; any failure
    /// deletes the layer again (and a crash leaves it for the next read-write open to delete).
    pub fn put(
        &self,
        options: &LayerOptions,
        diff: Option<&mut (dyn Read + Send)>,
    ) -> Result<(Layer, u64)> {
        self.write_session()?.put(options, diff)
    }

    pub(super) fn put_locked(
        &self,
        state: &mut State,
        guard: &WriteGuard<'_>,
        options: &LayerOptions,
        diff: Option<&mut (dyn Read + Send)>,
    ) -> Result<(Layer, u64)> {
        let id = match &options.id {
            Some(id) => {
                validate_store_id(id).map_err(|e| match e {
                    layerstore_model::Error::InvalidId { id, reason } => Error::InvalidId {
                        id,
                        reason: reason.to_string(),
                    },
                    other => Error::Model(other),
                })?;
                if state.id_taken(id) {
                    return Err(Error::DuplicateId(id.clone()));
                }
                id.clone()
            }
            None => generate_id_unused(|c| state.id_taken(c) || state.by_name.contains_key(c))?,
        };
        let mut names: Vec<String> = Vec::with_capacity(options.names.len());
        for name in &options.names {
            if state.by_name.contains_key(name) {
                return Err(Error::DuplicateName(name.clone()));
            }
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let parent = match (&options.parent_layer, &options.parent) {
            (Some(p), _) => Some(usable(p)?.clone()),
            (None, Some(p)) if !p.is_empty() => {
                Some(usable(&state.layers[state.resolve(p)?])?.clone())
            }
            _ => None,
        };
        let template = match &options.template {
            Some(t) if !t.is_empty() => Some(usable(&state.layers[state.resolve(t)?])?.clone()),
            _ => None,
        };
        let mut layer = Layer::new(id.clone());
        layer.names = names;
        layer.parent = parent.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        layer.mount_label = options.mount_label.clone();
        layer.uid_map = options.uid_map.clone();
        layer.gid_map = options.gid_map.clone();
        layer.flags = options.flags.clone();
        if let Some(t) = &template {
            layer.metadata = t.metadata.clone();
            layer.compressed_digest = t.compressed_digest.clone();
            layer.compressed_size = t.compressed_size;
            layer.uncompressed_digest = t.uncompressed_digest.clone();
            layer.uncompressed_size = t.uncompressed_size;
            layer.compression = t.compression;
            layer.uids = t.uids.clone();
            layer.gids = t.gids.clone();
        }
        layer.set_incomplete(true);
        let index = state.push(layer);
        self.save(state, guard)?;
        crash::point(crash::PUT_AFTER_INCOMPLETE_RECORD);

        let outcome = self.fill_new_layer(
            state,
            index,
            parent.as_ref(),
            template.as_ref(),
            options,
            diff,
        );
        match outcome {
            Ok(size) => {
                state.layers[index].set_incomplete(false);
                // Template digests join the indexes now that the layer is complete.
                reindex_digests(state, index);
                self.save(state, guard)?;
                crash::point(crash::PUT_DONE);
                Ok((state.layers[index].clone(), size))
            }
            Err(e) => {
                // Go's deferred cleanup: delete what was made; the original error is the one
                // that matters. A failure here leaves the layer flagged for the next open.
                let _ = self.delete_locked(state, guard, std::slice::from_ref(&id));
                Err(e)
            }
        }
    }

    fn fill_new_layer(
        &self,
        state: &mut State,
        index: usize,
        parent: Option<&Layer>,
        template: Option<&Layer>,
        options: &LayerOptions,
        diff: Option<&mut (dyn Read + Send)>,
    ) -> Result<u64> {
        let layer = state.layers[index].clone();
        let id = layer.id.as_str();
        let mappings = mappings_of(&layer);
        let create_opts = CreateOpts {
            mount_label: layer.mount_label.clone(),
            storage_opt: options.storage_opt.clone(),
            id_mappings: (!mappings.is_identity()).then(|| mappings.clone()),
        };
        let parent_id = parent.map(|p| p.id.as_str());
        let parent_mappings = parent.map(mappings_of).unwrap_or_default();
        match template {
            Some(t) => self
                .driver
                .create_from_template(
                    id,
                    &t.id,
                    &mappings_of(t),
                    parent_id,
                    &parent_mappings,
                    &create_opts,
                    options.writeable,
                )
                .map_err(|e| Error::driver(id, "create from template", e))?,
            None if options.writeable => self
                .driver
                .create_read_write(id, parent_id, &create_opts)
                .map_err(|e| Error::driver(id, "create", e))?,
            None => self
                .driver
                .create(id, parent_id, &create_opts)
                .map_err(|e| Error::driver(id, "create", e))?,
        }
        crash::point(crash::PUT_AFTER_DRIVER_CREATE);
        // What the new layer's files are owned as now: the template's mappings for a copy
        // of it, else the parent's (Go compares these with the layer's own).
        let (made_with, from_files) = match template {
            Some(t) => (mappings_of(t), true),
            None => (parent_mappings, parent.is_some()),
        };
        if from_files && made_with != mappings && !self.driver.supports_shifting() {
            self.driver
                .update_layer_id_map(id, &made_with, &mappings, &layer.mount_label)
                .map_err(|e| Error::driver(id, "update ID mappings", e))?;
        }
        if let Some(t) = template {
            let dir = self.layers_dir_rw()?;
            if let Some(mut file) = dir.open_regular(&tar_split_name(&t.id))? {
                dir.write_atomic_from(&tar_split_name(id), 0o600, &mut file)?;
            }
        }
        match diff {
            Some(diff) => self.apply_diff_locked(state, index, diff),
            None => Ok(0),
        }
    }
}

impl LayerWriter<'_> {
    /// Creates a layer and, if `diff` is given, applies it (see [`LayerStore::put`]).
    pub fn put(
        &mut self,
        options: &LayerOptions,
        diff: Option<&mut (dyn Read + Send)>,
    ) -> Result<(Layer, u64)> {
        let store = self.store;
        self.run(|state, guard| store.put_locked(state, guard, options, diff))
    }

    /// Creates an empty layer (see [`LayerStore::create`]).
    pub fn create(&mut self, options: &LayerOptions) -> Result<Layer> {
        self.put(options, None).map(|(layer, _)| layer)
    }
}
