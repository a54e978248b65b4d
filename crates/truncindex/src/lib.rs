//! An index of IDs that finds a full ID from any unique prefix
