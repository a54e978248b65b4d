//! A registry on 127.0.0.1 for tests: Debian's `docker-registry` (distribution 2.8) with a
//! temporary config, storage and free port, optionally behind htpasswd basic auth or bearer
//! token auth (a small token server here issues RS256 JWTs, signed with a throwaway key by
//! `openssl`, that the registry checks against the key's certificate). Stopped and cleaned up
//! on drop. Images go in with skopeo ([`Registry::push`]).
//!
//! ```no_run
//! use layerstore_testsupport::registry::{Registry, RegistryAuth};
//! let registry = Registry::start(RegistryAuth::Anonymous).unwrap();
//! registry.push("oci:/path/to/layout:tag", "repo:tag").unwrap();
//! println!("docker://{}/repo:tag", registry.host());
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How clients must authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No authentication.
    Anonymous,
    /// HTTP basic auth against an htpasswd file with this one user.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// Bearer tokens from this harness's token server, which takes this user's basic
    /// credentials (and gives anonymous callers no access).
    Token {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

/// A running `docker-registry`.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    host: String,
    child: Child,
    auth: RegistryAuth,
    token_server: Option<TokenServer>,
}

/// How many ports [`on_free_port`] tries before it gives up.
const PORT_ATTEMPTS: usize = 20;

/// Runs `start` with a port on 127.0.0.1 that was free a moment ago, and again with another
/// port while `start` fails because the port was taken meanwhile (its error says "address
/// already in use"). A server that binds the port itself can lose it between our check and
/// its bind; ports are picked below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`) so that outgoing connections of parallel tests
/// never take them, and the retry covers the other servers those tests start.
pub fn on_free_port<T>(mut start: impl FnMut(u16) -> io::Result<T>) -> io::Result<T> {
    let (low, high) = listening_port_range();
    let mut last = None;
    for attempt in 0..PORT_ATTEMPTS {
        let port = low + (port_seed(attempt) % u64::from(high - low)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        match start(port) {
            Err(e) if is_port_taken(&e) => last = Some(e),
            result => return result,
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free port on 127.0.0.1 in {low}..{high} after {PORT_ATTEMPTS} tries"),
        )
    }))
}

/// Whether a server failed to start because its port was taken (`EADDRINUSE`, or a child's
/// log saying so).
pub fn is_port_taken(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::AddrInUse || error.to_string().contains("address already in use")
}

/// Ports for servers the tests start, outside the kernel's ephemeral range.
fn listening_port_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut bounds = s.split_whitespace().map(|b| b.parse::<u16>().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32768, 60999));
    outside(ephemeral)
}

/// At least 1000 ports below the ephemeral range `(low, high)` (from 20000, or from 1024 when
/// it starts low), else above it; a range that leaves neither gives up that guarantee and
/// takes 20000..30000 (the retry still covers a clash).
fn outside((low, high): (u16, u16)) -> (u16, u16) {
    if low >= 21000 {
        (20000, low)
    } else if low >= 2024 {
        (1024, low)
    } else if high <= 64535 {
        (high + 1, u16::MAX)
    } else {
        (20000, 30000)
    }
}

