//! The on-disk layout shared with Go's overlay driver: short link IDs, the `l/` symlinks and
//! the `lower` file.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use layerstore_driver::{Error, Result, tree};
use rustix::fs::AtFlags;

/// Name of the directory of short links in the driver home.
pub const LINK_DIR: &str = "l";
/// Length of a short link ID.
pub const LINK_ID_LEN: usize = 26;
/// Random bytes behind a link ID: `ceil(26 * 5 / 8)` = 17.
const LINK_ID_BYTES: usize = (LINK_ID_LEN * 5).div_ceil(8);

/// A fresh link ID: the first 26 characters of the standard base32 encoding of 17 random bytes
/// (alphabet `A-Z2-7`), as Go's `generateID`.
pub fn generate_link_id() -> io::Result<String> {
    let mut bytes = [0u8; LINK_ID_BYTES];
    let mut filled = 0;
    while filled < bytes.len() {
        // getrandom may return short reads or EINTR; both are retried.
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut id = data_encoding::BASE32.encode(&bytes);
    id.truncate(LINK_ID_LEN);
    Ok(id)
}

/// Whether `name` is a short link name of the driver's own form: 26 characters of the base32
/// alphabet (`A-Z2-7`), as Go's `generateID` makes them. Anything else read from a `link` or
/// `lower` file was not written by a driver and is refused: such a name would otherwise end
/// up in a path the driver follows or in mount data.
pub fn valid_link_name(name: &str) -> bool {
    name.len() == LINK_ID_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

/// Longest `lower` file read: 26 + 3 bytes per lower, for far more lowers than a mount takes.
const MAX_LOWER_FILE: u64 = 1 << 20;

/// The `lower` entry of a layer whose link is `link`: `l/<link>`.
pub fn lower_entry(link: &str) -> String {
    format!("{LINK_DIR}/{link}")
}

fn invalid(id: &str, path: &Path, what: String) -> Error {
    Error::layer_io(
        id,
        "read",
        path,
        io::Error::new(io::ErrorKind::InvalidData, what),
    )
}

/// Parses a `lower` file: `l/A:l/B:…`, nearest parent first. Every entry must be `l/<link>`
/// with a link name of the driver's form ([`valid_link_name`]).
pub fn parse_lower(id: &str, path: &Path, content: &str) -> Result<Vec<String>> {
    let content = content.trim_end_matches('\n');
    if content.is_empty() {
        return Ok(Vec::new());
    }
    content
        .split(':')
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.strip_prefix("l/") {
            Some(name) if valid_link_name(name) => Ok(entry.to_string()),
            _ => Err(invalid(
                id,
                path,
                format!("lower entry {entry:?} is not of the form l/<26 base32 characters>"),
            )),
        })
        .collect()
}

/// Reads the `lower` file of the layer directory `layer` (shown as `layer_dir`; missing: no
/// lowers). A regular file of bounded size only, never through a symlink.
pub fn read_lower(id: &str, layer: BorrowedFd<'_>, layer_dir: &Path) -> Result<Vec<String>> {
    let path = layer_dir.join("lower");
    match tree::read_small_file_at(layer, c"lower", MAX_LOWER_FILE) {
        Ok(content) => {
            let content = String::from_utf8(content)
                .map_err(|_| invalid(id, &path, "not UTF-8".to_string()))?;
            parse_lower(id, &path, &content)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::layer_io(id, "read", &path, e)),
    }
}

/// Reads the `link` file of the layer directory `layer` (shown as `layer_dir`), checking it
/// holds a link name of the driver's form.
pub fn read_link_id(id: &str, layer: BorrowedFd<'_>, layer_dir: &Path) -> Result<String> {
    let path = layer_dir.join("link");
    let link = tree::read_small_file_at(layer, c"link", 4 * LINK_ID_LEN as u64)
        .map_err(|e| Error::layer_io(id, "read", &path, e))?;
    let link = String::from_utf8_lossy(&link)
        .trim_end_matches('\n')
        .to_string();
    if !valid_link_name(&link) {
        return Err(invalid(
            id,
            &path,
            format!("link ID {link:?} is not 26 base32 characters"),
        ));
    }
    Ok(link)
}

/// The content of a child's `lower` file: `l/<parent link>` then the parent's own `lower`
/// (Go's `getLower`).
pub fn child_lower(
    parent: &str,
    parent_layer: BorrowedFd<'_>,
    parent_dir: &Path,
) -> Result<Vec<String>> {
    let mut lowers = vec![lower_entry(&read_link_id(
        parent,
        parent_layer,
        parent_dir,
    )?)];
    lowers.extend(read_lower(parent, parent_layer, parent_dir)?);
    Ok(lowers)
}

/// The relative target of a short link: `../<id>/diff`.
pub fn link_target(id: &str) -> PathBuf {
    Path::new("..").join(id).join("diff")
}

/// The layer a short link's target names, if it is exactly `../<id>/diff` for an ID the
/// driver could have made.
pub fn link_target_id(target: &Path) -> Option<String> {
    let parts: Vec<_> = target.iter().collect();
    match parts.as_slice() {
        [dots, id, diff] if *dots == ".." && *diff == "diff" => {
            let id = id.to_str()?;
            crate::validate(id).is_ok().then(|| id.to_string())
        }
        _ => None,
    }
}

/// Go's `recreateSymlinks`, through the home's descriptor: makes sure every layer's `link`
/// file has its `l/` symlink, and every symlink in `l/` points at `../<id>/diff` of a layer
/// whose `link` file names it (rewriting the `link` file, in the layer's own directory and
/// never through a symlink, when it does not; removing links whose target looks wrong).
/// Returns the problems that could not be fixed, after at most five passes. `shown` names the
/// home in messages.
pub fn recreate_symlinks_at(home: BorrowedFd<'_>, shown: &Path) -> Result<()> {
    let link_path = shown.join(LINK_DIR);
    let link_dir =
        tree::ensure_dir_at(home, c"l", 0o755).map_err(|e| Error::io("mkdir", &link_path, e))?;
    let layers: Vec<String> = tree::read_names(home)
        .map_err(|e| Error::io("read", shown, e))?
        .into_iter()
        .filter_map(|name| name.into_string().ok())
        .filter(|name| crate::validate(name).is_ok())
        .collect();
    let mut problems = Vec::new();
    for _pass in 0..5 {
        problems.clear();
        let mut progress = false;
        for id in &layers {
            let dir = shown.join(id);
            let Ok(name) = CString::new(id.as_str()) else {
                continue;
            };
            // Only directories of the home, never followed.
            let Ok(layer) = tree::open_dir_at(home, &name) else {
                continue;
            };
            if tree::stat_at(&layer, c"diff").is_err() {
                continue; // not a layer
            }
            let link = match read_link_id(id, layer.as_fd(), &dir) {
                Ok(link) => link,
                Err(e) => {
                    problems.push(layerstore_model::error_chain(&e));
                    continue;
                }
            };
            let Ok(link_name) = CString::new(link.as_str()) else {
                continue;
            };
            match tree::stat_at(&link_dir, &link_name) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rustix::fs::symlinkat(link_target(id).as_path(), &link_dir, &link_name) {
                        Ok(()) => progress = true,
                        Err(e) => problems
                            .push(format!("symlink {}: {e}", link_path.join(&link).display())),
                    }
                }
                Err(e) => problems.push(format!("lstat {}: {e}", link_path.join(&link).display())),
            }
        }
        let entries = tree::read_names(&link_dir).map_err(|e| Error::io("read", &link_path, e))?;
        for entry in entries {
            let name = entry.to_string_lossy().into_owned();
            let target = rustix::fs::readlinkat(&link_dir, &entry, Vec::new())
                .map(|t| PathBuf::from(std::ffi::OsString::from_vec(t.into_bytes())))
                .unwrap_or_default();
            let target_layer = link_target_id(&target).and_then(|id| {
                let fd = tree::open_dir_at(home, &CString::new(id.as_str()).ok()?).ok()?;
                Some((id, fd))
            });
            let (target_id, layer) = match target_layer {
                Some(found) if valid_link_name(&name) => found,
                _ => {
                    problems.push(format!(
                        "link target of {name:?} looks weird: {}",
                        target.display()
                    ));
                    if rustix::fs::unlinkat(&link_dir, &entry, AtFlags::empty()).is_ok() {
                        progress = true;
                    }
                    continue;
                }
            };
            let current = tree::read_small_file_at(&layer, c"link", 4 * LINK_ID_LEN as u64).ok();
            if current.as_deref() != Some(name.as_bytes()) {
                let link_file = shown.join(&target_id).join("link");
                match tree::write_file_at(&layer, c"link", name.as_bytes(), 0o644) {
                    Ok(()) => progress = true,
                    Err(e) => problems.push(format!("write {}: {e}", link_file.display())),
                }
            }
        }
        if !progress {
            break;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::io(
            "recreate the short links in",
            &link_path,
            io::Error::other(problems.join("; ")),
        ))
    }
}

