//! [`Record`], what a record type tells the store, and [`Records`], the records of one store
//! in memory with their indexes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use layerstore_model::{BigDataOwner, Digest, validate_id};
use layerstore_truncindex::LazyTruncIndex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// A kind of record kept in a JSON array file: an image, a container (a layer, later).
pub trait Record: Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What the records are, for messages: `image`, `container`.
    const KIND: &'static str;
    /// Whose big-data items the store's `<id>/` directories hold.
    const OWNER: BigDataOwner;

    /// The record's ID.
    fn id(&self) -> &str;
    /// The record's names.
    fn names(&self) -> &[String];
    /// The record's names, to change.
    fn names_mut(&mut self) -> &mut Vec<String>;
    /// Completes a record just loaded, created or changed (an image takes its `digest` from
    /// its first manifest) and gives the keys [`Records::by_key`] finds it by (an image's
    /// digests, a container's layer). An error makes a loaded record bad (listed by
    /// [`Records::bad`], not usable) and refuses a change.
    fn index_keys(&mut self) -> std::result::Result<Vec<String>, String> {
        Ok(Vec::new())
    }
    /// Marks a record loaded from a read-only store (images carry that mark in memory).
    fn mark_read_only(&mut self) {}
}

/// A record that describes its big-data items in its own fields (`big-data-names`,
/// `big-data-sizes`, `big-data-digests`): images and containers.
pub trait BigDataRecord: Record {
    /// The items' keys, in the order they were first set.
    fn big_data_names_mut(&mut self) -> &mut Vec<String>;
    /// Each item's size in bytes.
    fn big_data_sizes(&self) -> &BTreeMap<String, i64>;
    /// Each item's size in bytes, to change.
    fn big_data_sizes_mut(&mut self) -> &mut BTreeMap<String, i64>;
    /// Each item's digest, to change.
    fn big_data_digests_mut(&mut self) -> &mut BTreeMap<String, String>;

    /// Records item `key` as Go's `SetBigData` does once its file is written: its size, its
    /// digest, and its key at the end of the names unless it is there already.
    fn record_big_data(&mut self, key: &str, size: usize, digest: &Digest) {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        self.big_data_sizes_mut().insert(key.to_owned(), size);
        self.big_data_digests_mut()
            .insert(key.to_owned(), digest.as_str().to_owned());
        let names = self.big_data_names_mut();
        if !names.iter().any(|name| name == key) {
            names.push(key.to_owned());
        }
    }
}

/// How a record's names change (Go's `applyNameOperation`, shared by layers, images and
/// containers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamesOp {
    /// The names become exactly the given ones.
    Set,
    /// The given names, then the old ones.
    Add,
    /// The old names without the given ones.
    Remove,
}

impl NamesOp {
    /// The new list of names (without duplicates, first occurrence kept).
    pub fn apply(self, old: &[String], given: &[String]) -> Vec<String> {
        let combined: Vec<&String> = match self {
            NamesOp::Set => given.iter().collect(),
            NamesOp::Add => given.iter().chain(old).collect(),
            NamesOp::Remove => old.iter().filter(|n| !given.contains(n)).collect(),
        };
        let mut names: Vec<String> = Vec::with_capacity(combined.len());
        for name in combined {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

/// A record of a file that cannot be used: it does not decode, its ID is unusable or taken by
/// an earlier record, or [`Record::index_keys`] refused it. It stays in the file, byte for
/// byte, until someone repairs it; nothing finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The record file.
    pub path: PathBuf,
    /// Its position in that file's array (0-based).
    pub index: usize,
    /// Its `id`, when it has a string one.
    pub id: Option<String>,
    /// What is wrong with it.
    pub problem: String,
}

/// A name that loading took from a record because a later record holds it too (Go's rule:
/// the later record wins), or that a record held twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRepair {
    /// The name.
    pub name: String,
    /// The record that lost it.
    pub dropped_from: String,
    /// The record that keeps it.
    pub kept_by: String,
}

enum Body<T> {
    Good { record: T, keys: Vec<String> },
    Bad { raw: Box<RawValue>, bad: BadRecord },
}

struct Entry<T> {
    /// Which record file it belongs to (0: the main one).
    file: usize,
    body: Body<T>,
}

/// The records of a store in file order (the main file's, then each extra file's), with
/// their indexes: by ID, by name, by unique ID prefix, and by the keys of
/// [`Record::index_keys`]. Sessions of a [`RecordStore`](crate::RecordStore) dereference to it.
pub struct Records<T> {
    entries: Vec<Entry<T>>,
    by_id: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
    by_key: HashMap<String, Vec<usize>>,
    /// Unique-prefix lookups (built at the first one).
    prefixes: LazyTruncIndex,
}

impl<T> Default for Records<T> {
    fn default() -> Self {
        Records {
            entries: Vec::new(),
            by_id: HashMap::new(),
            by_name: HashMap::new(),
            by_key: HashMap::new(),
            prefixes: LazyTruncIndex::default(),
        }
    }
}

impl<T: Record> std::fmt::Debug for Records<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("kind", &T::KIND)
            .field("records", &self.by_id.len())
            .field("bad", &(self.entries.len() - self.by_id.len()))
            .finish()
    }
}

