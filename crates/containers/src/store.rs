//! [`ContainerStore`] and its sessions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use layerstore_model::{
    CONTAINER_USERDATA_DIR, CONTAINERS_JSON, Container, IDMap, MOUNT_LABEL_FLAG, MOUNT_OPTS_FLAG,
    PROCESS_LABEL_FLAG, Timestamp, VOLATILE_FLAG, generate_id_unused, validate_id,
};
use layerstore_recordstore::{
    BadRecord, Dir, Layout, NamesOp, ReadSession, RecordStore, Records, Session, WriteSession,
    canonical_digest,
};
use serde_json::Value;

use crate::error::{Error, Result};

/// The lock file of a container store, in `<graphroot>/<driver>-containers/`.
pub const CONTAINERS_LOCK: &str = "containers.lock";
/// The file newer Go (v1.45+) keeps volatile containers in, beside `containers.json`. Its
/// records are read and written back there; new containers never go there (v1.43 keeps
/// volatile containers in `containers.json`, flagged).
pub const VOLATILE_CONTAINERS_JSON: &str = "volatile-containers.json";

/// What a new container is made of (Go's `Create` arguments and container options).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewContainer {
    /// Its ID; `None` draws a random unused one.
    pub id: Option<String>,
    /// Its names, held by no other container (duplicates are dropped).
    pub names: Vec<String>,
    /// The image it is made from; empty for none.
    pub image_id: String,
    /// Its read-write layer, which the caller has made.
    pub layer_id: String,
    /// Free text.
    pub metadata: String,
    /// The UID mapping asked for (recorded as given; ranges must not overlap).
    pub uid_map: Vec<IDMap>,
    /// The GID mapping asked for.
    pub gid_map: Vec<IDMap>,
    /// Flags. Without `MountLabel` and `ProcessLabel`, both are recorded empty (SELinux off),
    /// as Go's `CreateContainer` does; one without the other is an error.
    pub flags: BTreeMap<String, Value>,
    /// Mount options, recorded as the `MountOpts` flag when given.
    pub mount_opts: Option<Vec<String>>,
    /// A volatile container: the `Volatile` flag is recorded `true`.
    pub volatile: bool,
}

/// The container store of one driver: `<graphroot>/<driver>-containers/containers.json` (and
/// `volatile-containers.json` when newer Go wrote one) under `containers.lock`, each
/// container's items and `userdata/` in `<graphroot>/<driver>-containers/<id>/`, and its run
/// directory `<runroot>/<driver>-containers/<id>/userdata`. See the
/// [crate documentation](crate).
#[derive(Debug)]
pub struct ContainerStore {
    records: RecordStore<Container>,
    run: Dir,
}

/// A container store session: [`ContainerReader`] (shared lock) or [`ContainerWriter`]
/// (exclusive lock). Both answer lookups and make container directories; the writer also
/// changes containers.
#[derive(Debug)]
pub struct ContainerSession<'a, S> {
    session: S,
    run: &'a Dir,
}

/// The container store under the shared lock ([`ContainerStore::read`]).
pub type ContainerReader<'a> = ContainerSession<'a, ReadSession<'a, Container>>;
/// The container store under the exclusive lock ([`ContainerStore::write`]).
pub type ContainerWriter<'a> = ContainerSession<'a, WriteSession<'a, Container>>;

impl ContainerStore {
    /// Opens the container store: records in `graph_dir` (`<graphroot>/<driver>-containers`),
    /// run directories in `run_dir` (`<runroot>/<driver>-containers`); both are created (0700)
    /// if missing, with `containers.lock`, as Go's store initialisation does.
    pub fn open(
        graph_dir: impl Into<PathBuf>,
        run_dir: impl Into<PathBuf>,
    ) -> Result<ContainerStore> {
        let layout = Layout {
            extra_record_files: vec![VOLATILE_CONTAINERS_JSON.to_owned()],
            ..Layout::new(graph_dir, CONTAINERS_LOCK, CONTAINERS_JSON)
        };
        Ok(ContainerStore {
            records: RecordStore::open(layout)?,
            run: Dir::create(run_dir)?,
        })
    }

