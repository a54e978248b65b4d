//! Registry credentials as podman finds them (containers/image 5.23 `pkg/docker/config`):
//! `--creds USER:PASS` first; else the first of these files that has an entry for the
//! registry: `REGISTRY_AUTH_FILE` (or, unset, `${XDG_RUNTIME_DIR}/containers/auth.json`,
//! `/run/containers/$UID/auth.json` when `XDG_RUNTIME_DIR` is unset),
//! `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`, `~/.docker/config.json`,
//! `~/.dockercfg`. An entry's key is the registry, or a repository within it
//! (`host/ns/repo`, the longest match wins); `auths.KEY.auth` is base64 of `USER:PASS`.
//!
//! Credential helpers (`credHelpers`, `credsStore`) and identity tokens are not supported: such
//! entries are skipped, as if absent.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::reference::RegistryReference;

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.user)
    }
}

impl std::str::FromStr for Credentials {
    type Err = Error;

    /// `USER:PASS`, as `--creds` takes it (the password may contain `:`).
    fn from_str(text: &str) -> Result<Credentials> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
            }),
            _ => Err(Error::InvalidReference {
                reference: "--creds".into(),
                reason: "credentials must be USER:PASSWORD".into(),
            }),
        }
    }
}

/// The auth files podman reads, in order, from this process's environment.
pub fn default_auth_files() -> Vec<PathBuf> {
    auth_files_from(|k| std::env::var_os(k), rustix::process::getuid().as_raw())
}

/// [`default_auth_files`] for the environment `var` and user `uid`.
fn auth_files_from(var: impl Fn(&str) -> Option<std::ffi::OsString>, uid: u32) -> Vec<PathBuf> {
    let env = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = env("HOME").unwrap_or_else(|| PathBuf::from("/"));
    let mut files = Vec::new();
    match (env("REGISTRY_AUTH_FILE"), env("XDG_RUNTIME_DIR")) {
        (Some(file), _) => files.push(file),
        (None, Some(runtime)) => files.push(runtime.join("containers/auth.json")),
        (None, None) => files.push(PathBuf::from(format!("/run/containers/{uid}/auth.json"))),
    }
    let config = env("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
    files.push(config.join("containers/auth.json"));
    files.push(home.join(".docker/config.json"));
    files.push(home.join(".dockercfg"));
    files
}

/// The credentials for `reference` in the first of `files` that has some. Missing files are
/// skipped; a file that exists but cannot be read or parsed is an error naming it.
pub fn lookup(files: &[PathBuf], reference: &RegistryReference) -> Result<Option<Credentials>> {
    for file in files {
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::AuthFile {
                    path: file.clone(),
                    reason: e.to_string(),
                });
            }
        };
        if let Some(creds) = lookup_in(file, &text, reference)? {
            return Ok(Some(creds));
        }
    }
    Ok(None)
}

fn lookup_in(
    file: &Path,
    text: &[u8],
    reference: &RegistryReference,
) -> Result<Option<Credentials>> {
    let bad = |reason: String| Error::AuthFile {
        path: file.to_owned(),
        reason,
    };
    let json: Value = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
    // ~/.dockercfg is the legacy format: the entries at the top level.
    let legacy = file.file_name().is_some_and(|n| n == ".dockercfg");
    let auths = if legacy {
        Some(&json)
    } else {
        json.get("auths")
    };
    let Some(auths) = auths.and_then(Value::as_object) else {
        return Ok(None);
    };
    // Most specific key first: host/a/b/c, host/a/b, host/a, host.
    let full = format!("{}/{}", reference.registry(), reference.repository());
    let mut candidates = vec![full.as_str()];
    let mut rest = full.as_str();
    while let Some((parent, _)) = rest.rsplit_once('/') {
        candidates.push(parent);
        rest = parent;
    }
    for candidate in candidates {
        for (key, entry) in auths {
            if normalize_key(key, legacy) != candidate {
                continue;
            }
            let Some(auth) = entry
                .get("auth")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            else {
                continue;
            };
            let decoded = data_encoding::BASE64
                .decode(auth.as_bytes())
                .map_err(|e| bad(format!("entry {key:?}: {e}")))?;
            let decoded =
                String::from_utf8(decoded).map_err(|e| bad(format!("entry {key:?}: {e}")))?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                bad(format!(
                    "entry {key:?}: auth is not base64 of USER:PASSWORD"
                ))
            })?;
            return Ok(Some(Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
            }));
        }
    }
    Ok(None)
}

