//! zstd:chunked partial pulls: blobs written by skopeo (`--dest-compress-format zstd:chunked`)
//! from OCI layouts this test builds out of the fixture tarballs, pulled through the overlay
//! driver's staging with files taken from another local layer.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ShutdownOnDrop, fixture_tar};
use layerstore_layers::chunked::{FileBlob, LocalFiles, ZstdChunkedDiffer};
use layerstore_layers::{
    Compression, DiffOptions, DifferOptions, Digest, LayerOptions, LayerStore, StoreOptions,
};
use layerstore_testsupport::{Capability, require_or_skip};
use sha2::{Digest as _, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Writes `bytes` as a blob of the OCI layout at `dir`; returns its digest and size.
fn put_blob(dir: &Path, bytes: &[u8]) -> (String, usize) {
    let digest = sha256(bytes);
    let path = dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    fs::write(path, bytes).expect("write blob");
    (digest, bytes.len())
}

/// A blob pulled the zstd:chunked way: its file, digest and TOC checksum.
struct ChunkedBlob {
    path: PathBuf,
    digest: Digest,
    toc_digest: Digest,
}

/// Builds a one-layer OCI layout holding `tarball` and has skopeo recompress it to
/// zstd:chunked.
fn zstd_chunked(work: &Path, tarball: &[u8]) -> ChunkedBlob {
    let source = work.join("source");
    fs::create_dir_all(source.join("blobs/sha256")).expect("mkdir");
    let (layer, layer_size) = put_blob(&source, tarball);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (config, config_size) = put_blob(&source, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    let (manifest, manifest_size) = put_blob(&source, manifest.to_string().as_bytes());
    fs::write(
        source.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest,
                       "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "t"}}],
    });
    fs::write(source.join("index.json"), index.to_string()).expect("index");

    let out = work.join("chunked");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-compress-format", "zstd:chunked"])
        .arg(format!("oci:{}:t", source.display()))
        .arg(format!("oci:{}:t", out.display()))
        .status()
        .expect("run skopeo");
    assert!(status.success(), "skopeo copy failed");

    let blob_path = |digest: &str| out.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("index.json")).expect("index")).expect("json");
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .expect("manifest digest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob_path(manifest)).expect("manifest")).expect("json");
    let layer = &manifest["layers"][0];
    let digest = layer["digest"].as_str().expect("layer digest");
    let toc = layer["annotations"]["io.containers.zstd-chunked.manifest-checksum"]
        .as_str()
        .expect("the TOC checksum annotation");
    ChunkedBlob {
        path: blob_path(digest),
        digest: digest.parse().expect("digest"),
        toc_digest: toc.parse().expect("digest"),
    }
}

/// basic.tar's entries again, plus one file of its own: a layer that mostly repeats another.
fn mostly_basic() -> Vec<u8> {
    let basic = fs::read(fixture_tar("basic.tar")).expect("fixture");
    let mut builder = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(&basic[..]);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        builder.append(&header, &mut entry).expect("append");
    }
    let content: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    builder
        .append_data(&mut header, "etc/new-file", &content[..])
        .expect("append");
    builder.into_inner().expect("tar")
}

fn open_overlay(dir: &Path) -> ShutdownOnDrop {
    ShutdownOnDrop(
        LayerStore::open(StoreOptions::new(
            dir.join("graph"),
            dir.join("run"),
            "overlay",
        ))
        .expect("open overlay store"),
    )
}

fn uncompressed_diff(store: &LayerStore, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let options = DiffOptions {
        compression: Some(Compression::None),
    };
    store.diff(None, key, &options, &mut out).expect("diff");
    out
}

fn differ(blob: &ChunkedBlob, local: LocalFiles) -> ZstdChunkedDiffer {
    ZstdChunkedDiffer::new(
        Box::new(FileBlob::open(&blob.path).expect("open blob")),
        blob.digest.clone(),
        local,
    )
    .with_toc_digest(blob.toc_digest.clone())
}

