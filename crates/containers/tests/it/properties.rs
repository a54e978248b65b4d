//! Properties of the container store that hold whatever is done: a name is held by one
//! container at most, every container is found by its layer, and what is saved loads back
//! the same.

use std::collections::HashSet;

use layerstore_containers::{ContainerStore, NamesOp};
use proptest::prelude::*;

use crate::{Scratch, on_layer};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn names_stay_unique_layers_find_containers_and_saves_load_back(
        ops in proptest::collection::vec((0u8..4, 0usize..6, proptest::collection::vec(0u8..6, 0..3)), 1..24)
    ) {
        let scratch = Scratch::new();
        let store = scratch.open();
        let mut next_layer = 0;
        for (kind, target, codes) in ops {
            let names: Vec<String> = codes.iter().map(|c| format!("n{c}")).collect();
            let ids: Vec<String> = store.containers().unwrap().into_iter().map(|c| c.id).collect();
            let pick = ids.get(target % ids.len().max(1)).cloned();
            match (kind, pick) {
                (0, _) => {
                    let layer = format!("layer-{next_layer}");
                    next_layer += 1;
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    let taken = names.iter().any(|n| store.exists(n).unwrap());
                    prop_assert_eq!(store.create(on_layer(&layer, &refs)).is_err(), taken);
                }
                (1, Some(id)) => {
                    store.update_names(&id, &names, NamesOp::Set).unwrap();
                }
                (2, Some(id)) => {
                    store.update_names(&id, &names, NamesOp::Add).unwrap();
                }
                (3, Some(id)) => {
                    store.run_directory(&id).unwrap();
                    store.delete(&id).unwrap();
                    prop_assert!(!scratch.run_dir().join(&id).exists());
                }
                _ => {}
            }
            let containers = store.containers().unwrap();
            let mut held = HashSet::new();
            for container in &containers {
                for name in &container.names {
                    prop_assert!(held.insert(name.clone()), "{} held twice", name);
                }
                prop_assert_eq!(&store.lookup(&container.layer_id).unwrap(), &container.id);
            }
            let fresh = ContainerStore::open(scratch.dir(), scratch.run_dir()).unwrap();
            prop_assert_eq!(&fresh.containers().unwrap(), &containers);
        }
    }
}
