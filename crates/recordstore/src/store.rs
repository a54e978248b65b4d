//! [`RecordStore`]: a record file (or several) guarded by a lock file, loaded when the lock's
//! token or the files change, and read or written through sessions that hold the lock.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use layerstore_lockfile::{LastWrite, LockFile, ReadGuard, WriteGuard};
use layerstore_model::{Digest, check_big_data_key, validate_id};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::crash;
use crate::dir::{Dir, FileStamp};
use crate::error::{Error, Result};
use crate::records::{BadRecord, BigDataRecord, NameRepair, Record, Records, file_bit};

/// How many times a reader that found repairs to do takes the write lock to make them before
/// giving up (others kept breaking the records meanwhile).
const MAX_REPAIR_ATTEMPTS: usize = 3;

/// Where a store's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The store's directory, e.g. `<graphroot>/vfs-images`; big-data items live in
    /// `<dir>/<id>/`.
    pub dir: PathBuf,
    /// The lock file's name in it, e.g. `images.lock`.
    pub lock_file: String,
    /// The record file's name, e.g. `images.json`. New records go there.
    pub record_file: String,
    /// Other record files read with it, in order, e.g. `volatile-containers.json`: their
    /// records are found like the others and written back to the file they came from; new
    /// records never go there.
    pub extra_record_files: Vec<String>,
}

impl Layout {
    /// A layout with one record file.
    pub fn new(dir: impl Into<PathBuf>, lock_file: &str, record_file: &str) -> Layout {
        Layout {
            dir: dir.into(),
            lock_file: lock_file.to_owned(),
            record_file: record_file.to_owned(),
            extra_record_files: Vec::new(),
        }
    }
}

/// What the loaded records were read from: the lock's token and each record file's stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    token: LastWrite,
    stamps: Vec<Option<FileStamp>>,
}

struct State<T> {
    records: Records<T>,
    /// `None`: nothing loaded, or the memory may differ from the files (a failed or
    /// abandoned write); the next session loads.
    seen: Option<Seen>,
}

/// What loading found.
enum Loaded {
    Installed,
    /// Names held by two records: repairing them needs the write lock.
    NeedsRepair,
}

/// A store of records of type `T` in a JSON array file guarded by a lock file, compatible
/// with containers/storage (see the [crate documentation](crate)).
///
/// Open it once and share it between threads (`Send + Sync`). Work goes through sessions:
/// [`RecordStore::read`] (shared lock) and [`RecordStore::write`] (exclusive lock).
pub struct RecordStore<T: Record> {
    dir: Dir,
    files: Vec<String>,
    paths: Vec<PathBuf>,
    lock: LockFile,
    read_only: bool,
    state: RwLock<State<T>>,
}

impl<T: Record> std::fmt::Debug for RecordStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStore")
            .field("kind", &T::KIND)
            .field("dir", &self.dir.path())
            .field("files", &self.files)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// A record file [`RecordStore::set_aside_damaged`] set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAsideFile {
    /// The record file (now an empty array).
    pub path: PathBuf,
    /// Where its damaged bytes are kept.
    pub kept_as: PathBuf,
    /// Why it did not load.
    pub reason: String,
    /// The IDs of the item directories no record names now: the records that were lost with
    /// the file, as far as their directories tell (a record without big data has none).
    pub lost: Vec<String>,
}

