//! Layers marked while an operation that spans the layer store and a record store is under
//! way, and how a later process settles them after a crash (see the crate documentation,
//! "Crash safety").

use std::collections::{HashMap, HashSet};

use layerstore_containers::ContainerWriter;
use layerstore_images::ImageWriter;
use layerstore_layers::{LayerRecords, LayerWriter};
use serde_json::Value;

use crate::error::Result;
use crate::store::Store;

/// The layer flag marking a layer whose operation is under way (or was cut short): its value
/// is a [`PendingOp`] as text, e.g. `"create-container 3f2a…"`. Go keeps flags it does not
/// know, and ignores them.
pub const PENDING_FLAG: &str = "layerstore-pending";

/// What a marked layer is waiting for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PendingOp {
    /// It is the read-write layer of this container, whose record is being written.
    CreateContainer(String),
    /// It is an ID-mapped copy of this image's top layer, being added to its mapped layers.
    MappedCopy(String),
    /// It is one of the layers of this image that delete-image removes.
    DeleteImage(String),
    /// It is the layer of this container, which delete-container removes.
    DeleteContainer(String),
}

impl PendingOp {
    /// The flag's value: `<operation> <ID>`.
    pub fn to_value(&self) -> Value {
        let (op, id) = match self {
            PendingOp::CreateContainer(id) => ("create-container", id),
            PendingOp::MappedCopy(id) => ("mapped-copy", id),
            PendingOp::DeleteImage(id) => ("delete-image", id),
            PendingOp::DeleteContainer(id) => ("delete-container", id),
        };
        Value::String(format!("{op} {id}"))
    }

    /// The operation a flag's value names, if it names one.
    pub fn from_value(value: &Value) -> Option<PendingOp> {
        let (op, id) = value.as_str()?.split_once(' ')?;
        let id = id.to_owned();
        Some(match op {
            "create-container" => PendingOp::CreateContainer(id),
            "mapped-copy" => PendingOp::MappedCopy(id),
            "delete-image" => PendingOp::DeleteImage(id),
            "delete-container" => PendingOp::DeleteContainer(id),
            _ => return None,
        })
    }
}

/// A layer of the read-write store carrying [`PENDING_FLAG`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLayer {
    /// The layer's ID.
    pub layer: String,
    /// What it waits for (`None`: a value this crate does not know).
    pub op: Option<PendingOp>,
    /// Whether an image (top or mapped layer), a container, or a layer that stays uses it:
    /// then the operation finished (a create) or never began (a delete), and settling keeps
    /// the layer. Otherwise it did not finish (a create) or did (a delete), and settling
    /// deletes the layer.
    pub in_use: bool,
}

/// What settling did with a marked layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// In use: the mark was removed.
    Kept(PendingLayer),
    /// Unused: the layer was deleted.
    Deleted(PendingLayer),
}

/// The marked layers of `layers`, and whether each is in use by an image of `images`, a
/// container of `containers`, or a layer that is not itself to be deleted.
pub(crate) fn find_pending<'a>(
    layers: LayerRecords<'_>,
    images: impl Iterator<Item = &'a layerstore_model::Image>,
    container_layers: impl Iterator<Item = &'a str>,
) -> Vec<PendingLayer> {
    let marked: Vec<(&str, Option<PendingOp>)> = layers
        .layers()
        .filter_map(|l| {
            let value = l.flags.get(PENDING_FLAG)?;
            Some((l.id.as_str(), PendingOp::from_value(value)))
        })
        .collect();
    if marked.is_empty() {
        return Vec::new();
    }
    let mut referenced: HashSet<&str> = container_layers.collect();
    for image in images {
        referenced.insert(&image.top_layer);
        referenced.extend(image.mapped_top_layers.iter().map(String::as_str));
    }
    // Unused: not referenced, and every child is unused too (a fixed point, walked with a
    // work list rather than recursion).
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for layer in layers.layers() {
        if !layer.parent.is_empty() {
            children.entry(&layer.parent).or_default().push(&layer.id);
        }
    }
    let mut unused: HashSet<&str> = marked
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !referenced.contains(id))
        .collect();
    let mut changed = true;
    while changed {
        changed = false;
        let keep: Vec<&str> = unused
            .iter()
            .copied()
            .filter(|id| {
                children
                    .get(id)
                    .is_some_and(|kids| kids.iter().any(|kid| !unused.contains(kid)))
            })
            .collect();
        for id in keep {
            changed |= unused.remove(id);
        }
    }
    marked
        .into_iter()
        .map(|(id, op)| PendingLayer {
            layer: id.to_owned(),
            op,
            in_use: !unused.contains(id),
        })
        .collect()
}

