//! The Store of containers/storage (`store.go` of v1.43): layers, images and containers of
//! one graph root and driver, plus read-only additional image stores, with Go's cross-kind
//! rules, on disk exactly as Go keeps them, so that podman, buildah, CRI-O, skopeo, the Go
//! `containers-storage` tool and this crate share one store.
//!
//! (Placeholder: the full contract follows.)

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

pub use error::{Error, Result};
pub use kinds::{Item, Kind};
pub use options::{ContainerOptions, HostMapping, StoreOptions};
pub use pending::{PENDING_FLAG, PendingLayer, PendingOp, Settled};
pub use store::{AdditionalStore, Store, StoreReader};

pub use layerstore_images::{ManifestDigester, NamesOp, NewImage};
pub use layerstore_layers::{Change, DiffOptions, LayerOptions};
pub use layerstore_model::{Container, Digest, IDMap, Image, Layer};
