//! Image references as podman and skopeo take them: `oci:DIR[:REF]`,
//! `oci-archive:FILE[:REF]`, `docker-archive:FILE[:NAME:TAG|:@INDEX]`,
//! `docker://HOST/REPO[:TAG|@DIGEST]` and a bare `HOST/REPO[:TAG]`, with docker/distribution's
//! normalisation (`busybox` is `docker.io/library/busybox:latest`).
//!
//! The rules follow containers/image 5.23 (`docker/reference`, the `oci`, `oci-archive` and
//! `docker-archive` transports) and containers/common 0.50's `libimage.NormalizeName`, which
//! podman 4.3 uses to name what it pulls from an archive (an unqualified name there gets
//! `localhost/`, not `docker.io/library/`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Where an image comes from or goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageReference {
    /// `oci:DIR[:REF]`: an OCI image layout directory; `REF` is an
    /// `org.opencontainers.image.ref.name` of its `index.json`.
    Oci {
        /// The layout's directory.
        dir: PathBuf,
        /// The reference name, if given.
        reference: Option<String>,
    },
    /// `oci-archive:FILE[:REF]`: a tar file holding an OCI image layout.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// The reference name, if given.
        reference: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG|:@INDEX]`: what `docker save` and `podman save` write.
    DockerArchive {
        /// The tar file.
        file: PathBuf,
        /// Which image of the archive, if it holds several.
        selector: Option<ArchiveSelector>,
    },
    /// `docker://HOST/REPO[:TAG|@DIGEST]`: an image in a registry (HTTP API v2).
    Registry(RegistryReference),
}

/// Which image of a docker-archive: by one of its `RepoTags`, or by position in `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSelector {
    /// A tag, normalised (`docker.io/library/busybox:latest`).
    Name(String),
    /// The position in `manifest.json`, from 0 (`@0`).
    Index(usize),
}

/// A normalised registry reference: `registry/repository` with a tag, a digest or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl RegistryReference {
    /// Parses `name` as `docker/reference.ParseNormalizedNamed` does and tags it `latest`
    /// when it has neither tag nor digest.
    pub fn parse(name: &str) -> Result<RegistryReference> {
        let parsed = DockerName::parse(name)?;
        let mut reference = parsed.normalized();
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some("latest".into());
        }
        Ok(reference)
    }

    /// A reference to `registry/repository:tag` (checked as [`RegistryReference::parse`] checks).
    pub fn with_tag(registry: &str, repository: &str, tag: &str) -> Result<RegistryReference> {
        RegistryReference::parse(&format!("{registry}/{repository}:{tag}"))
    }

    /// The registry host (with its port, if any): `docker.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same repository with this tag and no digest.
    pub fn retagged(&self, tag: &str) -> Result<RegistryReference> {
        RegistryReference::with_tag(&self.registry, &self.repository, tag)
    }

    /// The name podman records for an image pulled by this reference:
    /// `docker.io/library/busybox:latest`, or `host/repo@sha256:…` for a digest reference (a
    /// tag next to a digest is dropped, as `libimage.NormalizeName` does).
    pub fn name(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => format!("{}/{}@{digest}", self.registry, self.repository),
            (None, Some(tag)) => format!("{}/{}:{tag}", self.registry, self.repository),
            (None, None) => format!("{}/{}", self.registry, self.repository),
        }
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for RegistryReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl ImageReference {
    /// The transport's name as podman spells it (`oci`, `oci-archive`, `docker-archive`,
    /// `docker`).
    pub fn transport(&self) -> &'static str {
        match self {
            ImageReference::Oci { .. } => "oci",
            ImageReference::OciArchive { .. } => "oci-archive",
            ImageReference::DockerArchive { .. } => "docker-archive",
            ImageReference::Registry(_) => "docker",
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_ref = |f: &mut fmt::Formatter<'_>, t: &str, p: &PathBuf, r: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            match r {
                Some(r) => write!(f, ":{r}"),
                None => Ok(()),
            }
        };
        match self {
            ImageReference::Oci { dir, reference } => with_ref(f, "oci", dir, reference),
            ImageReference::OciArchive { file, reference } => {
                with_ref(f, "oci-archive", file, reference)
            }
            ImageReference::DockerArchive { file, selector } => {
                write!(f, "docker-archive:{}", file.display())?;
                match selector {
                    Some(ArchiveSelector::Name(n)) => write!(f, ":{n}"),
                    Some(ArchiveSelector::Index(i)) => write!(f, ":@{i}"),
                    None => Ok(()),
                }
            }
            ImageReference::Registry(r) => write!(f, "docker://{r}"),
        }
    }
}

