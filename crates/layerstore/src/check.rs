//! [`Store::check`] and [`Store::repair`]: the whole store checked (layers, images,
//! containers, the references between them, the marks of crashed operations), and repaired
//! without ever deleting a layer that an image or container still uses.

use std::collections::HashSet;
use std::path::PathBuf;

use layerstore_layers::{Beyond, LayerRecords, Problem as LayerProblem};
use layerstore_model::{Container, Image, big_data_file_name, is_manifest_key};
use layerstore_recordstore::canonical_digest;

use crate::error::Result;
use crate::layers::find_layer;
use crate::pending::{PendingLayer, Settled};
use crate::store::Store;

mod report;

pub use report::{Action, CheckOptions, CheckReport, Problem, Repair};

impl Store {
    /// Checks the whole store (see [`CheckOptions`]) and changes nothing.
    /// Errors are for what stops the check itself (a lock, an unreadable `layers.json`);
    /// what is wrong is in the report.
    pub fn check(&self, options: &CheckOptions) -> Result<CheckReport> {
        let problems = self.find_problems(options)?;
        Ok(CheckReport {
            remaining: problems.clone(),
            problems,
            actions: Vec::new(),
        })
    }

    /// Checks the whole store and repairs what it can, never deleting a layer that an image
    /// or container uses (see [`CheckOptions`]); then checks again.
    pub fn repair(&self, options: &CheckOptions) -> Result<CheckReport> {
        let problems = self.find_problems(options)?;
        let mut actions = Vec::new();

        // A record file that does not load: kept aside byte for byte, started empty, what it
        // held listed (the read-write store's only; an additional store is never written).
        for problem in &problems {
            let Problem::RecordFile { path, .. } = problem else {
                continue;
            };
            let result = if path == self.images.images_json() {
                self.images.set_aside_damaged().map_err(crate::Error::from)
            } else if path == self.containers.containers_json() {
                self.containers
                    .set_aside_damaged()
                    .map_err(crate::Error::from)
            } else {
                continue;
            };
            match result {
                Ok(files) => actions.extend(files.into_iter().map(|file| Action {
                    repair: Repair::SetAsideRecordFile {
                        path: file.path,
                        kept_as: file.kept_as,
                        lost: file.lost,
                    },
                    error: None,
                })),
                Err(e) => actions.push(Action {
                    repair: Repair::SetAsideRecordFile {
                        path: path.clone(),
                        kept_as: PathBuf::new(),
                        lost: Vec::new(),
                    },
                    error: Some(layerstore_model::error_chain(&e)),
                }),
            }
        }

        if options.remove_containers {
            let damaged: Vec<&str> = unique(problems.iter().filter_map(Problem::damaged_container));
            for id in damaged {
                let result = self.delete_container(id);
                actions.push(Action {
                    repair: Repair::DeleteContainer { id: id.to_owned() },
                    error: result.err().map(|e| layerstore_model::error_chain(&e)),
                });
            }
        }

        let damaged: Vec<&str> = unique(problems.iter().filter_map(Problem::damaged_image));
        for id in damaged {
            let (layers, error) = match self.delete_image(id, true) {
                Ok(layers) => (layers, None),
                Err(e) => (
                    Vec::new(),
                    Some(format!("kept: {}", layerstore_model::error_chain(&e))),
                ),
            };
            actions.push(Action {
                repair: Repair::DeleteImage {
                    id: id.to_owned(),
                    layers,
                },
                error,
            });
        }

        // Broken layers go, except those a remaining image or container uses: decided under
        // the exclusive layer lock and the image and container locks (Go's order), so that
        // nothing can start using a layer between the decision and the deletion.
        {
            let mut layers = self.layers.write_session()?;
            let additional_layers = self.additional_layer_readers()?;
            let images = self.images.read();
            let additional_images = self.additional_image_readers();
            let containers = self.containers.read();
            // Without the records of what uses the layers, no layer is deleted: the damaged
            // record file stays a problem in the report.
            if let (Ok(images), Ok(additional_images), Ok(containers)) =
                (images, additional_images, containers)
            {
                {
                    let mut beyond = Beyond::default();
                    let keep = &mut beyond.keep;
                    for image in images
                        .images()
                        .chain(additional_images.iter().flat_map(|r| r.images()))
                    {
                        keep.insert(image.top_layer.clone());
                        keep.extend(image.mapped_top_layers.iter().cloned());
                    }
                    keep.extend(containers.containers().map(|c| c.layer_id.clone()));
                    keep.remove("");
                    for additional in &additional_layers {
                        let records = additional.records();
                        let ids = records.layers().map(|l| l.id.clone());
                        beyond.other_layers.extend(ids);
                    }
                    let report = layers.check(&options.layer_options(true), &beyond)?;
                    actions.extend(report.actions.into_iter().map(|a| Action {
                        repair: Repair::Layer(a.repair),
                        error: a.error,
                    }));
                }
            }
        }

        if problems
            .iter()
            .any(|p| matches!(p, Problem::PendingLayer(_)))
        {
            match self.settle_pending() {
                Ok(settled) => actions.extend(settled.into_iter().map(|s| Action {
                    repair: Repair::Settle(s),
                    error: None,
                })),
                Err(e) => actions.push(Action {
                    repair: Repair::Settle(Settled::Deleted(PendingLayer {
                        layer: "-".into(),
                        op: None,
                        in_use: false,
                    })),
                    error: Some(layerstore_model::error_chain(&e)),
                }),
            }
        }

        let remaining = self.find_problems(options)?;
        Ok(CheckReport {
            problems,
            actions,
            remaining,
        })
    }

