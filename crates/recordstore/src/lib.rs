//! The record files of a containers/storage store, in one place for every kind of record:
//! a JSON array file (`images.json`, `containers.json`) guarded by a lock file
//! (`images.lock`, `containers.lock`), and the per-record big-data directories beside it
//! (`<dir>/<id>/<encoded key>`). Generic over the record type ([`Record`]); the image and
//! container stores are built on it, and the layer store can adopt it.
//!
//! # The model
//!
//! * **Sessions.** [`RecordStore::read`] takes the lock file's shared `fcntl` lock and
//!   [`RecordStore::write`] its exclusive lock (the `layerstore-lockfile` protocol, shared
//!   with Go processes); the lock is held as long as the session value lives, so a caller can
//!   hold the sessions of several stores at once in a fixed order (Go's order: layers, images,
//!   additional images, containers). Both dereference to [`Records`], the records in memory
//!   with their indexes.
//! * **Reloading.** A session starts by comparing the lock's 64-byte last-writer token and
//!   the record files' stamps (inode, size, modification time: hand edits) with what the
//!   records in memory were read from, and reads the files again only when one differs.
//! * **Loading.** Files are opened relative to the store's directory descriptor with
//!   `O_NOFOLLOW | O_NONBLOCK` and must be regular files: a symlink or a FIFO planted as
//!   `images.json` is an error, not followed or waited on. A file that is not a JSON array is
//!   an error naming it (`loading "<path>": ...`, as newer Go) and is never overwritten. A
//!   record that cannot be used (does not decode, ID unusable or taken by an earlier record,
//!   refused by [`Record::index_keys`]) does not stop the others: it is listed by
//!   [`Records::bad`] for `check`, found by nothing, and written back byte for byte.
//! * **Names.** A name held by two records stays with the later one (Go's load-time repair),
//!   saved at once under the write lock; a reader that finds such a file takes the write lock
//!   to repair it first. A read-only store (an additional image store) cannot repair:
//!   [`Error::DuplicateNamesReadOnly`], as in Go.
//! * **Lookups.** By ID, by name, by unique ID prefix (`layerstore-truncindex`), and by the
//!   keys a record type derives ([`Records::by_key`]: an image's digests, a container's
//!   layer).
//! * **Saving.** [`WriteSession::save`] writes the lock's new token first (so a crash
//!   half-way still reads as a change to others), then each changed file atomically: a temp
//!   file in the same directory, written, synced, renamed over the old one, the directory
//!   synced. Nothing is written when nothing changed.
//! * **Big data.** [`WriteSession::write_big_data`] writes an item's file atomically in
//!   `<dir>/<id>/` (created 0700 and opened without following links) before the caller
//!   records it; [`WriteSession::remove_item_dir`] removes a record's directory without
//!   following links and without recursion. File names follow Go
//!   (`layerstore_model::big_data_file_name`); keys that cannot be stored safely are refused
//!   (`layerstore_model::check_big_data_key`).
//!
//! # Example
//!
//! ```
//! use layerstore_model::Image;
//! use layerstore_recordstore::{Layout, RecordStore, Session};
//!
//! let root = tempfile::tempdir().unwrap();
//! let layout = Layout::new(root.path().join("vfs-images"), "images.lock", "images.json");
//! let store: RecordStore<Image> = RecordStore::open(layout)?;
//! {
//!     let mut session = store.write()?;
//!     let mut image = Image::new("0123abcd");
//!     image.names = vec!["busybox:latest".into()];
//!     session.insert(image)?;
//!     session.write_big_data("0123abcd", "manifest", b"{}")?;
//!     session.save()?;
//! } // the exclusive lock is released here
//! let session = store.read()?;
//! assert_eq!(session.get("busybox:latest").unwrap().id, "0123abcd");
//! assert_eq!(session.get("0123").unwrap().id, "0123abcd");
//! assert_eq!(session.read_big_data("0123abcd", "manifest")?.unwrap(), b"{}");
//! # Ok::<(), layerstore_recordstore::Error>(())
//! ```
//!
//! # Limitations
//!
//! * Sessions are not re-entrant: opening a second session of the same store on a thread
//!   that holds one can deadlock, as with the lock files themselves.
//! * [`Dir::remove_tree`] keeps one descriptor open per directory level; a tree deeper than
//!   the process's descriptor limit fails with `EMFILE` (user data is never that deep).
//! * Temp files of interrupted writes are removed from the store's directory when a
//!   read-write store is opened and the lock is free; temp files inside an item directory go
//!   with that directory.

#![forbid(unsafe_code)]

pub mod crash;
mod dir;
mod error;
mod kinds;
mod records;
mod store;

pub use dir::{Dir, FileStamp, TEMP_PREFIX};
pub use error::{Error, Result};
pub use records::{BadRecord, BigDataRecord, NameRepair, NamesOp, Record, Records};
pub use store::{Layout, ReadSession, RecordStore, Session, SetAsideFile, WriteSession};

/// The digest Go records for a big-data item (`digest.Canonical.FromBytes`): `sha256:` and
/// the hex SHA-256 of `data`.
///
/// ```
/// let digest = layerstore_recordstore::canonical_digest(b"");
/// assert_eq!(
///     digest.as_str(),
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn canonical_digest(data: &[u8]) -> layerstore_model::Digest {
    layerstore_model::Sha256Hasher::digest(data)
}
