//! Random sequences of operations against a simple model: the store agrees with the model,
//! a reopened store agrees with the first, names stay unique, every layer has its files.

use crate::common;

use std::collections::BTreeMap;

use common::Scratch;
use layerstore_layers::{Error, LayerOptions};
use layerstore_testsupport::Capability;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Create {
        id: u8,
        parent: Option<u8>,
        names: Vec<u8>,
    },
    Delete(u8),
    SetNames(u8, Vec<u8>),
    Metadata(u8, String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0u8..8,
            proptest::option::of(0u8..8),
            proptest::collection::vec(0u8..5, 0..3)
        )
            .prop_map(|(id, parent, names)| Op::Create { id, parent, names }),
        (0u8..8).prop_map(Op::Delete),
        (0u8..8, proptest::collection::vec(0u8..5, 0..3)).prop_map(|(l, n)| Op::SetNames(l, n)),
        (0u8..8, "[a-z<&]{0,6}").prop_map(|(l, m)| Op::Metadata(l, m)),
    ]
}

/// The model: id → (parent, names, metadata), in creation order.
type Model = Vec<(String, Option<String>, Vec<String>, String)>;

fn id(n: u8) -> String {
    format!("layer-{n}")
}
fn name(n: u8) -> String {
    format!("name-{n}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn the_store_follows_the_model(ops in proptest::collection::vec(op(), 1..14)) {
        if !layerstore_testsupport::available(&[Capability::Root]) {
            return Ok(());
        }
        let scratch = Scratch::new();
        let store = scratch.open();
        let mut model: Model = Vec::new();
        for op in ops {
            match op {
                Op::Create { id: n, parent, names } => {
                    let mut opts = LayerOptions::new().id(id(n));
                    opts.parent = parent.map(id);
                    opts.names = names.iter().map(|&x| name(x)).collect();
                    let result = store.create(&opts);
                    let taken_id = model.iter().any(|l| l.0 == id(n));
                    let parent_missing = parent.is_some_and(|p| !model.iter().any(|l| l.0 == id(p)));
                    let name_taken = opts.names.iter().any(|nm| model.iter().any(|l| l.2.contains(nm)));
                    if taken_id {
                        prop_assert!(matches!(result, Err(Error::DuplicateId(_))));
                    } else if name_taken {
                        prop_assert!(matches!(result, Err(Error::DuplicateName(_))));
                    } else if parent_missing {
                        prop_assert!(matches!(result, Err(Error::LayerUnknown(_))));
                    } else {
                        prop_assert!(result.is_ok(), "{:?}", result);
                        let mut names = Vec::new();
                        for nm in opts.names { if !names.contains(&nm) { names.push(nm); } }
                        model.push((id(n), parent.map(id), names, String::new()));
                    }
                }
                Op::Delete(n) => {
                    let result = store.delete(&id(n));
                    if !model.iter().any(|l| l.0 == id(n)) {
                        prop_assert!(matches!(result, Err(Error::LayerUnknown(_))));
                    } else if model.iter().any(|l| l.1.as_deref() == Some(id(n).as_str())) {
                        prop_assert!(matches!(result, Err(Error::HasChildren { .. })), "{:?}", result);
                    } else {
                        prop_assert!(result.is_ok(), "{:?}", result);
                        model.retain(|l| l.0 != id(n));
                    }
                }
                Op::SetNames(n, names) => {
                    let names: Vec<String> = names.iter().map(|&x| name(x)).collect();
                    let result = store.set_names(&id(n), &names);
                    if model.iter().any(|l| l.0 == id(n)) {
                        prop_assert!(result.is_ok());
                        for layer in model.iter_mut() {
                            layer.2.retain(|nm| !names.contains(nm));
                        }
                        let mut unique = Vec::new();
                        for nm in names { if !unique.contains(&nm) { unique.push(nm); } }
                        if let Some(layer) = model.iter_mut().find(|l| l.0 == id(n)) {
                            layer.2 = unique;
                        }
                    } else {
                        prop_assert!(result.is_err());
                    }
                }
                Op::Metadata(n, m) => {
                    let result = store.set_metadata(&id(n), &m);
                    match model.iter_mut().find(|l| l.0 == id(n)) {
                        Some(layer) => { prop_assert!(result.is_ok()); layer.3 = m; }
                        None => prop_assert!(result.is_err()),
                    }
                }
            }
        }
        let reopened = scratch.open();
        for handle in [&store, &reopened] {
            let layers = handle.layers().unwrap();
            let seen: Model = layers
                .iter()
                .map(|l| (l.id.clone(), l.parent().map(str::to_string), l.names.clone(), l.metadata.clone()))
                .collect();
            prop_assert_eq!(&seen, &model);
            let mut owners = BTreeMap::new();
            for layer in &layers {
                prop_assert!(scratch.graph().join("vfs/dir").join(&layer.id).is_dir());
                for nm in &layer.names {
                    prop_assert!(owners.insert(nm.clone(), layer.id.clone()).is_none());
                }
            }
        }
        let dirs = std::fs::read_dir(scratch.graph().join("vfs/dir")).unwrap().count();
        prop_assert_eq!(dirs, model.len(), "no orphaned layer directories");
    }
}