#[test]
fn a_partial_pull_reads_little_and_gives_the_plain_pulls_diff() {
    require_or_skip!(Capability::Overlay, Capability::Skopeo);
    let work = tempfile::tempdir().expect("temp dir");
    let blob = zstd_chunked(work.path(), &mostly_basic());
    let blob_size = fs::metadata(&blob.path).expect("blob").len();
    let store = open_overlay(work.path());

    // The files of basic.tar exist locally in another layer.
    store
        .put(
            &LayerOptions::new().id("local"),
            Some(&mut fs::File::open(fixture_tar("basic.tar")).expect("fixture")),
        )
        .expect("local layer");
    let local = LocalFiles::from_store(&store).expect("index the store's files");
    assert_eq!(local.len(), 3, "basic.tar's empty file, passwd and tool");

    // A plain pull of the same blob, for comparison.
    let (plain, _) = store
        .put(
            &LayerOptions::new().id("plain"),
            Some(&mut fs::File::open(&blob.path).expect("blob")),
        )
        .expect("plain pull");
    assert_eq!(plain.compression, Compression::Zstd);

    let mut partial = differ(&blob, local);
    // The plan says which ranges the apply reads (what a network caller fetches): exactly
    // those, after the footer and the TOC.
    let planned: u64 = partial
        .blob_ranges()
        .expect("plan")
        .iter()
        .map(|r| r.end - r.start)
        .sum();
    let metadata = partial.bytes_read();
    assert!(metadata > 0 && planned > 0 && planned < blob_size / 10);
    let (layer, _) = store
        .put_with_differ(
            &LayerOptions::new().id("partial"),
            &DifferOptions::default(),
            &mut partial,
        )
        .expect("partial pull");
    let fraction = partial.bytes_read() as f64 / blob_size as f64;
    eprintln!(
        "zstd:chunked partial pull: read {} of {blob_size} blob bytes ({:.1}%), {} content bytes reused",
        partial.bytes_read(),
        fraction * 100.0,
        partial.bytes_reused()
    );
    assert!(fraction < 0.1, "read {fraction:.3} of the blob");
    assert_eq!(partial.bytes_read(), metadata + planned);
    assert!(partial.bytes_reused() >= 100_000);

    assert!(!layer.is_incomplete());
    assert_eq!(
        layer.big_data_names,
        [layerstore_layers::chunked::TOC_BIG_DATA]
    );
    let mut toc = String::new();
    std::io::Read::read_to_string(
        &mut store
            .big_data("partial", layerstore_layers::chunked::TOC_BIG_DATA)
            .expect("TOC"),
        &mut toc,
    )
    .expect("read TOC");
    assert!(toc.contains("\"./usr/bin/tool\""), "{toc}");
    assert_eq!(layer.uncompressed_digest, plain.uncompressed_digest);
    assert_eq!(layer.uncompressed_size, plain.uncompressed_size);
    assert_eq!(layer.compressed_digest, plain.compressed_digest);
    assert_eq!(layer.compressed_size, plain.compressed_size);
    assert_eq!(layer.compression, Compression::Zstd);
    assert_eq!((&layer.uids, &layer.gids), (&plain.uids, &plain.gids));
    let partial_diff = uncompressed_diff(&store, "partial");
    assert!(
        partial_diff == uncompressed_diff(&store, "plain"),
        "diffs differ"
    );
    assert_eq!(
        Some(sha256(&partial_diff)),
        layer.uncompressed_digest.as_ref().map(|d| d.to_string())
    );
    // Reused files are copies: no inode shared with the other layer.
    let tool = |id: &str| {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(
            store
                .differ_target(id)
                .expect("target")
                .join("usr/bin/tool"),
        )
        .expect("tool")
        .ino()
    };
    assert_ne!(tool("partial"), tool("local"));

    // Without local files everything is read but the 8-byte header of the TOC's skippable
    // frame (the footer locates the TOC itself).
    let mut cold = differ(&blob, LocalFiles::new());
    let (cold_layer, _) = store
        .put_with_differ(
            &LayerOptions::new().id("cold"),
            &DifferOptions::default(),
            &mut cold,
        )
        .expect("cold pull");
    eprintln!(
        "zstd:chunked cold pull: read {} of {blob_size} blob bytes",
        cold.bytes_read()
    );
    assert_eq!(cold.bytes_read(), blob_size - 8);
    assert_eq!(cold_layer.uncompressed_digest, plain.uncompressed_digest);

    // A store whose only copy is a zstd:chunked layer is indexed from that layer's TOC.
    store.delete("local").expect("delete local");
    store.delete("plain").expect("delete plain");
    store.delete("partial").expect("delete partial");
    let local = LocalFiles::from_store(&store).expect("index from the TOC");
    assert_eq!(
        local.len(),
        3,
        "passwd, tool and new-file (the TOC gives empty files no digest)"
    );
    let mut warm = differ(&blob, local);
    let (warm_layer, _) = store
        .put_with_differ(
            &LayerOptions::new().id("warm"),
            &DifferOptions::default(),
            &mut warm,
        )
        .expect("warm pull");
    eprintln!(
        "zstd:chunked pull indexed from a TOC: read {} of {blob_size} blob bytes",
        warm.bytes_read()
    );
    assert!(
        warm.bytes_read() * 10 < blob_size,
        "read {}",
        warm.bytes_read()
    );
    assert_eq!(warm.bytes_reused(), 103_030);
    assert_eq!(warm_layer.uncompressed_digest, plain.uncompressed_digest);
    // Every layer rebuilds to its digest.
    assert!(store.check(&Default::default()).expect("check").is_clean());
}

/// Rewrites the blob with `edit` applied to its TOC JSON (footer adjusted).
fn with_toc(blob: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let word = |at: usize| u64::from_le_bytes(blob[at..at + 8].try_into().unwrap()) as usize;
    let footer = blob.len() - 40;
    let (offset, length) = (word(footer), word(footer + 8));
    let json = zstd::bulk::decompress(&blob[offset..offset + length], 1 << 24).expect("toc");
    let mut toc: serde_json::Value = serde_json::from_slice(&json).expect("json");
    edit(&mut toc);
    let json = toc.to_string().into_bytes();
    let compressed = zstd::bulk::compress(&json, 3).expect("compress");
    let mut out = blob[..offset - 8].to_vec();
    out.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    let toc_offset = out.len() as u64;
    out.extend_from_slice(&compressed);
    out.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    for w in [toc_offset, compressed.len() as u64, json.len() as u64, 1] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(b"GnUlInUx");
    out
}

