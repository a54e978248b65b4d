//! The registry transport (`docker://`): HTTP API v2 through oci-client (the ORAS project's
//! client: bearer-token and basic auth, range reads, chunked uploads, cross-repository mounts)
//! on a tokio runtime that each [`RegistrySource`] / [`RegistryDestination`] owns, behind this
//! crate's blocking API.
//!
//! * Auth: `--creds`, else podman's auth files ([`crate::auth`]), else anonymous.
//! * `tls_verify: false`: plain HTTP to that registry (as podman's `--tls-verify=false` allows),
//!   and certificates are not checked.
//! * Transient failures (connection refused or dropped, timeouts, 5xx, 429) are retried
//!   `max_retries` times with a doubling delay; a blob cut off mid-stream is resumed with a
//!   range request from the byte where it stopped (restarted when the registry ignores ranges).
//!   Errors name the registry reference and the blob or manifest.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use layerstore_model::Digest;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::auth::{Credentials, default_auth_files, lookup};
use crate::dest::ImageDestination;
use crate::error::{Error, RegistryErrorKind, Result};
use crate::manifest::{ACCEPTED_MANIFEST_TYPES, Blob, RawManifest};
use crate::reference::RegistryReference;
use crate::source::{BlobStream, ImageSource};

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `--creds USER:PASS`; `None` looks in the auth files.
    pub credentials: Option<Credentials>,
    /// The auth files to look in; `None` is podman's list ([`default_auth_files`]).
    pub auth_files: Option<Vec<std::path::PathBuf>>,
    /// `--tls-verify`; `false` speaks plain HTTP to the registry.
    pub tls_verify: bool,
    /// Retries of a transient failure, per request.
    pub max_retries: u32,
    /// The delay before the first retry; it doubles each time.
    pub retry_delay: Duration,
    /// How long to wait for the server to answer or to send more of a blob.
    pub read_timeout: Duration,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            credentials: None,
            auth_files: None,
            tls_verify: true,
            max_retries: 3,
            retry_delay: Duration::from_millis(250),
            read_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// What a source and a destination share: the client, the runtime it runs on, the reference.
struct Connection {
    reference: RegistryReference,
    location: String,
    client: Client,
    auth: RegistryAuth,
    runtime: tokio::runtime::Runtime,
    options: RegistryOptions,
    /// The registry answered a range request with the whole blob.
    ignored_a_range: std::sync::atomic::AtomicBool,
}

/// The crypto provider reqwest's rustls uses; installed once per process.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already; that one is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn to_oci(reference: &RegistryReference, tag_or_digest: &str) -> Reference {
    if tag_or_digest.contains(':') {
        Reference::with_digest(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            tag_or_digest.to_owned(),
        )
    } else {
        Reference::with_tag(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            tag_or_digest.to_owned(),
        )
    }
}

fn descriptor(blob: &Blob) -> OciDescriptor {
    OciDescriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.to_string(),
        size: i64::try_from(blob.size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    }
}

/// Whether retrying can help, and the kind of failure.
fn classify(err: &OciDistributionError) -> (bool, RegistryErrorKind) {
    use RegistryErrorKind::*;
    match err {
        OciDistributionError::RequestError(e) => {
            let status = e.status().map(|s| s.as_u16());
            match status {
                Some(401 | 403) => (false, Unauthorized),
                Some(404) => (false, NotFound),
                Some(429) => (true, Other),
                Some(s) if s >= 500 => (true, Other),
                Some(_) => (false, Other),
                None => (!e.is_builder(), Network),
            }
        }
        OciDistributionError::IoError(_) => (true, Network),
        OciDistributionError::ServerError { code, .. } => match code {
            401 | 403 => (false, Unauthorized),
            404 => (false, NotFound),
            429 => (true, Other),
            c if *c >= 500 => (true, Other),
            _ => (false, Other),
        },
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => (false, Unauthorized),
        OciDistributionError::ImageManifestNotFoundError(_) => (false, NotFound),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                (false, Unauthorized)
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::BlobUnknown
                        | OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                (false, NotFound)
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                (true, Other)
            } else {
                (false, Other)
            }
        }
        _ => (false, Other),
    }
}

