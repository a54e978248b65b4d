//! Staged layers through the Store (`stage_layer`, `put_staged_layer`, what a pull uses):
//! staged before the parent exists, committed on it with the records `put_layer` gives; a
//! layer whose inherited ID mappings are not the ones staged with is refused, leaving no
//! layer and no staging directory.

use std::path::Path;

use layerstore::{
    Differ, DifferOptions, DifferOutput, Error, HostMapping, IDMap, LayerOptions, Store,
};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::support::{Scratch, tarball};

/// Fills the staging directory from a tarball.
struct TarDiffer(Vec<u8>);

impl Differ for TarDiffer {
    fn apply_diff(
        &mut self,
        dest: &Path,
        options: &DifferOptions,
    ) -> layerstore_driver::Result<DifferOutput> {
        let apply = layerstore_archive::ApplyOptions {
            whiteouts: options.whiteouts,
            uid_map: options.id_mappings.uids.clone(),
            gid_map: options.id_mappings.gids.clone(),
            ..Default::default()
        };
        let (report, packer) = layerstore_archive::apply(
            dest,
            &self.0[..],
            layerstore_tarsplit::JsonLinesPacker::new(Vec::new()),
            &apply,
        )
        .map_err(|e| layerstore_driver::Error::archive("(staging)", e))?;
        let records = packer.into_inner().expect("records in memory");
        Ok(DifferOutput::from_report(report, Some(records)))
    }
}

fn staging_entries(store: &Store) -> usize {
    std::fs::read_dir(store.graph_root().join(store.driver_name()).join("staging"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn staged_then_committed_on_a_parent_made_meanwhile(driver: &'static str) {
    let scratch = Scratch::new(driver);
    let store = scratch.open();
    let child_tar = tarball(&[("etc/child", b"child\n")]);
    let staged = store
        .stage_layer(&DifferOptions::default(), &mut TarDiffer(child_tar.clone()))
        .unwrap();
    // The parent comes after its child was staged.
    let (parent, _) = store
        .put_layer(
            &LayerOptions::new().id("a".repeat(64)),
            HostMapping::default(),
            Some(&mut &tarball(&[("etc/parent", b"parent\n")])[..]),
        )
        .unwrap();
    let child = store
        .put_staged_layer(
            &LayerOptions::new().id("b".repeat(64)).parent(&parent.id),
            HostMapping::default(),
            &staged,
        )
        .unwrap();
    assert_eq!(child.parent, parent.id);
    assert_eq!(
        staging_entries(&store),
        0,
        "{driver}: the staged tree was used up"
    );
    let mut diff = Vec::new();
    store
        .diff(
            None,
            &child.id,
            &layerstore::DiffOptions::default(),
            &mut diff,
        )
        .unwrap();
    assert_eq!(diff, child_tar, "{driver}: the diff is the staged tarball");
    let mount = store.mount(&child.id, "").unwrap();
    assert_eq!(
        std::fs::read(mount.join("etc/parent")).unwrap(),
        b"parent\n"
    );
    assert_eq!(std::fs::read(mount.join("etc/child")).unwrap(), b"child\n");
    store.unmount(&child.id, true).unwrap();
}

#[test]
fn a_layer_staged_before_its_parent_is_committed_on_it_vfs() {
    require_or_skip!(Capability::Root);
    staged_then_committed_on_a_parent_made_meanwhile("vfs");
}

#[test]
fn a_layer_staged_before_its_parent_is_committed_on_it_overlay() {
    require_or_skip!(Capability::Root, Capability::Overlay);
    staged_then_committed_on_a_parent_made_meanwhile("overlay");
}

#[test]
fn a_staged_layer_needing_other_mappings_is_refused_and_nothing_stays() {
    require_or_skip!(Capability::Root);
    let scratch = Scratch::new("vfs");
    let store = scratch.open();
    let mut mapped = LayerOptions::new().id("c".repeat(64));
    mapped.uid_map = vec![IDMap {
        container_id: 0,
        host_id: 100_000,
        size: 65_536,
    }];
    mapped.gid_map = mapped.uid_map.clone();
    let parent = store.create_layer(&mapped, HostMapping::default()).unwrap();
    let staged = store
        .stage_layer(
            &DifferOptions::default(),
            &mut TarDiffer(tarball(&[("f", b"x")])),
        )
        .unwrap();
    let err = store
        .put_staged_layer(
            &LayerOptions::new().id("d".repeat(64)).parent(&parent.id),
            HostMapping::default(),
            &staged,
        )
        .unwrap_err();
    assert!(matches!(err, Error::StagedMappings { .. }), "{err}");
    assert!(err.to_string().contains(&"d".repeat(64)), "{err}");
    assert_eq!(store.layers().unwrap().len(), 1, "no new layer");
    assert_eq!(staging_entries(&store), 0, "no staging directory left");
}
