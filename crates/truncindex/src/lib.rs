//! An index of IDs that finds a full ID from any unique prefix, with the semantics of Go's
//! `pkg/truncindex` in containers/storage (what lets `containers-storage layer 9a8` find layer
//! `9a82d991…`).
//!
//! # Model
//!
//! * An ID is any non-empty string without a space, as in Go. [`TruncIndex::add`] refuses
//!   empty IDs, IDs with a space, and duplicates.
//! * [`TruncIndex::get`] resolves a non-empty prefix to the one ID that starts with it; no such
//!   ID and more than one are errors. As in Go, an ID that is itself a prefix of another ID is
//!   ambiguous as a prefix: the store looks up exact IDs before asking the index.
//! * [`TruncIndex::new`] skips IDs that `add` would refuse, as Go's `NewTruncIndex` does.
//!
//! # Structure, and why
//!
//! The IDs live in a [`BTreeSet`], sorted. All IDs starting with a prefix form one contiguous
//! run of that order beginning at the first ID `>=` the prefix, so a lookup reads at most the
//! first two IDs of `range(prefix..)`: O(log n) comparisons of at most `prefix.len()` bytes
//! each, independent of how many IDs share the store. A radix trie (Go uses a patricia trie)
//! makes lookups O(prefix) but costs far more code and per-node allocations; for 64-hex IDs
//! the B-tree's log₂(100,000) ≈ 17 short comparisons are already sub-microsecond (see
//! `benches/lookup.rs`), and insertion and deletion stay O(log n).
//!
//! [`LazyTruncIndex`] defers building: a store that loads 100,000 records for a listing or an
//! exact-ID lookup never asks for a prefix, so it should not pay for the index (copying every
//! ID into the tree was 6% of listing 10,000 images).
//!
//! # Limitations
//!
//! Not thread-safe by itself (Go's has a mutex): wrap it in a lock if shared.
//!
//! # Example
//!
//! ```
//! use layerstore_truncindex::{Error, TruncIndex};
//!
//! let mut index = TruncIndex::new(["9a82d991", "9745a333"]);
//! index.add("60d9248c")?;
//! assert_eq!(index.get("9a")?, "9a82d991");
//! assert_eq!(
//!     index.get("9").unwrap_err(),
//!     Error::AmbiguousPrefix { prefix: "9".into() }
//! );
//! index.delete("9745a333")?;
//! assert_eq!(index.get("9")?, "9a82d991");
//! # Ok::<(), Error>(())
//! ```

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::OnceLock;

/// Errors of [`TruncIndex`]; each names the ID or prefix involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`TruncIndex::get`] was given an empty prefix.
    #[error("prefix can't be empty")]
    EmptyPrefix,
    /// [`TruncIndex::add`] was given an empty ID.
    #[error("an ID can't be empty")]
    EmptyId,
    /// [`TruncIndex::add`] was given an ID containing a space.
    #[error("illegal character ' ' in ID {id:?}")]
    IllegalChar {
        /// The refused ID.
        id: String,
    },
    /// [`TruncIndex::add`] was given an ID already in the index.
    #[error("ID already exists: {id:?}")]
    Duplicate {
        /// The refused ID.
        id: String,
    },
    /// [`TruncIndex::delete`] was given an ID not in the index.
    #[error("no such ID: {id:?}")]
    NoSuchId {
        /// The ID that was not found.
        id: String,
    },
    /// [`TruncIndex::get`] found no ID starting with the prefix.
    #[error("ID does not exist: no ID starts with {prefix:?}")]
    NotExist {
        /// The prefix looked up.
        prefix: String,
    },
    /// [`TruncIndex::get`] found more than one ID starting with the prefix.
    #[error("multiple IDs found with provided prefix: {prefix}")]
    AmbiguousPrefix {
        /// The prefix looked up.
        prefix: String,
    },
}

/// A set of IDs that resolves unique prefixes to full IDs. See the [crate documentation](crate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TruncIndex {
    ids: BTreeSet<Box<str>>,
}

