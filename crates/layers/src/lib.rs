//! The container layer store of containers/storage (`layers.go`), in Rust, on disk exactly
//! where and how Go keeps it, so that podman, buildah, the Go `containers-storage` tool and
//! this crate can share one store.
//!
//! [`LayerStore`] keeps the layer records, their names, metadata, flags and big data, applies
//! layer tarballs through a graph driver while recording them with tar-split (so
//! [`LayerStore::diff`] gives the original tarball back byte for byte), and counts mounts
//! across processes. Drivers come from a [`Registry`] ([`default_registry`]: overlay, btrfs, vfs,
//! in `auto`'s order). [`LayerStore::check`] finds broken layers and leftovers and repairs them.
//!
//! # Staged layers, zstd:chunked and additional layer stores
//!
//! * **Staging** (Go's `ApplyDiffWithDiffer` family): [`LayerStore::apply_diff_with_differ`]
//!   lets a [`Differ`] fill a driver-made staging directory (`overlay/staging/<random>`,
//!   `vfs/staging/<random>`), [`LayerStore::apply_diff_from_staging_directory`] moves it
//!   into a layer in one atomic exchange and records it as `apply_diff` would (digests,
//!   sizes, compression, owners, tar-split, big data), [`LayerStore::put_with_differ`] does
//!   both for a new layer all-or-nothing, [`LayerStore::cleanup_staging_directory`] drops an
//!   unused one and [`LayerStore::differ_target`] names a layer's own files. Overlay and vfs
//!   (btrfs refuses).
//! * **zstd:chunked** ([`chunked`]): a differ that reads a blob through a range reader,
//!   takes files whose digest a local index already holds from there and reads and
//!   decompresses only the rest; the layer's diff is the plain pull's, byte for byte.
//! * **Additional layer stores**: [`LayerStore::lookup_additional_layer`] and
//!   [`LayerStore::put_additional_layer`] adopt a layer a lazy-pulling filesystem serves
//!   (overlay option `additionallayerstore=<path>[:ref]`).
//!
//! # On-disk layout (Go containers/storage 1.43)
//!
//! ```text
//! <graphroot>/                        0700
//!   storage.lock  userns.lock         0644  created, as Go's GetStore does
//!   mounts/  tmp/                     0700
//!   <driver>/                         the driver's home (vfs: dir/<id>/)
//!   <driver>-layers/                  0700
//!     layers.json                     0600  the records: compact JSON array, creation order
//!     layers.lock                     0644  fcntl lock + 64-byte last-writer token
//!     <id>.tar-split.gz               0600  tar-split records of the applied diff
//!     <id>/<big-data name>            0600  big data ("key" or "=base64(key)")
//!     layers.set-aside.json           0600  records taken out by check --repair, wipe or a
//!                                           delete (ours only, see below)
//!   <driver>-images/images.lock, <driver>-containers/containers.lock
//! <runroot>/                          0700
//!   <driver>-layers/mountpoints.json  0600  [{"id","path","count"}] of mounted layers
//!   <driver>-layers/mountpoints.lock  0644
//!   <driver>-containers/  <driver>-locks/
//! ```
//!
//! # Locking model
//!
//! * Every call takes `layers.lock` (fcntl record lock, the one Go takes): **shared** for
//!   reads, **exclusive** for changes. Go 1.43 takes it exclusively even to list; we do not.
//!   `mountpoints.lock` is taken inside it, as in Go.
//! * The records are reloaded only when the lock's last-writer token changed (a write by
//!   another process, ours or Go's), when `layers.json`'s mtime changed (a hand edit), or,
//!   for mount counts, when `mountpoints.lock`'s token changed. A write records the new token
//!   **before** writing the file (so a crash half-way still reads as a change).
//! * In the process, one handle is shared by threads (`Send + Sync`): the records sit behind
//!   a `parking_lot::RwLock`, always taken after the file lock.
//! * A reader that finds incomplete layers (or a name given to two layers) left by another
//!   process drops its shared lock, takes the exclusive one, cleans up and reads again (as
//!   newer Go does; 1.43 only cleans up under its always-exclusive lock).
//! * Batches (`delete_many`, `wipe`, cleanup at load) save `layers.json` twice in all, not
//!   twice per layer.
//! * **Sessions** hold the lock across calls, as guard values, so a caller (the Store of
//!   the `layerstore` crate) can hold it with the image and container stores' locks in Go's
//!   order: [`LayerStore::read_session`] ([`LayerReader`], shared) and
//!   [`LayerStore::write_session`] ([`LayerWriter`], exclusive; every change saved before
//!   the call returns), both read through [`LayerRecords`]. Each per-call method is one
//!   session. Not re-entrant: a thread holding one must not call the same store otherwise.
//! * The read-only layer stores of additional image stores
//!   ([`LayerStore::open_additional`]) share this store's driver, as Go's do.
//!
//! # Crash safety
//!
//! Every file is replaced atomically (temp file, fsync, rename, fsync of the directory). A
//! layer being created is first saved with the `incomplete` flag; the flag goes only after its
//! files and its `<id>.tar-split.gz` (written to `.<id>.tar-split.gz.tmp`, renamed once the
//! diff applied) are in place. A delete first flags the record, then removes files, then the
//! record. A read-write open (or the next call of any handle) deletes incomplete layers, as
//! Go does, and stray temp files. So a crash at any point never leaves a layer listed that
//! cannot give back its diff. [`crash`] names the points tests kill the process at.
//!
//! An incomplete layer whose files cannot be removed (a busy mount inside it, a read-only
//! filesystem, too many open files) does not make the store unopenable, as it does in Go:
//! it stays listed and flagged, the other incomplete layers are deleted, the handle reports it
//! ([`LayerStore::cleanup_failures`]; the CLI prints a warning) and does not retry it, and the
//! next handle (or `check --repair`) tries again.
//!
//! # Differences from Go 1.43, on purpose
//!
//! * A corrupt or truncated `layers.json` is an error naming the file and position
//!   ([`Error::CorruptLayers`]); the file is left as it was (Go 1.43 silently drops records)
//!   until [`LayerStore::rebuild_damaged`] keeps it aside and rebuilds it.
//! * Deleting by name resolves the ID before checking for children; mounting by name works.
//! * IDs follow one rule ([`layerstore_model::validate_store_id`]): `[A-Za-z0-9][A-Za-z0-9._-]*`,
//!   at most 237 bytes, never a name the store gives its own files (`layers.json`,
//!   `*.tar-split.gz`, `*.lock`, `tmp`, ...). A caller-given ID that breaks it is
//!   [`Error::InvalidId`] (Go accepts `--id layers.json`, and its delete then damages the
//!   store). Random IDs (64 hex, what podman writes) always pass. A record already on disk
//!   whose ID breaks the rule (Go accepts any string) is loaded and listed, and its names and
//!   metadata can be read and changed, but no path is ever built from its ID: every call that
//!   would touch its files (diff, changes, mount, big data, applydiff, a child on top) is
//!   [`Error::UnsafeId`]; deleting it, `wipe` and `check --repair` move its record to
//!   `<driver>-layers/layers.set-aside.json` and leave its files, which the next `check`
//!   reports as orphans (and its `--repair` removes through the driver's own listing).
//! * One record of `layers.json` that does not decode (an invalid digest, a bad timestamp, an
//!   ID that could not name a file) does not make the store unopenable: the other records load,
//!   the bad one is kept byte for byte and written back on every save, its ID stays taken,
//!   `check` reports it (`unreadable-record`) and `--repair` (or `wipe`) moves it to
//!   `layers.set-aside.json`, never deleting it. A file that is not a JSON array of objects
//!   is still an error. Go 1.43 opens a store with an invalid digest (it keeps digests as
//!   strings) but drops every record when any field fails to decode.
//! * Big-data keys that Go's file name would make clash (`.`, `..`, `ab/`, …) are refused
//!   ([`layerstore_model::check_big_data_key`]); the others are stored under Go's names.
//! * `mountpoints.json` is not trusted: a record is applied only when its path is where the
//!   driver keeps that layer (absolute, plain, below the driver's home or an additional
//!   store's, naming the layer, and still there once symlinks are resolved). Others (`/`, a
//!   host directory, a path through a symlink out of the home, a count beyond `u32`) are
//!   ignored, reported by `check` (`untrusted-mount-record`) and dropped by `--repair`, never
//!   unmounted; Go hands them out (`mount` printed `/`). Counts never wrap: one more mount of
//!   a layer counted `4294967295` times is [`Error::MountCountOverflow`].
//! * `check --repair` never acts through a symlink: a mount the kernel shows below the
//!   driver's home is detached through a descriptor opened from the home without following
//!   any symlink (`openat2` `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS`, then `umount2` of
//!   `/proc/self/fd/N`), and where a symlink stands in the driver's home in a layer's place,
//!   the link itself is removed before the driver is asked to unmount or remove the layer, so
//!   another store's layer is never unmounted or deleted.
//! * A parent cycle in hand-edited records (a layer that is its own parent, or a longer loop)
//!   ends every walk: deleting a layer of the cycle says it has children (as Go does), `check`
//!   reports each member (`parent-cycle`) and `--repair` deletes the cycle and every layer
//!   standing on it.
//! * The store's files are reached through their directory's descriptor, never through a
//!   symlink, and no read waits: every file is opened `O_NOFOLLOW|O_NONBLOCK` and must be a
//!   regular file, every directory (`<driver>-layers/`, a big-data directory) is opened and
//!   created `O_NOFOLLOW`. A symlink, FIFO or device where the store keeps a file or directory
//!   is an error naming it ([`Error::UnexpectedFileType`]); `check` reports it
//!   (`unexpected-file`, or `corrupt-tar-split` for a layer's tar-split) and `--repair` removes
//!   the entry itself, never its target. Go follows such symlinks and blocks on such FIFOs.
//!
//! # Checking and repairing
//!
//! [`LayerStore::check`] returns a
//! [`CheckReport`] of typed [`Problem`]s, each naming the layer or path, and with
//! [`CheckOptions::repair`] the [`Action`]s taken. It compares with Go's `Store.Check` /
//! `Store.Repair` (containers/storage ≥ 1.47, `containers-storage check [-q] [-r]`) thus:
//!
//! * **Same idea for contents**: both rebuild each layer's diff from its tar-split records and
//!   compare digest and size with the record (Go: `LayerDigests`; its `-q` skips it, our
//!   [`CheckOptions::verify_contents`]). Go additionally keeps the rebuilt tar headers and,
//!   with `LayerContents`, mounts each layer and compares the tree with them, which also
//!   catches files *added* to a layer; we do not walk the tree, so an added file that no
//!   tar-split entry names goes unnoticed (a changed or missing one is found, by its CRC-64).
//!   We report a recorded diff digest without a tar-split file as such (Go's `Diff` falls
//!   back to the driver's diff there, so Go reports at best a digest mismatch).
//! * **More leftovers**: Go reports driver layers without a record (`ErrLayerUnaccounted`),
//!   only when the driver implements `ListLayers`, and users have seen it miss them: one
//!   report found `podman system check --repair` listing no orphans while thousands of
//!   overlay directories had no record (and its locking was fixed later, in
//!   containers/container-libs#720 and #751, backported as containers/storage#2394). 1.43 has no check at all (`Check`/`Repair`
//!   came with containers/storage#1569, v1.47). Our check lists the driver's layers under
//!   the layer lock and compares them with `layers.json` as read under it. We also report
//!   `<id>.tar-split.gz` files and big-data directories without a record, temp files of
//!   unfinished atomic writes, names given to several layers and incomplete layers (which
//!   Go's load cleans up silently before its check can see them; our check reads the files
//!   itself and changes nothing), and mount counts the kernel's mount table contradicts.
//! * **Not checked here**: images and containers (this crate has none). The Store (crate
//!   `layerstore`, CLI `layerstore check`) checks them and calls [`LayerWriter::check`] under
//!   its locks with a [`Beyond`]: the layers its images and containers use, which repair
//!   keeps (never deleting a layer in use, or one below it), and the layers of other layer
//!   stores, which are no missing parents. Nothing like Go's `ErrLayerUnreferenced`.
//! * **Rebuilding**: a `layers.json` that does not load is rebuilt from disk by
//!   [`LayerStore::rebuild_damaged`] (the damaged file kept as `layers.json.damaged-<n>`;
//!   records from the driver's layers, parents from overlay's `lower` files or the images'
//!   layer chains, diffs recomputed from tar-split files). Go has no such thing.
//! * **Repair**: Go deletes each damaged layer with `DeleteLayer`, which refuses a layer that
//!   still has children, so a broken parent stays. We delete the broken layer's descendants
//!   too, children first, all under one write lock, saving `layers.json` once to flag them
//!   `incomplete` and once without them (so a crash half-way is finished by the next open).
//!   Like Go we delete a layer whose big-data item is missing. Every action is reported.
//! * **Found in Go's own data**: in the stores the Go tool 1.43 wrote for our fixtures, the
//!   check flags one layer, `sparse-pax`: Go applied a PAX sparse file it cannot give back
//!   (its diff writes the file dense, so digest and size differ). Go's check would too.
//!
//! # Limitations
//!
//! * [`LayerStore::check`] holds the shared lock while it rebuilds every diff, so writers
//!   wait for it (use [`CheckOptions::verify_contents`] `= false` for a quick pass).
//! * Read-only stores keep mount counts in the process (they have no `mountpoints.json`).
//! * `volatile-layers.json` (Go ≥ 1.45) is neither read nor written.
//! * A layer applied from bzip2 or xz cannot be diffed without choosing another compression
//!   (as in Go).
//!
//! # Example
//!
//! ```
//! use layerstore_layers::{CheckOptions, DiffOptions, LayerOptions, LayerStore, StoreOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let store = LayerStore::open(StoreOptions::new(dir.path().join("graph"), dir.path().join("run"), "vfs"))?;
//!
//! // A tarball with one file.
//! let mut builder = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_gnu();
//! header.set_size(6);
//! header.set_mode(0o644);
//! header.set_cksum();
//! builder.append_data(&mut header, "hello.txt", &b"hello\n"[..])?;
//! let tarball = builder.into_inner()?;
//!
//! let (layer, _) = store.put(&LayerOptions::new().name("base"), Some(&mut &tarball[..]))?;
//! assert_eq!(store.get("base")?.id, layer.id);
//! assert_eq!(layer.uncompressed_size, tarball.len() as i64);
//!
//! let mut diff = Vec::new();
//! store.diff(None, "base", &DiffOptions::default(), &mut diff)?;
//! assert_eq!(diff, tarball, "the original tarball, byte for byte");
//!
//! let dir_of_layer = store.mount("base", &Default::default())?;
//! assert_eq!(std::fs::read(dir_of_layer.join("hello.txt"))?, b"hello\n");
//! assert_eq!(store.unmount("base", false)?, 0);
//!
//! // Every layer rebuilds to its recorded digest; nothing is left over.
//! assert!(store.check(&CheckOptions::default())?.is_clean());
//! store.delete("base")?;
//! assert!(store.layers()?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod error;
mod files;
mod options;
mod records;
mod state;
mod store;

pub mod chunked;
pub mod crash;

pub use error::{Error, Result};
pub use files::big_data_file_name;
pub use options::{DEFAULT_MAX_LAYER_SIZE, DiffOptions, LayerOptions, MountOptions, StoreOptions};
pub use store::check::{
    Action, Beyond, CheckOptions, CheckReport, LayerChain, Problem, Rebuilt, RebuiltLayer, Repair,
};
pub use store::{LayerReader, LayerRecords, LayerStore, LayerWriter, default_registry};

pub use layerstore_driver::{
    AdditionalLayer, Change, ChangeKind, Differ, DifferOptions, DifferOutput, Registry,
};
pub use layerstore_model::{Compression, Digest, IDMap, Layer};

#[cfg(test)]
mod tests {
    #[test]
    fn the_store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::LayerStore>();
        assert_send_sync::<super::Error>();
    }
}
