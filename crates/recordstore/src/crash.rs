//! Named crash points, for testing crash safety.
//!
//! In a build with the feature `crash-points` (which only tests enable), when the environment
//! variable [`CRASH_ENV`] (`LAYERSTORE_CRASH_AT`, the variable the layer store's crash points
//! read too) names one of the points below, the process kills itself with `SIGKILL` when it
//! gets there: no destructors run, no buffers are flushed, as if the machine had lost the
//! process at that instant. The variable is read once; without it a crash point costs one load
//! of a cached value. In any other build a crash point is an empty function (the mechanism is
//! `layerstore-crashpoint`'s).
//!
//! | constant | the process dies |
//! |---|---|
//! | [`SAVE_AFTER_TOKEN`] | in a save of a record file: after the lock's last-writer token was written, before any record file |
//! | [`ATOMIC_WRITE_BEFORE_RENAME`] | in any atomic write ([`Dir::write_file`](crate::Dir::write_file): record files, big-data items): the temp file is written and synced, not yet renamed |

/// The environment variable naming the crash point.
pub use layerstore_crashpoint::CRASH_ENV;

/// A save: the new last-writer token is written, the record file is not.
pub const SAVE_AFTER_TOKEN: &str = "records-save-after-token";
/// An atomic write: the temp file is complete, the rename has not happened.
pub const ATOMIC_WRITE_BEFORE_RENAME: &str = "atomic-write-before-rename";

/// Every crash point of this crate.
pub const ALL: &[&str] = &[SAVE_AFTER_TOKEN, ATOMIC_WRITE_BEFORE_RENAME];

/// Kills the process with `SIGKILL` if [`CRASH_ENV`] names the point, in a build with the
/// `crash-points` feature; otherwise nothing.
pub use layerstore_crashpoint::point;
