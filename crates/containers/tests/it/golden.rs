//! The files Go 1.43 wrote (`tests/fixtures/go-1.43`): they load, lookups find what Go made,
//! every big-data item and directory is where Go put it, and saving writes the same bytes.

use std::process::Command;

use layerstore_containers::ContainerStore;
use layerstore_model::{big_data_file_name, to_go_json};
use layerstore_recordstore::canonical_digest;
use layerstore_testsupport::{Capability, go_fixtures, require_or_skip};

use crate::Scratch;

fn saved_again(name: &str) -> (String, String) {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.dir()).unwrap();
    let original = std::fs::read_to_string(go_fixtures().join(name)).unwrap();
    std::fs::write(scratch.json(), &original).unwrap();
    let store = scratch.open();
    {
        let mut writer = store.write().unwrap();
        assert_eq!(writer.bad_records().count(), 0, "{name}");
        writer.save_all().unwrap();
    }
    (original, std::fs::read_to_string(scratch.json()).unwrap())
}

#[test]
fn containers_json_written_by_go_saves_back_byte_for_byte() {
    let (original, saved) = saved_again("containers-vfs.json");
    assert_eq!(saved, original);
}

#[test]
fn containers_json_with_mount_options_and_unknown_keys_saves_back_byte_for_byte() {
    let (original, saved) = saved_again("containers-edited.json");
    assert_eq!(saved, original);
}

#[test]
fn our_records_print_as_the_go_tools_containers_json() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.dir()).unwrap();
    std::fs::copy(go_fixtures().join("containers-vfs.json"), scratch.json()).unwrap();
    let containers = scratch.open().containers().unwrap();
    let mut printed = String::from_utf8(to_go_json(&containers).unwrap()).unwrap();
    printed.push('\n');
    let go = std::fs::read_to_string(go_fixtures().join("containers-vfs.cli.json")).unwrap();
    assert_eq!(printed, go);
}

#[test]
fn the_go_container_store_reads_whole() {
    require_or_skip!(Capability::GnuTar);
    let temp = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .args(["--numeric-owner", "-xzpf"])
        .arg(go_fixtures().join("store-images-vfs.tar.gz"))
        .arg("-C")
        .arg(temp.path())
        .arg("root-images-vfs/vfs-containers")
        .status()
        .unwrap();
    assert!(status.success());
    let graph = temp.path().join("root-images-vfs");
    let store = ContainerStore::open(
        graph.join("vfs-containers"),
        temp.path().join("run/vfs-containers"),
    )
    .unwrap();
    let reader = store.read().unwrap();
    assert_eq!(reader.bad_records().count(), 0);
    assert_eq!(reader.containers().count(), 5);
    // By name, by layer, by prefix; names Go moved.
    let ctr1 = reader.get("ctr1").unwrap();
    assert_eq!(ctr1.names, ["ctr3", "ctr1"]);
    assert_eq!(
        reader
            .get("70b5cda19e9511a45350e6a84cfb8759d1947ea22461961e44e59004b7db6954")
            .unwrap()
            .id,
        ctr1.id
    );
    assert_eq!(reader.get(&ctr1.id[..10]).unwrap().id, ctr1.id);
    assert_eq!(
        reader.get("taken").unwrap().names,
        ["volatile-ctr", "taken"]
    );
    assert!(reader.get("volatile-ctr").unwrap().is_volatile());
    assert_eq!(
        reader.get("no-image-ctr").unwrap().metadata,
        "set <later> & again"
    );
    assert_eq!(
        reader.get("mapped-ctr").unwrap().uid_map[0].host_id,
        100_000
    );
    // Every item Go stored, under the file name Go gave it.
    let listing = std::fs::read_to_string(go_fixtures().join("big-data-files-vfs.txt")).unwrap();
    let mut items = 0;
    for line in listing.lines().filter(|l| l.starts_with("container ")) {
        let mut fields = line.splitn(3, ' ').skip(1);
        let id = fields.next().unwrap();
        let mut strings =
            serde_json::Deserializer::from_str(fields.next().unwrap()).into_iter::<String>();
        let key = strings.next().unwrap().unwrap();
        let file = strings.next().unwrap().unwrap();
        assert_eq!(big_data_file_name(&key), file);
        let data = reader.big_data(id, &key).unwrap();
        assert_eq!(
            std::fs::read(graph.join("vfs-containers").join(id).join(&file)).unwrap(),
            data
        );
        assert_eq!(reader.big_data_size(id, &key).unwrap(), data.len() as i64);
        assert_eq!(
            reader.big_data_digest(id, &key).unwrap(),
            canonical_digest(&data).as_str()
        );
        items += 1;
    }
    assert_eq!(items, 4);
    // Go made ctr1's user data directory; ours is the same one.
    assert_eq!(
        reader.directory("ctr1").unwrap(),
        graph.join("vfs-containers").join(&ctr1.id).join("userdata")
    );
}