impl FromStr for ImageReference {
    type Err = Error;

    /// Parses a reference as `podman pull` does: a known transport prefix, else a registry
    /// name (which `docker://` may also prefix).
    fn from_str(text: &str) -> Result<ImageReference> {
        let invalid = |reason: &str| Error::InvalidReference {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = text.strip_prefix("docker://") {
            // Errors name the reference as given, prefix included.
            return RegistryReference::parse(rest)
                .map(ImageReference::Registry)
                .map_err(|e| match e {
                    Error::InvalidReference { reason, .. } => invalid(&reason),
                    other => other,
                });
        }
        // containers/image splits PATH[:REF] at the first colon.
        let path_and_ref = |rest: &str| -> Result<(PathBuf, Option<String>)> {
            let (path, reference) = match rest.split_once(':') {
                Some((p, r)) => (p, (!r.is_empty()).then(|| r.to_owned())),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(invalid("the path is empty"));
            }
            Ok((PathBuf::from(path), reference))
        };
        if let Some(rest) = text.strip_prefix("oci:") {
            let (dir, reference) = path_and_ref(rest)?;
            if let Some(r) = &reference {
                check_oci_ref_name(text, r)?;
            }
            return Ok(ImageReference::Oci { dir, reference });
        }
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            let (file, reference) = path_and_ref(rest)?;
            if let Some(r) = &reference {
                check_oci_ref_name(text, r)?;
            }
            return Ok(ImageReference::OciArchive { file, reference });
        }
        if let Some(rest) = text.strip_prefix("docker-archive:") {
            let (file, selector) = path_and_ref(rest)?;
            let selector = match selector {
                None => None,
                Some(s) if s.starts_with('@') => {
                    let index = s[1..]
                        .parse::<usize>()
                        .map_err(|_| invalid("@ must be followed by an image index"))?;
                    Some(ArchiveSelector::Index(index))
                }
                Some(s) => {
                    let named = DockerName::parse(&s)?;
                    if named.digest.is_some() {
                        return Err(invalid("docker-archive does not take digest references"));
                    }
                    let mut named = named.normalized();
                    named.tag.get_or_insert_with(|| "latest".into());
                    Some(ArchiveSelector::Name(named.name()))
                }
            };
            return Ok(ImageReference::DockerArchive { file, selector });
        }
        if let Some((transport, _)) = text.split_once(':')
            && KNOWN_OTHER_TRANSPORTS.contains(&transport)
        {
            return Err(invalid(&format!(
                "the {transport} transport is not supported"
            )));
        }
        Ok(ImageReference::Registry(RegistryReference::parse(text)?))
    }
}

/// Transports podman knows that this crate does not serve; a reference naming one is refused
/// rather than read as a registry host.
const KNOWN_OTHER_TRANSPORTS: &[&str] = &[
    "containers-storage",
    "dir",
    "docker-daemon",
    "ostree",
    "sif",
    "tarball",
];

/// The OCI ref-name grammar (image-spec `annotations.md`): alphanumerics and `-._:@/+` and
/// `=`, components separated by separators, not empty.
fn check_oci_ref_name(reference: &str, name: &str) -> Result<()> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:@/+=".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidReference {
            reference: reference.to_owned(),
            reason: format!("{name:?} is not a valid OCI reference name"),
        })
    }
}

