//! A real registry (Debian's docker-registry) with each auth mode: anonymous, basic, bearer
//! tokens, credentials from an auth file, a refused login, a 404 and a damaged blob.

use layerstore_pull::auth::Credentials;
use layerstore_pull::sample::SampleCompression;
use layerstore_pull::{
    Error, ImageReference, ImageSource, Platform, RegistryErrorKind, RegistryOptions,
    RegistryReference, RegistrySource, TransportOptions, open_source, read_blob_range, read_config,
    resolve,
};
use layerstore_testsupport::registry::{Registry, RegistryAuth};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::common::*;

fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

/// Options for a plain-HTTP test registry, without reading this machine's auth files.
pub fn options(credentials: Option<&str>) -> RegistryOptions {
    RegistryOptions {
        credentials: credentials.map(|c| c.parse::<Credentials>().unwrap()),
        auth_files: Some(Vec::new()),
        tls_verify: false,
        retry_delay: std::time::Duration::from_millis(20),
        ..RegistryOptions::default()
    }
}

/// A registry holding the gzip sample as `sample:v1` and the multi-arch one as `multi:v1`.
pub fn registry_with_samples(
    auth: RegistryAuth,
) -> (Registry, layerstore_testsupport::scratch::Scratch) {
    let registry = Registry::start(auth).unwrap();
    let dir = scratch();
    write_layout(
        &sample(SampleCompression::Gzip),
        &dir.path().join("single"),
        "v1",
    );
    write_layout(&multi_arch(), &dir.path().join("multi"), "v1");
    registry
        .push(
            &format!("oci:{}:v1", dir.path().join("single").display()),
            "sample:v1",
        )
        .unwrap();
    registry
        .push(
            &format!("oci:{}:v1", dir.path().join("multi").display()),
            "multi:v1",
        )
        .unwrap();
    (registry, dir)
}

fn reference(registry: &Registry, repo_tag: &str) -> RegistryReference {
    RegistryReference::parse(&format!("{}/{repo_tag}", registry.host())).unwrap()
}

fn check_same_as_local(source: &dyn ImageSource, dir: &std::path::Path) {
    let local = open_source(
        &format!("oci:{}:v1", dir.join("single").display())
            .parse::<ImageReference>()
            .unwrap(),
        &TransportOptions::default(),
    )
    .unwrap();
    let expected = resolve(local.as_ref(), &amd64()).unwrap();
    let resolved = resolve(source, &amd64()).unwrap();
    assert_eq!(resolved, expected);
    assert_eq!(
        read_config(source, &resolved).unwrap(),
        read_config(local.as_ref(), &expected).unwrap()
    );
    assert_eq!(
        measure_layers(source, &resolved),
        measure_layers(local.as_ref(), &expected)
    );
}

#[test]
fn anonymous_pull_gives_the_same_digests_as_the_layout() {
    require_or_skip!(Capability::Registry);
    let (registry, dir) = registry_with_samples(RegistryAuth::Anonymous);
    let source = RegistrySource::open(&reference(&registry, "sample:v1"), &options(None)).unwrap();
    check_same_as_local(&source, dir.path());
    assert_eq!(
        source.image_names(&source.top_manifest().unwrap()).unwrap(),
        [format!("{}/sample:v1", registry.host())]
    );
    // By digest too, through the generic entry point.
    let digest = resolve(&source, &amd64()).unwrap().manifest.digest;
    let by_digest: ImageReference = format!("docker://{}/sample@{digest}", registry.host())
        .parse()
        .unwrap();
    let source = open_source(
        &by_digest,
        &TransportOptions {
            registry: options(None),
        },
    )
    .unwrap();
    assert_eq!(
        resolve(source.as_ref(), &amd64()).unwrap().manifest.digest,
        digest
    );
    // A multi-arch image resolves per platform.
    let multi = RegistrySource::open(&reference(&registry, "multi:v1"), &options(None)).unwrap();
    let arm = resolve(&multi, &"linux/arm64/v8".parse().unwrap()).unwrap();
    let amd = resolve(&multi, &amd64()).unwrap();
    assert_ne!(arm.manifest.digest, amd.manifest.digest);
    assert!(arm.index.is_some());
}

/// Starts a registry with `auth` holding the samples; `good` credentials pull the same image
/// as the layout, `bad` ones and none are refused naming the registry.
fn check_login(
    auth: RegistryAuth,
    good: &str,
    bad: &str,
) -> (Registry, layerstore_testsupport::scratch::Scratch) {
    let (registry, dir) = registry_with_samples(auth);
    let r = reference(&registry, "sample:v1");
    let source = RegistrySource::open(&r, &options(Some(good))).unwrap();
    check_same_as_local(&source, dir.path());
    for creds in [Some(bad), None] {
        let refused = RegistrySource::open(&r, &options(creds)).and_then(|s| s.top_manifest());
        let err = refused.err().unwrap();
        assert_eq!(
            err.registry_kind(),
            Some(RegistryErrorKind::Unauthorized),
            "{err}"
        );
        let location = format!("docker://{}/sample:v1", registry.host());
        assert!(err.to_string().contains(&location), "{err}");
    }
    (registry, dir)
}

