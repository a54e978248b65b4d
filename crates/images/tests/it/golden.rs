//! The files Go 1.43 wrote (`tests/fixtures/go-1.43`): they load, lookups find what Go made,
//! every big-data item is where Go put it, and saving writes the same bytes.

use std::collections::BTreeSet;

use layerstore_images::ImageStore;
use layerstore_model::{Image, big_data_file_name, to_go_json};
use layerstore_recordstore::canonical_digest;
use layerstore_testsupport::{Capability, go_fixtures, require_or_skip};

use crate::{Scratch, unpack_go_image_store};

/// A store whose `images.json` is the fixture `name`, rewritten by a save of every record.
fn saved_again(name: &str) -> (Vec<u8>, Vec<u8>) {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.dir()).unwrap();
    let original = std::fs::read(go_fixtures().join(name)).unwrap();
    std::fs::write(scratch.json(), &original).unwrap();
    let store = scratch.open();
    {
        let mut writer = store.write().unwrap();
        assert_eq!(writer.bad_records().count(), 0, "{name}");
        writer.save_all().unwrap();
    }
    (original, std::fs::read(scratch.json()).unwrap())
}

#[test]
fn images_json_written_by_go_saves_back_byte_for_byte() {
    let (original, saved) = saved_again("images-vfs.json");
    assert_eq!(
        String::from_utf8(saved).unwrap(),
        String::from_utf8(original).unwrap()
    );
}

#[test]
fn images_json_with_flags_and_unknown_keys_saves_back_byte_for_byte() {
    let (original, saved) = saved_again("images-edited.json");
    assert_eq!(
        String::from_utf8(saved).unwrap(),
        String::from_utf8(original).unwrap()
    );
}

#[test]
fn our_records_print_as_the_go_tools_images_json() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.dir()).unwrap();
    std::fs::copy(go_fixtures().join("images-vfs.json"), scratch.json()).unwrap();
    let images = scratch.open().images().unwrap();
    let mut printed = to_go_json(&images).unwrap();
    printed.push(b'\n');
    let go = std::fs::read(go_fixtures().join("images-vfs.cli.json")).unwrap();
    assert_eq!(
        String::from_utf8(printed).unwrap(),
        String::from_utf8(go).unwrap()
    );
}

/// `(id, key, file name)` of every image item in `big-data-files-vfs.txt`.
fn go_image_items() -> Vec<(String, String, String)> {
    let listing = std::fs::read_to_string(go_fixtures().join("big-data-files-vfs.txt")).unwrap();
    listing
        .lines()
        .filter_map(|line| {
            let (kind, rest) = line.split_once(' ')?;
            let (id, rest) = rest.split_once(' ')?;
            // Two JSON strings: the key and the file name.
            let mut strings = serde_json::Deserializer::from_str(rest).into_iter::<String>();
            let key = strings.next()?.ok()?;
            let file = strings.next()?.ok()?;
            (kind == "image").then(|| (id.to_owned(), key, file))
        })
        .collect()
}

#[test]
fn the_go_image_store_reads_whole() {
    require_or_skip!(Capability::GnuTar);
    let temp = tempfile::tempdir().unwrap();
    let graph = unpack_go_image_store(temp.path());
    let store = ImageStore::open(graph.join("vfs-images")).unwrap();
    let reader = store.read().unwrap();
    assert_eq!(reader.bad_records().count(), 0);
    let ids: Vec<&str> = reader.images().map(|i| i.id.as_str()).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[3], "custom-image-id");

    // Names, the names history Go kept, prefixes.
    let img_a = reader.get("img-a").unwrap();
    assert_eq!(
        img_a.names_history,
        ["img-b", "img-a", "x", "img-a3", "img-a2"]
    );
    assert_eq!(reader.get(&img_a.id[..12]).unwrap().id, img_a.id);
    assert_eq!(reader.get("img-b3").unwrap().id, ids[1]);
    assert_eq!(reader.get("custom").unwrap().id, "custom-image-id");
    assert_eq!(reader.metadata("img-a").unwrap(), "meta <tag> & more");

    // Found by the given digest and by every manifest digest; the sticky one first.
    let img_b = reader.get("img-b").unwrap();
    assert_eq!(
        img_b.digest, "sha256:095e2178ce5ba5f6c1b0186254ff7f8aed333db87b9fd35495921a4dbb193e26",
        "the first manifest's digest stays when the manifest changes"
    );
    for digest in [&img_b.digest, &img_b.big_data_digests["manifest"]] {
        let found: Vec<&str> = reader
            .by_digest(digest)
            .unwrap()
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(found, [img_b.id.as_str()], "{digest}");
    }
    let manifests: BTreeSet<&String> = img_a
        .big_data_digests
        .iter()
        .filter(|(key, _)| key.starts_with("manifest"))
        .map(|(_, digest)| digest)
        .collect();
    assert_eq!(
        manifests.len(),
        3,
        "manifest, manifest-sha256:abcd, manifest-"
    );
    for digest in manifests.into_iter().chain([&img_a.digest]) {
        assert_eq!(
            reader.by_digest(digest).unwrap()[0].id,
            img_a.id,
            "{digest}"
        );
    }
    assert!(
        reader
            .by_digest(&img_a.big_data_digests["Manifest"])
            .is_err()
    );

    // Every item in the file Go named, with the size and digest Go recorded.
    let items = go_image_items();
    assert_eq!(items.len(), 12);
    for (id, key, file) in items {
        assert_eq!(big_data_file_name(&key), file, "{key:?}");
        assert!(
            graph.join("vfs-images").join(&id).join(&file).is_file(),
            "{id} {file}"
        );
        let data = reader.big_data(&id, &key).unwrap();
        let image: &Image = reader.get(&id).unwrap();
        assert_eq!(reader.big_data_size(&id, &key).unwrap(), data.len() as i64);
        assert_eq!(image.big_data_sizes[&key], data.len() as i64, "{key:?}");
        assert_eq!(
            reader.big_data_digest(&id, &key).unwrap(),
            canonical_digest(&data).as_str(),
            "{key:?}"
        );
    }
}