impl<T: Record> Records<T> {
    /// The usable records, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|entry| match &entry.body {
            Body::Good { record, .. } => Some(record),
            Body::Bad { .. } => None,
        })
    }

    /// How many usable records there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there is no usable record.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The record with this ID, else with this name, else whose ID alone starts with `key`
    /// (Go's lookup order). An ambiguous prefix finds nothing.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.by_id(key)
            .or_else(|| self.by_name(key))
            .or_else(|| self.by_prefix(key))
    }

    /// The record with exactly this ID.
    pub fn by_id(&self, id: &str) -> Option<&T> {
        self.by_id.get(id).map(|&at| self.record(at))
    }

    /// The record holding this name.
    pub fn by_name(&self, name: &str) -> Option<&T> {
        self.by_name.get(name).map(|&at| self.record(at))
    }

    /// The one record whose ID starts with `prefix` (IDs with a space are not indexed, as in
    /// Go); `None` for an empty, unknown or ambiguous prefix.
    pub fn by_prefix(&self, prefix: &str) -> Option<&T> {
        let id = self
            .prefixes
            .get(prefix, || self.by_id.keys().map(String::as_str))
            .ok()?;
        self.by_id(id)
    }

    /// The records [`Record::index_keys`] gave `key`, in file order.
    pub fn by_key(&self, key: &str) -> impl Iterator<Item = &T> {
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .map(|&at| self.record(at))
    }

    /// Whether a usable record has exactly this ID.
    pub fn contains_id(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// The records that cannot be used (see [`BadRecord`]), in file order.
    pub fn bad(&self) -> impl Iterator<Item = &BadRecord> {
        self.entries.iter().filter_map(|entry| match &entry.body {
            Body::Bad { bad, .. } => Some(bad),
            Body::Good { .. } => None,
        })
    }

    /// The record at `at`, which an index points at, so it is a good one.
    pub(crate) fn record(&self, at: usize) -> &T {
        match &self.entries[at].body {
            Body::Good { record, .. } => record,
            Body::Bad { .. } => unreachable!("indexes point at usable records only"),
        }
    }

    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Whether any record (usable or not) belongs to file `file`.
    pub(crate) fn holds_file(&self, file: usize) -> bool {
        self.entries.iter().any(|entry| entry.file == file)
    }

    /// The file the record at `at` belongs to.
    pub(crate) fn file_of(&self, at: usize) -> usize {
        self.entries[at].file
    }

    /// The record at `at` and its index keys, to change. The caller keeps the indexes right.
    fn good_mut(&mut self, at: usize) -> (&mut T, &mut Vec<String>) {
        match &mut self.entries[at].body {
            Body::Good { record, keys } => (record, keys),
            Body::Bad { .. } => unreachable!("indexes point at usable records only"),
        }
    }

    /// Decodes the record files: `files[i]` is the bytes of file `i` and its path. A file that
    /// is not a JSON array is an error; a record that cannot be used becomes a
    /// [`BadRecord`]. Names held by several records are repaired as Go does (the later record
    /// keeps them); the repairs and the files they touched (a bit mask) are returned.
    pub(crate) fn parse(files: &[(&[u8], &Path)]) -> Result<(Records<T>, Vec<NameRepair>, u64)> {
        let mut records = Records::default();
        for (file, (bytes, path)) in files.iter().enumerate() {
            let raws = split_array(bytes, path)?;
            records.entries.reserve(raws.len());
            for (index, raw) in raws.into_iter().enumerate() {
                let body = match decode::<T>(raw, &records) {
                    Ok((record, keys)) => Body::Good { record, keys },
                    Err(problem) => {
                        let bad = BadRecord {
                            path: path.to_path_buf(),
                            index,
                            id: id_of(raw),
                            problem,
                        };
                        Body::Bad {
                            raw: raw.to_owned(),
                            bad,
                        }
                    }
                };
                let at = records.entries.len();
                if let Body::Good { record, keys } = &body {
                    records.index_id_and_keys(at, record.id(), keys);
                }
                records.entries.push(Entry { file, body });
            }
        }
        let (repairs, dirty) = records.index_names();
        Ok((records, repairs, dirty))
    }

    /// Indexes every record's names in file order, taking a name from an earlier record when a
    /// later one holds it too and dropping a name a record holds twice.
    fn index_names(&mut self) -> (Vec<NameRepair>, u64) {
        let mut repairs = Vec::new();
        let mut dirty = 0u64;
        for at in 0..self.entries.len() {
            let file = self.entries[at].file;
            let Body::Good { record, .. } = &mut self.entries[at].body else {
                continue;
            };
            let id = record.id().to_owned();
            let names = record.names_mut();
            let mut unique: Vec<String> = Vec::with_capacity(names.len());
            for name in names.drain(..) {
                if unique.contains(&name) {
                    repairs.push(NameRepair {
                        name,
                        dropped_from: id.clone(),
                        kept_by: id.clone(),
                    });
                    dirty |= file_bit(file);
                } else {
                    unique.push(name);
                }
            }
            *names = unique.clone();
            for name in unique {
                if let Some(earlier) = self.by_name.insert(name.clone(), at) {
                    let earlier_file = self.entries[earlier].file;
                    let (loser, _) = self.good_mut(earlier);
                    loser.names_mut().retain(|n| *n != name);
                    repairs.push(NameRepair {
                        name,
                        dropped_from: loser.id().to_owned(),
                        kept_by: id.clone(),
                    });
                    dirty |= file_bit(earlier_file);
                }
            }
        }
        (repairs, dirty)
    }

    fn index_id_and_keys(&mut self, at: usize, id: &str, keys: &[String]) {
        self.by_id.insert(id.to_owned(), at);
        // IDs with a space cannot be prefixes (as in Go); exact lookups still find them.
        self.prefixes.add(id);
        self.add_keys(at, keys);
    }

    /// Adds the record at `at` under `keys`, keeping each key's records in file order.
    fn add_keys(&mut self, at: usize, keys: &[String]) {
        for key in keys {
            let positions = self.by_key.entry(key.clone()).or_default();
            if let Err(place) = positions.binary_search(&at) {
                positions.insert(place, at);
            }
        }
    }

    fn remove_keys(&mut self, at: usize, keys: &[String]) {
        for key in keys {
            if let Some(positions) = self.by_key.get_mut(key) {
                positions.retain(|&p| p != at);
                if positions.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
    }

    /// Appends a usable record to `file` and indexes it. The caller has checked its ID and
    /// names.
    pub(crate) fn push(&mut self, file: usize, record: T, keys: Vec<String>) -> usize {
        let at = self.entries.len();
        self.index_id_and_keys(at, record.id(), &keys);
        for name in record.names() {
            self.by_name.insert(name.clone(), at);
        }
        self.entries.push(Entry {
            file,
            body: Body::Good { record, keys },
        });
        at
    }

    /// Removes the usable record at `at` from the records and every index.
    pub(crate) fn remove(&mut self, at: usize) -> T {
        let entry = self.entries.remove(at);
        let Body::Good { record, keys } = entry.body else {
            unreachable!("indexes point at usable records only");
        };
        self.by_id.remove(record.id());
        self.prefixes.delete(record.id());
        for name in record.names() {
            if self.by_name.get(name) == Some(&at) {
                self.by_name.remove(name);
            }
        }
        self.remove_keys(at, &keys);
        // Every later record moved down one place.
        let shift = |p: &mut usize| {
            if *p > at {
                *p -= 1;
            }
        };
        self.by_id.values_mut().for_each(shift);
        self.by_name.values_mut().for_each(shift);
        self.by_key.values_mut().flatten().for_each(shift);
        record
    }

    /// Gives the record at `at` exactly `names` (duplicates dropped), taking each from the
    /// record that holds it; returns the bit mask of the files whose records changed.
    pub(crate) fn assign_names(&mut self, at: usize, names: &[String]) -> u64 {
        let mut dirty = 0u64;
        let old = std::mem::take(self.good_mut(at).0.names_mut());
        for name in &old {
            self.by_name.remove(name);
        }
        let mut new: Vec<String> = Vec::with_capacity(names.len());
        for name in names {
            if new.contains(name) {
                continue;
            }
            if let Some(holder) = self.by_name.insert(name.clone(), at) {
                dirty |= file_bit(self.entries[holder].file);
                self.good_mut(holder).0.names_mut().retain(|n| n != name);
            }
            new.push(name.clone());
        }
        if new != old {
            dirty |= file_bit(self.entries[at].file);
        }
        *self.good_mut(at).0.names_mut() = new;
        dirty
    }

    /// Changes the record at `at` with `change`, keeping its names as they were (they have
    /// their own rules), then re-derives its index keys. Returns what `change` returned and
    /// whether the record changed. If `change` touched the ID, or [`Record::index_keys`]
    /// refuses the result, the record is left as it was and that is an error.
    pub(crate) fn update<R>(
        &mut self,
        at: usize,
        change: impl FnOnce(&mut T) -> R,
    ) -> Result<(R, bool)> {
        let before = self.good_mut(at).0.clone();
        let (record, _) = self.good_mut(at);
        let result = change(record);
        *record.names_mut() = before.names().to_vec();
        let keys = if record.id() != before.id() {
            Err(format!("its ID cannot change (to {:?})", record.id()))
        } else {
            record.index_keys()
        };
        let keys = match keys {
            Ok(keys) => keys,
            Err(reason) => {
                let id = before.id().to_owned();
                *self.good_mut(at).0 = before;
                return Err(Error::InvalidRecord {
                    kind: T::KIND,
                    id,
                    reason,
                });
            }
        };
        let changed = *record != before;
        let old_keys = std::mem::replace(self.good_mut(at).1, keys.clone());
        if old_keys != keys {
            self.remove_keys(at, &old_keys);
            self.add_keys(at, &keys);
        }
        Ok((result, changed))
    }

    /// The bytes of record file `file`: its records in order, as Go writes them (compact,
    /// Go's escaping, no trailing newline, `[]` when empty); a bad record is written back
    /// exactly as it was read.
    pub(crate) fn encode(&self, file: usize, path: &Path) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(2 + self.entries.len() * 512);
        out.push(b'[');
        let mut first = true;
        for entry in self.entries.iter().filter(|e| e.file == file) {
            if !first {
                out.push(b',');
            }
            first = false;
            match &entry.body {
                Body::Good { record, .. } => {
                    layerstore_model::write_go_json(&mut out, record).map_err(|source| {
                        Error::Encode {
                            kind: T::KIND,
                            id: record.id().to_owned(),
                            path: path.to_path_buf(),
                            source,
                        }
                    })?;
                }
                Body::Bad { raw, .. } => out.extend_from_slice(raw.get().as_bytes()),
            }
        }
        out.push(b']');
        Ok(out)
    }

    /// Marks every record as coming from a read-only store.
    pub(crate) fn mark_read_only(&mut self) {
        for entry in &mut self.entries {
            if let Body::Good { record, .. } = &mut entry.body {
                record.mark_read_only();
            }
        }
    }
}

/// The bit of file `file` in a mask of files.
pub(crate) fn file_bit(file: usize) -> u64 {
    1u64 << file
}

/// The elements of a record file: an empty file or `null` holds none; anything but an array
/// is an error naming the file.
fn split_array<'a>(bytes: &'a [u8], path: &Path) -> Result<Vec<&'a RawValue>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice::<Option<Vec<&'a RawValue>>>(bytes)
        .map(Option::unwrap_or_default)
        .map_err(|source| Error::Decode {
            path: path.to_path_buf(),
            source,
        })
}

