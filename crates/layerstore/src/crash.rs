//! Named crash points of the Store's operations, for testing crash safety.
//!
//! Only in a build with the feature `crash-points` (tests): when the environment variable `LAYERSTORE_CRASH_AT` (the one the layer store's and the
//! record stores' crash points read) names one of the points below, the process kills itself
//! with `SIGKILL` there: no destructors run, nothing is flushed.
//!
//! | constant | operation | the process dies |
//! |---|---|---|
//! | [`CREATE_CONTAINER_AFTER_MAPPED_LAYER`] | create-container | the ID-mapped copy of the image's top layer is made (marked pending), the image does not list it yet |
//! | [`CREATE_CONTAINER_AFTER_MAPPED_REGISTERED`] | create-container | the image lists the copy; the copy is still marked |
//! | [`CREATE_CONTAINER_AFTER_LAYER`] | create-container | the container's layer is made (marked pending); no container record |
//! | [`CREATE_CONTAINER_AFTER_RECORD`] | create-container | the container record is saved; its layer is still marked |
//! | [`CREATE_IMAGE_BEFORE_RECORD`] | create-image | the top layer is found (and held); the image record is not written |
//! | [`DELETE_IMAGE_AFTER_MARK`] | delete-image | the layers to remove are marked pending; the image record is there |
//! | [`DELETE_IMAGE_AFTER_RECORD`] | delete-image | the image record is gone; its layers are still there, marked |
//! | [`DELETE_CONTAINER_AFTER_MARK`] | delete-container | the container's layer is marked pending; the record is there |
//! | [`DELETE_CONTAINER_AFTER_RECORD`] | delete-container | the record and directories are gone; the layer is still there, marked |
//!
//! The points of the stores below are reached inside these operations too: the layer
//! store's (`put-after-incomplete-record`, `delete-after-incomplete-record`, ..., see
//! `layerstore_layers::crash`) and the record stores' (`records-save-after-token`,
//! `atomic-write-before-rename`, see `layerstore_recordstore::crash`).

/// create-container: the ID-mapped copy exists, marked; the image does not list it.
pub const CREATE_CONTAINER_AFTER_MAPPED_LAYER: &str = "store-create-container-after-mapped-layer";
/// create-container: the image lists the ID-mapped copy, which is still marked.
pub const CREATE_CONTAINER_AFTER_MAPPED_REGISTERED: &str =
    "store-create-container-after-mapped-registered";
/// create-container: the container's layer exists, marked; no container record yet.
pub const CREATE_CONTAINER_AFTER_LAYER: &str = "store-create-container-after-layer";
/// create-container: the container record is saved; its layer is still marked.
pub const CREATE_CONTAINER_AFTER_RECORD: &str = "store-create-container-after-record";
/// create-image: the top layer is resolved and held; nothing is written yet.
pub const CREATE_IMAGE_BEFORE_RECORD: &str = "store-create-image-before-record";
/// delete-image: the layers to remove are marked; the image record is still there.
pub const DELETE_IMAGE_AFTER_MARK: &str = "store-delete-image-after-mark";
/// delete-image: the image record is gone; its marked layers are still there.
pub const DELETE_IMAGE_AFTER_RECORD: &str = "store-delete-image-after-record";
/// delete-container: the layer is marked; the record is still there.
pub const DELETE_CONTAINER_AFTER_MARK: &str = "store-delete-container-after-mark";
/// delete-container: the record and directories are gone; the marked layer is still there.
pub const DELETE_CONTAINER_AFTER_RECORD: &str = "store-delete-container-after-record";

/// Every crash point of this crate, by operation: create-container, create-image,
/// delete-image, delete-container.
pub const ALL: &[&str] = &[
    CREATE_CONTAINER_AFTER_MAPPED_LAYER,
    CREATE_CONTAINER_AFTER_MAPPED_REGISTERED,
    CREATE_CONTAINER_AFTER_LAYER,
    CREATE_CONTAINER_AFTER_RECORD,
    CREATE_IMAGE_BEFORE_RECORD,
    DELETE_IMAGE_AFTER_MARK,
    DELETE_IMAGE_AFTER_RECORD,
    DELETE_CONTAINER_AFTER_MARK,
    DELETE_CONTAINER_AFTER_RECORD,
];

/// Kills the process with `SIGKILL` if this is a build with crash points (the feature
/// `crash-points`) and `LAYERSTORE_CRASH_AT` names `point`.
pub(crate) fn point(point: &str) {
    layerstore_crashpoint::point(point);
}