    fn find_problems(&self, options: &CheckOptions) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        let layer_options = options.layer_options(false);
        let mut found: Vec<(Option<PathBuf>, LayerProblem)> = Vec::new();
        let report = self.layers.check(&layer_options)?;
        found.extend(report.problems.into_iter().map(|p| (None, p)));
        for (index, additional) in self.additional.iter().enumerate() {
            let report = self.additional_layer_store(index)?.check(&layer_options)?;
            let root = additional.root().to_path_buf();
            found.extend(report.problems.into_iter().map(|p| (Some(root.clone()), p)));
        }

        // The records, read under shared locks in Go's order. A record file that does not
        // load is a problem, not an error: the rest is still checked.
        let layers = self.layers.read_session()?;
        let additional_layers = self.additional_layer_readers()?;
        let mut stores: Vec<LayerRecords<'_>> = vec![layers.records()];
        stores.extend(additional_layers.iter().map(|r| r.records()));

        // Each layer store's own check knows only itself: a parent in another layer store is
        // no missing parent, and the driver (the read-write store's, shared) holding another
        // store's layer holds no orphan.
        let mut broken: HashSet<String> = HashSet::new();
        for (store, problem) in found {
            let elsewhere = match &problem {
                LayerProblem::MissingParent { parent, .. } => Some(parent),
                LayerProblem::OrphanLayerData { id } => Some(id),
                _ => None,
            };
            if elsewhere.is_some_and(|id| find_layer(&stores, id).is_some()) {
                continue;
            }
            if problem.breaks_layer()
                && let Some(id) = problem.layer()
            {
                broken.insert(id.to_owned());
            }
            problems.push(Problem::Layer { store, problem });
        }
        let images = self.images.read();
        let additional_images: Vec<_> = self.additional.iter().map(|a| a.images().read()).collect();
        let containers = self.containers.read();

        let mut known_images: HashSet<&str> = HashSet::new();
        let mut damaged_images: HashSet<String> = HashSet::new();
        let mut all_images: Vec<&Image> = Vec::new();
        let read_write =
            std::iter::once((self.images.images_json(), self.images.dir(), &images, false));
        let read_only = additional_images
            .iter()
            .zip(&self.additional)
            .map(|(r, a)| (a.images().images_json(), a.images().dir(), r, true));
        for (path, dir, reader, read_only) in read_write.chain(read_only) {
            let path = path.to_path_buf();
            let reader = match reader {
                Ok(reader) => reader,
                Err(e) => {
                    problems.push(Problem::RecordFile {
                        path,
                        detail: layerstore_model::error_chain(&e),
                    });
                    continue;
                }
            };
            for bad in reader.bad_records() {
                problems.push(Problem::BadRecord {
                    path: path.clone(),
                    detail: bad_record_text(bad),
                });
            }
            for image in reader.images() {
                // The first store's copy of an ID is the one used, as Go examines it.
                if !known_images.insert(&image.id) {
                    continue;
                }
                all_images.push(image);
                let start = problems.len();
                check_image_layers(image, &stores, &broken, read_only, &mut problems);
                self.check_image_data(image, reader, dir, read_only, &mut problems);
                if problems.len() > start {
                    damaged_images.insert(image.id.clone());
                }
            }
        }