#[test]
fn corrupt_blobs_are_clear_errors_that_leave_nothing_behind() {
    require_or_skip!(Capability::Overlay, Capability::Skopeo);
    let work = tempfile::tempdir().expect("temp dir");
    let blob = zstd_chunked(
        work.path(),
        &fs::read(fixture_tar("basic.tar")).expect("fixture"),
    );
    let bytes = fs::read(&blob.path).expect("blob");
    let store = open_overlay(work.path());
    let footer = bytes.len() - 40;
    let toc_offset = u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize;

    let mut corrupt_toc = bytes.clone();
    corrupt_toc[toc_offset + 20] ^= 0xff;
    let wrong_digest = with_toc(&bytes, |toc| {
        for entry in toc["entries"].as_array_mut().unwrap() {
            if entry["name"] == "./usr/bin/tool" && entry["type"] == "reg" {
                entry["digest"] = format!("sha256:{}", "0".repeat(64)).into();
            }
        }
    });
    let truncated = bytes[..bytes.len() / 2].to_vec();
    let cases: [(&str, Vec<u8>, bool, &str); 4] = [
        (
            "corrupt TOC (checksum given)",
            corrupt_toc.clone(),
            true,
            "checksum",
        ),
        ("corrupt TOC", corrupt_toc, false, "TOC"),
        ("wrong digest", wrong_digest, false, "./usr/bin/tool"),
        ("truncated", truncated, false, "footer"),
    ];
    for (case, content, check_toc, expected) in cases {
        let path = work.path().join("bad-blob");
        fs::write(&path, &content).expect("write");
        let mut bad = ZstdChunkedDiffer::new(
            Box::new(FileBlob::open(&path).expect("open")),
            blob.digest.clone(),
            LocalFiles::new(),
        );
        if check_toc {
            bad = bad.with_toc_digest(blob.toc_digest.clone());
        }
        let err = store
            .put_with_differ(
                &LayerOptions::new().id("bad"),
                &DifferOptions::default(),
                &mut bad,
            )
            .expect_err(case);
        let message = format!("{err}: {:?}", std::error::Error::source(&err));
        assert!(message.contains(expected), "{case}: {message}");
        assert!(store.layers().expect("layers").is_empty(), "{case}");
        assert!(!work.path().join("graph/overlay/bad").exists(), "{case}");
        let staging = work.path().join("graph/overlay/staging");
        assert!(
            fs::read_dir(&staging).map_or(0, |d| d.count()) == 0,
            "{case}: staging left behind"
        );
    }
}

#[test]
fn a_chunked_child_layer_keeps_its_whiteouts() {
    require_or_skip!(Capability::Overlay, Capability::Skopeo);
    let work = tempfile::tempdir().expect("temp dir");
    let child_tar = fs::read(fixture_tar("child-whiteouts.tar")).expect("fixture");
    let blob = zstd_chunked(work.path(), &child_tar);
    let store = open_overlay(work.path());
    store
        .put(
            &LayerOptions::new().id("base"),
            Some(&mut fs::File::open(fixture_tar("basic.tar")).expect("fixture")),
        )
        .expect("base");
    let local = LocalFiles::from_store(&store).expect("index");
    let (child, _) = store
        .put_with_differ(
            &LayerOptions::new().id("child").parent("base"),
            &DifferOptions::default(),
            &mut differ(&blob, local),
        )
        .expect("chunked child");
    assert_eq!(child.parent, "base");
    // skopeo's zstd:chunked stream drops the tarball's trailing padding, so the layer's
    // DiffID is that of the blob's stream: compare with a plain pull of the blob.
    let (plain, _) = store
        .put(
            &LayerOptions::new().id("plain").parent("base"),
            Some(&mut fs::File::open(&blob.path).expect("blob")),
        )
        .expect("plain pull");
    assert_eq!(child.uncompressed_digest, plain.uncompressed_digest);
    let child_diff = uncompressed_diff(&store, "child");
    assert!(
        child_diff == uncompressed_diff(&store, "plain"),
        "diffs differ"
    );
    assert!(
        child_diff.len() > 1024 && child_tar.starts_with(&child_diff[..child_diff.len() - 1024])
    );
    // The whiteouts landed in overlay form: the merged view hides what they delete.
    let merged = store.mount("child", &Default::default()).expect("mount");
    assert!(!merged.join("etc/passwd-hard").exists());
    assert!(merged.join("usr/bin/newtool").exists());
    assert!(!merged.join("usr/bin/tool").exists(), "opaque usr/bin");
    store.unmount("child", false).expect("unmount");
    assert!(store.check(&Default::default()).expect("check").is_clean());
}