/// A docker reference as written, before normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerName {
    /// The first component, when it names a registry (has `.` or `:`, or is `localhost`).
    domain: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl DockerName {
    pub(crate) fn parse(text: &str) -> Result<DockerName> {
        let invalid = |reason: String| Error::InvalidReference {
            reference: text.to_owned(),
            reason,
        };
        if text.len() > 255 + 72 + 129 {
            return Err(invalid("too long".into()));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                d.parse::<layerstore_model::Digest>()
                    .map_err(|e| invalid(e.to_string()))?;
                (r, Some(d.to_owned()))
            }
            None => (text, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(invalid(format!("{tag:?} is not a valid tag")));
            }
        }
        if name.is_empty() {
            return Err(invalid("the name is empty".into()));
        }
        if name.len() > 255 {
            return Err(invalid(
                "the repository name is longer than 255 characters".into(),
            ));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(first), path)
            }
            _ => (None, name),
        };
        if let Some(domain) = domain {
            check_domain(domain).map_err(invalid)?;
        }
        for component in path.split('/') {
            check_path_component(component).map_err(invalid)?;
        }
        Ok(DockerName {
            domain: domain.map(str::to_owned),
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// `ParseNormalizedNamed`: an unqualified name is on `docker.io`, a one-component path
    /// there is under `library/`.
    pub(crate) fn normalized(&self) -> RegistryReference {
        let registry = match self.domain.as_deref() {
            None | Some("index.docker.io") => "docker.io",
            Some(d) => d,
        };
        let repository = if registry == "docker.io" && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        };
        RegistryReference {
            registry: registry.to_owned(),
            repository,
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }

    /// containers/common's `NormalizeName`, which podman applies to names found inside
    /// archives: an unqualified name is `localhost/NAME`; a tag next to a digest is dropped;
    /// neither gives `latest`.
    pub(crate) fn normalized_local(&self) -> RegistryReference {
        let mut reference = match self.domain {
            Some(_) => self.normalized(),
            None => RegistryReference {
                registry: "localhost".into(),
                repository: self.path.clone(),
                tag: self.tag.clone(),
                digest: self.digest.clone(),
            },
        };
        if reference.digest.is_some() {
            reference.tag = None;
        } else if reference.tag.is_none() {
            reference.tag = Some("latest".into());
        }
        reference
    }
}

/// A registry host: dot-separated labels of letters, digits and inner dashes, an optional
/// `:port`, or a bracketed IPv6 address.
fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || domain.starts_with('[') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("{domain:?} has an invalid port"));
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("{domain:?} is not a valid registry host"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("{domain:?} is not a valid registry host"))
    }
}

/// A repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_path_component(component: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut ok = !bytes.is_empty() && alnum(bytes[0]);
    while ok && i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let sep_ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        ok = sep_ok && i < bytes.len();
    }
    if ok {
        Ok(())
    } else if component.bytes().any(|b| b.is_ascii_uppercase()) {
        Err("repository name must be lowercase".into())
    } else {
        Err(format!(
            "{component:?} is not a valid repository path component"
        ))
    }
}

/// The name podman 4.3 gives an image pulled from `oci:DIR`: `localhost/` + the layout's
/// path as given (not resolved: `oci:layout` gives `localhost/layout`, a symlink keeps its
/// own name) without its leading `/`, tagged `latest` (libimage's `toLocalImageName` of the
/// reference's `StringWithinTransport`, then the storage reference's `TagNameOnly`).
pub fn oci_layout_image_name(dir: &std::path::Path) -> Result<String> {
    let text = dir.to_string_lossy();
    let name = format!("localhost/{}", text.trim_start_matches('/'));
    Ok(DockerName::parse(&name)?.normalized_local().name())
}

