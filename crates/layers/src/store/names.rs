//! Names, metadata and flags of a layer.

use serde_json::Value;

use crate::error::Result;

use super::LayerStore;

impl LayerStore {
    /// Replaces the layer's names. A name another layer has is taken from it (as Go does).
    pub fn set_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            state.set_names(index, names);
            self.save(state, guard)?;
            Ok(state.layers[index].names.clone())
        })
    }

    /// Adds names to the layer, taking them from other layers as needed.
    pub fn add_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            let mut all = state.layers[index].names.clone();
            all.extend(names.iter().cloned());
            state.set_names(index, &all);
            self.save(state, guard)?;
            Ok(state.layers[index].names.clone())
        })
    }

    /// Removes names from the layer (names it does not have are ignored).
    pub fn remove_names(&self, key: &str, names: &[String]) -> Result<Vec<String>> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            let kept: Vec<String> = state.layers[index]
                .names
                .iter()
                .filter(|n| !names.contains(n))
                .cloned()
                .collect();
            state.set_names(index, &kept);
            self.save(state, guard)?;
            Ok(state.layers[index].names.clone())
        })
    }

    /// The layer's free-text metadata.
    pub fn metadata(&self, key: &str) -> Result<String> {
        self.read(|s| s.resolve(key).map(|i| s.layers[i].metadata.clone()))
    }

    /// Replaces the layer's metadata.
    pub fn set_metadata(&self, key: &str, metadata: &str) -> Result<()> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            state.layers[index].metadata = metadata.to_string();
            self.save(state, guard)
        })
    }

    /// Sets a flag on the layer.
    pub fn set_flag(&self, key: &str, flag: &str, value: Value) -> Result<()> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            state.layers[index].flags.insert(flag.to_string(), value);
            self.save(state, guard)
        })
    }

    /// Removes a flag from the layer.
    pub fn clear_flag(&self, key: &str, flag: &str) -> Result<()> {
        self.write(|state, guard| {
            let index = state.resolve(key)?;
            state.layers[index].flags.remove(flag);
            self.save(state, guard)
        })
    }
}
