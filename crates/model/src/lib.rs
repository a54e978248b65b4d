//! The records of a containers/storage store (layers, images, containers), with JSON
//! identical to what Go's containers/storage 1.43 writes. Records and encodings only: no file
//! or lock I/O.
//!
//! # What is here
//!
//! * [`Layer`]: one record of `<graphroot>/<driver>-layers/layers.json`, with [`IDMap`],
//!   [`Digest`], [`Compression`] and [`Timestamp`] for its fields;
//!   [`parse_layers_json`] / [`encode_layers_json`] for the whole file.
//! * [`Image`]: one record of `<graphroot>/<driver>-images/images.json`, its digest list
//!   ([`Image::digests`], [`Image::recompute_digest`], [`is_manifest_key`]) and names history;
//!   [`parse_images_json`] / [`encode_images_json`].
//! * [`Container`]: one record of `<graphroot>/<driver>-containers/containers.json` and the
//!   flags Go sets ([`VOLATILE_FLAG`], …); [`parse_containers_json`] /
//!   [`encode_containers_json`].
//! * [`MountPointRecord`]: one record of `<runroot>/<driver>-layers/mountpoints.json`;
//!   [`parse_mountpoints_json`] / [`encode_mountpoints_json`].
//! * Big-data items of all three: [`big_data_file_name`] (Go's file names, quirk included)
//!   and [`check_big_data_key`] (the keys that cannot be stored safely).
//! * Layer IDs: [`generate_id`], [`generate_id_unused`], the store's ID rule
//!   [`validate_store_id`], and [`validate_id`] (can the string name a file at all).
//! * [`GoFormatter`] / [`to_go_json`]: serde_json output with Go's escaping and number
//!   formatting, for any other JSON that must match Go (e.g. CLI output).
//!
//! # The layer record
//!
//! Keys in the order Go writes them; "omitted" means not written when empty/zero:
//!
//! | key | field | written |
//! |---|---|---|
//! | `id` | [`Layer::id`] | always |
//! | `names` | [`Layer::names`] | omitted if empty |
//! | `parent` | [`Layer::parent`] | omitted if empty |
//! | `metadata` | [`Layer::metadata`] | omitted if empty |
//! | `mountlabel` | [`Layer::mount_label`] | omitted if empty |
//! | `created` | [`Layer::created`] | always (`0001-01-01T00:00:00Z` if it was missing) |
//! | `compressed-diff-digest` | [`Layer::compressed_digest`] | omitted if `None` |
//! | `compressed-size` | [`Layer::compressed_size`] | omitted if 0 |
//! | `diff-digest` | [`Layer::uncompressed_digest`] | omitted if `None` |
//! | `toc-digest` | [`Layer::toc_digest`] (newer Go) | omitted if `None` |
//! | `diff-size` | [`Layer::uncompressed_size`] | omitted if 0 |
//! | `compression` | [`Layer::compression`] | omitted if [`Compression::None`] |
//! | `uidset`, `gidset` | [`Layer::uids`], [`Layer::gids`] | omitted if empty |
//! | `flags` | [`Layer::flags`] | omitted if empty; keys sorted |
//! | `uidmap`, `gidmap` | [`Layer::uid_map`], [`Layer::gid_map`] | omitted if empty |
//! | `big-data-names` | [`Layer::big_data_names`] | omitted if empty |
//! | anything else | [`Layer::extra`] | after the known keys, sorted |
//!
//! [`Layer::mount_point`], [`Layer::mount_count`] and [`Layer::read_only`] live on the record
//! in memory only, as in Go.
//!
//! The image and container records are laid out the same way; their key tables are on
//! [`Image`] and [`Container`].
//!
//! Decoding a [`Layer`] (an [`Image`], a [`Container`]) follows Go's `encoding/json`: keys
//! match exactly or else ignoring ASCII case, a later duplicate key wins, `null` leaves a
//! string/number field alone and empties a list or map, unknown keys are kept. ([`IDMap`] and [`MountPointRecord`] match
//! keys exactly, ignore unknown ones and read missing ones as 0/empty.)
//!
//! # Limitations
//!
//! * Numbers inside `flags` and unknown fields are kept as serde_json reads them; Go reads them
//!   as `float64`, so for integers beyond 2⁵³ Go would write a rounded value where this crate
//!   writes the exact one. Floats are written as Go 1.43 writes them (`1.0` as `1`, `1e21` as
//!   `1e+21`, `1e-7` as `1e-07`), checked against the Go tool in `tests/it/go_tool.rs`.
//! * Go 1.43 itself drops unknown fields (and `toc-digest`) when it rewrites the file; this
//!   crate keeps them.
//! * Strings must be UTF-8; Go would write invalid bytes as U+FFFD.
//! * Backspace and form feed are written `\u0008`, `\u000c` (jsoniter and Go < 1.22), not the
//!   `\b`, `\f` of Go ≥ 1.22; both decode the same.
//! * `parse_layers_json`, `parse_images_json` and `parse_containers_json` refuse records
//!   whose ID could not name a file (Go accepts any string); they do not check the records
//!   against each other (duplicate IDs or names) nor image digests ([`Image::digests`] does).
//! * An `images.json` or `containers.json` holding `null` is written back as `[]` (Go writes
//!   `null` back); both read as no records.
//!
//! # Fuzzing
//!
//! The workspace's `fuzz/` project has the target `layers_json` (any bytes: records or an error, never a panic; what loads encodes to bytes that load to the same records and encode to the same bytes again):
//! `cargo xtask fuzz --seconds 300 layers_json` (needs `cargo install cargo-fuzz`).
//!
//! # Example
//!
//! ```
//! use layerstore_model::{Compression, Layer, encode_layers_json, parse_layers_json};
//!
//! let json = br#"[{"id":"layer-gzip","names":["a<b"],"created":"2026-11-27T22:14:32.35772588Z","compression":2}]"#;
//! let layers = parse_layers_json(json)?;
//! assert_eq!(layers[0].names, ["a<b"]);
//! assert_eq!(layers[0].compression, Compression::Gzip);
//! // Written back byte for byte, `<` escaped as Go escapes it.
//! let again = encode_layers_json(&layers)?;
//! assert_eq!(again, br#"[{"id":"layer-gzip","names":["a\u003cb"],"created":"2026-11-27T22:14:32.35772588Z","compression":2}]"#);
//! # Ok::<(), layerstore_model::Error>(())
//! ```

