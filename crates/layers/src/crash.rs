//! Named crash points, for testing crash safety.
//!
//! In a build with the feature `crash-points` (which only tests enable: this crate's, and the
//! cli's for the binary its suites drive), when the environment variable [`CRASH_ENV`]
//! (`LAYERSTORE_CRASH_AT`) names one of the points below, the process kills itself with
//! `SIGKILL` when it gets there: no destructors run, no buffers are flushed, exactly as if the
//! machine had lost the process at that instant. The variable is read once, at the first crash
//! point reached; without it, a crash point costs one load of a cached value. In any other
//! build a crash point is an empty function (the mechanism is `layerstore-crashpoint`'s).
//!
//! The points of [`LayerStore::put`](crate::LayerStore::put), in order:
//!
//! | constant | the process dies |
//! |---|---|
//! | [`PUT_AFTER_INCOMPLETE_RECORD`] | after `layers.json` got the new record flagged `incomplete` |
//! | [`PUT_AFTER_DRIVER_CREATE`] | after the driver made the layer's directory |
//! | [`PUT_AFTER_APPLY`] | after the diff was extracted, tar-split still a temp file |
//! | [`PUT_AFTER_TAR_SPLIT`] | after `<id>.tar-split.gz` was renamed into place |
//! | [`SAVE_AFTER_TOKEN`] | in any save: after the lock's last-writer token was written, before `layers.json` |
//! | [`PUT_DONE`] | after the final save (the layer is complete) |
//!
//! and of [`LayerStore::delete`](crate::LayerStore::delete): [`DELETE_AFTER_INCOMPLETE_RECORD`],
//! [`DELETE_AFTER_DRIVER_REMOVE`]; of
//! [`LayerStore::apply_diff_from_staging_directory`](crate::LayerStore::apply_diff_from_staging_directory):
//! [`STAGING_AFTER_INCOMPLETE_RECORD`], [`STAGING_AFTER_MOVE`].

/// The environment variable naming the crash point.
pub use layerstore_crashpoint::CRASH_ENV;

/// `put`: the record flagged `incomplete` is saved, nothing else exists yet.
pub const PUT_AFTER_INCOMPLETE_RECORD: &str = "put-after-incomplete-record";
/// `put`: the driver has created the layer.
pub const PUT_AFTER_DRIVER_CREATE: &str = "put-after-driver-create";
/// `put`: the diff is applied; the tar-split is still `.<id>.tar-split.gz.tmp`.
pub const PUT_AFTER_APPLY: &str = "put-after-apply";
/// `put`: `<id>.tar-split.gz` is in place; the record is still `incomplete`.
pub const PUT_AFTER_TAR_SPLIT: &str = "put-after-tar-split";
/// Any save of `layers.json`: the new last-writer token is written, the file is not.
pub const SAVE_AFTER_TOKEN: &str = "save-after-token";
/// `put`: finished, the record saved without `incomplete`.
pub const PUT_DONE: &str = "put-done";
/// `delete`: the record flagged `incomplete` is saved, the driver has not removed anything.
pub const DELETE_AFTER_INCOMPLETE_RECORD: &str = "delete-after-incomplete-record";
/// `delete`: the driver removed the layer's files; the record is still there.
pub const DELETE_AFTER_DRIVER_REMOVE: &str = "delete-after-driver-remove";

/// `apply_diff_from_staging_directory`: the record flagged `incomplete` is saved, the staging
/// directory is not moved yet.
pub const STAGING_AFTER_INCOMPLETE_RECORD: &str = "staging-after-incomplete-record";
/// `apply_diff_from_staging_directory`: the staged tree is the layer's; nothing recorded yet.
pub const STAGING_AFTER_MOVE: &str = "staging-after-move";

/// Every crash point, in the order listed above.
pub const ALL: &[&str] = &[
    PUT_AFTER_INCOMPLETE_RECORD,
    PUT_AFTER_DRIVER_CREATE,
    PUT_AFTER_APPLY,
    PUT_AFTER_TAR_SPLIT,
    SAVE_AFTER_TOKEN,
    PUT_DONE,
    DELETE_AFTER_INCOMPLETE_RECORD,
    DELETE_AFTER_DRIVER_REMOVE,
    STAGING_AFTER_INCOMPLETE_RECORD,
    STAGING_AFTER_MOVE,
];

/// Kills the process with `SIGKILL` if [`CRASH_ENV`] names the point, in a build with the
/// `crash-points` feature; otherwise nothing.
pub(crate) use layerstore_crashpoint::point;
