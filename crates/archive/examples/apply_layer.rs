//! Applies a layer tarball to a directory and prints what [`apply`] reports.
//!
//! `cargo run --release -p layerstore-archive --example apply_layer -- LAYER.tar[.gz|.zst] DIR [overlay]`
//!
//! Handy for `strace -f -c` and `perf` comparisons with `tar -xf`.

use std::process::ExitCode;

use layerstore_archive::{ApplyOptions, WhiteoutStyle, apply};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(layer), Some(target)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: apply_layer LAYER DIR [overlay]");
        return ExitCode::from(2);
    };
    let opts = ApplyOptions {
        whiteouts: if args.get(3).is_some_and(|a| a == "overlay") {
            WhiteoutStyle::Overlay
        } else {
            WhiteoutStyle::Naive
        },
        ..ApplyOptions::default()
    };
    let run = || -> Result<_, Box<dyn std::error::Error>> {
        std::fs::create_dir_all(target)?;
        let input = std::fs::File::open(layer)?;
        let start = std::time::Instant::now();
        let (report, tar_split) = apply(target.as_ref(), input, Vec::new(), &opts)?;
        Ok((report, tar_split.len(), start.elapsed()))
    };
    match run() {
        Ok((report, records, took)) => {
            println!("compression:         {}", report.compression.name());
            println!(
                "compressed digest:   {} ({} bytes)",
                report.compressed_digest.as_str(),
                report.compressed_size
            );
            println!(
                "uncompressed digest: {} ({} bytes)",
                report.uncompressed_digest.as_str(),
                report.uncompressed_size
            );
            println!(
                "entries: {}  file bytes: {}  tar-split records: {records}",
                report.entries, report.size
            );
            println!("uids: {:?}  gids: {:?}", report.uids, report.gids);
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
            println!("took: {took:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("apply_layer: {e}");
            ExitCode::FAILURE
        }
    }
}