/// A different number for every call in this and parallel processes.
fn port_seed(attempt: usize) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ crate::unique().wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ attempt as u64;
    // splitmix64's finaliser, so neighbouring seeds land far apart.
    let mut z = mixed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Registry {
    /// Starts a registry with `auth` and waits until it answers.
    pub fn start(auth: RegistryAuth) -> io::Result<Registry> {
        on_free_port(|port| Registry::start_on(&auth, port))
    }

    fn start_on(auth: &RegistryAuth, port: u16) -> io::Result<Registry> {
        let dir = std::env::temp_dir().join(format!(
            "layerstore-registry-{}-{}",
            std::process::id(),
            crate::unique()
        ));
        std::fs::create_dir_all(dir.join("storage"))?;
        let host = format!("127.0.0.1:{port}");
        let mut token_server = None;
        let auth_section = match auth {
            RegistryAuth::Anonymous => String::new(),
            RegistryAuth::Basic { user, password } => {
                let hash = bcrypt::hash(password, 4).map_err(io::Error::other)?;
                std::fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n"))?;
                format!(
                    "auth:\n  htpasswd:\n    realm: layerstore-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
            RegistryAuth::Token { user, password } => {
                let server = TokenServer::start(&dir, user, password)?;
                let section = format!(
                    "auth:\n  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    server.host,
                    dir.join("token-cert.pem").display()
                );
                token_server = Some(server);
                section
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth_section}",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), config)?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new(
            crate::find_on_path("docker-registry").unwrap_or("docker-registry".into()),
        )
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
        let mut registry = Registry {
            dir,
            host,
            child,
            auth: auth.clone(),
            token_server,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "docker-registry exited with {status}: {}",
                    std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
                )));
            }
            if TcpStream::connect(&self.host).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(
                    "docker-registry did not listen within 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The registry's storage root (`docker/registry/v2/...` beneath it).
    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// The file a blob's bytes are served from.
    pub fn blob_data_path(&self, hex: &str) -> PathBuf {
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The `user:password` that this registry accepts, if it wants any.
    pub fn creds(&self) -> Option<String> {
        match &self.auth {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Basic { user, password } | RegistryAuth::Token { user, password } => {
                Some(format!("{user}:{password}"))
            }
        }
    }

    /// `skopeo copy --all SOURCE docker://HOST/REPO_TAG` over plain HTTP, with the registry's
    /// credentials.
    pub fn push(&self, source: &str, repo_tag: &str) -> io::Result<()> {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
        if let Some(creds) = self.creds() {
            cmd.arg("--dest-creds").arg(creds);
        }
        cmd.arg(source)
            .arg(format!("docker://{}/{repo_tag}", self.host));
        crate::run(&mut cmd)
    }

    /// `skopeo inspect --raw` (`raw`) or `skopeo inspect` of `docker://HOST/REPO_TAG`.
    pub fn skopeo_inspect(&self, repo_tag: &str, raw: bool) -> io::Result<Vec<u8>> {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--tls-verify=false"]);
        if raw {
            cmd.arg("--raw");
        }
        if let Some(creds) = self.creds() {
            cmd.arg("--creds").arg(creds);
        }
        cmd.arg(format!("docker://{}/{repo_tag}", self.host));
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(out.stdout)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(server) = self.token_server.take() {
            server.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const SERVICE: &str = "layerstore-test-registry";
const ISSUER: &str = "layerstore-test-token-server";

/// Issues tokens for the registry: `GET /token?service=...&scope=repository:NAME:ACTIONS`
/// with the right basic credentials gets every action asked for; other callers get 401.
#[derive(Debug)]
struct TokenServer {
    host: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> io::Result<TokenServer> {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        crate::run(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=layerstore-test-token",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        )?;
        let der = Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert)
            .output()?;
        if !der.status.success() {
            return Err(io::Error::other("openssl x509 -outform der failed"));
        }
        let x5c = data_encoding::BASE64.encode(&der.stdout);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let host = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!(
            "Basic {}",
            data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
        );
        let user = user.to_owned();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve_token(stream, &expected, &user, &x5c, &key);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        Ok(TokenServer {
            host,
            stop,
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one token request (one request per connection: the answer closes it).
fn serve_token(
    stream: TcpStream,
    expected: &str,
    user: &str,
    x5c: &str,
    key: &Path,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut access = Vec::new();
    for pair in query.split('&') {
        if let Some(scope) = pair.strip_prefix("scope=") {
            let scope = percent_decode(scope);
            let parts: Vec<&str> = scope.split(':').collect();
            if parts.len() == 3 {
                access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
            }
        }
    }
    let mut out = stream;
    if authorization.as_deref() != Some(expected) {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        return write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let b64 = |bytes: &[u8]| data_encoding::BASE64URL_NOPAD.encode(bytes);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 600, "nbf": now - 60, "iat": now,
        "jti": format!("{now}-{}", crate::unique()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    openssl
        .stdin
        .take()
        .expect("piped")
        .write_all(signing_input.as_bytes())?;
    let mut signature = Vec::new();
    openssl
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut signature)?;
    openssl.wait()?;
    let token = format!("{signing_input}.{}", b64(&signature));
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_retried_with_another_and_other_errors_are_returned() {
        let mut tried = Vec::new();
        let port = on_free_port(|port| {
            tried.push(port);
            if tried.len() < 3 {
                Err(io::Error::other(format!(
                    "server exited: listen tcp 127.0.0.1:{port}: bind: address already in use"
                )))
            } else {
                Ok(port)
            }
        })
        .unwrap();
        assert_eq!(tried.len(), 3);
        assert_eq!(Some(&port), tried.last());
        let (low, high) = listening_port_range();
        assert!(tried.iter().all(|p| (low..high).contains(p)), "{tried:?}");

        let mut calls = 0;
        let err = on_free_port::<()>(|_| {
            calls += 1;
            Err(io::Error::other("config rejected"))
        })
        .unwrap_err();
        assert_eq!((calls, err.to_string().as_str()), (1, "config rejected"));
    }

    #[test]
    fn a_port_that_stays_taken_gives_up_naming_the_cause() {
        let err = on_free_port::<()>(|_| Err(io::ErrorKind::AddrInUse.into())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn servers_listen_outside_the_ephemeral_ports() {
        assert_eq!(outside((32768, 60999)), (20000, 32768));
        assert_eq!(outside((10000, 60999)), (1024, 10000));
        assert_eq!(outside((1024, 40000)), (40001, u16::MAX));
        assert_eq!(outside((1024, 65535)), (20000, 30000));
        let (low, high) = listening_port_range();
        assert!(low < high);
        let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .map(|s| s.split_whitespace().next().unwrap().parse().unwrap())
            .unwrap_or(32768);
        assert!(high <= ephemeral_low || low > ephemeral_low);
    }
}