/// [`recreate_symlinks_at`] of the driver home at `home` (its last component is not
/// followed).
pub fn recreate_symlinks(home: &Path) -> Result<()> {
    let fd = tree::open_dir(home).map_err(|e| Error::io("open", home, e))?;
    recreate_symlinks_at(fd.as_fd(), home)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_ids_are_26_base32_characters_and_differ() {
        let a = generate_link_id().unwrap();
        let b = generate_link_id().unwrap();
        assert_eq!(a.len(), LINK_ID_LEN);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn lower_files_parse_and_refuse_escapes() {
        let p = Path::new("/x/lower");
        assert!(parse_lower("id", p, "").unwrap().is_empty());
        assert_eq!(
            parse_lower(
                "id",
                p,
                &format!("l/{}:l/{}", "A".repeat(26), "B2".repeat(13))
            )
            .unwrap(),
            [
                format!("l/{}", "A".repeat(26)),
                format!("l/{}", "B2".repeat(13))
            ]
        );
        let injected = format!("l/{},upperdir=/tmp", "A".repeat(26));
        for bad in [
            "l/../x",
            "../../etc",
            "l/a/b",
            "/abs",
            "l/",
            "l/AAA",
            &injected,
        ] {
            let err = parse_lower("id", p, bad).unwrap_err();
            assert!(err.to_string().contains("/x/lower"), "{bad}: {err}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// A `lower` file written from valid link names parses back to the same entries, and
        /// no parsed entry can leave `l/`.
        #[test]
        fn lower_files_round_trip(names in proptest::collection::vec("[A-Z2-7]{26}", 0..40)) {
            let entries: Vec<String> = names.iter().map(|n| lower_entry(n)).collect();
            let parsed = parse_lower("id", Path::new("lower"), &entries.join(":")).unwrap();
            proptest::prop_assert_eq!(parsed, entries);
        }

        /// Whatever the content, parsing never panics and accepted entries stay in `l/`.
        #[test]
        fn parsed_entries_never_escape(content in "[a-zA-Z0-9/.:\\n-]{0,80}") {
            if let Ok(entries) = parse_lower("id", Path::new("lower"), &content) {
                for entry in entries {
                    let name = entry.strip_prefix("l/").unwrap();
                    proptest::prop_assert!(valid_link_name(name), "{}", entry);
                }
            }
        }
    }

    #[test]
    fn recreate_restores_missing_links_and_link_files() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let (link_a, link_b) = (
            format!("LINKA{}", "A".repeat(21)),
            format!("LINKB{}", "B".repeat(21)),
        );
        for (id, link) in [("aaa", &link_a), ("bbb", &link_b)] {
            std::fs::create_dir_all(home.join(id).join("diff")).unwrap();
            std::fs::write(home.join(id).join("link"), link).unwrap();
        }
        std::fs::create_dir(home.join("l")).unwrap();
        // bbb's link file is lost, but its symlink survives; aaa's symlink is lost.
        std::os::unix::fs::symlink("../bbb/diff", home.join("l").join(&link_b)).unwrap();
        std::fs::remove_file(home.join("bbb/link")).unwrap();
        // A dangling, weird link is removed.
        std::os::unix::fs::symlink("/etc", home.join("l/WEIRD")).unwrap();
        let result = recreate_symlinks(home);
        // bbb had no link file during the first pass; the second pass is clean.
        result.unwrap();
        assert_eq!(
            std::fs::read_link(home.join("l").join(&link_a)).unwrap(),
            Path::new("../aaa/diff")
        );
        assert_eq!(
            std::fs::read_to_string(home.join("bbb/link")).unwrap(),
            link_b
        );
        assert!(std::fs::symlink_metadata(home.join("l/WEIRD")).is_err());
    }

    #[test]
    fn link_repair_never_writes_through_a_symlinked_layer_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("diff")).unwrap();
        std::fs::create_dir_all(home.join("l")).unwrap();
        // A layer directory swapped for a symlink to an arbitrary directory, and a short link
        // naming it: Go would write `link` (the short link's name) into that directory.
        std::os::unix::fs::symlink(&outside, home.join("evil")).unwrap();
        let name = "C".repeat(26);
        std::os::unix::fs::symlink("../evil/diff", home.join("l").join(&name)).unwrap();
        // The link is dropped as weird (fixed, so no error is left).
        recreate_symlinks(&home).unwrap();
        assert!(!outside.join("link").exists());
        assert!(std::fs::symlink_metadata(home.join("l").join(&name)).is_err());
        // A `link` file that is itself a symlink is never written through either.
        std::fs::create_dir_all(home.join("good/diff")).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), home.join("good/link")).unwrap();
        std::os::unix::fs::symlink("../good/diff", home.join("l").join(&name)).unwrap();
        assert!(recreate_symlinks(&home).is_err());
        assert!(!outside.join("target").exists());
    }
}
