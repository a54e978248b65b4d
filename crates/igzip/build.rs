//! Compiles the ISA-L shim (`csrc/igzip.c`) where libisal's header is installed (Debian:
//! `libisal-dev`) and sets `cfg(igzip)`. Without it (or with `LAYERSTORE_NO_ISAL=1`) the crate
//! still builds: [`AVAILABLE`] is then false and the reader refuses to start, so its users
//! fall back to another inflater.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(igzip)");
    println!("cargo:rerun-if-changed=csrc/igzip.c");
    println!("cargo:rerun-if-env-changed=LAYERSTORE_NO_ISAL");
    if std::env::var_os("LAYERSTORE_NO_ISAL").is_some_and(|v| v == "1") {
        return;
    }
    let built = cc::Build::new()
        .file("csrc/igzip.c")
        .warnings(true)
        .extra_warnings(true)
        .try_compile("layerstore_igzip");
    match built {
        Ok(()) => {
            println!("cargo:rustc-link-lib=isal");
            println!("cargo:rustc-cfg=igzip");
        }
        Err(e) => println!(
            "cargo:warning=no libisal header (Debian: libisal-dev), so gzip inflates with zlib-rs instead of ISA-L: {e}"
        ),
    }
}
