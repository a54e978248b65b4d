//! UID/GID mappings as drivers use them: container ID ↔ host ID translation.

use std::path::Path;

use crate::{Error, IdMap, Result};

/// A layer's (or mount's) UID and GID mappings. Empty lists mean identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMappings {
    /// UID ranges.
    pub uids: Vec<IdMap>,
    /// GID ranges.
    pub gids: Vec<IdMap>,
}

impl IdMappings {
    /// Mappings from the record's lists.
    pub fn new(uids: Vec<IdMap>, gids: Vec<IdMap>) -> Self {
        IdMappings { uids, gids }
    }

    /// Mappings from a layer record's `uidmap` / `gidmap` (`layers.json`).
    pub fn from_records(
        uids: &[layerstore_model::IDMap],
        gids: &[layerstore_model::IDMap],
    ) -> Self {
        let convert = |maps: &[layerstore_model::IDMap]| {
            maps.iter()
                .map(|m| IdMap {
                    container_id: m.container_id,
                    host_id: m.host_id,
                    size: m.size,
                })
                .collect()
        };
        IdMappings {
            uids: convert(uids),
            gids: convert(gids),
        }
    }

    /// The `(uidmap, gidmap)` lists of a layer record.
    pub fn to_records(&self) -> (Vec<layerstore_model::IDMap>, Vec<layerstore_model::IDMap>) {
        let convert = |maps: &[IdMap]| {
            maps.iter()
                .map(|m| layerstore_model::IDMap {
                    container_id: m.container_id,
                    host_id: m.host_id,
                    size: m.size,
                })
                .collect()
        };
        (convert(&self.uids), convert(&self.gids))
    }

    /// Whether both lists are empty (identity).
    pub fn is_identity(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    /// The host `(uid, gid)` of a container `(uid, gid)`, `None` for an unmapped ID.
    pub fn to_host(&self, uid: u32, gid: u32) -> (Option<u32>, Option<u32>) {
        (
            layerstore_archive::to_host(&self.uids, uid),
            layerstore_archive::to_host(&self.gids, gid),
        )
    }

    /// The container `(uid, gid)` of a host `(uid, gid)`, `None` for an unmapped ID.
    pub fn to_container(&self, uid: u32, gid: u32) -> (Option<u32>, Option<u32>) {
        (
            layerstore_archive::to_container(&self.uids, uid),
            layerstore_archive::to_container(&self.gids, gid),
        )
    }

    /// The host IDs of the container's root, which owns a base layer's top directory
    /// (Go's `idtools.GetRootUIDGID`). `None` when root is not mapped.
    pub fn root_pair(&self) -> Option<(u32, u32)> {
        match self.to_host(0, 0) {
            (Some(u), Some(g)) => Some((u, g)),
            _ => None,
        }
    }

    /// [`root_pair`](Self::root_pair) for layer `id`, whose top directory is `dir`: an
    /// [`Error::Unmapped`] naming the layer, the directory and which of the two IDs has no
    /// mapping when root is not mapped.
    pub fn root_owner(&self, id: &str, dir: &Path) -> Result<(u32, u32)> {
        let unmapped = |kind| Error::Unmapped {
            id: id.to_string(),
            path: dir.to_path_buf(),
            kind,
            value: 0,
        };
        match self.to_host(0, 0) {
            (Some(uid), Some(gid)) => Ok((uid, gid)),
            (None, _) => Err(unmapped("uid")),
            (_, None) => Err(unmapped("gid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(container_id: u32, host_id: u32, size: u32) -> IdMap {
        IdMap {
            container_id,
            host_id,
            size,
        }
    }

    #[test]
    fn identity_and_ranges() {
        assert_eq!(IdMappings::default().to_host(5, 6), (Some(5), Some(6)));
        let maps = IdMappings::new(vec![m(0, 100000, 65536)], vec![m(0, 200000, 65536)]);
        assert_eq!(maps.to_host(1000, 1000), (Some(101000), Some(201000)));
        assert_eq!(maps.to_container(101000, 201000), (Some(1000), Some(1000)));
        assert_eq!(maps.to_host(65536, 0), (None, Some(200000)));
        assert_eq!(maps.to_container(5, 5), (None, None));
        assert_eq!(maps.root_pair(), Some((100000, 200000)));
    }

    #[test]
    fn root_owner_names_the_layer_directory_and_the_unmapped_id() {
        let dir = Path::new("/g/vfs/dir/L");
        let maps = IdMappings::new(vec![m(0, 100000, 10)], vec![m(0, 200000, 10)]);
        assert_eq!(maps.root_owner("L", dir).unwrap(), (100000, 200000));
        let no_root_gid = IdMappings::new(vec![m(0, 100000, 10)], vec![m(1, 200000, 10)]);
        let message = no_root_gid.root_owner("L", dir).unwrap_err().to_string();
        assert_eq!(message, "layer L: /g/vfs/dir/L: gid 0 is not mapped");
        let no_root_uid = IdMappings::new(vec![m(1, 100000, 10)], vec![]);
        let message = no_root_uid.root_owner("L", dir).unwrap_err().to_string();
        assert_eq!(message, "layer L: /g/vfs/dir/L: uid 0 is not mapped");
    }

    #[test]
    fn record_conversion_round_trips() {
        let maps = IdMappings::new(vec![m(0, 100000, 65536)], vec![m(0, 200000, 1), m(1, 5, 2)]);
        let (uids, gids) = maps.to_records();
        assert_eq!(IdMappings::from_records(&uids, &gids), maps);
    }

    #[test]
    fn no_overflow_at_the_top() {
        let maps = IdMappings::new(vec![m(0, u32::MAX - 1, 10)], vec![]);
        assert_eq!(maps.to_host(1, 0).0, Some(u32::MAX));
        assert_eq!(maps.to_host(2, 0).0, None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// Inside a range, to_container undoes to_host.
        #[test]
        fn round_trip(c in 0u32..1000, h in 0u32..1_000_000, size in 1u32..100_000, off in 0u32..100_000) {
            let maps = IdMappings::new(vec![m(c, h, size)], vec![m(c, h, size)]);
            let id = c.saturating_add(off % size);
            let (hu, hg) = maps.to_host(id, id);
            proptest::prop_assert_eq!(hu, hg);
            let hu = hu.unwrap();
            proptest::prop_assert_eq!(maps.to_container(hu, hu), (Some(id), Some(id)));
        }
    }
}
