//! The in-memory records and their indexes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use layerstore_lockfile::LastWrite;
use layerstore_model::{Digest, Layer, MountPointRecord};
use layerstore_truncindex::LazyTruncIndex;

use crate::error::{Error, Result};
use crate::records::Unreadable;

/// The in-memory copy of the records, with indexes. Deleted records are tombstones (empty ID)
/// until the next save compacts them, so a batch of deletions is not quadratic.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The records in file (creation) order; a tombstone has an empty ID.
    pub(crate) layers: Vec<Layer>,
    /// How many tombstones `layers` holds (compacted at the next save).
    pub(crate) tombstones: usize,
    /// ID → index in `layers`.
    pub(crate) by_id: HashMap<String, usize>,
    /// Name → index in `layers`.
    pub(crate) by_name: HashMap<String, usize>,
    /// Every ID, for unique-prefix lookups (built at the first one).
    pub(crate) ids: LazyTruncIndex,
    /// Compressed digest → IDs in creation order.
    pub(crate) by_compressed: HashMap<Digest, Vec<String>>,
    /// Uncompressed digest → IDs in creation order.
    pub(crate) by_uncompressed: HashMap<Digest, Vec<String>>,
    /// Mount point → index in `layers`, for mounted layers.
    pub(crate) by_mount: HashMap<PathBuf, usize>,
    /// The layers.lock token of the data in memory; `None`: nothing loaded (or stale).
    pub(crate) layers_seen: Option<LastWrite>,
    /// layers.json's mtime when the records were read or written (detects hand edits).
    pub(crate) layers_mtime: Option<SystemTime>,
    /// The mountpoints.lock token of the mount counts in memory.
    pub(crate) mounts_seen: Option<LastWrite>,
    /// What mountpoints.json held at `mounts_seen` (read or written then): a save that would
    /// write the same bytes under the same token leaves the file alone.
    pub(crate) mounts_bytes: Option<Vec<u8>>,
    /// Records of layers.json that are not usable layers, kept verbatim and written back.
    pub(crate) unreadable: Vec<Unreadable>,
    /// Records of mountpoints.json that were not applied: their path is not where the driver
    /// mounts that layer, or they do not decode. Dropped at the next save of the mounts.
    pub(crate) untrusted_mounts: Vec<MountPointRecord>,
}

impl State {
    /// The records that are not tombstones.
    pub(crate) fn live(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter().filter(|l| !l.id.is_empty())
    }

    /// Rebuilds every index from `layers` (dropping tombstones). Mount points are kept.
    pub(crate) fn rebuild(&mut self) {
        if self.tombstones > 0 {
            self.layers.retain(|l| !l.id.is_empty());
            self.tombstones = 0;
        }
        self.by_id = HashMap::with_capacity(self.layers.len());
        self.by_name = HashMap::new();
        self.by_compressed = HashMap::new();
        self.by_uncompressed = HashMap::new();
        self.by_mount = HashMap::new();
        for (index, layer) in self.layers.iter().enumerate() {
            self.by_id.insert(layer.id.clone(), index);
            for name in &layer.names {
                self.by_name.insert(name.clone(), index);
            }
            if let Some(d) = &layer.compressed_digest {
                self.by_compressed
                    .entry(d.clone())
                    .or_default()
                    .push(layer.id.clone());
            }
            if let Some(d) = &layer.uncompressed_digest {
                self.by_uncompressed
                    .entry(d.clone())
                    .or_default()
                    .push(layer.id.clone());
            }
            if let Some(path) = &layer.mount_point
                && layer.mount_count > 0
            {
                self.by_mount.insert(path.clone(), index);
            }
        }
        self.ids.clear();
    }

    /// Whether a record (usable or not) has this ID.
    pub(crate) fn id_taken(&self, id: &str) -> bool {
        self.by_id.contains_key(id) || self.unreadable.iter().any(|u| u.id.as_deref() == Some(id))
    }

    /// Exact ID, then exact name, then unique ID prefix (Go's lookup order).
    pub(crate) fn resolve(&self, key: &str) -> Result<usize> {
        if let Some(&i) = self.by_id.get(key) {
            return Ok(i);
        }
        if let Some(&i) = self.by_name.get(key) {
            return Ok(i);
        }
        if key.is_empty() {
            return Err(Error::LayerUnknown(key.to_string()));
        }
        match self
            .ids
            .get(key, || self.layers.iter().map(|l| l.id.as_str()))
        {
            Ok(id) => self
                .by_id
                .get(id)
                .copied()
                .ok_or_else(|| Error::LayerUnknown(key.to_string())),
            Err(layerstore_truncindex::Error::AmbiguousPrefix { .. }) => {
                Err(Error::AmbiguousId(key.to_string()))
            }
            Err(_) => Err(Error::LayerUnknown(key.to_string())),
        }
    }

