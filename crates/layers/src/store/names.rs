//! Names, metadata and flags of a layer.

use serde_json::Value;

use crate::error::Result;
use crate::state::State;

use super::{LayerStore, LayerWriter};

impl LayerStore {
    /// Replaces the layer's names. A name another layer has is taken from it (as Go does).
    pub fn set_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.write_session()?.set_names(key, names)
    }

    /// Adds names to the layer, taking them from other layers as needed.
    pub fn add_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.write_session()?.add_names(key, names)
    }

    /// Removes names from the layer (names it does not have are ignored).
    pub fn remove_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.write_session()?.remove_names(key, names)
    }

    /// The layer's free-text metadata.
    pub fn metadata(&self, key: &str) -> Result<String> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].metadata.clone()))
    }

    /// Replaces the layer's metadata.
    pub fn set_metadata(&self, key: &str, metadata: &str) -> Result<()> {
        self.write_session()?.set_metadata(key, metadata)
    }

    /// Sets a flag on the layer.
    pub fn set_flag(&self, key: &str, flag: &str, value: Value) -> Result<()> {
        self.write_session()?.set_flag(key, flag, value)
    }

    /// Removes a flag from the layer.
    pub fn clear_flag(&self, key: &str, flag: &str) -> Result<()> {
        self.write_session()?.clear_flag(key, flag)
    }
}

impl LayerWriter<'_> {
    /// Replaces the layer's names (see [`LayerStore::set_names`]); returns them.
    pub fn set_names(&mut self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.rename(key, |_| names.to_vec())
    }

    /// Adds names to the layer (see [`LayerStore::add_names`]); returns its names.
    pub fn add_names(&mut self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.rename(key, |old| old.iter().chain(names).cloned().collect())
    }

    /// Removes names from the layer (see [`LayerStore::remove_names`]); returns its names.
    pub fn remove_names(&mut self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.rename(key, |old| {
            old.iter().filter(|n| !names.contains(n)).cloned().collect()
        })
    }

    /// Replaces the layer's metadata.
    pub fn set_metadata(&mut self, key: &str, metadata: &str) -> Result<()> {
        self.change(key, |layer| metadata.clone_into(&mut layer.metadata))
    }

    /// Sets a flag on the layer.
    pub fn set_flag(&mut self, key: &str, flag: &str, value: Value) -> Result<()> {
        self.change(key, |layer| {
            layer.flags.insert(flag.to_string(), value);
        })
    }

    /// Removes a flag from the layer.
    pub fn clear_flag(&mut self, key: &str, flag: &str) -> Result<()> {
        self.change(key, |layer| {
            layer.flags.remove(flag);
        })
    }

    /// Sets flag `flag` to `value` on each layer of `keys` (removes it with `None`), saving
    /// `layers.json` once, and only if a record changed. Every key must name a layer.
    pub fn set_flags(&mut self, keys: &[&str], flag: &str, value: Option<&Value>) -> Result<()> {
        let store = self.store;
        self.run(|state, guard| {
            let indexes = keys
                .iter()
                .map(|key| state.resolve(key))
                .collect::<Result<Vec<usize>>>()?;
            let mut changed = false;
            for index in indexes {
                let flags = &mut state.layers[index].flags;
                changed |= match value {
                    Some(value) => {
                        flags.insert(flag.to_string(), value.clone()).as_ref() != Some(value)
                    }
                    None => flags.remove(flag).is_some(),
                };
            }
            if changed {
                store.save(state, guard)?;
            }
            Ok(())
        })
    }

    /// Gives the layer found by `key` the names `new` computes from its old ones, taking them
    /// from other layers; saves and returns them.
    fn rename(
        &mut self,
        key: &str,
        new: impl FnOnce(&[String]) -> Vec<String>,
    ) -> Result<Vec<String>> {
        let store = self.store;
        self.run(|state, guard| {
            let index = state.resolve(key)?;
            let names = new(&state.layers[index].names);
            state.set_names(index, &names);
            store.save(state, guard)?;
            Ok(state.layers[index].names.clone())
        })
    }

    /// Applies `change` to the record of the layer found by `key` (not its names) and saves.
    fn change(
        &mut self,
        key: &str,
        change: impl FnOnce(&mut layerstore_model::Layer),
    ) -> Result<()> {
        let store = self.store;
        self.run(|state: &mut State, guard| {
            let index = state.resolve(key)?;
            change(&mut state.layers[index]);
            store.save(state, guard)
        })
    }
}
