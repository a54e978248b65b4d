//! Rebuilding a `layers.json` that does not load, from what is on disk: the driver's layer
//! directories, overlay's `link` and `lower` files (the parents), the tar-split files (the
//! diff digest and size, recomputed from the layer's files).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use layerstore_model::{Digest, DigestAlgorithm, Layer, validate_store_id};

use super::find::Hasher;
use crate::error::{Error, Result};
use crate::files::{StoreDir, read_store_file};
use crate::options::StoreOptions;
use crate::records;
use crate::store::{Counting, LayerStore, tar_split_name};

/// What [`LayerStore::rebuild_damaged`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// `layers.json`, now rebuilt.
    pub path: PathBuf,
    /// Where the damaged file's bytes are kept (`layers.json.damaged-<n>`).
    pub kept_as: PathBuf,
    /// Why it did not load.
    pub reason: String,
    /// The layers found on disk, in the order written (parents first).
    pub layers: Vec<RebuiltLayer>,
}

/// What an image says about its layers, for [`LayerStore::rebuild_damaged`] to find parents
/// the driver does not record: its top layer and the diff digests of its layers, bottom
/// first (its config's `rootfs.diff_ids`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerChain {
    /// The image's top layer.
    pub top: String,
    /// The uncompressed digests of its layers, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// One layer of a rebuilt `layers.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltLayer {
    /// Its ID (the driver's directory).
    pub id: String,
    /// Its parent, when the driver records one (overlay's `lower`) or an image's layer
    /// chain names it; empty otherwise.
    pub parent: String,
    /// Whether its diff digest and size were recovered (its tar-split file rebuilt, through
    /// its files, into a stream that was hashed). Without it, the layer has no diff to give
    /// back (as a container's layer).
    pub diff_recovered: bool,
}

impl LayerStore {
    /// Rebuilds `layers.json` when it does not load as a whole (truncated, garbage), before
    /// the store can be opened: under the exclusive `layers.lock`, its bytes are kept as
    /// `layers.json.damaged-<n>` beside it (the first free `n`; never deleted), then a new
    /// `layers.json` is written (the lock's token first) with one record per layer the driver
    /// holds: its ID, its parent where the driver records one (overlay's `lower` and `link`
    /// files; vfs and btrfs keep none: see `chains` below), and, when
    /// its tar-split file rebuilds through its files, the diff digest (sha256) and size of
    /// that stream. Names, compressed digests, big data and flags lived only in the damaged
    /// file and are not guessed. Answers `None`, changing nothing, when `layers.json` loads
    /// (or does not exist).
    ///
    /// Where the driver keeps no parents, `chains` (called under the lock with the graph root
    /// and the driver's name; the Store reads them from its images' configs) gives them: from
    /// each chain's top layer down, a layer without a parent gets the one layer whose diff
    /// digest is the next one down the chain; when none or several have it, or the digests do
    /// not match, the chain stops there.
    pub fn rebuild_damaged(
        options: StoreOptions,
        chains: impl FnOnce(&std::path::Path, &str) -> Vec<LayerChain>,
    ) -> Result<Option<Rebuilt>> {
        if options.read_only {
            return Err(Error::ReadOnly(options.graph_root.clone()));
        }
        let store = Self::open_with(options, false)?;
        let guard = store.layers_lock.lock()?;
        let Some(bytes) = read_store_file(&store.layers_json)? else {
            return Ok(None);
        };
        let reason = match records::parse(&bytes) {
            Ok(_) => return Ok(None),
            Err(e) => layerstore_model::error_chain(&e),
        };
        let dir = store.layers_dir_rw()?;
        let mut n = 1;
        let kept_as = loop {
            let name = format!("{}.damaged-{n}", layerstore_model::LAYERS_JSON);
            if dir.file_type(&name)?.is_none() {
                break name;
            }
            n += 1;
        };
        dir.write_atomic(&kept_as, 0o600, |out| {
            out.write_all(&bytes)
                .map_err(|e| Error::io("write", dir.join(&kept_as), e))
        })?;

        let ids: Vec<String> = store
            .driver
            .list_layers()
            .map_err(|e| Error::driver("-", "list the driver's layers", e))?
            .into_iter()
            .filter(|id| validate_store_id(id).is_ok())
            .collect();
        let parents = store.driver_parents(&ids);
        let mut found: BTreeMap<String, (Layer, bool)> = BTreeMap::new();
        for id in &ids {
            let mut layer = Layer::new(id.as_str());
            layer.parent = parents.get(id).cloned().unwrap_or_default();
            let recovered = store.recover_diff(&mut layer);
            found.insert(id.clone(), (layer, recovered));
        }
        let chains = chains(&store.graph_root, store.driver.name());
        let digests: BTreeMap<String, Option<Digest>> = found
            .iter()
            .map(|(id, (layer, _))| (id.clone(), layer.uncompressed_digest.clone()))
            .collect();
        let mut parent_of: BTreeMap<String, String> = found
            .iter()
            .map(|(id, (layer, _))| (id.clone(), layer.parent.clone()))
            .collect();
        parents_from_chains(&mut parent_of, &digests, &chains);
        for (id, (layer, _)) in &mut found {
            layer.parent = parent_of[id].clone();
        }
        let parent_of: BTreeMap<String, String> = found
            .iter()
            .map(|(id, (layer, _))| (id.clone(), layer.parent.clone()))
            .collect();
        let order = parents_first(&parent_of);
        let mut layers = Vec::with_capacity(order.len());
        let mut rebuilt = Vec::with_capacity(order.len());
        for id in order {
            let (layer, recovered) = found.remove(&id).unwrap_or_else(|| unreachable!("found"));
            rebuilt.push(RebuiltLayer {
                id: layer.id.clone(),
                parent: layer.parent.clone(),
                diff_recovered: recovered,
            });
            layers.push(layer);
        }
        guard.record_write()?;
        dir.write_atomic(layerstore_model::LAYERS_JSON, 0o600, |out| {
            records::write(out, &layers, &[])
        })?;
        Ok(Some(Rebuilt {
            path: store.layers_json.clone(),
            kept_as: dir.join(&kept_as),
            reason,
            layers: rebuilt,
        }))
    }