/// The full chain of an error's messages (reqwest's top message alone says little).
fn message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

impl Connection {
    fn open(
        reference: &RegistryReference,
        options: &RegistryOptions,
        operation: RegistryOperation,
    ) -> Result<Connection> {
        install_crypto_provider();
        let location = format!("docker://{reference}");
        let registry = reference.registry().to_owned();
        let config = ClientConfig {
            protocol: if options.tls_verify {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(vec![registry])
            },
            accept_invalid_certificates: !options.tls_verify,
            read_timeout: Some(options.read_timeout),
            connect_timeout: Some(options.connect_timeout),
            // Pulls of several blobs at once go through this one client.
            max_concurrent_download: 8,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| Error::Registry {
            location: location.clone(),
            operation: "setting up the HTTP client".into(),
            message: message(&e),
            kind: RegistryErrorKind::Other,
        })?;
        let credentials = match &options.credentials {
            Some(c) => Some(c.clone()),
            None => lookup(
                options
                    .auth_files
                    .as_deref()
                    .unwrap_or(&default_auth_files()),
                reference,
            )?,
        };
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.user, c.password),
            None => RegistryAuth::Anonymous,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("layerstore-registry")
            .enable_all()
            .build()
            .map_err(|e| Error::io(&location, "tokio runtime", e))?;
        let connection = Connection {
            reference: reference.clone(),
            location,
            client,
            auth,
            runtime,
            options: options.clone(),
            ignored_a_range: Default::default(),
        };
        let probe = to_oci(reference, reference.tag_or_digest());
        connection.retry("logging in", || async {
            connection
                .client
                .auth(&probe, &connection.auth, operation)
                .await
                .map(|_| ())
        })?;
        Ok(connection)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    fn retry<T, F, Fut>(&self, operation: &str, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        self.runtime.block_on(async {
            let mut delay = self.options.retry_delay;
            let mut tries = 0;
            loop {
                match attempt().await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        let (transient, kind) = classify(&e);
                        if !transient || tries >= self.options.max_retries {
                            let retried = if tries > 0 {
                                format!(" (after {tries} retries)")
                            } else {
                                String::new()
                            };
                            return Err(Error::Registry {
                                location: self.location.clone(),
                                operation: operation.to_owned(),
                                message: format!("{}{retried}", message(&e)),
                                kind,
                            });
                        }
                        tries += 1;
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2);
                    }
                }
            }
        })
    }

    fn fetch_manifest(&self, tag_or_digest: &str) -> Result<RawManifest> {
        let reference = to_oci(&self.reference, tag_or_digest);
        let (bytes, _) = self.retry(&format!("fetching manifest {tag_or_digest}"), || {
            self.client
                .pull_manifest_raw(&reference, &self.auth, ACCEPTED_MANIFEST_TYPES)
        })?;
        let raw = RawManifest::new(&self.location, bytes.to_vec())?;
        if tag_or_digest.contains(':') && raw.digest.as_str() != tag_or_digest {
            return Err(Error::DigestMismatch {
                location: self.location.clone(),
                expected: format!("manifest {tag_or_digest}"),
                actual: raw.digest.to_string(),
            });
        }
        Ok(raw)
    }
}

/// An image in a registry.
pub struct RegistrySource {
    connection: Arc<Connection>,
}

impl RegistrySource {
    /// Connects (and logs in, when there are credentials or the registry asks for a token).
    pub fn open(
        reference: &RegistryReference,
        options: &RegistryOptions,
    ) -> Result<RegistrySource> {
        Ok(RegistrySource {
            connection: Arc::new(Connection::open(
                reference,
                options,
                RegistryOperation::Pull,
            )?),
        })
    }

    fn stream(&self, blob: &Blob, offset: u64, len: Option<u64>) -> Result<BlobStream> {
        let total = len.unwrap_or_else(|| blob.size.saturating_sub(offset));
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let connection = Arc::clone(&self.connection);
        let blob = blob.clone();
        self.connection.runtime.spawn(async move {
            stream_blob(&connection, &blob, offset, total, len.is_some(), tx).await;
        });
        Ok(Box::new(ChannelReader {
            rx,
            current: Bytes::new(),
        }))
    }
}