    /// `<graphroot>/<driver>-containers`.
    pub fn dir(&self) -> &Path {
        self.records.dir_path()
    }

    /// `<runroot>/<driver>-containers`.
    pub fn run_dir(&self) -> &Path {
        self.run.path()
    }

    /// The store's `containers.json`.
    pub fn containers_json(&self) -> &Path {
        self.records.record_path()
    }

    /// A read session: the shared lock until it is dropped, on fresh records.
    pub fn read(&self) -> Result<ContainerReader<'_>> {
        Ok(ContainerSession {
            session: self.records.read()?,
            run: &self.run,
        })
    }

    /// A write session: the exclusive lock until it is dropped. Each change it makes is
    /// saved before the call returns.
    pub fn write(&self) -> Result<ContainerWriter<'_>> {
        Ok(ContainerSession {
            session: self.records.write()?,
            run: &self.run,
        })
    }

    /// Every container, in creation order (`containers.json`'s, then
    /// `volatile-containers.json`'s).
    pub fn containers(&self) -> Result<Vec<Container>> {
        Ok(self.read()?.containers().cloned().collect())
    }

    /// The container with this ID, name, layer ID or unique ID prefix.
    pub fn get(&self, key: &str) -> Result<Container> {
        self.read()?.get(key).cloned()
    }

    /// Whether a container has this ID, name, layer ID or unique ID prefix.
    pub fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.read()?.exists(key))
    }

    /// The full ID of the container with this ID, name, layer ID or unique ID prefix.
    pub fn lookup(&self, key: &str) -> Result<String> {
        Ok(self.read()?.get(key)?.id.clone())
    }

    /// Sets `containers.json` aside when it does not load as a whole (truncated, garbage): its bytes
    /// kept as `containers.json.damaged-<n>`, the file replaced by an empty array, the containers lost
    /// listed by their directories (see
    /// [`RecordStore::set_aside_damaged`](layerstore_recordstore::RecordStore::set_aside_damaged)).
    /// Nothing when it loads.
    pub fn set_aside_damaged(&self) -> Result<Vec<layerstore_recordstore::SetAsideFile>> {
        Ok(self.records.set_aside_damaged()?)
    }

    /// The records of the container files that cannot be used, for `check`.
    pub fn bad_records(&self) -> Result<Vec<BadRecord>> {
        Ok(self.read()?.bad_records().cloned().collect())
    }

    /// Creates a container record (see [`ContainerWriter::create`]).
    pub fn create(&self, new: NewContainer) -> Result<Container> {
        self.write()?.create(new).cloned()
    }

    /// A container's metadata.
    pub fn metadata(&self, key: &str) -> Result<String> {
        Ok(self.read()?.get(key)?.metadata.clone())
    }

    /// Replaces a container's metadata.
    pub fn set_metadata(&self, key: &str, metadata: &str) -> Result<()> {
        self.write()?.set_metadata(key, metadata)
    }

    /// Changes a container's names (a name another container holds moves here); returns the
    /// new names.
    pub fn update_names(&self, key: &str, names: &[String], op: NamesOp) -> Result<Vec<String>> {
        self.write()?.update_names(key, names, op)
    }

    /// Sets flag `flag` of a container to `value`.
    pub fn set_flag(&self, key: &str, flag: &str, value: Value) -> Result<()> {
        self.write()?.set_flag(key, flag, value)
    }

    /// Removes flag `flag` of a container.
    pub fn clear_flag(&self, key: &str, flag: &str) -> Result<()> {
        self.write()?.clear_flag(key, flag)
    }

    /// Stores big-data item `item` of a container (see [`ContainerWriter::set_big_data`]).
    pub fn set_big_data(&self, key: &str, item: &str, data: &[u8]) -> Result<()> {
        empty_key(item, "can't set empty name for container big data item")?;
        self.write()?.set_big_data(key, item, data)
    }

    /// The bytes of big-data item `item` of a container.
    pub fn big_data(&self, key: &str, item: &str) -> Result<Vec<u8>> {
        self.read()?.big_data(key, item)
    }

    /// The size of big-data item `item` of a container.
    pub fn big_data_size(&self, key: &str, item: &str) -> Result<i64> {
        self.read()?.big_data_size(key, item)
    }

    /// The digest of big-data item `item` of a container.
    pub fn big_data_digest(&self, key: &str, item: &str) -> Result<String> {
        self.read()?.big_data_digest(key, item)
    }

    /// The keys of a container's big-data items, in the order they were first set.
    pub fn big_data_names(&self, key: &str) -> Result<Vec<String>> {
        Ok(self.read()?.get(key)?.big_data_names.clone())
    }

    /// `<graphroot>/<driver>-containers/<id>/userdata`, created if missing.
    pub fn directory(&self, key: &str) -> Result<PathBuf> {
        self.read()?.directory(key)
    }

    /// `<runroot>/<driver>-containers/<id>/userdata`, created if missing.
    pub fn run_directory(&self, key: &str) -> Result<PathBuf> {
        self.read()?.run_directory(key)
    }

    /// Deletes a container's record (saved first), then its directories in both roots.
    pub fn delete(&self, key: &str) -> Result<Container> {
        self.write()?.delete(key)
    }

    /// Deletes every container; returns them.
    pub fn wipe(&self) -> Result<Vec<Container>> {
        self.write()?.wipe()
    }
}