impl<T: Record> RecordStore<T> {
    /// Opens a read-write store: creates its directory (0700) and lock file (0644) if missing,
    /// as Go does, and removes the temp files interrupted writes left in the directory when
    /// no other process holds the lock. Nothing is read until the first session.
    pub fn open(layout: Layout) -> Result<RecordStore<T>> {
        let dir = Dir::create(&layout.dir)?;
        let lock = LockFile::open_rw(layout.dir.join(&layout.lock_file))?;
        let store = Self::with(dir, layout, lock, false);
        match store.lock.try_lock() {
            Ok(_guard) => {
                store.dir.remove_temp_files()?;
            }
            Err(e) if e.is_would_block() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(store)
    }

    /// Opens a read-only store (an additional image store): only ever locked for reading,
    /// never written. Its lock file is created if missing, as Go does; a name held by two
    /// records is an error ([`Error::DuplicateNamesReadOnly`]) since it cannot be repaired.
    pub fn open_read_only(layout: Layout) -> Result<RecordStore<T>> {
        let lock = LockFile::open_ro(layout.dir.join(&layout.lock_file))?;
        let dir = Dir::open(&layout.dir)?;
        Ok(Self::with(dir, layout, lock, true))
    }

    fn with(dir: Dir, layout: Layout, lock: LockFile, read_only: bool) -> RecordStore<T> {
        let files: Vec<String> = std::iter::once(layout.record_file)
            .chain(layout.extra_record_files)
            .collect();
        let paths = files.iter().map(|name| layout.dir.join(name)).collect();
        RecordStore {
            dir,
            files,
            paths,
            lock,
            read_only,
            state: RwLock::new(State {
                records: Records::default(),
                seen: None,
            }),
        }
    }

    /// The store's directory.
    pub fn dir_path(&self) -> &Path {
        self.dir.path()
    }

    /// The main record file, e.g. `<graphroot>/vfs-images/images.json`.
    pub fn record_path(&self) -> &Path {
        &self.paths[0]
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        self.lock.path()
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// A read session: the shared lock, held until the session is dropped, on records that
    /// are fresh (reloaded if the lock's token or a record file changed since they were read).
    ///
    /// If the files hold a name in two records, a read-write store takes the write lock once
    /// to repair them (as Go's loader does) and then reads; a read-only store fails with
    /// [`Error::DuplicateNamesReadOnly`].
    pub fn read(&self) -> Result<ReadSession<'_, T>> {
        for _ in 0..MAX_REPAIR_ATTEMPTS {
            let guard = self.lock.rlock()?;
            let current = self.current(guard.get_last_write()?)?;
            {
                let state = self.state.read();
                if state.seen.as_ref() == Some(&current) {
                    return Ok(ReadSession {
                        store: self,
                        _guard: guard,
                        state,
                    });
                }
            }
            let mut state = self.state.write();
            if state.seen.as_ref() != Some(&current)
                && let Loaded::NeedsRepair = self.load(&mut state, current.token, None)?
            {
                drop(state);
                drop(guard);
                drop(self.write()?);
                continue;
            }
            return Ok(ReadSession {
                store: self,
                _guard: guard,
                state: RwLockWriteGuard::downgrade(state),
            });
        }
        Err(Error::Unstable {
            path: self.paths[0].clone(),
        })
    }

    /// A write session: the exclusive lock, held until the session is dropped, on fresh
    /// records (names held by two records are repaired and saved first, as Go's loader does).
    /// Changes are saved by [`WriteSession::save`]; changes not saved are forgotten.
    pub fn write(&self) -> Result<WriteSession<'_, T>> {
        if self.read_only {
            return Err(Error::ReadOnly {
                kind: T::KIND,
                path: self.paths[0].clone(),
            });
        }
        let guard = self.lock.lock()?;
        let current = self.current(guard.get_last_write()?)?;
        let mut state = self.state.write();
        if state.seen.as_ref() != Some(&current) {
            self.load(&mut state, current.token, Some(&guard))?;
        }
        Ok(WriteSession {
            store: self,
            guard,
            state,
            dirty: 0,
        })
    }

    /// Every usable record, in file order (one read session).
    pub fn records(&self) -> Result<Vec<T>> {
        Ok(self.read()?.iter().cloned().collect())
    }

    /// The record with this ID, name or unique ID prefix (one read session).
    pub fn get(&self, key: &str) -> Result<Option<T>> {
        Ok(self.read()?.get(key).cloned())
    }

