//! Network faults between us and a real registry, made by a small TCP proxy in this file:
//! a blob cut off mid-stream (resumed with a range request), cut off every time (an error
//! naming blob and registry after the bounded retries), and slow answers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use layerstore_pull::sample::{SampleCompression, SampleImage};
use layerstore_pull::{
    Error, Platform, RegistryErrorKind, RegistryOptions, RegistryReference, RegistrySource, resolve,
};
use layerstore_testsupport::registry::{Registry, RegistryAuth};
use layerstore_testsupport::{Capability, require_or_skip};

use crate::common::*;
use crate::registry::options;

/// What the proxy does to the responses of requests for one blob.
#[derive(Clone, Copy)]
enum Fault {
    /// Close both connections after this many bytes of the response.
    CutAfter(usize),
    /// Wait this long before sending the response on.
    Delay(Duration),
}

struct Proxy {
    host: String,
    stop: Arc<AtomicBool>,
    /// Requests for the blob seen, and the `Range` header of each (empty when none).
    requests: Arc<AtomicUsize>,
    ranges: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Forwards to `upstream`; the first `times` responses to `GET …/blobs/sha256:<hex>`
    /// suffer `fault`.
    fn start(upstream: &str, hex: &str, fault: Fault, times: usize) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let budget = Arc::new(AtomicUsize::new(times));
        let requests = Arc::new(AtomicUsize::new(0));
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let (upstream, needle) = (upstream.to_owned(), format!("/blobs/sha256:{hex}"));
        {
            let (stop, requests, ranges) = (stop.clone(), requests.clone(), ranges.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let server = TcpStream::connect(&upstream).unwrap();
                            let armed = Arc::new(AtomicBool::new(false));
                            let (c2, s2) =
                                (client.try_clone().unwrap(), server.try_clone().unwrap());
                            let (armed2, budget2, needle2) =
                                (armed.clone(), budget.clone(), needle.clone());
                            let (requests2, ranges2) = (requests.clone(), ranges.clone());
                            std::thread::spawn(move || {
                                forward_requests(
                                    c2, s2, &needle2, &armed2, &budget2, &requests2, &ranges2,
                                )
                            });
                            std::thread::spawn(move || {
                                forward_responses(server, client, &armed, fault)
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Proxy {
            host,
            stop,
            requests,
            ranges,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn forward_requests(
    mut client: TcpStream,
    mut server: TcpStream,
    needle: &str,
    armed: &AtomicBool,
    budget: &AtomicUsize,
    requests: &AtomicUsize,
    ranges: &Mutex<Vec<String>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.starts_with("GET ") && text.contains(needle) {
            requests.fetch_add(1, Ordering::Relaxed);
            let range = text
                .split("\r\n")
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("range")
                        .then(|| value.trim().to_owned())
                })
                .unwrap_or_default();
            ranges.lock().unwrap().push(range);
            // Armed before the request goes on, so the response is the one that suffers.
            if budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                .is_ok()
            {
                armed.store(true, Ordering::Relaxed);
            }
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

fn forward_responses(
    mut server: TcpStream,
    mut client: TcpStream,
    armed: &AtomicBool,
    fault: Fault,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent_while_armed = 0usize;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if armed.load(Ordering::Relaxed) {
            match fault {
                Fault::CutAfter(limit) => {
                    let n = n.min(limit - sent_while_armed);
                    let _ = client.write_all(&buf[..n]);
                    sent_while_armed += n;
                    if sent_while_armed >= limit {
                        let _ = client.shutdown(Shutdown::Both);
                        let _ = server.shutdown(Shutdown::Both);
                        return;
                    }
                    continue;
                }
                Fault::Delay(delay) => {
                    std::thread::sleep(delay);
                    armed.store(false, Ordering::Relaxed);
                }
            }
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

/// An image whose base layer is 2 MiB of incompressible bytes, so a cut lands mid-body.
fn big_image() -> SampleImage {
    let data = layerstore_testsupport::incompressible(1, 2 << 20);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_704_067_200);
    builder
        .append_data(&mut header, "big.bin", data.as_slice())
        .unwrap();
    SampleImage::new(&builder.into_inner().unwrap(), SampleCompression::Gzip).unwrap()
}

fn setup() -> (
    Registry,
    SampleImage,
    layerstore_pull::ResolvedImage,
    layerstore_testsupport::scratch::Scratch,
) {
    let registry = Registry::start(RegistryAuth::Anonymous).unwrap();
    let dir = scratch();
    let image = big_image();
    write_layout(&image, &dir.path().join("big"), "v1");
    registry
        .push(
            &format!("oci:{}:v1", dir.path().join("big").display()),
            "big:v1",
        )
        .unwrap();
    let resolved = resolve(&image, &"linux/amd64".parse::<Platform>().unwrap()).unwrap();
    (registry, image, resolved, dir)
}

fn through(proxy: &Proxy, options: &RegistryOptions) -> RegistrySource {
    RegistrySource::open(
        &RegistryReference::parse(&format!("{}/big:v1", proxy.host)).unwrap(),
        options,
    )
    .unwrap()
}

#[test]
fn a_blob_cut_off_mid_stream_is_resumed_with_a_range_request() {
    require_or_skip!(Capability::Registry);
    let (registry, image, resolved, _dir) = setup();
    let layer = &resolved.layers[0];
    assert!(layer.size > 1 << 20);
    let proxy = Proxy::start(
        registry.host(),
        layer.digest.hex(),
        Fault::CutAfter(256 * 1024),
        2,
    );
    let source = through(&proxy, &options(None));
    let bytes = read_whole(&source, layer).unwrap();
    assert_eq!(bytes, read_whole(&image, layer).unwrap());
    assert_eq!(
        proxy.requests.load(Ordering::Relaxed),
        3,
        "one request and two resumptions"
    );
    let ranges = proxy.ranges.lock().unwrap().clone();
    // The whole blob is asked for as a range too: a 206 answer spares oci-client's own hash.
    assert_eq!(
        ranges[0], "bytes=0-",
        "the first request asks from the start"
    );
    for resumed in &ranges[1..] {
        let start: u64 = resumed
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("a resumption asks for the rest only: {ranges:?}"));
        assert!(
            start > 0,
            "a resumption starts past the first byte: {ranges:?}"
        );
    }
}

#[test]
fn a_blob_cut_off_every_time_fails_after_the_retries_naming_blob_and_registry() {
    require_or_skip!(Capability::Registry);
    let (registry, _image, resolved, _dir) = setup();
    let layer = &resolved.layers[0];
    let proxy = Proxy::start(
        registry.host(),
        layer.digest.hex(),
        Fault::CutAfter(100 * 1024),
        usize::MAX,
    );
    let source = through(
        &proxy,
        &RegistryOptions {
            max_retries: 2,
            ..options(None)
        },
    );
    let err = read_whole(&source, layer).unwrap_err();
    let err = Error::from_io(&err).unwrap();
    let host = proxy.host.clone();
    assert_registry_error(
        err,
        RegistryErrorKind::Network,
        &[layer.digest.as_str(), &host, "after 2 retries"],
    );
    assert_eq!(proxy.requests.load(Ordering::Relaxed), 3);
}

#[test]
fn slow_answers_within_the_timeout_pass_and_beyond_it_fail_naming_the_blob() {
    require_or_skip!(Capability::Registry);
    let (registry, image, resolved, _dir) = setup();
    let layer = &resolved.layers[0];

    let slow = Proxy::start(
        registry.host(),
        layer.digest.hex(),
        Fault::Delay(Duration::from_millis(300)),
        1,
    );
    let source = through(
        &slow,
        &RegistryOptions {
            read_timeout: Duration::from_secs(30),
            ..options(None)
        },
    );
    assert_eq!(
        read_whole(&source, layer).unwrap(),
        read_whole(&image, layer).unwrap()
    );

    let stuck = Proxy::start(
        registry.host(),
        layer.digest.hex(),
        Fault::Delay(Duration::from_secs(4)),
        usize::MAX,
    );
    let options = RegistryOptions {
        read_timeout: Duration::from_millis(400),
        max_retries: 1,
        ..options(None)
    };
    let source = through(&stuck, &options);
    let err = read_whole(&source, layer).unwrap_err();
    let err = Error::from_io(&err).unwrap();
    assert_registry_error(
        err,
        RegistryErrorKind::Network,
        &[layer.digest.as_str(), &stuck.host],
    );
}