#![forbid(unsafe_code)]

mod bigdata;
mod chain;
mod compression;
mod container;
mod digest;
mod error;
mod files;
mod id;
mod image;
mod json;
mod layer;
mod quote;
mod record;
mod timestamp;

pub use bigdata::{BigDataOwner, CONTAINER_USERDATA_DIR, big_data_file_name, check_big_data_key};
pub use chain::{ErrorChain, error_chain};
pub use compression::Compression;
pub use container::{
    CONTAINERS_JSON, Container, MOUNT_LABEL_FLAG, MOUNT_OPTS_FLAG, PROCESS_LABEL_FLAG,
    VOLATILE_FLAG, encode_containers_json, parse_containers_json, write_containers_json,
};
pub use digest::{Digest, DigestAlgorithm, Sha256Hasher, validate_go_digest};
pub use error::{Error, ImageDigestError, Result};
pub use files::{
    LAYERS_JSON, MOUNTPOINTS_JSON, MountPointRecord, encode_layers_json, encode_mountpoints_json,
    parse_layers_json, parse_mountpoints_json, write_layers_json,
};
pub use id::{
    MAX_ID_LEN, RESERVED_ID_SUFFIXES, RESERVED_IDS, generate_id, generate_id_unused, hex,
    validate_id, validate_store_id,
};
pub use image::{
    IMAGES_JSON, Image, MANIFEST_KEY_PREFIX, encode_images_json, is_manifest_key,
    parse_images_json, write_images_json,
};
pub use json::{GoFormatter, GoValue, to_go_json, write_go_json};
pub use layer::{IDMap, INCOMPLETE_FLAG, Layer};
pub use quote::go_quote;
pub use timestamp::Timestamp;