        match &containers {
            Ok(reader) => {
                let path = self.containers.containers_json().to_path_buf();
                for bad in reader.bad_records() {
                    problems.push(Problem::BadRecord {
                        path: path.clone(),
                        detail: bad_record_text(bad),
                    });
                }
                for container in reader.containers() {
                    self.check_container(
                        container,
                        reader,
                        &stores,
                        &broken,
                        (&known_images, &damaged_images),
                        &mut problems,
                    );
                }
                let pending = crate::pending::find_pending(
                    layers.records(),
                    all_images.iter().copied(),
                    reader.containers().map(|c| c.layer_id.as_str()),
                );
                problems.extend(pending.into_iter().map(Problem::PendingLayer));
            }
            Err(e) => problems.push(Problem::RecordFile {
                path: self.containers.containers_json().to_path_buf(),
                detail: layerstore_model::error_chain(&e),
            }),
        }
        Ok(problems)
    }

    fn check_image_data(
        &self,
        image: &Image,
        reader: &layerstore_images::ImageReader<'_>,
        dir: &std::path::Path,
        read_only: bool,
        problems: &mut Vec<Problem>,
    ) {
        if let Err(e) = image.digests() {
            problems.push(Problem::ImageDigests {
                image: image.id.clone(),
                detail: layerstore_model::error_chain(&e),
                read_only,
            });
        }
        for key in &image.big_data_names {
            let data = match reader.big_data(&image.id, key) {
                Ok(data) => data,
                Err(_) => {
                    problems.push(Problem::ImageDataMissing {
                        image: image.id.clone(),
                        key: key.clone(),
                        path: dir.join(&image.id).join(big_data_file_name(key)),
                        read_only,
                    });
                    continue;
                }
            };
            if let Some(&expected) = image.big_data_sizes.get(key)
                && u64::try_from(expected).ok() != Some(data.len() as u64)
            {
                problems.push(Problem::ImageDataSize {
                    image: image.id.clone(),
                    key: key.clone(),
                    expected,
                    actual: data.len() as u64,
                    read_only,
                });
            }
            if let Some(expected) = image.big_data_digests.get(key) {
                let actual = canonical_digest(&data).as_str().to_owned();
                let unsigned_schema1 = is_manifest_key(key) && is_schema1(&data);
                if &actual != expected && !unsigned_schema1 {
                    problems.push(Problem::ImageDataDigest {
                        image: image.id.clone(),
                        key: key.clone(),
                        expected: expected.clone(),
                        actual,
                        read_only,
                    });
                }
            }
        }
    }

    fn check_container(
        &self,
        container: &Container,
        reader: &layerstore_containers::ContainerReader<'_>,
        stores: &[LayerRecords<'_>],
        broken: &HashSet<String>,
        (known_images, damaged_images): (&HashSet<&str>, &HashSet<String>),
        problems: &mut Vec<Problem>,
    ) {
        let id = &container.id;
        match layer_chain(stores, &container.layer_id) {
            Err(missing) => problems.push(Problem::ContainerLayerMissing {
                container: id.clone(),
                layer: missing,
            }),
            Ok(chain) => {
                if let Some(layer) = chain.iter().find(|l| broken.contains(*l)) {
                    problems.push(Problem::ContainerLayerBroken {
                        container: id.clone(),
                        layer: layer.clone(),
                    });
                }
            }
        }
        if !container.image_id.is_empty() {
            if !known_images.contains(container.image_id.as_str()) {
                problems.push(Problem::ContainerImageMissing {
                    container: id.clone(),
                    image: container.image_id.clone(),
                });
            } else if damaged_images.contains(&container.image_id) {
                problems.push(Problem::ContainerImageDamaged {
                    container: id.clone(),
                    image: container.image_id.clone(),
                });
            }
        }
        for key in &container.big_data_names {
            let detail = match reader.big_data(id, key) {
                Err(_) => Some("is missing".to_string()),
                Ok(data) => {
                    let size = container.big_data_sizes.get(key).copied();
                    let digest = container.big_data_digests.get(key);
                    let actual = canonical_digest(&data).as_str().to_owned();
                    if size.is_some_and(|s| u64::try_from(s).ok() != Some(data.len() as u64)) {
                        Some(format!(
                            "is {} bytes, recorded {}",
                            data.len(),
                            size.unwrap_or_default()
                        ))
                    } else if digest.is_some_and(|d| *d != actual) {
                        Some(format!(
                            "has digest {actual}, recorded {}",
                            digest.map(String::as_str).unwrap_or_default()
                        ))
                    } else {
                        None
                    }
                }
            };
            if let Some(detail) = detail {
                problems.push(Problem::ContainerData {
                    container: id.clone(),
                    key: key.clone(),
                    detail,
                });
            }
        }
    }
}