    /// The records that cannot be used, for `check` (one read session).
    pub fn bad_records(&self) -> Result<Vec<BadRecord>> {
        Ok(self.read()?.bad().cloned().collect())
    }

    /// Sets aside every record file of this store that does not load as a whole (not a JSON
    /// array: truncated, garbage): its bytes are copied to `<file>.damaged-<n>` beside it
    /// (the first free `n`, written atomically and synced), then the file is replaced by an
    /// empty array, under the exclusive lock and after the lock's token (as a save does).
    /// Nothing is deleted: the copy keeps every byte, and the records it held are reported
    /// as lost with the IDs of the item directories (`<dir>/<id>/`) no remaining record
    /// names. A file that loads, even with bad records in it, is left alone. Answers what
    /// was set aside (empty when every file loads).
    pub fn set_aside_damaged(&self) -> Result<Vec<SetAsideFile>> {
        if self.read_only {
            return Err(Error::ReadOnly {
                kind: T::KIND,
                path: self.paths[0].clone(),
            });
        }
        let guard = self.lock.lock()?;
        let mut set_aside = Vec::new();
        for (name, path) in self.files.iter().zip(&self.paths) {
            let Some((bytes, _)) = self.dir.read_file(name)? else {
                continue;
            };
            let reason = match Records::<T>::parse(&[(bytes.as_slice(), path.as_path())]) {
                Ok(_) => continue,
                Err(e) => layerstore_model::error_chain(&e),
            };
            let mut n = 1;
            let kept_as = loop {
                let candidate = format!("{name}.damaged-{n}");
                if self.dir.stamp(&candidate)?.is_none() {
                    break candidate;
                }
                n += 1;
            };
            self.dir.write_file(&kept_as, &bytes)?;
            self.state.write().seen = None;
            guard.record_write()?;
            self.dir.write_file(name, b"[]")?;
            set_aside.push(SetAsideFile {
                path: path.clone(),
                kept_as: self.dir.path().join(&kept_as),
                reason,
                lost: Vec::new(),
            });
        }
        if !set_aside.is_empty() {
            drop(guard);
            let known: Vec<String> = self.read()?.iter().map(|r| r.id().to_owned()).collect();
            let lost: Vec<String> = self
                .dir
                .subdir_names()?
                .into_iter()
                .filter(|id| validate_id(id).is_ok() && !known.contains(id))
                .collect();
            for file in &mut set_aside {
                file.lost.clone_from(&lost);
            }
        }
        Ok(set_aside)
    }

    /// The token and record file stamps now.
    fn current(&self, token: LastWrite) -> Result<Seen> {
        let stamps = self
            .files
            .iter()
            .map(|name| self.dir.stamp(name))
            .collect::<Result<_>>()?;
        Ok(Seen { token, stamps })
    }

    /// Reads and decodes the record files. Name repairs are made and saved when `write` is
    /// given; without it they are reported ([`Loaded::NeedsRepair`]) and nothing is
    /// installed. A file that does not decode is an error and nothing changes.
    fn load(
        &self,
        state: &mut State<T>,
        token: LastWrite,
        write: Option<&WriteGuard<'_>>,
    ) -> Result<Loaded> {
        let mut contents = Vec::with_capacity(self.files.len());
        let mut stamps = Vec::with_capacity(self.files.len());
        for name in &self.files {
            match self.dir.read_file(name)? {
                Some((bytes, stamp)) => {
                    contents.push(bytes);
                    stamps.push(Some(stamp));
                }
                None => {
                    contents.push(Vec::new());
                    stamps.push(None);
                }
            }
        }
        let inputs: Vec<(&[u8], &Path)> = contents
            .iter()
            .zip(&self.paths)
            .map(|(bytes, path)| (bytes.as_slice(), path.as_path()))
            .collect();
        let (mut records, repairs, dirty) = Records::parse(&inputs)?;
        if self.read_only {
            if let Some(repair) = repairs.iter().find(|r| r.dropped_from != r.kept_by) {
                return Err(self.duplicate_names(repair));
            }
            records.mark_read_only();
        } else if dirty != 0 {
            let Some(guard) = write else {
                return Ok(Loaded::NeedsRepair);
            };
            state.records = records;
            self.save_files(state, guard, dirty)?;
            return Ok(Loaded::Installed);
        }
        state.records = records;
        state.seen = Some(Seen { token, stamps });
        Ok(Loaded::Installed)
    }

