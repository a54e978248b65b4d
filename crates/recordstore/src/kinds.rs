//! The record types of containers/storage as [`Record`]s: images and containers.

use std::collections::BTreeMap;

use layerstore_model::{BigDataOwner, Container, Image};

use crate::records::{BigDataRecord, Record};

/// The accessors images and containers share: the same field names in the model.
macro_rules! named_record_accessors {
    () => {
        fn id(&self) -> &str {
            &self.id
        }

        fn names(&self) -> &[String] {
            &self.names
        }

        fn names_mut(&mut self) -> &mut Vec<String> {
            &mut self.names
        }
    };
}

/// Images and containers describe their big-data items in the same three fields.
macro_rules! big_data_record {
    ($record:ty) => {
        impl BigDataRecord for $record {
            fn big_data_names_mut(&mut self) -> &mut Vec<String> {
                &mut self.big_data_names
            }

            fn big_data_sizes(&self) -> &BTreeMap<String, i64> {
                &self.big_data_sizes
            }

            fn big_data_sizes_mut(&mut self) -> &mut BTreeMap<String, i64> {
                &mut self.big_data_sizes
            }

            fn big_data_digests_mut(&mut self) -> &mut BTreeMap<String, String> {
                &mut self.big_data_digests
            }
        }
    };
}

impl Record for Image {
    const KIND: &'static str = "image";
    const OWNER: BigDataOwner = BigDataOwner::Image;

    named_record_accessors!();

    /// The image's digests (its `digest` first, then its manifests'), as Go computes them on
    /// every load and big-data change; an empty `digest` takes the first of them. A digest
    /// that does not validate makes the image unusable (Go refuses the whole store).
    fn index_keys(&mut self) -> Result<Vec<String>, String> {
        let digests = self.recompute_digest().map_err(|e| e.to_string())?;
        Ok(digests.iter().map(|d| d.as_str().to_owned()).collect())
    }

    fn mark_read_only(&mut self) {
        self.read_only = true;
    }
}

impl Record for Container {
    const KIND: &'static str = "container";
    const OWNER: BigDataOwner = BigDataOwner::Container;

    named_record_accessors!();

    /// The container's layer: containers are found by their layer's ID too.
    fn index_keys(&mut self) -> Result<Vec<String>, String> {
        Ok(if self.layer_id.is_empty() {
            Vec::new()
        } else {
            vec![self.layer_id.clone()]
        })
    }
}

big_data_record!(Image);
big_data_record!(Container);
