//! The Store of containers/storage (`store.go` of v1.43): the layers, images and containers
//! of one graph root and driver, plus read-only additional image stores, with Go's
//! cross-kind rules, on disk exactly as Go keeps them, so that podman, buildah, CRI-O,
//! skopeo, the Go `containers-storage` tool and this crate share one store.
//!
//! [`Store`] composes three stores and adds what none of them can know alone:
//!
//! | store | crate | files |
//! |---|---|---|
//! | layers | `layerstore-layers` | `<graphroot>/<driver>-layers/layers.json`, tar-split files, the driver's home; `<runroot>/<driver>-layers/mountpoints.json` |
//! | images | `layerstore-images` | `<graphroot>/<driver>-images/images.json`, `<id>/` big data |
//! | containers | `layerstore-containers` | `<graphroot>/<driver>-containers/containers.json`, `<id>/` big data and `userdata/`; `<runroot>/<driver>-containers/<id>/userdata` |
//! | additional image stores | the same, read-only | `<dir>/<driver>-images/images.json`, `<dir>/<driver>-layers/layers.json` |
//!
//! # The contract
//!
//! * **Opening** ([`Store::open`], Go's `GetStore`): roots made absolute; the directories and
//!   lock files Go creates (`storage.lock`, `userns.lock`, `mounts/`, `tmp/`, the kind
//!   directories and their lock files, `<runroot>/<driver>-containers`,
//!   `<runroot>/<driver>-locks`); the driver started; the additional image stores the driver
//!   options name (`vfs.imagestore=`, `.imagestore=`, overlay `imagestore=` and
//!   `additionalimagestore=`, with Go's checks and texts) opened read-only, their layer
//!   stores at first use, sharing the driver. The layer records load at open (the image and
//!   container records at first use); layers a crash left marked are settled then (see
//!   *Crash safety*).
//! * **Locks**, in Go's order and never otherwise: `userns.lock` → `storage.lock` → the
//!   read-write `layers.lock` → each additional `layers.lock` (shared) → `images.lock` →
//!   each additional `images.lock` (shared) → `containers.lock`. Each call takes the
//!   sessions it needs in that order and holds them to its end (the stores' sessions are
//!   guard values: `LayerStore::read_session`/`write_session`, `ImageStore::read`/`write`,
//!   `ContainerStore::read`/`write`); reads take shared locks (Go 1.43 write-locks even to
//!   list), changes exclusive ones. [`Store::read`] holds every shared lock at once for a
//!   consistent view ([`StoreReader`]). Additional stores are only ever read-locked.
//! * **Lookups** search the read-write store, then each additional one, in option order;
//!   across kinds ([`Store::find`]: `exists`, `metadata`, `names`, `lookup`) layers, then
//!   images, then containers, each store locked only if the earlier ones did not match; a
//!   unique ID prefix in an earlier store beats an exact name in a later one, as in Go.
//!   Renames act on the first of read-write layers, read-write images, additional images
//!   (copied up first), containers; [`Store::delete`] tries a container, then an image,
//!   then a layer. Containers are also found by their layer's ID.
//! * **What uses a layer**: another layer (its parent), an image of the read-write store
//!   (its top layer or an ID-mapped copy of it, `mapped-layers`), a container (its layer).
//!   [`Store::delete_layer`] and [`Store::delete`] refuse such a layer however it is named
//!   (full ID, unique prefix or name: resolved first), in Go's words: `used by layer <id>:
//!   layer has children`, `layer <id> used by image <id>: layer is in use by an image`,
//!   `layer <id> used by container <id>: layer is in use by a container`.
//! * **Images**: [`Store::create_image`] resolves its top layer in any layer store;
//!   [`Store::delete_image`] refuses an image a container was made from (`image used by
//!   <id>: image is in use by a container`, the last such container named, as Go does) and
//!   removes its ID-mapped copies, then its top layer and down its parents while a layer is
//!   no container's, no other image's, and has no other child (Go's walk); with `commit =
//!   false` it only lists them.
//! * **Containers**: [`Store::create_container`] makes the read-write layer on the image's
//!   top layer, or on an ID-mapped copy of it whose mappings are the ones asked for, made
//!   (from the top layer as template, re-owned for the mappings) and recorded in the image
//!   when missing; [`Store::delete_container`] removes the layer, the record and both
//!   directories.
//! * **Mounts**: [`Store::mount`] mounts a container's layer with its mappings, `MountOpts`
//!   and `Volatile` flags, or a layer; [`Store::mount_image`] an image's top layer
//!   read-only; counts are shared with every process through `mountpoints.json`.
//! * **Errors** the Store itself raises are Go's exact texts ([`Error`]); what the stores
//!   below raise passes through with their own messages.
//!
//! # The Go tool's commands on the Store
//!
//! | command | Store calls |
//! |---|---|
//! | `layers`, `layer` | [`Store::read`] ([`StoreReader::layers`], [`StoreReader::images`], [`StoreReader::containers`]: the images and containers using each layer), [`Store::layer`] |
//! | `create-layer`, `import-layer` | [`Store::create_layer`], [`Store::put_layer`] (`--hostuidmap` is [`HostMapping`]) |
//! | `delete-layer` | [`Store::delete_layer`] |
//! | `applydiff`, `diff`, `diffsize`, `changes` | [`Store::apply_diff`], [`Store::diff`], [`Store::diff_size`], [`Store::changes`] |
//! | `list-layer-data`, `get-layer-data`, `set-layer-data` | [`Store::list_layer_big_data`], [`Store::layer_big_data`], [`Store::set_layer_big_data`] |
//! | `layer-parent-owners`, `container-parent-owners` | [`Store::layer_parent_owners`], [`Store::container_parent_owners`] |
//! | `images`, `image`, `images-by-digest` | [`Store::images`], [`Store::image`] (`read_only`), [`Store::image_size`], [`Store::images_by_digest`] |
//! | `create-image`, `delete-image [--test]` | [`Store::create_image`], [`Store::delete_image`] |
//! | `list-image-data`, `get-image-data[-size,-digest]`, `set-image-data` | [`Store::list_image_big_data`], [`Store::image_big_data`], [`Store::image_big_data_size`], [`Store::image_big_data_digest`], [`Store::set_image_big_data`] |
//! | `containers`, `container` | [`Store::containers`], [`Store::container`], [`Store::container_size`] |
//! | `create-container`, `delete-container` | [`Store::create_container`], [`Store::delete_container`] |
//! | `list-container-data`, `get-container-data[-size,-digest]`, `set-container-data` | [`Store::list_container_big_data`], [`Store::container_big_data`], [`Store::container_big_data_size`], [`Store::container_big_data_digest`], [`Store::set_container_big_data`] |
//! | `get-container-dir`, `get-container-run-dir` | [`Store::container_directory`], [`Store::container_run_directory`] |
//! | `exists [-l/-i/-c]`, `metadata`, `set-metadata`, `get-names` | [`Store::exists`] (with [`Store::layer`], [`Store::image`], [`Store::container`]), [`Store::metadata`], [`Store::set_metadata`], [`Store::names`] |
//! | `add-names`, `set-names` | [`Store::set_names`] (the Go tool adds by setting old + new), [`Store::add_names`], [`Store::remove_names`] |
//! | `delete`, `wipe`, `shutdown` | [`Store::delete`], [`Store::wipe`], [`Store::shutdown`] |
//! | `mount [-r] [-o OPTS]`, `unmount`, `mounted` | [`Store::mount`] ([`Store::mount_with_options`] for `-o`), [`Store::mount_image`], [`Store::unmount`] (then [`Store::unmount_image`]), [`Store::mounted`] |
//! | `status`, `version` | [`Store::graph_root`], [`Store::run_root`], [`Store::driver_name`], [`Store::driver_options`], [`Store::status`], [`Store::version`] |
//! | `pull` (ours, `layerstore-pull`) | [`Store::layer`] (reuse), [`Store::stage_layer`] then [`Store::put_staged_layer`] per layer, [`Store::create_image`], [`Store::set_image_big_data`], [`Store::add_names`] |
//! | `check [--repair]` (ours) | [`Store::check`], [`Store::repair`] (see [`CheckOptions`]) |
//!
//! # Crash safety
//!
//! Go 1.43 keeps a store usable across a crash only within one record file (incomplete
//! layers are deleted at the next load). The four operations that span the layer store
//! and a record store go further here: a SIGKILL at any point of create-image,
//! create-container, delete-image and delete-container leaves a store podman, the Go tool
//! and `check` accept: never an image or container pointing at a missing layer, and no
//! layer that nothing uses unless it is marked, so it is found and settled.
//!
//! The mark is the layer flag [`PENDING_FLAG`] (`"layerstore-pending"`), whose value says
//! which operation it waits for ([`PendingOp`]); Go keeps such flags and ignores them. The
//! protocol, all under the operation's locks:
//!
//! * **create-container**: an ID-mapped copy is created marked (`mapped-copy <image>`),
//!   recorded in the image, then unmarked; the container's layer is created marked
//!   (`create-container <id>`), the record saved, then the mark removed.
//! * **delete-image**: the layers to remove are marked (`delete-image <id>`, one save),
//!   the record removed (saved), then the layers deleted (flagged `incomplete`, files
//!   removed, records removed: the layer store's own protocol).
//! * **delete-container**: its layer is marked (`delete-container <id>`), the record and
//!   directories removed, then the layer deleted.
//! * **create-image** writes only the image record, while the shared `layers.lock` keeps
//!   its layer in place.
//!
//! Settling ([`Store::settle_pending`], run by [`Store::open`] when marks exist, under the
//! exclusive locks of layers, images and containers, so no operation that marks is
//! running): a marked layer still used (by an image, a container, or a layer that stays)
//! loses its mark, since its create finished or its delete never began; an unused one is
//! deleted, since its create never finished or its delete did. [`Store::pending_layers`]
//! lists marks without changing anything, for `check`. The crash points ([`crash`]) name
//! the moments between the steps.
//!
//! # Differences from Go 1.43, on purpose
//!
//! The Go bugs of the store document (section 7.2) are fixed:
//!
//! * `delete-layer` (and `delete`) resolve a name or prefix to the full ID before checking
//!   who uses the layer (Go compares the raw argument and deletes an image's top layer
//!   named by prefix), and refuse a layer that is an image's ID-mapped copy (Go deletes it
//!   and unregisters it from the image).
//! * `delete-image` never lists or deletes a layer of an additional store (Go lists it,
//!   deletes the image record, then fails with `layer not known`); it refuses, before
//!   changing anything, an image whose ID-mapped copy has a child of its own; and the
//!   record goes before the layers only after they are marked (see *Crash safety*).
//! * Renaming an image of an additional store copies it up with its names, history, flags
//!   and big data, as newer Go does (1.43 drops a name and all big data).
//! * A container's big-data size or digest missing from its record is computed from its
//!   file (1.43 fails with `container store is not locked`).
//! * `delete` of a container, `delete-container` and `wipe` behave alike: a container whose
//!   layer is gone is deleted (Go's `delete` refuses), and both `userdata` directories go
//!   with the whole run-root directory (Go's `delete` and `wipe` leave it).
//! * A container whose layer an image uses (made with `create-image <container layer>`)
//!   is deleted without that layer (Go deletes it and leaves the image pointing at nothing).
//! * A container's record is checked (ID, names, overlapping mappings, labels) before its
//!   layer is made (Go makes the layer, then rolls it back).
//! * Unmounting accepts a mount point (Go's Store refuses it).
//! * A container made from an image without layers gets the store's default ID mappings,
//!   as one made without an image does (Go 1.43 gives it none).
//! * On overlay, a container with ID mappings on an image gets a chowned, mapped copy of
//!   the image's top layer on every kernel, as on vfs (Go 1.43 makes none where the kernel
//!   has ID-mapped mounts, and shifts at mount time); see the overlay crate and
//!   *Limitations* for what this means for a store shared with Go.
//! * Records are read under shared locks; a file that does not decode is an error naming
//!   it, never truncated by the next save; names and keys follow the image, container and
//!   layer stores' own rules (see their crates).
//!
//! # Limitations
//!
//! * No automatic user namespaces (`AutoUserNs`: an API-only option of Go's
//!   `CreateContainer`) and no SELinux: `MountLabel`/`ProcessLabel` are recorded empty, as
//!   Go records them without SELinux.
//! * The driver is not started again when another process touched `storage.lock` (Go
//!   re-initialises it before mounts and diffs).
//! * Overlay here does not shift IDs at mount time (`supports_shifting` is false), so
//!   ID-mapped containers get chowned copies on overlay as on vfs. Go 1.43 on a kernel with
//!   idmapped mounts makes no copies and shifts at mount time: the Go tool mounting an
//!   ID-mapped container made here shifts its files a second time, and a mapped container
//!   Go made is refused here (`cannot mount layer <id>: shifting not enabled`).
//! * [`Store::open`] fails when `layers.json` does not decode (the layer store loads at
//!   open), naming the file; [`Store::rebuild_damaged_layers`] (`check --repair`) rebuilds
//!   it from disk first, keeping the damaged file aside. A damaged `images.json` or
//!   `containers.json` does not stop the open: [`Store::check`] reports it and
//!   [`Store::repair`] sets it aside (see [`CheckOptions`]).
//! * Both roots must be given ([`Error::IncompleteOptions`]): resolving `storage.conf` is
//!   the caller's.
//!
//! # Example
//!
//! ```
//! use layerstore::{ContainerOptions, LayerOptions, NewImage, Store, StoreOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreOptions::new(dir.path().join("graph"), dir.path().join("run"), "vfs"))?;
//! let base = store.create_layer(&LayerOptions::new(), Default::default())?;
//! let image = store.create_image(NewImage {
//!     names: vec!["localhost/demo:latest".into()],
//!     top_layer: base.id[..12].to_owned(), // any unique prefix or name
//!     ..NewImage::default()
//! })?;
//! let container = store.create_container(ContainerOptions {
//!     names: vec!["demo".into()],
//!     image: "localhost/demo:latest".into(),
//!     ..ContainerOptions::default()
//! })?;
//! assert_eq!(store.layer(&container.layer_id)?.parent, base.id);
//!
//! // The image's layer is in use, however it is named: first as the container layer's
//! // parent, then as the image's top layer.
//! let refused = store.delete_layer(&base.id[..12]).unwrap_err();
//! assert_eq!(refused.to_string(), format!("used by layer {}: layer has children", container.layer_id));
//! store.delete_container("demo")?;
//! let refused = store.delete_layer("localhost/demo:latest").unwrap_err();
//! assert_eq!(refused.to_string(), "identifier is not a layer", "an image's name is not a layer's");
//! let refused = store.delete_layer(&base.id).unwrap_err();
//! assert_eq!(
//!     refused.to_string(),
//!     format!("layer {} used by image {}: layer is in use by an image", base.id, image.id)
//! );
//! // Deleting the image takes the layers only it used.
//! assert_eq!(store.delete_image(&image.id, true)?, [base.id]);
//! assert!(store.layers()?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod check;
mod containers;
pub mod crash;
mod error;
mod images;
mod kinds;
mod layers;
mod mounts;
mod options;
mod pending;
mod store;

pub use check::{Action, CheckOptions, CheckReport, Problem, Repair};
pub use error::{Error, Result};
pub use kinds::{Item, Kind};
pub use options::{ContainerOptions, HostMapping, StoreOptions};
pub use pending::{PENDING_FLAG, PendingLayer, PendingOp, Settled};
pub use store::{AdditionalStore, Store, StoreReader};

pub use layerstore_images::{ManifestDigester, NamesOp, NewImage};
pub use layerstore_layers::{
    Change, DEFAULT_MAX_LAYER_SIZE, DiffOptions, Differ, DifferOptions, DifferOutput, LayerOptions,
    Problem as LayerProblem, Rebuilt, RebuiltLayer, Repair as LayerRepair,
};
pub use layerstore_model::{Container, Digest, IDMap, Image, Layer};
