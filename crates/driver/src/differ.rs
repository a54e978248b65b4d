//! Staged layer creation (Go's `DriverWithDiffer`): a [`Differ`] fills a directory the driver
//! made, the store then moves it into place and records what the differ reported.
//!
//! The flow, as in containers/storage:
//!
//! 1. [`Driver::apply_diff_with_differ`](crate::Driver::apply_diff_with_differ) makes a fresh
//!    staging directory (overlay: `<home>/staging/<random>`) and lets the differ fill it with
//!    the layer's own files, whiteouts in the driver's style;
//! 2. [`Driver::apply_diff_from_staging_directory`](crate::Driver::apply_diff_from_staging_directory)
//!    renames it over the layer's tree (one `rename(2)`, so the layer never holds half of it);
//! 3. a differ that failed, or a staged result nobody wants, is removed with
//!    [`Driver::cleanup_staging_directory`](crate::Driver::cleanup_staging_directory).
//!
//! The driver records nothing: what the store must write into the layer's record comes back
//! in [`DifferOutput`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use layerstore_archive::WhiteoutStyle;
use layerstore_model::{Compression, Digest};

use crate::{ApplyReport, IdMappings, Result};

/// Options a driver gives a [`Differ`] (Go's `archive.TarOptions` as the driver fills it).
#[derive(Debug, Clone, Default)]
pub struct DifferOptions {
    /// Container → host ID mappings of the layer's owners.
    pub id_mappings: IdMappings,
    /// Do not fail when chown is refused.
    pub ignore_chown_errors: bool,
    /// How deletions must land in the directory (set by the driver).
    pub whiteouts: WhiteoutStyle,
}

/// What a differ did, and what the store records for the layer (Go's
/// `DriverWithDifferOutput`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DifferOutput {
    /// The directory that was filled (the staging directory); set by the driver.
    pub target: PathBuf,
    /// Compression of the blob the layer came from.
    pub compression: Compression,
    /// Digest of the blob as pulled, if known.
    pub compressed_digest: Option<Digest>,
    /// Size of the blob as pulled.
    pub compressed_size: u64,
    /// Digest of the uncompressed tar stream (the DiffID).
    pub uncompressed_digest: Option<Digest>,
    /// Size of the uncompressed tar stream.
    pub uncompressed_size: u64,
    /// Bytes of regular-file content in the layer.
    pub size: u64,
    /// UIDs of the layer's entries (container side).
    pub uids: BTreeSet<u32>,
    /// GIDs of the layer's entries (container side).
    pub gids: BTreeSet<u32>,
    /// The layer's tar-split records as uncompressed JSON lines (the store gzips them into
    /// `<id>.tar-split.gz`); `None` when the differ has none.
    pub tar_split: Option<Vec<u8>>,
    /// Big-data items to store with the layer (name → bytes).
    pub big_data: BTreeMap<String, Vec<u8>>,
    /// How many overlay-style deletion markers (0:0 character devices, opaque directories)
    /// the differ made, if it counted them ([`ApplyReport::overlay_markers`]). `Some(0)` lets
    /// a driver that lays the staged tree over the parent's (vfs) skip looking for them;
    /// `None` (a differ that does not count) makes it look everywhere.
    pub overlay_markers: Option<u64>,
}

impl DifferOutput {
    /// The output describing a layer applied with the archive crate (`report`) whose tar-split
    /// records are `tar_split`.
    pub fn from_report(report: ApplyReport, tar_split: Option<Vec<u8>>) -> Self {
        DifferOutput {
            target: PathBuf::new(),
            compression: report.compression,
            compressed_digest: Some(report.compressed_digest),
            compressed_size: report.compressed_size,
            uncompressed_digest: Some(report.uncompressed_digest),
            uncompressed_size: report.uncompressed_size,
            size: report.size,
            uids: report.uids,
            gids: report.gids,
            tar_split,
            big_data: BTreeMap::new(),
            overlay_markers: Some(report.overlay_markers),
        }
    }
}

/// Something that fills a layer directory by other means than applying a tar stream (Go's
/// `drivers.Differ`), e.g. a partial zstd:chunked pull.
pub trait Differ: Send {
    /// Fills the empty directory `dest` with the layer's own files (deletions in
    /// `options.whiteouts` style) and reports what the store must record.
    fn apply_diff(&mut self, dest: &Path, options: &DifferOptions) -> Result<DifferOutput>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_from_report_keeps_every_measure() {
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let report = ApplyReport {
            compression: Compression::Zstd,
            compressed_digest: digest.clone(),
            compressed_size: 3,
            uncompressed_digest: digest.clone(),
            uncompressed_size: 1024,
            uids: [0, 7].into(),
            gids: [0].into(),
            size: 1,
            entries: 1,
            overlay_markers: 2,
            warnings: Vec::new(),
        };
        let out = DifferOutput::from_report(report, Some(b"{}\n".to_vec()));
        assert_eq!(out.compression, Compression::Zstd);
        assert_eq!(out.compressed_size, 3);
        assert_eq!(out.uncompressed_size, 1024);
        assert_eq!(out.uncompressed_digest, Some(digest));
        assert_eq!(out.uids, [0, 7].into());
        assert_eq!(out.tar_split.as_deref(), Some(&b"{}\n"[..]));
        assert_eq!(out.overlay_markers, Some(2));
    }
}
