//! The image store of containers/storage (`images.go` of v1.43): the records of
//! `<graphroot>/<driver>-images/images.json` under `images.lock`, and each image's big-data
//! items in `<graphroot>/<driver>-images/<id>/`, read and written so that Go processes
//! (podman, buildah, skopeo, `containers-storage`) and ours share one store.
//!
//! Built on `layerstore-recordstore` (locking, reloading, atomic saves, big-data files) with
//! the records of `layerstore-model` ([`Image`](layerstore_model::Image)); this crate adds
//! Go's rules for images.
//!
//! # What Go does, and so this crate
//!
//! * **Sessions.** [`ImageStore::read`] holds the shared lock, [`ImageStore::write`] the
//!   exclusive one, for as long as the session lives (the Store facade holds several stores'
//!   sessions in Go's lock order). Each [`ImageStore`] method is one session.
//! * **Create.** The ID given (any string that can name a directory) or a random one (64
//!   hex, redrawn while the first 12 characters are all digits or the ID is taken); names
//!   deduplicated, and refused if another image holds one; the digest (`--digest`)
//!   validated; `created` now unless given. Go's texts: `an image with ID "x" already exists:
//!   that ID is already in use`, `image name "n" is already associated with image "<id>":
//!   that name is already in use`, `validating digests for new image: validating image digest
//!   "bogus": invalid checksum digest format`.
//! * **Lookups.** Exact ID, then exact name, then unique ID prefix; by digest through the
//!   image's digest list (its `digest`, then each manifest item's digest).
//! * **Names.** Set, add (given names first) and remove ([`NamesOp`]): a name another image
//!   holds moves here; each name assigned goes first in this image's `names-history` (once).
//! * **Big data.** One file per item, named as Go names it; the file is written before the
//!   record. Items whose key starts with `manifest` are digested by the caller's manifest
//!   digester and feed the digest list; the image's `digest` is the first one it ever got,
//!   then stays. Size falls back to the file's size; the digest comes from the record only.
//! * **Delete.** The record is removed and saved first, then the image's directory.
//! * **Read-only stores** (additional image stores) are only read-locked; every write is
//!   `not allowed to <action> at "<images.json>": called a write method on a read-only store`.
//!
//! # Where this differs from Go 1.43, on purpose
//!
//! * An `images.json` that does not decode is an error naming it (newer Go), never a
//!   silently truncated store that the next write makes permanent.
//! * A record that cannot be used (an invalid digest, an unusable ID) is listed for `check`
//!   ([`ImageStore::bad_records`]) and kept in the file; Go 1.43 refuses to open the whole
//!   store for one bad digest.
//! * Big-data keys that would clash with another item or leave the directory (`ab/`, `.`,
//!   `..`) are refused (`layerstore_model::check_big_data_key`).
//! * Calls that change nothing do not write (Go saves after every names, metadata or flag
//!   call).
//! * [`ImageWriter::remove_mapped_layer`] compares IDs exactly; Go folds case.
//! * Error texts keep Go's words and add the image, item or digest they are about (Go's
//!   bare `size is not known` names neither).
//!
//! # Example
//!
//! ```
//! use layerstore_images::{ImageStore, NamesOp, NewImage};
//! use layerstore_recordstore::canonical_digest;
//!
//! let root = tempfile::tempdir().unwrap();
//! let store = ImageStore::open(root.path().join("vfs-images"))?;
//! let image = store.create(NewImage {
//!     names: vec!["busybox:latest".into()],
//!     ..NewImage::default()
//! })?;
//! let sha256 = |data: &[u8]| Ok(canonical_digest(data));
//! store.set_big_data("busybox:latest", "manifest", b"{}", Some(&sha256))?;
//! let found = store.by_digest(canonical_digest(b"{}").as_str())?;
//! assert_eq!(found[0].id, image.id);
//! assert_eq!(found[0].digest, canonical_digest(b"{}").as_str(), "the first manifest's");
//! store.update_names(&image.id, &["busybox:1".into()], NamesOp::Add)?;
//! // Go's add: the given names first; each one assigned goes first in the history.
//! let renamed = store.get("busybox:1")?;
//! assert_eq!(renamed.names, ["busybox:1", "busybox:latest"]);
//! assert_eq!(renamed.names_history, ["busybox:latest", "busybox:1"]);
//! # Ok::<(), layerstore_images::Error>(())
//! ```

#![forbid(unsafe_code)]

mod error;
mod store;

pub use error::{Error, Result};
pub use layerstore_recordstore::NamesOp;
pub use store::{
    IMAGES_LOCK, ImageReader, ImageSession, ImageStore, ImageWriter, ManifestDigester, NewImage,
};