impl TruncIndex {
    /// An index of `ids`, skipping (like Go) any that [`TruncIndex::add`] would refuse: empty
    /// ones, ones with a space, and repeats.
    pub fn new<I>(ids: I) -> TruncIndex
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let ids = ids
            .into_iter()
            .filter(|id| check_id(id.as_ref()).is_ok())
            .map(|id| Box::from(id.as_ref()))
            .collect();
        TruncIndex { ids }
    }

    /// Adds `id`. Errors if it is empty, contains a space, or is already present.
    pub fn add(&mut self, id: &str) -> Result<(), Error> {
        check_id(id)?;
        if self.ids.contains(id) {
            return Err(Error::Duplicate { id: id.to_owned() });
        }
        self.ids.insert(Box::from(id));
        Ok(())
    }

    /// Removes `id` (the full ID, not a prefix). Errors if it is not present.
    pub fn delete(&mut self, id: &str) -> Result<(), Error> {
        if self.ids.remove(id) {
            Ok(())
        } else {
            Err(Error::NoSuchId { id: id.to_owned() })
        }
    }

    /// The one ID starting with `prefix`.
    ///
    /// Errors: [`Error::EmptyPrefix`], [`Error::NotExist`] if no ID starts with it,
    /// [`Error::AmbiguousPrefix`] if several do (even when one of them equals `prefix`).
    pub fn get(&self, prefix: &str) -> Result<&str, Error> {
        if prefix.is_empty() {
            return Err(Error::EmptyPrefix);
        }
        // IDs starting with `prefix` are contiguous in sorted order and begin at the first ID
        // not less than `prefix`, so the first two IDs of that range decide.
        let mut candidates = self
            .ids
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|id| id.starts_with(prefix));
        match (candidates.next(), candidates.next()) {
            (Some(id), None) => Ok(id),
            (Some(_), Some(_)) => Err(Error::AmbiguousPrefix {
                prefix: prefix.to_owned(),
            }),
            (None, _) => Err(Error::NotExist {
                prefix: prefix.to_owned(),
            }),
        }
    }

    /// Whether `id` (a full ID) is in the index.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// How many IDs the index holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index holds no ID.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// All IDs, in byte order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + DoubleEndedIterator + '_ {
        self.ids.iter().map(|id| &**id)
    }
}

impl<S: AsRef<str>> FromIterator<S> for TruncIndex {
    /// Same as [`TruncIndex::new`].
    fn from_iter<I: IntoIterator<Item = S>>(ids: I) -> TruncIndex {
        TruncIndex::new(ids)
    }
}

/// A [`TruncIndex`] built at the first prefix lookup from the IDs its owner holds then, and
/// kept up to date after that.
///
/// The owner keeps the IDs (its records); this only indexes them. It calls [`add`] and
/// [`delete`] on every change, which cost nothing while the index is not built, and
/// [`clear`] when it replaces its records wholesale. Lookups take `&self` (the index is built
/// at most once, even by racing readers).
///
/// [`add`]: LazyTruncIndex::add
/// [`delete`]: LazyTruncIndex::delete
/// [`clear`]: LazyTruncIndex::clear
///
/// ```
/// use layerstore_truncindex::LazyTruncIndex;
///
/// let mut ids = vec!["9a82d991".to_owned(), "9745a333".to_owned()];
/// let mut index = LazyTruncIndex::default();
/// assert!(!index.is_built());
/// assert_eq!(index.get("9a", || ids.iter()), Ok("9a82d991"));
/// ids.push("60d9248c".to_owned());
/// index.add("60d9248c");
/// assert_eq!(index.get("6", || ids.iter()), Ok("60d9248c"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct LazyTruncIndex {
    built: OnceLock<TruncIndex>,
}

impl LazyTruncIndex {
    /// The one ID starting with `prefix`, as [`TruncIndex::get`]; `ids` (every ID the owner
    /// holds now) builds the index if this is the first lookup since creation or [`clear`].
    ///
    /// [`clear`]: LazyTruncIndex::clear
    pub fn get<I>(&self, prefix: &str, ids: impl FnOnce() -> I) -> Result<&str, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        if prefix.is_empty() {
            return Err(Error::EmptyPrefix);
        }
        self.built
            .get_or_init(|| TruncIndex::new(ids()))
            .get(prefix)
    }

    /// Records that the owner now holds `id`. IDs a [`TruncIndex`] refuses (empty, with a
    /// space, repeats) are skipped, as [`TruncIndex::new`] skips them.
    pub fn add(&mut self, id: &str) {
        if let Some(index) = self.built.get_mut() {
            let _ = index.add(id);
        }
    }

    /// Records that the owner no longer holds `id`.
    pub fn delete(&mut self, id: &str) {
        if let Some(index) = self.built.get_mut() {
            let _ = index.delete(id);
        }
    }

    /// Forgets the index: the next lookup builds it again from the owner's IDs.
    pub fn clear(&mut self) {
        self.built = OnceLock::new();
    }

    /// Whether a lookup has built the index (and it was not cleared since).
    pub fn is_built(&self) -> bool {
        self.built.get().is_some()
    }
}

