//! UID/GID mappings between a container's IDs and the host's.

pub use layerstore_model::IDMap as IdMap;

/// Maps `id` from the container side to the host side. An empty map is the identity; an ID
/// outside every range has no mapping (`None`).
pub fn to_host(maps: &[IdMap], id: u32) -> Option<u32> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter().find_map(|m| {
        let offset = id.checked_sub(m.container_id)?;
        (offset < m.size)
            .then(|| m.host_id.checked_add(offset))
            .flatten()
    })
}

/// Maps `id` from the host side back to the container side (the inverse of [`to_host`]).
pub fn to_container(maps: &[IdMap], id: u32) -> Option<u32> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter().find_map(|m| {
        let offset = id.checked_sub(m.host_id)?;
        (offset < m.size)
            .then(|| m.container_id.checked_add(offset))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAP: [IdMap; 2] = [
        IdMap {
            container_id: 0,
            host_id: 100_000,
            size: 1000,
        },
        IdMap {
            container_id: 1000,
            host_id: 5000,
            size: 10,
        },
    ];

    #[test]
    fn maps_within_ranges_and_refuses_outside() {
        assert_eq!(to_host(&MAP, 0), Some(100_000));
        assert_eq!(to_host(&MAP, 999), Some(100_999));
        assert_eq!(to_host(&MAP, 1005), Some(5005));
        assert_eq!(to_host(&MAP, 1010), None);
        assert_eq!(to_container(&MAP, 5009), Some(1009));
        assert_eq!(to_container(&MAP, 99_999), None);
        assert_eq!(to_host(&[], 42), Some(42));
        let overflow = [IdMap {
            container_id: 0,
            host_id: u32::MAX,
            size: 10,
        }];
        assert_eq!(to_host(&overflow, 1), None);
    }

    proptest! {
        #[test]
        fn to_container_inverts_to_host(id in 0u32..2000) {
            if let Some(host) = to_host(&MAP, id) {
                prop_assert_eq!(to_container(&MAP, host), Some(id));
            }
        }
    }
}