/// Sends `total` bytes of `blob` from `offset` into `tx`, resuming after transient failures.
/// A failure for good is sent as the last item; so is a retry budget spent.
async fn stream_blob(
    connection: &Connection,
    blob: &Blob,
    offset: u64,
    total: u64,
    ranged: bool,
    tx: tokio::sync::mpsc::Sender<std::result::Result<Bytes, Error>>,
) {
    let reference = to_oci(&connection.reference, connection.reference.tag_or_digest());
    let desc = descriptor(blob);
    let operation = format!("fetching blob {}", blob.digest);
    let mut delivered = 0u64;
    let mut tries = 0u32;
    let mut delay = connection.options.retry_delay;
    loop {
        let start = offset + delivered;
        let length = ranged.then(|| total - delivered);
        // Even a whole blob is asked for as a range (`bytes=0-`): a registry's 206 answer
        // skips oci-client's own SHA-256 of the stream, which the VerifyingReader computes
        // anyway (a third hash of every blob: 6% of a pull's CPU time). An empty blob has no
        // range to ask for; a registry that ignores ranges answers 200, which is checked.
        let attempt: std::result::Result<(), OciDistributionError> = async {
            let (mut stream, mut skip) = if start == 0 && length.is_none() && total == 0 {
                (
                    connection
                        .client
                        .pull_blob_stream(&reference, &desc)
                        .await?
                        .stream,
                    0,
                )
            } else {
                match connection
                    .client
                    .pull_blob_stream_partial(&reference, &desc, start, length)
                    .await?
                {
                    BlobResponse::Partial(s) => (s.stream, 0),
                    // The registry ignored the range: skip to where we are.
                    BlobResponse::Full(s) => {
                        connection
                            .ignored_a_range
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        (s.stream, start)
                    }
                }
            };
            while let Some(chunk) = stream.next().await {
                let mut chunk = match chunk {
                    Ok(c) => c,
                    // All bytes are here: what is wrong with them (oci-client's own digest
                    // check) is for the reader's check to say, naming the blob.
                    Err(_) if delivered >= total => return Ok(()),
                    Err(e) => return Err(OciDistributionError::IoError(e)),
                };
                if skip > 0 {
                    let n = skip.min(chunk.len() as u64);
                    let _ = chunk.split_to(n as usize);
                    skip -= n;
                }
                if chunk.is_empty() {
                    continue;
                }
                delivered += chunk.len() as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(()); // the reader is gone
                }
            }
            if delivered < total {
                return Err(OciDistributionError::IoError(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the connection ended after {delivered} of {total} bytes"),
                )));
            }
            Ok(())
        }
        .await;
        match attempt {
            Ok(()) => return,
            Err(e) => {
                let (transient, kind) = classify(&e);
                if !transient || tries >= connection.options.max_retries {
                    let retried = if tries > 0 {
                        format!(" (after {tries} retries)")
                    } else {
                        String::new()
                    };
                    let _ = tx
                        .send(Err(Error::Registry {
                            location: connection.location.clone(),
                            operation,
                            message: format!("{}{retried}", message(&e)),
                            kind,
                        }))
                        .await;
                    return;
                }
                tries += 1;
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
    }
}

/// The blocking end of a blob's stream.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, Error>>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e.into_io()),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

impl ImageSource for RegistrySource {
    fn location(&self) -> String {
        self.connection.location.clone()
    }

    fn top_manifest(&self) -> Result<RawManifest> {
        self.connection
            .fetch_manifest(self.connection.reference.tag_or_digest())
    }

    fn manifest(&self, digest: &Digest) -> Result<RawManifest> {
        self.connection.fetch_manifest(digest.as_str())
    }

    fn blob_from(&self, blob: &Blob, offset: u64) -> Result<BlobStream> {
        self.stream(blob, offset, None)
    }

    fn blob_range(&self, blob: &Blob, offset: u64, len: u64) -> Result<BlobStream> {
        self.stream(blob, offset, Some(len))
    }