    fn duplicate_names(&self, repair: &NameRepair) -> Error {
        Error::DuplicateNamesReadOnly {
            kind: T::KIND,
            name: repair.name.clone(),
            path: self.paths[0].clone(),
        }
    }

    /// Writes the record files in `mask`: the lock's token first (so a crash half-way still
    /// reads as a change to others), then each file atomically.
    fn save_files(&self, state: &mut State<T>, guard: &WriteGuard<'_>, mask: u64) -> Result<()> {
        state.seen = None;
        let token = guard.record_write()?;
        crash::point(crash::SAVE_AFTER_TOKEN);
        for (file, name) in self.files.iter().enumerate() {
            if mask & file_bit(file) == 0 {
                continue;
            }
            let bytes = state.records.encode(file, &self.paths[file])?;
            self.dir.write_file(name, &bytes)?;
        }
        state.seen = Some(self.current(token)?);
        Ok(())
    }

    /// The item directory of record `id`, if it exists.
    fn item_dir(&self, id: &str) -> Result<Option<Dir>> {
        validate_id(id)?;
        self.dir.subdir(id)
    }

    fn read_big_data(&self, id: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let name = big_data_name::<T>(key)?;
        let Some(dir) = self.item_dir(id)? else {
            return Ok(None);
        };
        Ok(dir.read_file(&name)?.map(|(bytes, _)| bytes))
    }

    fn big_data_len(&self, id: &str, key: &str) -> Result<Option<u64>> {
        let name = big_data_name::<T>(key)?;
        let Some(dir) = self.item_dir(id)? else {
            return Ok(None);
        };
        dir.file_len(&name)
    }

    fn create_item_dir(&self, id: &str) -> Result<Dir> {
        validate_id(id)?;
        self.dir.create_subdir(id)
    }
}

/// The file name of big-data item `key` of a `T`, refusing keys that cannot be stored safely.
fn big_data_name<T: Record>(key: &str) -> Result<String> {
    check_big_data_key(T::OWNER, key)?;
    Ok(layerstore_model::big_data_file_name(key))
}

mod sealed {
    pub trait Sealed {}
}

/// What both kinds of session offer besides the records: the store's directory and the
/// big-data items. Implemented by [`ReadSession`] and [`WriteSession`] only, so code that
/// only reads can take either.
pub trait Session<T: Record>: Deref<Target = Records<T>> + sealed::Sealed {
    /// The store the session belongs to.
    fn store(&self) -> &RecordStore<T>;

    /// The store's directory, for files a kind of record keeps beside its items (a
    /// container's `userdata/`).
    fn dir(&self) -> &Dir {
        &self.store().dir
    }

    /// The directory of record `id`'s items (`<dir>/<id>`), if it exists. A symbolic link
    /// there is an error, never followed.
    fn item_dir(&self, id: &str) -> Result<Option<Dir>> {
        self.store().item_dir(id)
    }

    /// The directory of record `id`'s items, created (0700) if missing.
    fn create_item_dir(&self, id: &str) -> Result<Dir> {
        self.store().create_item_dir(id)
    }

    /// The bytes of big-data item `key` of record `id`, read from its file
    /// (`<dir>/<id>/<file name of key>`); `None` if there is no such file. Keys that cannot
    /// name a file safely are an error (see `layerstore_model::check_big_data_key`).
    fn read_big_data(&self, id: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.store().read_big_data(id, key)
    }

    /// The size of big-data item `key` of record `id` from its file, without reading it.
    fn big_data_len(&self, id: &str, key: &str) -> Result<Option<u64>> {
        self.store().big_data_len(id, key)
    }