    /// Each layer's parent as overlay records it: the first entry (`l/<link>`) of its
    /// `lower` file, resolved through the layers' `link` files. Empty for other drivers.
    fn driver_parents(&self, ids: &[String]) -> HashMap<String, String> {
        let mut parents = HashMap::new();
        if self.driver.name() != "overlay" {
            return parents;
        }
        let Ok(Some(home)) = StoreDir::open(self.driver.home()) else {
            return parents;
        };
        let read = |id: &str, file: &str| -> Option<String> {
            let dir = home.subdir(id, false).ok()??;
            let bytes = dir.read_regular(file).ok()??;
            Some(String::from_utf8_lossy(&bytes).trim().to_owned())
        };
        let by_link: HashMap<String, &String> = ids
            .iter()
            .filter_map(|id| Some((read(id, "link")?, id)))
            .collect();
        for id in ids {
            let Some(lower) = read(id, "lower") else {
                continue;
            };
            let nearest = lower.split(':').next().unwrap_or_default();
            if let Some(parent) = nearest.strip_prefix("l/").and_then(|l| by_link.get(l)) {
                parents.insert(id.clone(), (*parent).clone());
            }
        }
        parents
    }

    /// Sets the layer's diff digest and size from its tar-split file rebuilt through its
    /// files; answers whether that worked.
    fn recover_diff(&self, layer: &mut Layer) -> bool {
        let path = self.tar_split_path(&layer.id);
        let Ok(Some(file)) = self.open_in_layers_dir(&tar_split_name(&layer.id)) else {
            return false;
        };
        let mut sink = Counting {
            inner: Hasher::new(DigestAlgorithm::Sha256),
            count: 0,
        };
        if self.assemble(layer, file, &path, &mut sink).is_err() {
            return false;
        }
        let (Ok(digest), Ok(size)) = (sink.inner.finish(), i64::try_from(sink.count)) else {
            return false;
        };
        layer.uncompressed_digest = Some(digest);
        layer.uncompressed_size = size;
        true
    }
}

/// Gives layers without a parent the one that `chains` name (see
/// [`LayerStore::rebuild_damaged`]); never makes a layer its own ancestor.
fn parents_from_chains(
    parent_of: &mut BTreeMap<String, String>,
    digests: &BTreeMap<String, Option<Digest>>,
    chains: &[LayerChain],
) {
    let mut by_digest: HashMap<&Digest, Vec<&str>> = HashMap::new();
    for (id, digest) in digests {
        if let Some(digest) = digest {
            by_digest.entry(digest).or_default().push(id);
        }
    }
    for chain in chains {
        let mut child = chain.top.clone();
        let mut wanted = chain.diff_ids.iter().rev();
        if digests.get(&child).cloned().flatten().as_ref() != wanted.next() {
            continue;
        }
        for digest in wanted {
            let parent = match parent_of.get(&child) {
                Some(parent) if !parent.is_empty() => parent.clone(),
                Some(_) => {
                    let candidates = by_digest.get(digest).map(Vec::as_slice).unwrap_or_default();
                    let [candidate] = candidates else {
                        break;
                    };
                    // Never a cycle: the candidate must not stand on the child.
                    let mut up = Some(*candidate);
                    let mut seen = HashSet::new();
                    while let Some(id) = up {
                        if id == child || !seen.insert(id) {
                            break;
                        }
                        up = parent_of
                            .get(id)
                            .filter(|p| !p.is_empty())
                            .map(String::as_str);
                    }
                    if up.is_some() {
                        break;
                    }
                    parent_of.insert(child.clone(), (*candidate).to_owned());
                    (*candidate).to_owned()
                }
                None => break,
            };
            if digests.get(&parent).cloned().flatten().as_ref() != Some(digest) {
                break;
            }
            child = parent;
        }
    }
}