/// Go refuses an empty big-data key before anything else, in words that say what was asked.
fn empty_key(item: &str, action: &'static str) -> Result<()> {
    if item.is_empty() {
        return Err(Error::EmptyKey { action });
    }
    Ok(())
}

/// Checks that no range of `mappings` overlaps an earlier one, on the container side or the
/// host side (Go's `hasOverlappingRanges`): the overlapping ones are named, each once, in the
/// order given. Empty ranges overlap nothing.
pub fn check_id_mappings(mappings: &[IDMap]) -> Result<()> {
    let range = |start: u32, size: u32| (u64::from(start), u64::from(start) + u64::from(size));
    let overlaps = |seen: &[(u64, u64)], (start, end): (u64, u64)| {
        start < end
            && seen
                .iter()
                .any(|&(s, e)| s < e && start.max(s) < end.min(e))
    };
    let mut container_side = Vec::with_capacity(mappings.len());
    let mut host_side = Vec::with_capacity(mappings.len());
    let mut conflicts = Vec::new();
    for map in mappings {
        let inside = range(map.container_id, map.size);
        let outside = range(map.host_id, map.size);
        if overlaps(&container_side, inside) || overlaps(&host_side, outside) {
            conflicts.push(format!("{}:{}:{}", map.container_id, map.host_id, map.size));
        }
        container_side.push(inside);
        host_side.push(outside);
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(Error::OverlappingMappings { conflicts })
    }
}