    /// The size of big-data item `key` of record `id`: as the record says, else the size of
    /// its file (computed, not recorded: a reader must not write); `None` if neither knows.
    fn big_data_size(&self, id: &str, key: &str) -> Result<Option<i64>>
    where
        T: BigDataRecord,
    {
        if let Some(&size) = self.by_id(id).and_then(|r| r.big_data_sizes().get(key)) {
            return Ok(Some(size));
        }
        Ok(self
            .big_data_len(id, key)?
            .map(|len| i64::try_from(len).unwrap_or(i64::MAX)))
    }
}

/// The records under the shared lock (see [`RecordStore::read`]); dereferences to
/// [`Records`]. Dropping it releases the lock.
pub struct ReadSession<'a, T: Record> {
    store: &'a RecordStore<T>,
    _guard: ReadGuard<'a>,
    state: RwLockReadGuard<'a, State<T>>,
}

impl<T: Record> Deref for ReadSession<'_, T> {
    type Target = Records<T>;
    fn deref(&self) -> &Records<T> {
        &self.state.records
    }
}

impl<T: Record> sealed::Sealed for ReadSession<'_, T> {}

impl<T: Record> Session<T> for ReadSession<'_, T> {
    fn store(&self) -> &RecordStore<T> {
        self.store
    }
}

impl<T: Record> std::fmt::Debug for ReadSession<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSession")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The records under the exclusive lock (see [`RecordStore::write`]); dereferences to
/// [`Records`] for reading. Changes are made in memory and written by
/// [`WriteSession::save`]; dropping the session with changes not saved forgets them (the
/// next session reloads the files).
pub struct WriteSession<'a, T: Record> {
    store: &'a RecordStore<T>,
    guard: WriteGuard<'a>,
    state: RwLockWriteGuard<'a, State<T>>,
    /// The record files holding changes not saved yet (bit mask).
    dirty: u64,
}

impl<T: Record> Deref for WriteSession<'_, T> {
    type Target = Records<T>;
    fn deref(&self) -> &Records<T> {
        &self.state.records
    }
}

impl<T: Record> sealed::Sealed for WriteSession<'_, T> {}

impl<T: Record> Session<T> for WriteSession<'_, T> {
    fn store(&self) -> &RecordStore<T> {
        self.store
    }
}

impl<T: Record> std::fmt::Debug for WriteSession<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSession")
            .field("store", &self.store)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl<T: Record> Drop for WriteSession<'_, T> {
    fn drop(&mut self) {
        if self.dirty != 0 {
            // Memory holds changes the files do not: read the files again next time.
            self.state.seen = None;
        }
    }
}

