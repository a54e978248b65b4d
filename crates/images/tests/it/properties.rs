//! Properties of the image store that hold whatever is done: a name is held by one image at
//! most; the names history has no duplicates and starts with the names last assigned; what is
//! saved loads back the same.

use std::collections::HashSet;

use layerstore_images::{IMAGES_LOCK, ImageStore, NamesOp, NewImage};
use layerstore_model::{IMAGES_JSON, Image};
use layerstore_recordstore::{Layout, RecordStore};
use proptest::prelude::*;
use serde_json::json;

use crate::{Scratch, sha256};

#[derive(Debug, Clone)]
enum Op {
    Create(Vec<u8>),
    Names(usize, Vec<u8>, u8),
    Delete(usize),
    BigData(usize, u8, Vec<u8>),
    Flag(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let names = proptest::collection::vec(0u8..8, 0..4);
    prop_oneof![
        names.clone().prop_map(Op::Create),
        (0usize..8, names, 0u8..3).prop_map(|(i, n, o)| Op::Names(i, n, o)),
        (0usize..8).prop_map(Op::Delete),
        (
            0usize..8,
            0u8..4,
            proptest::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(i, k, d)| Op::BigData(i, k, d)),
        (0usize..8, 0u8..3).prop_map(|(i, f)| Op::Flag(i, f)),
    ]
}

fn name_list(codes: &[u8]) -> Vec<String> {
    codes.iter().map(|c| format!("name-{c}")).collect()
}

fn check_invariants(images: &[Image]) -> Result<(), TestCaseError> {
    let mut held = HashSet::new();
    for image in images {
        for name in &image.names {
            prop_assert!(held.insert(name.clone()), "{name} held twice");
        }
        let unique: HashSet<&String> = image.names_history.iter().collect();
        prop_assert_eq!(unique.len(), image.names_history.len(), "history repeats");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn names_stay_unique_history_stays_clean_and_saves_load_back(ops in proptest::collection::vec(op(), 1..24)) {
        let scratch = Scratch::new();
        let store = scratch.open();
        for op in ops {
            let ids: Vec<String> = store.images().unwrap().into_iter().map(|i| i.id).collect();
            let pick = |i: usize| ids.get(i % ids.len().max(1)).cloned();
            match op {
                Op::Create(codes) => {
                    let names = name_list(&codes);
                    let taken = names.iter().any(|n| store.exists(n).unwrap());
                    let result = store.create(NewImage { names, ..NewImage::default() });
                    prop_assert_eq!(result.is_err(), taken);
                }
                Op::Names(i, codes, kind) => {
                    let Some(id) = pick(i) else { continue };
                    let op = [NamesOp::Set, NamesOp::Add, NamesOp::Remove][usize::from(kind)];
                    let given = name_list(&codes);
                    let old = store.get(&id).unwrap().names;
                    let new = store.update_names(&id, &given, op).unwrap();
                    prop_assert_eq!(&new, &op.apply(&old, &given));
                    let image = store.get(&id).unwrap();
                    prop_assert_eq!(&image.names, &new);
                    // The names just assigned lead the history, the last one first.
                    let lead: Vec<&String> = new.iter().rev().collect();
                    let head: Vec<&String> = image.names_history.iter().take(new.len()).collect();
                    prop_assert_eq!(head, lead);
                }
                Op::Delete(i) => {
                    let Some(id) = pick(i) else { continue };
                    store.delete(&id).unwrap();
                    prop_assert!(!scratch.dir().join(&id).exists());
                }
                Op::BigData(i, key, data) => {
                    let Some(id) = pick(i) else { continue };
                    let key = ["manifest", "config", "Other Key", "manifest-x"][usize::from(key)];
                    store.set_big_data(&id, key, &data, Some(&sha256)).unwrap();
                    prop_assert_eq!(store.big_data(&id, key).unwrap(), data);
                }
                Op::Flag(i, value) => {
                    let Some(id) = pick(i) else { continue };
                    store.set_flag(&id, "f", json!({"v": value, "s": "<&>"})).unwrap();
                }
            }
            let images = store.images().unwrap();
            check_invariants(&images)?;
            // A fresh handle reads the same records from the file.
            prop_assert_eq!(&ImageStore::open(scratch.dir()).unwrap().images().unwrap(), &images);
        }
    }
}

/// Any image the store accepts: odd names and metadata (escapes, control characters,
/// non-ASCII), flags of every JSON kind, big-data maps, any time Go can write.
fn any_image() -> impl Strategy<Value = Image> {
    let text = "(\\PC|[<>&\"\\\\\u{1}\u{2028}\n])*";
    (
        "[a-f0-9]{1,64}",
        proptest::collection::vec(text, 0..3),
        text,
        proptest::collection::btree_map("[a-z<>&]{1,6}", (any::<i64>(), text, any::<bool>()), 0..3),
        proptest::collection::btree_map(text, 0i64..1 << 40, 0..3),
        (0i64..253_402_300_799, 0u32..1_000_000_000),
    )
        .prop_map(|(id, names, metadata, flags, sizes, (secs, nanos))| {
            let mut unique = Vec::new();
            for name in names {
                if !unique.contains(&name) {
                    unique.push(name);
                }
            }
            Image {
                id,
                names: unique,
                metadata,
                big_data_names: sizes.keys().cloned().collect(),
                big_data_sizes: sizes,
                flags: flags
                    .into_iter()
                    .map(|(key, (n, s, b))| (key, json!([n, s, b, null, {"k": s}])))
                    .collect(),
                created: layerstore_model::Timestamp::from_unix(secs, nanos).unwrap(),
                ..Image::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// What a record store saves, the image store reads back equal, and saving it again
    /// writes the same bytes.
    #[test]
    fn any_images_save_and_load_back(images in proptest::collection::vec(any_image(), 0..4)) {
        let scratch = Scratch::new();
        let records: RecordStore<Image> =
            RecordStore::open(Layout::new(scratch.dir(), IMAGES_LOCK, IMAGES_JSON)).unwrap();
        let mut kept = Vec::new();
        let offered = images.len();
        {
            let mut session = records.write().unwrap();
            for image in images {
                if session.insert(image.clone()).is_ok() {
                    kept.push(image);
                }
            }
            session.save_all().unwrap();
        }
        // The first image always fits an empty store; later ones only clash on IDs or names.
        prop_assert!(offered == 0 || !kept.is_empty());
        let bytes = std::fs::read(scratch.json()).unwrap();
        let store = scratch.open();
        prop_assert_eq!(&store.images().unwrap(), &kept);
        store.write().unwrap().save_all().unwrap();
        prop_assert_eq!(std::fs::read(scratch.json()).unwrap(), bytes);
    }
}