/// The image's top layer, its ID-mapped layers and what lies below them: missing or broken.
fn check_image_layers(
    image: &Image,
    stores: &[LayerRecords<'_>],
    broken: &HashSet<String>,
    read_only: bool,
    problems: &mut Vec<Problem>,
) {
    let tops = std::iter::once(&image.top_layer)
        .chain(&image.mapped_top_layers)
        .filter(|t| !t.is_empty());
    let mut reported: HashSet<String> = HashSet::new();
    for top in tops {
        match layer_chain(stores, top) {
            Err(layer) => {
                if reported.insert(layer.clone()) {
                    problems.push(Problem::ImageLayerMissing {
                        image: image.id.clone(),
                        layer,
                        read_only,
                    });
                }
            }
            Ok(chain) => {
                for layer in chain.into_iter().filter(|l| broken.contains(l)) {
                    if reported.insert(layer.clone()) {
                        problems.push(Problem::ImageLayerBroken {
                            image: image.id.clone(),
                            layer,
                            read_only,
                        });
                    }
                }
            }
        }
    }
}

/// The IDs from `top` down its parents, across the layer stores; `Err` names the first layer
/// no store knows. A parent cycle (a broken layer the layer check reports) ends the walk.
fn layer_chain(stores: &[LayerRecords<'_>], top: &str) -> std::result::Result<Vec<String>, String> {
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut current = top.to_owned();
    while !current.is_empty() && seen.insert(current.clone()) {
        let Some((_, layer)) = find_layer(stores, &current) else {
            return Err(current);
        };
        chain.push(layer.id.clone());
        current = layer.parent.clone();
    }
    Ok(chain)
}

/// Whether a manifest is of schema 1, whose digest leaves its signatures out (so it is not
/// the sha256 of the file).
fn is_schema1(data: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("schemaVersion").and_then(serde_json::Value::as_i64))
        == Some(1)
}

/// The distinct items of `items`, in first-seen order.
fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: HashSet<&str> = HashSet::new();
    items.filter(|i| seen.insert(i)).collect()
}

fn bad_record_text(bad: &layerstore_recordstore::BadRecord) -> String {
    match &bad.id {
        Some(id) => format!("record {} ({id:?}): {}", bad.index, bad.problem),
        None => format!("record {}: {}", bad.index, bad.problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema1_manifests_are_recognised() {
        assert!(is_schema1(br#"{"schemaVersion": 1, "signatures": []}"#));
        assert!(!is_schema1(br#"{"schemaVersion": 2}"#));
        assert!(!is_schema1(b"not json"));
    }

    #[test]
    fn unique_keeps_the_first_of_each() {
        assert_eq!(
            unique(["a", "b", "a", "c", "b"].into_iter()),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn problems_name_what_they_are_about_and_which_ones_damage_what() {
        let image = Problem::ImageLayerBroken {
            image: "i".into(),
            layer: "l".into(),
            read_only: false,
        };
        assert_eq!((image.image(), image.layer()), (Some("i"), Some("l")));
        assert_eq!(image.damaged_image(), Some("i"));
        assert_eq!(image.kind(), "image-layer-broken");
        assert_eq!(image.to_string(), "image i: layer l is broken");
        let read_only = Problem::ImageDataMissing {
            image: "i".into(),
            key: "k".into(),
            path: "/s/i/k".into(),
            read_only: true,
        };
        assert_eq!(
            read_only.damaged_image(),
            None,
            "a read-only image is never repaired"
        );
        assert!(read_only.to_string().starts_with("read-only image i:"));
        let container = Problem::ContainerImageMissing {
            container: "c".into(),
            image: "i".into(),
        };
        assert_eq!(container.damaged_container(), Some("c"));
        assert_eq!(container.damaged_image(), None);
        let file = Problem::RecordFile {
            path: "/g/vfs-images/images.json".into(),
            detail: "unexpected end".into(),
        };
        assert!(file.to_string().contains("/g/vfs-images/images.json"));
        assert_eq!(
            file.path(),
            Some(std::path::Path::new("/g/vfs-images/images.json"))
        );
    }
}
