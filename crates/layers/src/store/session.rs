//! Sessions: `layers.lock` held across several calls, as guard values, so that a caller (the
//! Store) can hold it together with the image and container stores' locks in Go's order.
//!
//! [`LayerReader`] holds the shared lock, [`LayerWriter`] the exclusive one; both give a
//! [`LayerRecords`] view of fresh records. The per-call methods of [`LayerStore`] are each one
//! session.

use std::path::PathBuf;

use layerstore_driver::{Change, DiffArgs};
use layerstore_lockfile::{ReadGuard, WriteGuard};
use layerstore_model::{Digest, Layer};
use parking_lot::{RwLockReadGuard, RwLockWriteGuard};

use super::load::Refresh;
use super::{LayerStore, mappings_of, usable};
use crate::error::{Error, Result};
use crate::state::{State, by_digest};

/// How many times a reader retries after upgrading to the write lock to clean up (Go HEAD: 3).
const MAX_CLEANUP_ATTEMPTS: usize = 3;

/// The layer store under `layers.lock`'s shared lock ([`LayerStore::read_session`]): the
/// records stay as they are until it is dropped. Not re-entrant: while it lives, this thread
/// must not call other methods of the same store.
pub struct LayerReader<'a> {
    store: &'a LayerStore,
    _guard: ReadGuard<'a>,
    state: RwLockReadGuard<'a, State>,
}

/// The layer store under `layers.lock`'s exclusive lock ([`LayerStore::write_session`]).
/// Each change it makes is saved before the call returns; a failed call leaves the records
/// to be read again by the next session. Not re-entrant, like [`LayerReader`].
pub struct LayerWriter<'a> {
    pub(super) store: &'a LayerStore,
    pub(super) guard: WriteGuard<'a>,
    pub(super) state: RwLockWriteGuard<'a, State>,
}

/// The records a session holds, for lookups (and the driver calls that only read).
#[derive(Clone, Copy)]
pub struct LayerRecords<'s> {
    store: &'s LayerStore,
    state: &'s State,
}

impl std::fmt::Debug for LayerReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReader")
            .field("layers_dir", &self.store.layers_dir)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LayerWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerWriter")
            .field("layers_dir", &self.store.layers_dir)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LayerRecords<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerRecords")
            .field("layers_dir", &self.store.layers_dir)
            .field("layers", &self.state.by_id.len())
            .finish()
    }
}

impl LayerStore {
    /// A read session: the shared lock until it is dropped, on fresh records (reloaded if
    /// another process, or a hand edit, changed them).
    ///
    /// A reader that finds incomplete layers or a name given to two layers (left by another
    /// process) takes the exclusive lock once to clean up, as the per-call methods do, then
    /// reads.
    pub fn read_session(&self) -> Result<LayerReader<'_>> {
        for _ in 0..MAX_CLEANUP_ATTEMPTS {
            let guard = self.layers_lock.rlock()?;
            let current = guard.get_last_write()?;
            if !self.is_stale(&self.state.read(), &current)? {
                return Ok(LayerReader {
                    store: self,
                    _guard: guard,
                    state: self.state.read(),
                });
            }
            let mut state = self.state.write();
            if let Refresh::NeedWriteLock = self.refresh(&mut state, current, None, false)? {
                drop(state);
                drop(guard);
                // Upgrade: take the write lock, let refresh clean up, then read again.
                drop(self.write_session()?);
                continue;
            }
            return Ok(LayerReader {
                store: self,
                _guard: guard,
                state: RwLockWriteGuard::downgrade(state),
            });
        }
        Err(Error::io(
            "clean up incomplete layers in",
            &self.layers_json,
            std::io::Error::other("the records kept changing"),
        ))
    }

    /// A write session: the exclusive lock until it is dropped, on fresh records (incomplete
    /// layers left by a crash are deleted first, as Go's load does). A read-only store is
    /// [`Error::ReadOnly`].
    pub fn write_session(&self) -> Result<LayerWriter<'_>> {
        if self.read_only {
            return Err(Error::ReadOnly(self.layers_dir.clone()));
        }
        let guard = self.layers_lock.lock()?;
        let current = guard.get_last_write()?;
        let mut state = self.state.write();
        if self.is_stale(&state, &current)? {
            self.refresh(&mut state, current, Some(&guard), false)?;
        }
        Ok(LayerWriter {
            store: self,
            guard,
            state,
        })
    }

    /// Runs `f` on fresh records under the shared lock (one read session).
    pub(super) fn read<T>(&self, f: impl FnOnce(&State) -> Result<T>) -> Result<T> {
        let session = self.read_session()?;
        f(&session.state)
    }

    /// Runs `f` under the exclusive lock on fresh records (one write session). When `f` fails,
    /// the in-memory records are marked stale so the next call reloads what is on disk.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&mut State, &WriteGuard<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write_session()?.run(f)
    }
}

impl<'a> LayerReader<'a> {
    /// The records, as they were when the session began.
    pub fn records(&self) -> LayerRecords<'_> {
        LayerRecords {
            store: self.store,
            state: &self.state,
        }
    }

    /// The store the session belongs to.
    pub fn store(&self) -> &'a LayerStore {
        self.store
    }
}

