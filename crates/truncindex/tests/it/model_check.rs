//! Property tests: random sequences of add/delete/get on a [`TruncIndex`] (and a
//! [`LazyTruncIndex`]) behave exactly like a naive model that scans a `Vec` of IDs.

use layerstore_truncindex::{Error, LazyTruncIndex, TruncIndex};
use proptest::prelude::*;

/// The obviously correct reference: a list scanned linearly.
#[derive(Default)]
struct NaiveIndex {
    ids: Vec<String>,
}

impl NaiveIndex {
    fn add(&mut self, id: &str) -> Result<(), Error> {
        if id.contains(' ') {
            Err(Error::IllegalChar { id: id.into() })
        } else if id.is_empty() {
            Err(Error::EmptyId)
        } else if self.ids.iter().any(|known| known == id) {
            Err(Error::Duplicate { id: id.into() })
        } else {
            self.ids.push(id.into());
            Ok(())
        }
    }

    fn delete(&mut self, id: &str) -> Result<(), Error> {
        match self.ids.iter().position(|known| known == id) {
            Some(at) => {
                self.ids.remove(at);
                Ok(())
            }
            None => Err(Error::NoSuchId { id: id.into() }),
        }
    }

    fn get(&self, prefix: &str) -> Result<&str, Error> {
        if prefix.is_empty() {
            return Err(Error::EmptyPrefix);
        }
        let matches: Vec<&String> = self
            .ids
            .iter()
            .filter(|id| id.starts_with(prefix))
            .collect();
        match matches.as_slice() {
            [] => Err(Error::NotExist {
                prefix: prefix.into(),
            }),
            [only] => Ok(only.as_str()),
            _ => Err(Error::AmbiguousPrefix {
                prefix: prefix.into(),
            }),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add(String),
    Delete(String),
    Get(String),
}

/// IDs over a tiny alphabet so that shared prefixes, IDs that prefix others, empty IDs and
/// spaces all come up often.
fn small_id() -> impl Strategy<Value = String> {
    "[ab1 é]{0,5}"
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => small_id().prop_map(Op::Add),
        1 => small_id().prop_map(Op::Delete),
        3 => small_id().prop_map(Op::Get),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn behaves_like_a_linear_scan(
        initial in proptest::collection::vec(small_id(), 0..8),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let mut index = TruncIndex::new(&initial);
        let mut model = NaiveIndex::default();
        for id in &initial {
            // `new` skips what `add` refuses.
            let _ = model.add(id);
        }
        for op in &ops {
            match op {
                Op::Add(id) => prop_assert_eq!(index.add(id), model.add(id), "add {:?}", id),
                Op::Delete(id) => {
                    prop_assert_eq!(index.delete(id), model.delete(id), "delete {:?}", id);
                }
                Op::Get(prefix) => {
                    prop_assert_eq!(index.get(prefix), model.get(prefix), "get {:?}", prefix);
                }
            }
            prop_assert_eq!(index.len(), model.ids.len());
        }
        let mut expected: Vec<&str> = model.ids.iter().map(String::as_str).collect();
        expected.sort_unstable();
        prop_assert_eq!(index.iter().collect::<Vec<_>>(), expected);
        for id in &model.ids {
            prop_assert!(index.contains(id));
            // Every full ID resolves to itself unless it is a prefix of another ID.
            prop_assert_eq!(index.get(id), model.get(id));
        }
    }

    #[test]
    fn every_long_enough_prefix_of_random_hex_ids_resolves(
        ids in proptest::collection::btree_set("[0-9a-f]{64}", 1..200),
    ) {
        let index = TruncIndex::new(&ids);
        for id in &ids {
            // With ≤ 200 random IDs, 16 hex characters are unique with overwhelming odds;
            // check against the model anyway rather than assume it.
            let prefix = &id[..16];
            let unique = ids.iter().filter(|other| other.starts_with(prefix)).count() == 1;
            prop_assert_eq!(index.get(prefix).is_ok(), unique);
            prop_assert_eq!(index.get(id), Ok(id.as_str()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A lazily built index answers every lookup as the model does, whenever the first lookup
    /// comes and whatever changed before it (and after a `clear`).
    #[test]
    fn the_lazy_index_behaves_like_a_linear_scan(
        initial in proptest::collection::vec(small_id(), 0..8),
        ops in proptest::collection::vec(op(), 0..60),
        clear_at in proptest::option::of(0usize..60),
    ) {
        let mut index = LazyTruncIndex::default();
        let mut model = NaiveIndex::default();
        for id in &initial {
            let _ = model.add(id);
        }
        for (at, op) in ops.iter().enumerate() {
            if clear_at == Some(at) {
                index.clear();
                prop_assert!(!index.is_built());
            }
            match op {
                Op::Add(id) => {
                    // The owner keeps its IDs; the index is only told.
                    if model.add(id).is_ok() {
                        index.add(id);
                    }
                }
                Op::Delete(id) => {
                    if model.delete(id).is_ok() {
                        index.delete(id);
                    }
                }
                Op::Get(prefix) => {
                    let owner = model.ids.clone();
                    prop_assert_eq!(
                        index.get(prefix, || owner.iter()),
                        model.get(prefix),
                        "get {:?}",
                        prefix
                    );
                }
            }
        }
    }
}