fn check_id(id: &str) -> Result<(), Error> {
    if id.contains(' ') {
        return Err(Error::IllegalChar { id: id.to_owned() });
    }
    if id.is_empty() {
        return Err(Error::EmptyId);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "99b36c2c326ccc11e726eee6ee78a0baf166ef96";

    /// The cases of Go's `truncindex_test.go` `TestTruncIndex`.
    #[test]
    fn go_test_truncindex_cases() {
        let mut index = TruncIndex::new(Vec::<String>::new());
        assert_eq!(
            index.get("abc"),
            Err(Error::NotExist {
                prefix: "abc".into()
            })
        );
        assert_eq!(index.add(""), Err(Error::EmptyId));
        index.add(ID).unwrap();
        assert_eq!(
            index.add("I have a space"),
            Err(Error::IllegalChar {
                id: "I have a space".into()
            })
        );
        assert_eq!(index.add(ID), Err(Error::Duplicate { id: ID.into() }));
        // Any non-empty prefix of the only ID resolves, down to one character.
        for len in [1, 2, 3, 5, 12, ID.len()] {
            assert_eq!(index.get(&ID[..len]), Ok(ID), "{len}");
        }
        assert_eq!(index.get(""), Err(Error::EmptyPrefix));
        assert_eq!(
            index.get("abracadabra"),
            Err(Error::NotExist {
                prefix: "abracadabra".into()
            })
        );
        assert_eq!(
            index.get(&format!("{ID}0")),
            Err(Error::NotExist {
                prefix: format!("{ID}0")
            })
        );
        // An ID sharing the first 4 characters makes short prefixes ambiguous.
        let id2 = format!("{}7f3a", &ID[..4]);
        index.add(&id2).unwrap();
        assert_eq!(
            index.get(&ID[..4]),
            Err(Error::AmbiguousPrefix {
                prefix: ID[..4].into()
            })
        );
        assert_eq!(index.get(&ID[..5]), Ok(ID));
        assert_eq!(index.get(&id2[..5]), Ok(id2.as_str()));
        // An ID that is a prefix of another is ambiguous as a prefix.
        let id3 = &ID[..6];
        index.add(id3).unwrap();
        assert_eq!(
            index.get(id3),
            Err(Error::AmbiguousPrefix { prefix: id3.into() })
        );
        assert_eq!(index.get(&ID[..7]), Ok(ID));
        // Deleting: unknown or empty IDs fail; afterwards short prefixes resolve again.
        assert_eq!(index.delete(""), Err(Error::NoSuchId { id: String::new() }));
        assert_eq!(
            index.delete("nope"),
            Err(Error::NoSuchId { id: "nope".into() })
        );
        assert_eq!(
            index.delete(&ID[..4]),
            Err(Error::NoSuchId { id: ID[..4].into() })
        );
        index.delete(&id2).unwrap();
        index.delete(id3).unwrap();
        assert_eq!(index.delete(&id2), Err(Error::NoSuchId { id: id2.clone() }));
        assert_eq!(index.get(&ID[..1]), Ok(ID));
        assert_eq!(
            index.get(&id2[..5]),
            Err(Error::NotExist {
                prefix: id2[..5].into()
            })
        );
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn new_skips_what_add_refuses() {
        let index = TruncIndex::new(["b", "", "a b", "a", "b", "ab"]);
        assert_eq!(index.iter().collect::<Vec<_>>(), ["a", "ab", "b"]);
        assert_eq!(index.len(), 3);
        assert!(index.contains("ab"));
        assert!(!index.contains("a b"));
        assert!(!index.is_empty());
        let collected: TruncIndex = ["x".to_owned()].into_iter().collect();
        assert_eq!(collected.get("x"), Ok("x"));
        assert!(TruncIndex::default().is_empty());
    }

    #[test]
    fn multibyte_prefixes() {
        let index = TruncIndex::new(["é1", "éa", "e"]);
        assert_eq!(index.get("é1"), Ok("é1"));
        assert_eq!(
            index.get("é"),
            Err(Error::AmbiguousPrefix {
                prefix: "é".into()
            })
        );
        assert_eq!(index.get("e"), Ok("e"));
    }

    #[test]
    fn errors_name_the_id_or_prefix() {
        let message = |e: Error| e.to_string();
        assert!(
            message(Error::AmbiguousPrefix {
                prefix: "9a".into()
            })
            .ends_with(": 9a")
        );
        assert!(
            message(Error::NotExist {
                prefix: "9a".into()
            })
            .contains("\"9a\"")
        );
        assert!(message(Error::NoSuchId { id: "x".into() }).contains("\"x\""));
        assert!(message(Error::Duplicate { id: "x".into() }).contains("\"x\""));
        assert!(message(Error::IllegalChar { id: "a b".into() }).contains("\"a b\""));
    }
}