    pub(crate) fn push(&mut self, layer: Layer) -> usize {
        let index = self.layers.len();
        self.by_id.insert(layer.id.clone(), index);
        for name in &layer.names {
            self.by_name.insert(name.clone(), index);
        }
        // IDs with a space cannot be prefixes (as in Go); exact lookups still find them.
        self.ids.add(&layer.id);
        self.layers.push(layer);
        index
    }

    /// Turns the record at `index` into a tombstone and drops it from every index.
    pub(crate) fn remove(&mut self, index: usize) {
        let layer = std::mem::take(&mut self.layers[index]);
        self.by_id.remove(&layer.id);
        for name in &layer.names {
            if self.by_name.get(name) == Some(&index) {
                self.by_name.remove(name);
            }
        }
        self.ids.delete(&layer.id);
        unindex_digest(&mut self.by_compressed, &layer.compressed_digest, &layer.id);
        unindex_digest(
            &mut self.by_uncompressed,
            &layer.uncompressed_digest,
            &layer.id,
        );
        if let Some(path) = &layer.mount_point
            && self.by_mount.get(path) == Some(&index)
        {
            self.by_mount.remove(path);
        }
        self.tombstones += 1;
    }

    /// Removes `name` from whichever layer holds it.
    pub(crate) fn release_name(&mut self, name: &str) {
        if let Some(index) = self.by_name.remove(name) {
            self.layers[index].names.retain(|n| n != name);
        }
    }

    /// Replaces the names of the layer at `index`; a name another layer has moves here.
    pub(crate) fn set_names(&mut self, index: usize, names: &[String]) {
        let old = std::mem::take(&mut self.layers[index].names);
        for name in &old {
            self.by_name.remove(name);
        }
        let mut new: Vec<String> = Vec::with_capacity(names.len());
        for name in names {
            if new.contains(name) {
                continue;
            }
            self.release_name(name);
            self.by_name.insert(name.clone(), index);
            new.push(name.clone());
        }
        self.layers[index].names = new;
    }

    /// Resets mount state and applies `records`. Entries naming unknown layers, or counting
    /// nothing, are dropped (as in Go); entries whose path `trusted` refuses for the layer (it
    /// answers for the layer's ID and the recorded path) are dropped too and kept in
    /// [`State::untrusted_mounts`].
    pub(crate) fn apply_mounts(
        &mut self,
        records: Vec<MountPointRecord>,
        trusted: impl Fn(&str, &Path) -> bool,
    ) {
        for layer in &mut self.layers {
            layer.mount_point = None;
            layer.mount_count = 0;
        }
        self.by_mount.clear();
        self.untrusted_mounts.clear();
        for record in records {
            if record.path.is_empty() || record.count == 0 {
                continue;
            }
            let Ok(index) = self.resolve(&record.id) else {
                continue;
            };
            let path = PathBuf::from(&record.path);
            if !trusted(&self.layers[index].id, &path) {
                self.untrusted_mounts.push(record);
                continue;
            }
            let layer = &mut self.layers[index];
            layer.mount_point = Some(path.clone());
            layer.mount_count = record.count;
            self.by_mount.insert(path, index);
        }
    }

    pub(crate) fn mount_records(&self) -> Vec<MountPointRecord> {
        self.live()
            .filter_map(|l| match &l.mount_point {
                Some(path) if l.mount_count > 0 => Some(MountPointRecord {
                    id: l.id.clone(),
                    path: path.to_string_lossy().into_owned(),
                    count: l.mount_count,
                }),
                _ => None,
            })
            .collect()
    }
}

pub(crate) fn unindex_digest(
    index: &mut HashMap<Digest, Vec<String>>,
    digest: &Option<Digest>,
    id: &str,
) {
    if let Some(d) = digest
        && let Some(ids) = index.get_mut(d)
    {
        ids.retain(|x| x != id);
        if ids.is_empty() {
            index.remove(d);
        }
    }
}

