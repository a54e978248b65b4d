//! Resolves an image and streams every layer blob (several at once), checking digests and
//! measuring each decompressed, without storing anything: a pull minus the store.
//!
//! `cargo run --release -p layerstore-pull --example fetch -- [--tls-verify=false]
//! [--creds USER:PASS] [--platform OS/ARCH[/VARIANT]] [--parallel N] REFERENCE`

use std::time::Instant;

use layerstore_pull::commit::measure_layer;
use layerstore_pull::{Platform, TransportOptions, fetch_blobs, open_source, read_config, resolve};

fn main() {
    if let Err(e) = run() {
        eprintln!("Error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = TransportOptions::default();
    let mut platform = Platform::host();
    let mut parallel = 4;
    let mut reference = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls-verify=false" => options.registry.tls_verify = false,
            "--creds" => {
                options.registry.credentials =
                    Some(args.next().ok_or("--creds USER:PASS")?.parse()?)
            }
            "--platform" => platform = args.next().ok_or("--platform OS/ARCH")?.parse()?,
            "--parallel" => parallel = args.next().ok_or("--parallel N")?.parse()?,
            _ => reference = Some(arg.parse()?),
        }
    }
    let reference = reference.ok_or("usage: fetch [options] REFERENCE")?;
    let start = Instant::now();
    let source = open_source(&reference, &options)?;
    let image = resolve(source.as_ref(), &platform)?;
    read_config(source.as_ref(), &image)?;
    let measured = fetch_blobs(source.as_ref(), &image.layers, parallel, |blob, reader| {
        measure_layer(reader).map_err(|e| layerstore_pull::Error::Invalid {
            location: source.location(),
            what: format!("blob {}", blob.digest),
            reason: e.to_string(),
        })
    })?;
    let compressed: u64 = image.layers.iter().map(|l| l.size).sum();
    let uncompressed: u64 = measured.iter().map(|m| m.uncompressed_size).sum();
    println!(
        "{} {}: {} layers, {compressed} bytes ({uncompressed} uncompressed) in {:.2} s",
        source.location(),
        image.manifest.digest,
        image.layers.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