/// Decodes one record and checks it can be used: its ID names a directory and is not taken by
/// an earlier record, and [`Record::index_keys`] accepts it.
fn decode<T: Record>(
    raw: &RawValue,
    earlier: &Records<T>,
) -> std::result::Result<(T, Vec<String>), String> {
    let mut record: T = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    validate_id(record.id()).map_err(|e| e.to_string())?;
    if earlier.contains_id(record.id()) {
        return Err(format!(
            "its ID {:?} is the ID of an earlier {}",
            record.id(),
            T::KIND
        ));
    }
    let keys = record.index_keys()?;
    Ok((record, keys))
}

/// The string `id` of a raw record, if it has one.
fn id_of(raw: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(raw.get()).ok()?.id
}

#[cfg(test)]
mod tests {
    use super::*;
    use layerstore_model::{Container, Image};
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn parse<T: Record>(files: &[&str]) -> (Records<T>, Vec<NameRepair>, u64) {
        let paths: Vec<PathBuf> = (0..files.len())
            .map(|i| PathBuf::from(format!("/store/file{i}.json")))
            .collect();
        let inputs: Vec<(&[u8], &Path)> = files
            .iter()
            .zip(&paths)
            .map(|(text, path)| (text.as_bytes(), path.as_path()))
            .collect();
        Records::parse(&inputs).unwrap()
    }