pub(crate) fn by_digest(
    state: &State,
    index: &HashMap<Digest, Vec<String>>,
    digest: &Digest,
) -> Vec<Layer> {
    index
        .get(digest)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| state.by_id.get(id))
                .map(|&i| state.layers[i].clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Adds the record's digests to the indexes (complete records only, as Go indexes them).
pub(crate) fn reindex_digests(state: &mut State, index: usize) {
    let layer = &state.layers[index];
    let id = layer.id.clone();
    for (digest, map) in [
        (layer.compressed_digest.clone(), &mut state.by_compressed),
        (
            layer.uncompressed_digest.clone(),
            &mut state.by_uncompressed,
        ),
    ] {
        if let Some(d) = digest {
            let ids = map.entry(d).or_default();
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn state_with(ids: &[&str]) -> State {
        let mut state = State::default();
        for id in ids {
            state.push(Layer::new(*id));
        }
        state
    }

    /// Every name belongs to exactly one live layer and the index agrees.
    fn names_consistent(state: &State) -> bool {
        let mut seen = HashSet::new();
        for (index, layer) in state.layers.iter().enumerate() {
            if layer.id.is_empty() {
                continue;
            }
            for name in &layer.names {
                if !seen.insert(name.clone()) || state.by_name.get(name) != Some(&index) {
                    return false;
                }
            }
        }
        seen.len() == state.by_name.len()
    }

    #[test]
    fn lookup_order_is_id_then_name_then_prefix() {
        let mut state = state_with(&["abc123", "abd456", "name-is-id"]);
        state.set_names(0, &["abd456".to_string()]);
        // An exact ID wins over a name that equals it.
        assert_eq!(state.resolve("abd456").unwrap(), 1);
        assert_eq!(state.resolve("abc").unwrap(), 0);
        assert!(matches!(state.resolve("ab"), Err(Error::AmbiguousId(_))));
        assert!(matches!(state.resolve(""), Err(Error::LayerUnknown(_))));
        assert!(matches!(state.resolve("zz"), Err(Error::LayerUnknown(_))));
    }

    #[test]
    fn tombstones_vanish_from_indexes_and_compact_away() {
        let mut state = state_with(&["a", "b", "c"]);
        state.set_names(1, &["bee".to_string()]);
        state.remove(1);
        assert!(state.resolve("b").is_err());
        assert!(state.resolve("bee").is_err());
        assert_eq!(state.live().count(), 2);
        state.rebuild();
        assert_eq!(state.layers.len(), 2);
        assert_eq!(state.resolve("c").unwrap(), 1);
    }

    #[test]
    fn mount_records_skip_unknown_layers_and_zero_counts() {
        let mut state = state_with(&["a", "b"]);
        state.apply_mounts(
            vec![
                MountPointRecord {
                    id: "a".into(),
                    path: "/m/a".into(),
                    count: 2,
                },
                MountPointRecord {
                    id: "gone".into(),
                    path: "/m/g".into(),
                    count: 1,
                },
                MountPointRecord {
                    id: "b".into(),
                    path: "/m/b".into(),
                    count: 0,
                },
                MountPointRecord {
                    id: "b".into(),
                    path: "/".into(),
                    count: 1,
                },
            ],
            |id, path| path == Path::new("/m").join(id),
        );
        assert_eq!(state.layers[0].mount_count, 2);
        assert_eq!(state.layers[1].mount_count, 0);
        assert_eq!(state.by_mount.len(), 1);
        assert_eq!(state.mount_records().len(), 1);
        assert_eq!(state.untrusted_mounts.len(), 1);
        assert_eq!(state.untrusted_mounts[0].path, "/");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn names_stay_unique_through_any_renames(
            ops in proptest::collection::vec((0usize..4, proptest::collection::vec(0u8..6, 0..4), any::<bool>()), 0..40)
        ) {
            let mut state = state_with(&["l0", "l1", "l2", "l3"]);
            for (layer, names, delete) in ops {
                if state.layers[layer].id.is_empty() {
                    continue;
                }
                if delete && layer == 3 {
                    state.remove(layer);
                    continue;
                }
                let names: Vec<String> = names.iter().map(|n| format!("n{n}")).collect();
                state.set_names(layer, &names);
                let mut unique = Vec::new();
                for n in names { if !unique.contains(&n) { unique.push(n); } }
                prop_assert_eq!(&state.layers[layer].names, &unique);
                prop_assert!(names_consistent(&state));
            }
            state.rebuild();
            prop_assert!(names_consistent(&state));
        }
    }
}