impl<S: Session<Container>> ContainerSession<'_, S> {
    /// Every usable container, in creation order.
    pub fn containers(&self) -> impl Iterator<Item = &Container> {
        self.session.iter()
    }

    /// The records with their indexes, for lookups this type does not name.
    pub fn records(&self) -> &Records<Container> {
        &self.session
    }

    /// The records of the container files that cannot be used, for `check`.
    pub fn bad_records(&self) -> impl Iterator<Item = &BadRecord> {
        self.session.bad()
    }

    /// The container with this ID, else this name, else whose layer this is, else whose ID
    /// alone starts with `key` (Go's order).
    pub fn get(&self, key: &str) -> Result<&Container> {
        let records = &*self.session;
        records
            .by_id(key)
            .or_else(|| records.by_name(key))
            .or_else(|| records.by_key(key).next())
            .or_else(|| records.by_prefix(key))
            .ok_or_else(|| Error::ContainerUnknown {
                key: key.to_owned(),
            })
    }

    /// Whether a container has this ID, name, layer ID or unique ID prefix.
    pub fn exists(&self, key: &str) -> bool {
        self.get(key).is_ok()
    }

    /// The container whose read-write layer is `layer` (full ID).
    pub fn by_layer(&self, layer: &str) -> Option<&Container> {
        self.session.by_key(layer).next()
    }

    /// The bytes of big-data item `item`, read from its file.
    pub fn big_data(&self, key: &str, item: &str) -> Result<Vec<u8>> {
        empty_key(
            item,
            "can't retrieve container big data value for empty name",
        )?;
        let id = &self.get(key)?.id;
        self.session
            .read_big_data(id, item)?
            .ok_or_else(|| Error::BigDataMissing {
                id: id.clone(),
                key: item.to_owned(),
            })
    }

    /// The size of big-data item `item`: as recorded, else its file's size. (Go 1.43 records
    /// the missing size then, which fails under the read lock it holds; nothing is written
    /// here.)
    pub fn big_data_size(&self, key: &str, item: &str) -> Result<i64> {
        empty_key(
            item,
            "can't retrieve size of container big data with empty name",
        )?;
        let id = &self.get(key)?.id;
        self.session
            .big_data_size(id, item)?
            .ok_or_else(|| Error::SizeUnknown {
                id: id.clone(),
                key: item.to_owned(),
            })
    }

    /// The digest of big-data item `item`: as recorded, else the sha256 of its file (computed,
    /// not recorded: see [`ContainerSession::big_data_size`]).
    pub fn big_data_digest(&self, key: &str, item: &str) -> Result<String> {
        empty_key(
            item,
            "can't retrieve digest of container big data value with empty name",
        )?;
        let container = self.get(key)?;
        if let Some(digest) = container.big_data_digests.get(item) {
            return Ok(digest.clone());
        }
        match self.session.read_big_data(&container.id, item)? {
            Some(data) => Ok(canonical_digest(&data).as_str().to_owned()),
            None => Err(Error::DigestOfItemUnknown {
                id: container.id.clone(),
                key: item.to_owned(),
            }),
        }
    }

    /// `<graphroot>/<driver>-containers/<id>/userdata`, created (0700) if missing, without
    /// following links.
    pub fn directory(&self, key: &str) -> Result<PathBuf> {
        let id = &self.get(key)?.id;
        let userdata = self
            .session
            .create_item_dir(id)?
            .create_subdir(CONTAINER_USERDATA_DIR)?;
        Ok(userdata.path().to_path_buf())
    }

    /// `<runroot>/<driver>-containers/<id>/userdata`, created (0700) if missing, without
    /// following links.
    pub fn run_directory(&self, key: &str) -> Result<PathBuf> {
        let id = &self.get(key)?.id;
        validate_id(id)?;
        let userdata = self
            .run
            .create_subdir(id)?
            .create_subdir(CONTAINER_USERDATA_DIR)?;
        Ok(userdata.path().to_path_buf())
    }
}