    /// Every name belongs to exactly one usable record and the index agrees.
    fn names_consistent<T: Record>(records: &Records<T>) -> bool {
        let mut seen = HashSet::new();
        for record in records.iter() {
            for name in record.names() {
                if !seen.insert(name.clone())
                    || records.by_name(name).map(Record::id) != Some(record.id())
                {
                    return false;
                }
            }
        }
        seen.len() == records.by_name.len()
    }

    #[test]
    fn bad_records_are_kept_apart_and_written_back_as_they_were() {
        let file = r#"[{"id":"good","names":["n"]},{"id":"../x"},{"id":"bad", "created":"never"},7,{"id":"good"},{"id":"d","digest":"sha256:zzz"}]"#;
        let (records, repairs, dirty) = parse::<Image>(&[file]);
        assert!(repairs.is_empty());
        assert_eq!(dirty, 0);
        assert_eq!(records.len(), 1);
        let bad: Vec<_> = records.bad().collect();
        assert_eq!(
            bad.iter()
                .map(|b| (b.index, b.id.as_deref()))
                .collect::<Vec<_>>(),
            [
                (1, Some("../x")),
                (2, Some("bad")),
                (3, None),
                (4, Some("good")),
                (5, Some("d"))
            ]
        );
        assert!(bad[0].problem.contains("'/'"), "{}", bad[0].problem);
        assert!(bad[1].problem.contains("never"), "{}", bad[1].problem);
        assert!(
            bad[3].problem.contains("earlier image"),
            "{}",
            bad[3].problem
        );
        assert!(
            bad[4].problem.contains("invalid checksum digest"),
            "{}",
            bad[4].problem
        );
        assert!(records.get("d").is_none() && records.get("bad").is_none());
        let out = records.encode(0, Path::new("/x")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[{"id":"good","names":["n"],"created":"0001-01-01T00:00:00Z"},{"id":"../x"},{"id":"bad", "created":"never"},7,{"id":"good"},{"id":"d","digest":"sha256:zzz"}]"#
        );
    }