#[test]
fn basic_auth_with_creds_or_an_auth_file_and_a_refused_login() {
    require_or_skip!(Capability::Registry);
    let auth = RegistryAuth::Basic {
        user: "tester".into(),
        password: "s3cret:x".into(),
    };
    let (registry, dir) = check_login(auth, "tester:s3cret:x", "tester:wrong");
    // From an auth file, as podman writes it.
    let auth_file = dir.path().join("auth.json");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            registry.host(),
            base64_of("tester:s3cret:x")
        ),
    )
    .unwrap();
    let from_file = RegistryOptions {
        auth_files: Some(vec![auth_file]),
        ..options(None)
    };
    let source = RegistrySource::open(&reference(&registry, "sample:v1"), &from_file).unwrap();
    check_same_as_local(&source, dir.path());
}

#[test]
fn bearer_tokens_from_a_token_server_and_a_refused_login() {
    require_or_skip!(Capability::Registry);
    let auth = RegistryAuth::Token {
        user: "tok".into(),
        password: "pw".into(),
    };
    check_login(auth, "tok:pw", "tok:nope");
}

#[test]
fn missing_images_and_blobs_are_404_errors_naming_them() {
    require_or_skip!(Capability::Registry);
    let (registry, _dir) = registry_with_samples(RegistryAuth::Anonymous);
    let err = RegistrySource::open(&reference(&registry, "sample:nope"), &options(None))
        .and_then(|s| s.top_manifest())
        .err()
        .unwrap();
    assert_eq!(
        err.registry_kind(),
        Some(RegistryErrorKind::NotFound),
        "{err}"
    );
    assert!(err.to_string().contains("manifest nope"), "{err}");

    let source = RegistrySource::open(&reference(&registry, "sample:v1"), &options(None)).unwrap();
    let mut blob = resolve(&source, &amd64()).unwrap().layers[0].clone();
    blob.digest = layerstore_pull::manifest::sha256_digest(b"not in the registry");
    let err = read_whole(&source, &blob).unwrap_err();
    let err = Error::from_io(&err).unwrap();
    assert_eq!(
        err.registry_kind(),
        Some(RegistryErrorKind::NotFound),
        "{err}"
    );
    assert!(err.to_string().contains(blob.digest.as_str()), "{err}");
}

#[test]
fn a_blob_served_with_wrong_bytes_is_a_digest_error_naming_blob_and_registry() {
    require_or_skip!(Capability::Registry);
    let (registry, _dir) = registry_with_samples(RegistryAuth::Anonymous);
    let source = RegistrySource::open(&reference(&registry, "sample:v1"), &options(None)).unwrap();
    let image = resolve(&source, &amd64()).unwrap();
    let layer = &image.layers[0];
    let data = registry.blob_data_path(layer.digest.hex());
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[20] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();
    let err = read_whole(&source, layer).unwrap_err();
    let err = Error::from_io(&err).unwrap();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(layer.digest.as_str()) && text.contains(registry.host()),
        "{text}"
    );
    // A consumer that decompresses fails on the damage first; the digest is what is reported.
    let err = layerstore_pull::fetch_blobs(&source, std::slice::from_ref(layer), 1, |_, r| {
        layerstore_pull::commit::measure_layer(r).map_err(|e| Error::Invalid {
            location: source.location(),
            what: "layer".into(),
            reason: e.to_string(),
        })
    })
    .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
}

#[test]
fn range_reads_fetch_part_of_a_blob() {
    require_or_skip!(Capability::Registry);
    let (registry, _dir) = registry_with_samples(RegistryAuth::Anonymous);
    let source = RegistrySource::open(&reference(&registry, "sample:v1"), &options(None)).unwrap();
    let image = resolve(&source, &amd64()).unwrap();
    let layer = &image.layers[0];
    let whole = read_whole(&source, layer).unwrap();
    assert_eq!(
        read_blob_range(&source, layer, 7, 100).unwrap(),
        &whole[7..107]
    );
    let end = whole.len() as u64;
    assert_eq!(
        read_blob_range(&source, layer, end - 3, 3).unwrap(),
        &whole[whole.len() - 3..]
    );
}

fn base64_of(text: &str) -> String {
    data_encoding::BASE64.encode(text.as_bytes())
}

#[test]
fn tls_is_the_default_and_a_plain_http_registry_is_refused_naming_it() {
    require_or_skip!(Capability::Registry);
    let (registry, _dir) = registry_with_samples(RegistryAuth::Anonymous);
    let verify = RegistryOptions {
        tls_verify: true,
        max_retries: 1,
        ..options(None)
    };
    let err = RegistrySource::open(&reference(&registry, "sample:v1"), &verify)
        .err()
        .unwrap();
    let location = format!("docker://{}/sample:v1", registry.host());
    assert_registry_error(
        &err,
        RegistryErrorKind::Network,
        &[&location, "after 1 retries"],
    );
}