impl ContainerWriter<'_> {
    /// Creates a container record, as Go's `CreateContainer` records it once the layer is
    /// made: label flags (both or neither given; neither records both empty), the ID given (it
    /// must name a directory and be unused) or a random unused one, `MountOpts` and `Volatile`
    /// flags, names deduplicated and refused if another container holds one, ID mappings
    /// checked for overlaps, created now. Saved before returning.
    pub fn create(&mut self, new: NewContainer) -> Result<&Container> {
        self.check_new(&new)?;
        let mut flags = new.flags;
        if !flags.contains_key(MOUNT_LABEL_FLAG) {
            flags.insert(MOUNT_LABEL_FLAG.to_owned(), Value::from(""));
            flags.insert(PROCESS_LABEL_FLAG.to_owned(), Value::from(""));
        }
        let id = match new.id {
            Some(id) => id,
            None => generate_id_unused(|candidate| self.session.contains_id(candidate))?,
        };
        if let Some(options) = new.mount_opts {
            flags.insert(MOUNT_OPTS_FLAG.to_owned(), Value::from(options));
        }
        if new.volatile {
            flags.insert(VOLATILE_FLAG.to_owned(), Value::Bool(true));
        }
        let container = Container {
            id: id.clone(),
            names: NamesOp::Set.apply(&[], &new.names),
            image_id: new.image_id,
            layer_id: new.layer_id,
            metadata: new.metadata,
            created: Timestamp::now(),
            uid_map: new.uid_map,
            gid_map: new.gid_map,
            flags,
            ..Container::default()
        };
        self.session.insert(container)?;
        self.session.save()?;
        self.get(&id)
    }

    /// Checks what [`ContainerWriter::create`] checks before it records anything: label flags
    /// both or neither, the ID usable and unused, no name held by another container, ID
    /// mappings without overlaps. The Store calls it before it makes the container's layer,
    /// so a refused container leaves no layer to roll back (Go checks after).
    pub fn check_new(&self, new: &NewContainer) -> Result<()> {
        if new.flags.contains_key(MOUNT_LABEL_FLAG) != new.flags.contains_key(PROCESS_LABEL_FLAG) {
            return Err(Error::HalfLabels);
        }
        if let Some(id) = &new.id {
            validate_id(id)?;
            if self.session.contains_id(id) {
                return Err(Error::DuplicateId { id: id.clone() });
            }
        }
        if let Some((name, holder)) = new
            .names
            .iter()
            .find_map(|name| Some((name, self.session.by_name(name)?)))
        {
            return Err(Error::NameInUse {
                name: name.clone(),
                holder: holder.id.clone(),
            });
        }
        check_id_mappings(&new.uid_map)?;
        check_id_mappings(&new.gid_map)
    }

    /// Changes a container's names with `op`; a name another container holds moves here.
    /// Containers keep no names history. Returns the new names.
    pub fn update_names(
        &mut self,
        key: &str,
        names: &[String],
        op: NamesOp,
    ) -> Result<Vec<String>> {
        let container = self.get(key)?;
        let id = container.id.clone();
        let new = op.apply(&container.names, names);
        self.session.assign_names(&id, &new)?;
        self.session.save()?;
        Ok(new)
    }

    /// Replaces a container's metadata.
    pub fn set_metadata(&mut self, key: &str, metadata: &str) -> Result<()> {
        self.change(key, |container| {
            metadata.clone_into(&mut container.metadata);
        })
    }

    /// Sets flag `flag` of a container to `value`.
    pub fn set_flag(&mut self, key: &str, flag: &str, value: Value) -> Result<()> {
        self.change(key, |container| {
            container.flags.insert(flag.to_owned(), value);
        })
    }

    /// Removes flag `flag` of a container.
    pub fn clear_flag(&mut self, key: &str, flag: &str) -> Result<()> {
        self.change(key, |container| {
            container.flags.remove(flag);
        })
    }

    /// Stores big-data item `item` of a container: its file first (atomically), then its size,
    /// digest (sha256 of the bytes) and key in the record, saved if that changed anything.
    pub fn set_big_data(&mut self, key: &str, item: &str, data: &[u8]) -> Result<()> {
        empty_key(item, "can't set empty name for container big data item")?;
        let id = self.get(key)?.id.clone();
        self.session
            .set_big_data(&id, item, data, &canonical_digest(data))?;
        self.session.save()?;
        Ok(())
    }

    /// Deletes a container: its record is removed and saved first, then
    /// `<graphroot>/<driver>-containers/<id>/` (items and `userdata/`) and
    /// `<runroot>/<driver>-containers/<id>/`, without following links. Its layer is the
    /// caller's. Returns the container.
    pub fn delete(&mut self, key: &str) -> Result<Container> {
        let id = self.get(key)?.id.clone();
        let container = self.session.remove(&id)?;
        self.session.save()?;
        self.remove_directories(&id)?;
        Ok(container)
    }

    /// Deletes every container (records first, in one save, then their directories); returns
    /// them. Records that cannot be used stay for `check`.
    pub fn wipe(&mut self) -> Result<Vec<Container>> {
        let ids: Vec<String> = self.containers().map(|c| c.id.clone()).collect();
        let mut removed = Vec::with_capacity(ids.len());
        for id in &ids {
            removed.push(self.session.remove(id)?);
        }
        self.session.save()?;
        for id in &ids {
            self.remove_directories(id)?;
        }
        Ok(removed)
    }

    /// Rewrites the record files whether or not anything changed (after a repair).
    pub fn save_all(&mut self) -> Result<()> {
        Ok(self.session.save_all()?)
    }

    fn remove_directories(&self, id: &str) -> Result<()> {
        self.session.remove_item_dir(id)?;
        self.run.remove_tree(id)?;
        Ok(())
    }

    /// Applies `change` to the container found by `key` and saves if it changed anything.
    fn change(&mut self, key: &str, change: impl FnOnce(&mut Container)) -> Result<()> {
        let id = self.get(key)?.id.clone();
        self.session.update(&id, change)?;
        self.session.save()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn maps(triples: &[(u32, u32, u32)]) -> Vec<IDMap> {
        triples
            .iter()
            .map(|&(container_id, host_id, size)| IDMap {
                container_id,
                host_id,
                size,
            })
            .collect()
    }

    #[test]
    fn overlapping_mappings_are_named_in_gos_words() {
        check_id_mappings(&maps(&[(0, 100_000, 65_536), (65_536, 0, 1)])).unwrap();
        // Adjacent ranges and empty ones do not overlap.
        check_id_mappings(&maps(&[(0, 10, 10), (10, 20, 10), (5, 15, 0)])).unwrap();
        let err = check_id_mappings(&maps(&[(0, 100_000, 1000), (500, 100_100, 10)]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the specified UID and/or GID mapping 500:100100:10 conflicts with other mappings: invalid mappings specified"
        );
        let err = check_id_mappings(&maps(&[
            (0, 100_000, 1000),
            (2000, 100_000, 10),
            (3000, 100_500, 10),
        ]))
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "the specified UID and/or GID mappings 2000:100000:10, 3000:100500:10 conflict with other mappings: invalid mappings specified"
        );
    }

    proptest! {
        /// A mapping is named exactly when its container range or its host range shares an ID
        /// with an earlier mapping's, checked ID by ID on small ranges.
        #[test]
        fn conflicts_are_exactly_the_ranges_sharing_an_id_with_earlier_ones(
            triples in proptest::collection::vec((0u32..40, 0u32..40, 0u32..8), 0..6)
        ) {
            let given = maps(&triples);
            let shares = |a: (u32, u32), b: (u32, u32), size_a: u32, size_b: u32| {
                (0..size_a).any(|i| (0..size_b).any(|j| a.0 + i == b.0 + j))
                    || (0..size_a).any(|i| (0..size_b).any(|j| a.1 + i == b.1 + j))
            };
            let expected: Vec<String> = given
                .iter()
                .enumerate()
                .filter(|(at, m)| {
                    given[..*at].iter().any(|e| {
                        shares((m.container_id, m.host_id), (e.container_id, e.host_id), m.size, e.size)
                    })
                })
                .map(|(_, m)| format!("{}:{}:{}", m.container_id, m.host_id, m.size))
                .collect();
            match check_id_mappings(&given) {
                Ok(()) => prop_assert!(expected.is_empty()),
                Err(Error::OverlappingMappings { conflicts }) => prop_assert_eq!(conflicts, expected),
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }
}
