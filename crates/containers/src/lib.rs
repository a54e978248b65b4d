//! The container store of containers/storage (`containers.go` of v1.43): the records of
//! `<graphroot>/<driver>-containers/containers.json` under `containers.lock`, each container's
//! big-data items and `userdata/` directory in `<graphroot>/<driver>-containers/<id>/`, and its
//! run directory `<runroot>/<driver>-containers/<id>/userdata`, shared with Go processes
//! (podman, buildah, CRI-O, `containers-storage`).
//!
//! Built on `layerstore-recordstore` with the records of `layerstore-model`
//! ([`Container`](layerstore_model::Container)); the container's read-write layer is the
//! caller's (the Store facade makes it first and removes it when the record cannot be made).
//!
//! # What Go does, and so this crate
//!
//! * **Create.** `MountLabel` and `ProcessLabel` flags both or neither (neither records both
//!   empty, as Go without SELinux); the ID given or a random unused one; `MountOpts` and
//!   `Volatile` flags as Go writes them; names deduplicated and refused when taken (`the
//!   container name "c" is already in use by <id>. You have to remove that container to be
//!   able to reuse that name: that name is already in use`); UID and GID mappings refused
//!   when their ranges overlap (`the specified UID and/or GID mapping 0:1:10 conflicts with
//!   other mappings: invalid mappings specified`, [`check_id_mappings`]); created now.
//! * **Lookups.** Exact ID, exact name, the container's layer ID, unique ID prefix.
//! * **Names** move from the container holding them; containers keep no names history.
//! * **Big data.** The file first, then the record; the digest is always the sha256 of the
//!   bytes.
//! * **Directories.** [`ContainerStore::directory`] and [`ContainerStore::run_directory`]
//!   create `userdata/` (0700) on demand, under the read lock as Go does.
//! * **Delete.** Record saved first, then the container's directories in both roots.
//! * **Volatile containers** of newer Go (`volatile-containers.json`) are read and written
//!   back to that file; new volatile containers go to `containers.json`, flagged, as v1.43
//!   does.
//!
//! # Where this differs from Go 1.43, on purpose
//!
//! * The size or digest of an item missing from the record is computed from its file and
//!   not recorded (Go 1.43 tries to record it under its read lock and fails with `container
//!   store is not locked`).
//! * Delete and wipe remove the run-root directory too (Go's generic `delete` and `wipe`
//!   leave `<runroot>/<driver>-containers/<id>/`).
//! * Directories are created and removed without following links; removal does not descend
//!   into a mount point.
//! * An undecodable file is an error, a record that cannot be used is listed for `check`,
//!   unsafe big-data keys (`userdata`, `ab/`, `.`) are refused, and calls that change
//!   nothing do not save (as for images).
//! * Error texts keep Go's words and add the container they are about (Go's bare
//!   `container not known`, `that ID is already in use`).
//!
//! # Example
//!
//! ```
//! use layerstore_containers::{ContainerStore, NewContainer};
//!
//! let root = tempfile::tempdir().unwrap();
//! let store = ContainerStore::open(
//!     root.path().join("graph/vfs-containers"),
//!     root.path().join("run/vfs-containers"),
//! )?;
//! let container = store.create(NewContainer {
//!     names: vec!["web".into()],
//!     layer_id: "8f2e".repeat(16),
//!     ..NewContainer::default()
//! })?;
//! assert_eq!(container.flags["MountLabel"], "");
//! // Found by its layer too.
//! assert_eq!(store.lookup(&"8f2e".repeat(16))?, container.id);
//! let userdata = store.run_directory("web")?;
//! assert!(userdata.ends_with(format!("run/vfs-containers/{}/userdata", container.id)));
//! store.delete("web")?;
//! assert!(!userdata.exists());
//! # Ok::<(), layerstore_containers::Error>(())
//! ```

#![forbid(unsafe_code)]

mod error;
mod store;

pub use error::{Error, Result};
pub use layerstore_recordstore::NamesOp;
pub use store::{
    CONTAINERS_LOCK, ContainerReader, ContainerSession, ContainerStore, ContainerWriter,
    NewContainer, VOLATILE_CONTAINERS_JSON, check_id_mappings,
};