    fn serves_ranges(&self) -> bool {
        !self
            .connection
            .ignored_a_range
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn image_names(&self, _top: &RawManifest) -> Result<Vec<String>> {
        Ok(vec![self.connection.reference.name()])
    }
}

/// A repository in a registry, to push to.
pub struct RegistryDestination {
    connection: Connection,
    /// A repository of the same registry to mount blobs from.
    mount_from: Option<RegistryReference>,
}

impl RegistryDestination {
    /// Connects with push rights.
    pub fn open(
        reference: &RegistryReference,
        options: &RegistryOptions,
    ) -> Result<RegistryDestination> {
        Ok(RegistryDestination {
            connection: Connection::open(reference, options, RegistryOperation::Push)?,
            mount_from: None,
        })
    }

    /// Tries to mount missing blobs from `source` (a repository of the same registry) before
    /// uploading them.
    pub fn mount_from(mut self, source: RegistryReference) -> RegistryDestination {
        self.mount_from =
            Some(source).filter(|s| s.registry() == self.connection.reference.registry());
        self
    }
}

impl ImageDestination for RegistryDestination {
    fn location(&self) -> String {
        self.connection.location.clone()
    }

    fn has_blob(&self, blob: &Blob) -> Result<bool> {
        let c = &self.connection;
        let reference = to_oci(&c.reference, c.reference.tag_or_digest());
        let digest = blob.digest.to_string();
        if c.retry(&format!("checking blob {digest}"), || {
            c.client.blob_exists(&reference, &digest)
        })? {
            return Ok(true);
        }
        if let Some(source) = &self.mount_from {
            let from = to_oci(source, source.tag_or_digest());
            let mounted = c
                .runtime
                .block_on(c.client.mount_blob(&reference, &from, &digest));
            if mounted.is_ok() {
                return c.retry(&format!("checking blob {digest}"), || {
                    c.client.blob_exists(&reference, &digest)
                });
            }
        }
        Ok(false)
    }

    fn put_blob(&self, blob: &Blob, stream: BlobStream) -> Result<()> {
        let c = &self.connection;
        let reference = to_oci(&c.reference, c.reference.tag_or_digest());
        let (tx, rx) =
            tokio::sync::mpsc::channel::<std::result::Result<Bytes, OciDistributionError>>(8);
        // The caller's stream is blocking: a thread reads it (checked) into the upload.
        let location = c.location.clone();
        let checked_blob = blob.clone();
        let reader = std::thread::spawn(move || -> Result<()> {
            let mut reader =
                crate::source::VerifyingReader::new(stream, checked_blob.clone(), location.clone());
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let n = match std::io::Read::read(&mut reader, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let err = crate::source::blob_read_error(&location, &checked_blob, e);
                        let _ = tx.blocking_send(Err(OciDistributionError::IoError(
                            std::io::Error::other(layerstore_model::error_chain(&err)),
                        )));
                        return Err(err);
                    }
                };
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(());
                }
            }
        });
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let pushed = c.runtime.block_on(c.client.push_blob_stream(
            &reference,
            body,
            blob.digest.as_str(),
            Some(blob.size),
        ));
        let read = reader.join().map_err(|_| {
            Error::invalid(
                &c.location,
                format!("blob {}", blob.digest),
                "the reading thread panicked",
            )
        })?;
        read?;
        pushed.map(|_| ()).map_err(|e| Error::Registry {
            location: c.location.clone(),
            operation: format!("uploading blob {}", blob.digest),
            message: message(&e),
            kind: classify(&e).1,
        })
    }

    fn put_manifest(&self, manifest: &RawManifest, top: bool) -> Result<()> {
        let c = &self.connection;
        let target = if top {
            c.reference.tag_or_digest().to_owned()
        } else {
            manifest.digest.to_string()
        };
        let reference = to_oci(&c.reference, &target);
        let content_type = http::HeaderValue::from_str(&manifest.media_type)
            .map_err(|e| Error::invalid(&c.location, format!("manifest {}", manifest.digest), e))?;
        c.retry(&format!("uploading manifest {}", manifest.digest), || {
            c.client
                .push_manifest_raw(&reference, manifest.bytes.clone(), content_type.clone())
        })?;
        Ok(())
    }

    fn commit(&self) -> Result<()> {
        Ok(())
    }
}
