//! The records of a containers/storage layer store, with JSON identical to Go's