/// A key as containers/image compares it: without `http://`/`https://`; a key with a scheme
/// (Docker's style, `https://index.docker.io/v1/`) or from the legacy file names only its host;
/// Docker Hub's hosts are `docker.io`.
fn normalize_key(key: &str, legacy: bool) -> String {
    let stripped = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"));
    let key = match stripped {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None if legacy => key.split('/').next().unwrap_or(key),
        None => key.trim_end_matches('/'),
    };
    match key {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user: &str, pass: &str) -> String {
        data_encoding::BASE64.encode(format!("{user}:{pass}").as_bytes())
    }

    #[test]
    fn the_most_specific_entry_of_the_first_file_that_has_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("auth.json");
        let second = dir.path().join("config.json");
        std::fs::write(
            &first,
            format!(r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/ns":{{"auth":"{}"}},"other.io":{{"auth":""}}}}}}"#, auth("host", "h"), auth("ns", "n:x")),
        )
        .unwrap();
        std::fs::write(
            &second,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"other.io":{{"auth":"{}"}}}}}}"#, auth("hub", "d"), auth("o", "p")),
        )
        .unwrap();
        let files = vec![dir.path().join("missing.json"), first, second];
        let find = |r: &str| lookup(&files, &RegistryReference::parse(r).unwrap()).unwrap();
        assert_eq!(
            find("quay.io/ns/repo").unwrap(),
            Credentials {
                user: "ns".into(),
                password: "n:x".into()
            }
        );
        assert_eq!(find("quay.io/other/repo").unwrap().user, "host");
        assert_eq!(find("busybox").unwrap().user, "hub");
        assert_eq!(find("other.io/x").unwrap().user, "o");
        assert_eq!(find("nowhere.io/x"), None);
    }

    #[test]
    fn auth_files_are_looked_up_in_podmans_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.into())
        };
        let files = |pairs, uid| {
            auth_files_from(env(pairs), uid)
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            files(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/user/7")], 7),
            [
                "/run/user/7/containers/auth.json",
                "/h/.config/containers/auth.json",
                "/h/.docker/config.json",
                "/h/.dockercfg"
            ]
        );
        assert_eq!(
            files(
                &[
                    ("HOME", "/h"),
                    ("REGISTRY_AUTH_FILE", "/a.json"),
                    ("XDG_RUNTIME_DIR", "/r"),
                    ("XDG_CONFIG_HOME", "/c")
                ],
                0
            )[..2],
            ["/a.json", "/c/containers/auth.json"]
        );
        assert_eq!(
            files(&[("HOME", "/root"), ("XDG_RUNTIME_DIR", "")], 0)[0],
            "/run/containers/0/auth.json"
        );
    }

    #[test]
    fn a_broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(&file, "{not json").unwrap();
        let err = lookup(
            std::slice::from_ref(&file),
            &RegistryReference::parse("quay.io/x").unwrap(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        std::fs::write(&file, r#"{"auths":{"quay.io":{"auth":"!!"}}}"#).unwrap();
        assert!(lookup(&[file], &RegistryReference::parse("quay.io/x").unwrap()).is_err());
        assert!("nocolon".parse::<Credentials>().is_err());
        assert_eq!(
            format!("{:?}", "u:secret".parse::<Credentials>().unwrap()),
            "Credentials(\"u\", <password>)"
        );
    }
}
