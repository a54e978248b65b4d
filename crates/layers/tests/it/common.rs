//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use layerstore_layers::{LayerStore, StoreOptions};

/// A scratch store location: `<tmp>/graph` and `<tmp>/run`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn graph(&self) -> PathBuf {
        self.dir.path().join("graph")
    }
    pub fn run(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    pub fn options(&self) -> StoreOptions {
        StoreOptions::new(self.graph(), self.run(), "vfs")
    }
    pub fn open(&self) -> LayerStore {
        LayerStore::open(self.options()).expect("open store")
    }
    pub fn layers_json(&self) -> PathBuf {
        self.graph().join("vfs-layers/layers.json")
    }
    pub fn layers_json_bytes(&self) -> Vec<u8> {
        std::fs::read(self.layers_json()).unwrap_or_default()
    }
    /// Runs the Go tool on this store.
    pub fn go(&self, args: &[&str]) -> Output {
        go(&self.graph(), &self.run(), args)
    }
    /// Runs the Go tool and insists on success; returns stdout.
    pub fn go_ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.go(args);
        assert!(
            out.status.success(),
            "containers-storage {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

pub fn go(graph: &Path, run: &Path, args: &[&str]) -> Output {
    layerstore_testsupport::go::run_go(graph, run, "vfs", args)
}

pub fn fixture_tar(name: &str) -> PathBuf {
    layerstore_testsupport::go_fixtures()
        .join("tars")
        .join(name)
}

/// The fixture tarballs the Go tool can apply (all but sparse-gnu), base layers first.
pub const BASE_TARS: &[&str] = &[
    "basic.tar",
    "basic.tar.gz",
    "basic.tar.zst",
    "pax.tar",
    "gnu-long.tar",
    "devices.tar",
    "nonutf8.tar",
    "sparse-pax.tar",
    "trailing-zeros.tar",
];

/// Decompresses a fixture (gzip or zstd by extension) to its tar bytes.
pub fn uncompressed(name: &str) -> Vec<u8> {
    use std::io::Read;
    let bytes = std::fs::read(fixture_tar(name)).expect("fixture");
    let mut out = Vec::new();
    if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .expect("gunzip");
    } else if name.ends_with(".zst") {
        out = zstd::decode_all(&bytes[..]).expect("unzstd");
    } else {
        out = bytes;
    }
    out
}

/// Fills the staging directory from a plain (possibly compressed) tarball.
pub struct TarballDiffer(pub Vec<u8>);

impl layerstore_layers::Differ for TarballDiffer {
    fn apply_diff(
        &mut self,
        dest: &Path,
        options: &layerstore_layers::DifferOptions,
    ) -> layerstore_driver::Result<layerstore_layers::DifferOutput> {
        let apply_options = layerstore_archive::ApplyOptions {
            whiteouts: options.whiteouts,
            uid_map: options.id_mappings.uids.clone(),
            gid_map: options.id_mappings.gids.clone(),
            ignore_chown_errors: options.ignore_chown_errors,
            ..Default::default()
        };
        let (report, packer) = layerstore_archive::apply(
            dest,
            &self.0[..],
            layerstore_tarsplit::JsonLinesPacker::new(Vec::new()),
            &apply_options,
        )
        .map_err(|e| layerstore_driver::Error::archive("(staging)", e))?;
        let records = packer
            .into_inner()
            .map_err(|e| layerstore_driver::Error::Differ {
                message: "tar-split records".into(),
                source: Some(Box::new(e)),
            })?;
        Ok(layerstore_layers::DifferOutput::from_report(
            report,
            Some(records),
        ))
    }
}

/// Builds `<als>/<digest>/{diff,info,blob}` from basic.tar by pulling it into a scratch vfs
/// store (its tree becomes `diff/`, its record `info`). Returns the layer's blob digest.
pub fn build_layout(
    work: &Path,
    als: &Path,
) -> (layerstore_model::Digest, layerstore_layers::Layer) {
    let scratch = LayerStore::open(StoreOptions::new(
        work.join("source-graph"),
        work.join("source-run"),
        "vfs",
    ))
    .expect("source store");
    let blob = std::fs::read(fixture_tar("basic.tar.gz")).expect("fixture");
    let (record, _) = scratch
        .put(
            &layerstore_layers::LayerOptions::new().id("source"),
            Some(&mut &blob[..]),
        )
        .expect("source put");
    let digest = record.compressed_digest.clone().expect("digest");
    let dir = als.join(digest.as_str());
    std::fs::create_dir_all(&dir).expect("mkdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(work.join("source-graph/vfs/dir/source"))
        .arg(dir.join("diff"))
        .status()
        .expect("cp");
    assert!(status.success());
    let mut info = Vec::new();
    layerstore_model::write_layers_json(&mut info, std::slice::from_ref(&record)).expect("json");
    // layers.json is an array; `info` holds the one object.
    let info = &info[1..info.len() - 1];
    std::fs::write(dir.join("info"), info).expect("info");
    std::fs::write(dir.join("blob"), &blob).expect("blob");
    (digest, record)
}

/// A store that is shut down (`force`: every mount released) when the test lets it go, so a
/// failing overlay test leaves no mount behind.
pub struct ShutdownOnDrop(pub LayerStore);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown(true);
    }
}

impl std::ops::Deref for ShutdownOnDrop {
    type Target = LayerStore;
    fn deref(&self) -> &LayerStore {
        &self.0
    }
}