    #[test]
    fn the_later_record_keeps_a_name_across_files() {
        let main = r#"[{"id":"a","names":["n","m","m"]},{"id":"b","names":["n"]}]"#;
        let volatile = r#"[{"id":"c","names":["m"],"layer":"l"}]"#;
        let (records, repairs, dirty) = parse::<Container>(&[main, volatile]);
        assert_eq!(records.by_id("a").unwrap().names, Vec::<String>::new());
        assert_eq!(records.by_name("n").unwrap().id, "b");
        assert_eq!(records.by_name("m").unwrap().id, "c");
        assert_eq!(dirty, 0b01, "only the main file lost names");
        assert_eq!(repairs.len(), 3);
        assert_eq!(
            repairs[0],
            NameRepair {
                name: "m".into(),
                dropped_from: "a".into(),
                kept_by: "a".into()
            }
        );
        assert_eq!(records.by_key("l").next().unwrap().id, "c");
        assert_eq!(records.file_of(records.position("c").unwrap()), 1);
        assert!(names_consistent(&records));
    }

    #[test]
    fn lookups_are_id_then_name_then_unique_prefix() {
        let file = r#"[{"id":"abc1","names":["abd2"]},{"id":"abd2"},{"id":"with space"}]"#;
        let (records, _, _) = parse::<Image>(&[file]);
        assert_eq!(records.get("abd2").unwrap().id, "abd2");
        assert_eq!(records.get("abc").unwrap().id, "abc1");
        assert!(records.get("ab").is_none(), "ambiguous");
        assert!(records.get("").is_none());
        assert_eq!(records.get("with space").unwrap().id, "with space");
        assert!(
            records.get("with").is_none(),
            "IDs with a space are no prefixes"
        );
    }

