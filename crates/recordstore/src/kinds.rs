//! The record types of containers/storage as [`Record`]s: images and containers.

use layerstore_model::{BigDataOwner, Container, Image};

use crate::records::Record;

impl Record for Image {
    const KIND: &'static str = "image";
    const OWNER: BigDataOwner = BigDataOwner::Image;

    fn id(&self) -> &str {
        &self.id
    }

    fn names(&self) -> &[String] {
        &self.names
    }

    fn names_mut(&mut self) -> &mut Vec<String> {
        &mut self.names
    }

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

    fn id(&self) -> &str {
        &self.id
    }

    fn names(&self) -> &[String] {
        &self.names
    }

    fn names_mut(&mut self) -> &mut Vec<String> {
        &mut self.names
    }

    /// The container's layer: containers are found by their layer's ID too.
    fn index_keys(&mut self) -> Result<Vec<String>, String> {
        Ok(if self.layer_id.is_empty() {
            Vec::new()
        } else {
            vec![self.layer_id.clone()]
        })
    }
}