impl<'a> LayerWriter<'a> {
    /// The records, with every change this session made.
    pub fn records(&self) -> LayerRecords<'_> {
        LayerRecords {
            store: self.store,
            state: &self.state,
        }
    }

    /// The store the session belongs to.
    pub fn store(&self) -> &'a LayerStore {
        self.store
    }

    /// Runs `f` on the records; when it fails, they are marked stale so the next session
    /// reads what is on disk.
    pub(super) fn run<T>(
        &mut self,
        f: impl FnOnce(&mut State, &WriteGuard<'_>) -> Result<T>,
    ) -> Result<T> {
        let result = f(&mut self.state, &self.guard);
        if result.is_err() {
            self.state.layers_seen = None;
        }
        result
    }
}

impl<'s> LayerRecords<'s> {
    /// Every layer, in creation order.
    pub fn layers(&self) -> impl Iterator<Item = &'s Layer> + 's {
        self.state.live()
    }

    /// How many layers there are.
    pub fn len(&self) -> usize {
        self.state.by_id.len()
    }

    /// Whether there is no layer.
    pub fn is_empty(&self) -> bool {
        self.state.by_id.is_empty()
    }

    /// The layer with this ID, else this name, else whose ID alone starts with `key` (Go's
    /// lookup order); [`Error::LayerUnknown`] or [`Error::AmbiguousId`] otherwise.
    pub fn get(&self, key: &str) -> Result<&'s Layer> {
        self.state.resolve(key).map(|i| &self.state.layers[i])
    }

    /// The layer with exactly this ID.
    pub fn by_id(&self, id: &str) -> Option<&'s Layer> {
        self.state.by_id.get(id).map(|&i| &self.state.layers[i])
    }

    /// Whether a layer has this ID, name or unique ID prefix.
    pub fn exists(&self, key: &str) -> bool {
        self.state.resolve(key).is_ok()
    }

    /// The layers whose diff, as received, had this digest (in creation order).
    pub fn by_compressed_digest(&self, digest: &Digest) -> Vec<Layer> {
        by_digest(self.state, &self.state.by_compressed, digest)
    }

    /// The layers whose uncompressed diff had this digest (in creation order).
    pub fn by_uncompressed_digest(&self, digest: &Digest) -> Vec<Layer> {
        by_digest(self.state, &self.state.by_uncompressed, digest)
    }

    /// The store the records belong to.
    pub fn store(&self) -> &'s LayerStore {
        self.store
    }

    /// Layer `to` and the layer to compare it with: `from` when given (it must exist), else
    /// its parent when this store has it.
    fn pair(&self, from: Option<&str>, to: &str) -> Result<(&'s Layer, Option<&'s Layer>)> {
        let layer = usable(self.get(to)?)?;
        let from_layer = match from {
            Some(f) if !f.is_empty() => Some(self.get(f)?),
            _ => layer.parent().and_then(|p| self.by_id(p)),
        };
        if let Some(from) = from_layer {
            usable(from)?;
        }
        Ok((layer, from_layer))
    }

    /// Runs `f` with the driver's arguments for comparing layer `to` with `from` (default:
    /// its parent).
    fn with_pair<T>(
        &self,
        from: Option<&str>,
        to: &str,
        f: impl FnOnce(&DiffArgs<'_>) -> layerstore_driver::Result<T>,
        op: &'static str,
    ) -> Result<T> {
        let (layer, from_layer) = self.pair(from, to)?;
        let mappings = mappings_of(layer);
        let from_mappings = from_layer.map(mappings_of).unwrap_or_default();
        // A parent this store lacks (one of an additional image store's layers) is still the
        // layer to compare with, as in Go: the driver finds it in the store it belongs to.
        let parent = match from_layer {
            Some(f) => Some(f.id.as_str()),
            None if from.is_none_or(str::is_empty) => layer.parent(),
            None => None,
        };
        let args = DiffArgs {
            id: &layer.id,
            id_mappings: &mappings,
            parent,
            parent_mappings: &from_mappings,
            mount_label: &layer.mount_label,
        };
        f(&args).map_err(|e| Error::driver(&layer.id, op, e))
    }

    /// The paths layer `to` adds, modifies or deletes relative to `from` (default: its
    /// parent).
    pub fn changes(&self, from: Option<&str>, to: &str) -> Result<Vec<Change>> {
        self.with_pair(from, to, |args| self.store.driver.changes(args), "changes")
    }

    /// The size of what layer `to` adds or modifies relative to `from` (default: its parent).
    pub fn diff_size(&self, from: Option<&str>, to: &str) -> Result<u64> {
        self.with_pair(
            from,
            to,
            |args| self.store.driver.diff_size(args),
            "diff size",
        )
    }

    /// How many times the layer is mounted (by any process using this run root).
    pub fn mounted(&self, key: &str) -> Result<u32> {
        Ok(self.get(key)?.mount_count)
    }

    /// The layer's mount point while it is mounted.
    pub fn mount_point(&self, key: &str) -> Result<Option<PathBuf>> {
        let layer = self.get(key)?;
        Ok(layer.mount_point.clone().filter(|_| layer.mount_count > 0))
    }
}