    #[test]
    fn removal_keeps_every_index_pointing_at_the_right_record() {
        let file = r#"[{"id":"a","names":["x"],"layer":"la"},{"id":"b","names":["y"],"layer":"lb"},{"id":"c","names":["z"],"layer":"la"}]"#;
        let (mut records, _, _) = parse::<Container>(&[file]);
        let removed = records.remove(records.position("a").unwrap());
        assert_eq!(removed.id, "a");
        assert_eq!(records.by_name("z").unwrap().id, "c");
        assert_eq!(
            records.by_key("la").map(|c| &c.id).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(records.by_prefix("b").unwrap().id, "b");
        assert!(records.by_name("x").is_none());
        assert!(names_consistent(&records));
    }

    #[test]
    fn updates_keep_names_and_ids_and_reindex_keys() {
        let file = r#"[{"id":"a","names":["x"],"layer":"l1"}]"#;
        let (mut records, _, _) = parse::<Container>(&[file]);
        let (_, changed) = records
            .update(0, |c| {
                c.layer_id = "l2".into();
                c.names.clear();
            })
            .unwrap();
        assert!(changed);
        assert_eq!(records.by_id("a").unwrap().names, ["x"]);
        assert!(records.by_key("l1").next().is_none());
        assert_eq!(records.by_key("l2").next().unwrap().id, "a");
        let (_, changed) = records.update(0, |_| ()).unwrap();
        assert!(!changed);
        let err = records.update(0, |c| c.id = "b".into()).unwrap_err();
        assert!(err.to_string().contains("cannot change"), "{err}");
        assert_eq!(records.by_id("a").unwrap().layer_id, "l2");
    }

    #[test]
    fn a_refused_update_leaves_the_record_as_it_was() {
        let (mut records, _, _) = parse::<Image>(&[r#"[{"id":"i"}]"#]);
        let err = records
            .update(0, |i| i.digest = "bogus".into())
            .unwrap_err();
        assert!(
            err.to_string().contains("invalid checksum digest format"),
            "{err}"
        );
        assert_eq!(records.by_id("i").unwrap().digest, "");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Whatever is renamed, added or removed, a name is held by one record at most, and
        /// the index agrees with the records.
        #[test]
        fn names_are_never_held_twice(
            ops in proptest::collection::vec(
                (0usize..5, proptest::collection::vec(0u8..6, 0..4), 0u8..4), 0..60)
        ) {
            let (mut records, _, _) = parse::<Image>(&[r#"[{"id":"r0"},{"id":"r1"},{"id":"r2"}]"#]);
            let mut next = 3;
            for (target, names, op) in ops {
                let names: Vec<String> = names.iter().map(|n| format!("n{n}")).collect();
                let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
                match (op, ids.get(target % ids.len().max(1))) {
                    (0, Some(id)) => {
                        let at = records.position(id).unwrap();
                        records.remove(at);
                    }
                    (1, _) => {
                        let mut free: Vec<String> = Vec::new();
                        for n in names.iter().filter(|n| records.by_name(n).is_none()) {
                            if !free.contains(n) { free.push(n.clone()); }
                        }
                        let mut image = Image::new(format!("r{next}"));
                        next += 1;
                        image.names = free;
                        let keys = image.index_keys().unwrap();
                        records.push(0, image, keys);
                    }
                    (_, Some(id)) => {
                        let at = records.position(id).unwrap();
                        records.assign_names(at, &names);
                        let mut unique = Vec::new();
                        for n in names { if !unique.contains(&n) { unique.push(n); } }
                        prop_assert_eq!(&records.by_id(id).unwrap().names, &unique);
                    }
                    _ => {}
                }
                prop_assert!(names_consistent(&records));
            }
        }
    }
}