/// The name podman 4.3 gives an image whose archive names it `name` (a `RepoTags` entry of a
/// docker-archive, or the ref-name annotation of an oci-archive): `NormalizeName(name)`.
pub fn archive_image_name(name: &str) -> Result<String> {
    Ok(DockerName::parse(name)?.normalized_local().name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(text: &str) -> String {
        match text.parse::<ImageReference>().unwrap() {
            ImageReference::Registry(r) => r.name(),
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn registry_names_are_normalised_as_docker_reference_does() {
        assert_eq!(registry("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            registry("docker://busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            registry("docker://busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            registry("docker.io/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(
            registry("index.docker.io/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(registry("user/repo"), "docker.io/user/repo:latest");
        assert_eq!(
            registry("quay.io/podman/stable"),
            "quay.io/podman/stable:latest"
        );
        assert_eq!(registry("127.0.0.1:5000/img:v1"), "127.0.0.1:5000/img:v1");
        assert_eq!(registry("localhost/img"), "localhost/img:latest");
        assert_eq!(
            registry("localhost:5000/a/b/c:x.y-z_"),
            "localhost:5000/a/b/c:x.y-z_"
        );
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            registry(&format!("docker://quay.io/x/y@{digest}")),
            format!("quay.io/x/y@{digest}")
        );
        assert_eq!(
            registry(&format!("quay.io/x/y:t@{digest}")),
            format!("quay.io/x/y@{digest}")
        );
    }

    #[test]
    fn bad_registry_names_are_refused_with_the_reason() {
        for bad in [
            "Busybox",
            "docker://",
            "quay.io/x/y:",
            "quay.io/x/y:-bad",
            "quay.io/x//y",
            "quay.io/x/y@sha256:abc",
            "quay.io/-x/y",
            "quay.io/x./y",
            "host:port/x",
        ] {
            let err = bad.parse::<ImageReference>().unwrap_err();
            assert!(
                matches!(err, Error::InvalidReference { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let err = "Quay.io/Upper/x".parse::<ImageReference>().unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
    }

    #[test]
    fn path_transports_split_at_the_first_colon() {
        assert_eq!(
            "oci:/tmp/img:v1".parse::<ImageReference>().unwrap(),
            ImageReference::Oci {
                dir: "/tmp/img".into(),
                reference: Some("v1".into())
            }
        );
        assert_eq!(
            "oci:rel/dir".parse::<ImageReference>().unwrap(),
            ImageReference::Oci {
                dir: "rel/dir".into(),
                reference: None
            }
        );
        assert_eq!(
            "oci-archive:/a.tar:x:y".parse::<ImageReference>().unwrap(),
            ImageReference::OciArchive {
                file: "/a.tar".into(),
                reference: Some("x:y".into())
            }
        );
        assert_eq!(
            "docker-archive:/a.tar:busybox"
                .parse::<ImageReference>()
                .unwrap(),
            ImageReference::DockerArchive {
                file: "/a.tar".into(),
                selector: Some(ArchiveSelector::Name(
                    "docker.io/library/busybox:latest".into()
                ))
            }
        );
        assert_eq!(
            "docker-archive:/a.tar:@2"
                .parse::<ImageReference>()
                .unwrap(),
            ImageReference::DockerArchive {
                file: "/a.tar".into(),
                selector: Some(ArchiveSelector::Index(2))
            }
        );
        for bad in [
            "oci:",
            "oci::x",
            "docker-archive:/a:@x",
            "containers-storage:foo",
            "dir:/x",
        ] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad}");
        }
    }

    #[test]
    fn display_gives_back_the_transport_form() {
        for text in [
            "oci:/tmp/img:v1",
            "oci-archive:/a.tar",
            "docker-archive:/a.tar:@1",
            "docker://docker.io/library/busybox:latest",
        ] {
            assert_eq!(text.parse::<ImageReference>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn names_podman_gives_local_images() {
        // Checked against podman 4.3: `podman pull oci:/tmp/gt/img:v1` names the image
        // localhost/tmp/gt/img:latest.
        assert_eq!(
            oci_layout_image_name(std::path::Path::new("/tmp/gt/img")).unwrap(),
            "localhost/tmp/gt/img:latest"
        );
        assert!(oci_layout_image_name(std::path::Path::new("/tmp/Upper")).is_err());
        assert_eq!(
            archive_image_name("busybox").unwrap(),
            "localhost/busybox:latest"
        );
        assert_eq!(
            archive_image_name("latest").unwrap(),
            "localhost/latest:latest"
        );
        assert_eq!(
            archive_image_name("foo/bar:1").unwrap(),
            "localhost/foo/bar:1"
        );
        assert_eq!(
            archive_image_name("docker.io/alpine").unwrap(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(
            archive_image_name("localhost/tmp/gt/img:latest").unwrap(),
            "localhost/tmp/gt/img:latest"
        );
    }

    proptest::proptest! {
        /// A normalised name parses back to itself.
        #[test]
        fn normalised_names_are_a_fixed_point(
            host in "(localhost|[a-z][a-z0-9]{0,8}\\.[a-z]{2,3})(:[0-9]{1,5})?",
            path in "[a-z0-9]{1,6}((__|[._]|-{1,2})[a-z0-9]{1,4}){0,2}(/[a-z0-9]{1,6}){0,2}",
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
        ) {
            let first = RegistryReference::parse(&format!("{host}/{path}:{tag}")).unwrap();
            let again = RegistryReference::parse(&first.name()).unwrap();
            proptest::prop_assert_eq!(first, again);
        }
    }
}