impl<T: Record> WriteSession<'_, T> {
    /// Adds `record` to the main record file (after the others). Its ID must be usable and
    /// unused, its names (duplicates dropped) held by no other record, and
    /// [`Record::index_keys`] must accept it. Returns the record as stored.
    pub fn insert(&mut self, mut record: T) -> Result<&T> {
        validate_id(record.id())?;
        let records = &self.state.records;
        if records.contains_id(record.id()) {
            return Err(Error::DuplicateId {
                kind: T::KIND,
                id: record.id().to_owned(),
                path: self.store.paths[0].clone(),
            });
        }
        let mut names: Vec<String> = Vec::with_capacity(record.names().len());
        for name in record.names() {
            if let Some(holder) = records.by_name(name) {
                return Err(Error::NameInUse {
                    kind: T::KIND,
                    name: name.clone(),
                    holder: holder.id().to_owned(),
                });
            }
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        *record.names_mut() = names;
        let keys = record.index_keys().map_err(|reason| Error::InvalidRecord {
            kind: T::KIND,
            id: record.id().to_owned(),
            reason,
        })?;
        let at = self.state.records.push(0, record, keys);
        self.dirty |= file_bit(0);
        Ok(self.state.records.record(at))
    }

    /// Removes the record with exactly this ID and returns it. Its items stay until
    /// [`WriteSession::remove_item_dir`] (after the save, so a crash never leaves a record
    /// whose items are gone).
    pub fn remove(&mut self, id: &str) -> Result<T> {
        let at = self.position(id)?;
        self.dirty |= file_bit(self.state.records.file_of(at));
        Ok(self.state.records.remove(at))
    }

    /// Gives record `id` exactly `names` (duplicates dropped); a name another record holds
    /// moves here (Go's rule for renaming).
    pub fn assign_names(&mut self, id: &str, names: &[String]) -> Result<()> {
        let at = self.position(id)?;
        self.dirty |= self.state.records.assign_names(at, names);
        Ok(())
    }

    /// Changes record `id` with `change` (its names stay: see
    /// [`WriteSession::assign_names`]; changing its ID is an error) and re-derives its index
    /// keys; the record is marked for saving only if it changed. Returns what `change`
    /// returned.
    pub fn update<R>(&mut self, id: &str, change: impl FnOnce(&mut T) -> R) -> Result<R> {
        let at = self.position(id)?;
        let (result, changed) = self.state.records.update(at, change)?;
        if changed {
            self.dirty |= file_bit(self.state.records.file_of(at));
        }
        Ok(result)
    }

    /// Whether there are changes not saved yet.
    pub fn has_changes(&self) -> bool {
        self.dirty != 0
    }

    /// Saves the record files holding changes (token first, then each file atomically);
    /// returns whether anything was written. Nothing is written when nothing changed.
    pub fn save(&mut self) -> Result<bool> {
        if self.dirty == 0 {
            return Ok(false);
        }
        let mask = self.dirty;
        self.store.save_files(&mut self.state, &self.guard, mask)?;
        self.dirty = 0;
        Ok(true)
    }

    /// Rewrites every record file, changed or not: the main file always, an extra one if it
    /// exists or holds records.
    pub fn save_all(&mut self) -> Result<()> {
        let mut mask = file_bit(0);
        for (file, name) in self.store.files.iter().enumerate().skip(1) {
            if self.store.dir.stamp(name)?.is_some() || self.state.records.holds_file(file) {
                mask |= file_bit(file);
            }
        }
        self.store.save_files(&mut self.state, &self.guard, mask)?;
        self.dirty = 0;
        Ok(())
    }

    /// Writes big-data item `key` of record `id` to its file atomically
    /// (`<dir>/<id>/<file name of key>`, directory created 0700, file 0600). Only the file:
    /// the caller then records the item (size, digest, name) and saves, so the data is in
    /// place before the record names it, as in Go.
    pub fn write_big_data(&self, id: &str, key: &str, data: &[u8]) -> Result<()> {
        let name = big_data_name::<T>(key)?;
        self.position(id)?;
        self.store.create_item_dir(id)?.write_file(&name, data)?;
        Ok(())
    }

    /// Stores big-data item `key` of record `id`: its file first
    /// ([`WriteSession::write_big_data`]), then its size, `digest` and key in the record
    /// ([`BigDataRecord::record_big_data`]), to be saved by the caller.
    pub fn set_big_data(&mut self, id: &str, key: &str, data: &[u8], digest: &Digest) -> Result<()>
    where
        T: BigDataRecord,
    {
        self.write_big_data(id, key, data)?;
        self.update(id, |record| record.record_big_data(key, data.len(), digest))
    }

    /// Removes the item directory of record `id` (`<dir>/<id>` and all below it), without
    /// following links. Call it after saving the record's removal.
    pub fn remove_item_dir(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        self.store.dir.remove_tree(id)
    }

    fn position(&self, id: &str) -> Result<usize> {
        self.state
            .records
            .position(id)
            .ok_or_else(|| Error::Unknown {
                kind: T::KIND,
                id: id.to_owned(),
                path: self.store.paths[0].clone(),
            })
    }
}