impl Store {
    /// The layers of the read-write store that carry [`PENDING_FLAG`]: what a crashed
    /// operation of this crate left (or, while one runs in another process, what it is
    /// doing: its locks keep this call waiting until it ends). Reads under the shared locks
    /// of layers, images and containers.
    pub fn pending_layers(&self) -> Result<Vec<PendingLayer>> {
        let layers = self.layers.read_session()?;
        let images = self.images.read()?;
        let containers = self.containers.read()?;
        Ok(find_pending(
            layers.records(),
            images.images(),
            containers.containers().map(|c| c.layer_id.as_str()),
        ))
    }

    /// Settles every marked layer (see [`PendingLayer::in_use`]): one in use loses its mark,
    /// one unused is deleted. Holds the exclusive locks of layers, images and containers, so
    /// no operation that marks layers runs meanwhile and every mark seen is stale.
    pub fn settle_pending(&self) -> Result<Vec<Settled>> {
        let mut layers = self.layers.write_session()?;
        let images = self.images.write()?;
        let containers = self.containers.write()?;
        settle(&mut layers, &images, &containers)
    }

    /// At open: settles marked layers if there are any (a read first: opening a store
    /// without marks takes no write lock).
    pub(crate) fn settle_pending_at_open(&self) -> Result<()> {
        let any = self
            .layers
            .read_session()?
            .records()
            .layers()
            .any(|l| l.flags.contains_key(PENDING_FLAG));
        if any {
            self.settle_pending()?;
        }
        Ok(())
    }
}

/// [`Store::settle_pending`] with the locks held.
pub(crate) fn settle(
    layers: &mut LayerWriter<'_>,
    images: &ImageWriter<'_>,
    containers: &ContainerWriter<'_>,
) -> Result<Vec<Settled>> {
    let pending = find_pending(
        layers.records(),
        images.images(),
        containers.containers().map(|c| c.layer_id.as_str()),
    );
    let (kept, unused): (Vec<PendingLayer>, Vec<PendingLayer>) =
        pending.into_iter().partition(|p| p.in_use);
    let keep: Vec<&str> = kept.iter().map(|p| p.layer.as_str()).collect();
    layers.set_flags(&keep, PENDING_FLAG, None)?;
    let doomed: Vec<&str> = unused.iter().map(|p| p.layer.as_str()).collect();
    layers.delete_many(&doomed)?;
    Ok(kept
        .into_iter()
        .map(Settled::Kept)
        .chain(unused.into_iter().map(Settled::Deleted))
        .collect())
}

/// Marks `ids` as waiting for `op` (one save).
pub(crate) fn mark(layers: &mut LayerWriter<'_>, ids: &[&str], op: &PendingOp) -> Result<()> {
    Ok(layers.set_flags(ids, PENDING_FLAG, Some(&op.to_value()))?)
}

/// Removes the mark of `ids` (one save).
pub(crate) fn unmark(layers: &mut LayerWriter<'_>, ids: &[&str]) -> Result<()> {
    Ok(layers.set_flags(ids, PENDING_FLAG, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_the_flag_value() {
        for op in [
            PendingOp::CreateContainer("c1".into()),
            PendingOp::MappedCopy("i1".into()),
            PendingOp::DeleteImage("i2".into()),
            PendingOp::DeleteContainer("c2".into()),
        ] {
            assert_eq!(PendingOp::from_value(&op.to_value()), Some(op));
        }
        assert_eq!(PendingOp::from_value(&Value::Bool(true)), None);
        assert_eq!(PendingOp::from_value(&Value::from("rename x")), None);
    }
}