/// The IDs of `parent_of` (each layer's parent, empty for none), each once, a parent that is
/// among them before its children; the layers of a parent cycle in the order met. Walks
/// with an explicit stack.
fn parents_first(parent_of: &BTreeMap<String, String>) -> Vec<String> {
    let mut order: Vec<String> = Vec::with_capacity(parent_of.len());
    let mut written: HashSet<&str> = HashSet::new();
    let mut visiting: HashSet<&str> = HashSet::new();
    let mut stack: Vec<(&str, bool)> = parent_of
        .keys()
        .rev()
        .map(|id| (id.as_str(), false))
        .collect();
    while let Some((id, expanded)) = stack.pop() {
        if written.contains(id) {
            continue;
        }
        if expanded || !visiting.insert(id) {
            // Expanded: its parent is written. Met again while visiting: a cycle, written
            // as met (check reports it).
            written.insert(id);
            order.push(id.to_owned());
            continue;
        }
        stack.push((id, true));
        if let Some((parent, _)) = parent_of.get_key_value(&parent_of[id])
            && !written.contains(parent.as_str())
        {
            stack.push((parent.as_str(), false));
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(id, parent)| (id.to_string(), parent.to_string()))
            .collect()
    }

    #[test]
    fn image_chains_give_parents_the_driver_does_not_keep() {
        let digest = |n: u8| Digest::from_hash(DigestAlgorithm::Sha256, &[n; 32]).unwrap();
        let digests: BTreeMap<String, Option<Digest>> = [
            ("base", Some(digest(1))),
            ("mid", Some(digest(2))),
            ("top", Some(digest(3))),
            ("twin1", Some(digest(4))),
            ("twin2", Some(digest(4))),
            ("on-twin", Some(digest(5))),
            ("ctr", None),
        ]
        .into_iter()
        .map(|(id, d)| (id.to_owned(), d))
        .collect();
        let mut parent_of: BTreeMap<String, String> = digests
            .keys()
            .map(|id| (id.clone(), String::new()))
            .collect();
        let chains = [
            LayerChain {
                top: "top".into(),
                diff_ids: vec![digest(1), digest(2), digest(3)],
            },
            // Two layers have the digest: which one is unknown, so none is chosen.
            LayerChain {
                top: "on-twin".into(),
                diff_ids: vec![digest(4), digest(5)],
            },
            // The top layer's digest does not match: nothing is taken from it.
            LayerChain {
                top: "mid".into(),
                diff_ids: vec![digest(3), digest(9)],
            },
        ];
        parents_from_chains(&mut parent_of, &digests, &chains);
        assert_eq!(parent_of["top"], "mid");
        assert_eq!(parent_of["mid"], "base");
        assert_eq!(parent_of["base"], "");
        assert_eq!(parent_of["on-twin"], "");
        // A chain that would make a cycle stops instead.
        let chains = [LayerChain {
            top: "base".into(),
            diff_ids: vec![digest(3), digest(1)],
        }];
        parents_from_chains(&mut parent_of, &digests, &chains);
        assert_eq!(parent_of["base"], "");
    }

    #[test]
    fn parents_come_first_and_cycles_end() {
        let order = parents_first(&map(&[("a", "c"), ("b", ""), ("c", "b"), ("d", "gone")]));
        assert_eq!(order, ["b", "c", "a", "d"]);
        let order = parents_first(&map(&[("x", "y"), ("y", "x"), ("z", "z")]));
        assert_eq!(order.len(), 3);
        assert!(order.contains(&"z".to_string()));
    }

    proptest! {
        /// Every layer once; a parent among them (outside a cycle) before its child.
        #[test]
        fn every_layer_once_parents_before_children(parents in proptest::collection::vec(0usize..12, 1..12)) {
            // Layer i's parent is a lower-numbered layer (no cycles), or none.
            let parent_of: BTreeMap<String, String> = parents
                .iter()
                .enumerate()
                .map(|(i, &p)| (format!("l{i:02}"), if p < i { format!("l{p:02}") } else { String::new() }))
                .collect();
            let order = parents_first(&parent_of);
            prop_assert_eq!(order.len(), parent_of.len());
            let position: HashMap<&str, usize> =
                order.iter().enumerate().map(|(n, id)| (id.as_str(), n)).collect();
            prop_assert_eq!(position.len(), parent_of.len());
            for (id, parent) in &parent_of {
                if !parent.is_empty() {
                    prop_assert!(position[parent.as_str()] < position[id.as_str()]);
                }
            }
        }
    }
}
