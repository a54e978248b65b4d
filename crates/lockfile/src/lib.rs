//! Cross-process read-write lock files with last-writer detection, compatible with containers/storage
