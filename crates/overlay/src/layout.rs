//! The on-disk layout shared with Go's overlay driver: short link IDs, the `l/` symlinks and
//! the `lower` file.

use std::io;
use std::path::{Path, PathBuf};

use layerstore_driver::{Error, Result};

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

/// Whether `name` can be a short link name: non-empty, no `/`, not `.` or `..`, no NUL.
///
/// Go's IDs are 26 base32 characters, but other tools may have written other names; anything
/// that stays one plain directory entry below `l/` is accepted.
pub fn valid_link_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// The `lower` entry of a layer whose link is `link`: `l/<link>`.
pub fn lower_entry(link: &str) -> String {
    format!("{LINK_DIR}/{link}")
}

/// Parses a `lower` file: `l/A:l/B:…`, nearest parent first. Every entry must be a plain
/// `l/<name>` so that joining it to the home can never leave the home.
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
            _ => Err(Error::layer_io(
                id,
                "parse",
                path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("lower entry {entry:?} is not of the form l/<link>"),
                ),
            )),
        })
        .collect()
}

/// Reads `<layer_dir>/lower` (missing: no lowers).
pub fn read_lower(id: &str, layer_dir: &Path) -> Result<Vec<String>> {
    let path = layer_dir.join("lower");
    match std::fs::read_to_string(&path) {
        Ok(content) => parse_lower(id, &path, &content),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::layer_io(id, "read", &path, e)),
    }
}

/// Reads `<layer_dir>/link`, checking it can name an entry of `l/`.
pub fn read_link_id(id: &str, layer_dir: &Path) -> Result<String> {
    let path = layer_dir.join("link");
    let link = std::fs::read_to_string(&path).map_err(|e| Error::layer_io(id, "read", &path, e))?;
    let link = link.trim_end_matches('\n').to_string();
    if !valid_link_name(&link) {
        return Err(Error::layer_io(
            id,
            "read",
            &path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("link ID {link:?} cannot name an entry of l/"),
            ),
        ));
    }
    Ok(link)
}

/// The content of a child's `lower` file: `l/<parent link>` then the parent's own `lower`
/// (Go's `getLower`).
pub fn child_lower(parent: &str, parent_dir: &Path) -> Result<Vec<String>> {
    let mut lowers = vec![lower_entry(&read_link_id(parent, parent_dir)?)];
    lowers.extend(read_lower(parent, parent_dir)?);
    Ok(lowers)
}

/// The relative target of a short link: `../<id>/diff`.
pub fn link_target(id: &str) -> PathBuf {
    Path::new("..").join(id).join("diff")
}

/// Go's `recreateSymlinks`: makes sure every layer's `link` file has its `l/` symlink, and
/// every symlink in `l/` points at `../<id>/diff` of a layer whose `link` file names it
/// (rewriting the `link` file when it does not; removing links whose target looks wrong).
/// Returns the problems that could not be fixed, after at most five passes.
pub fn recreate_symlinks(home: &Path) -> Result<()> {
    let link_dir = home.join(LINK_DIR);
    match std::fs::create_dir(&link_dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(Error::io("mkdir", &link_dir, e));
        }
        _ => {}
    }
    let layers: Vec<String> = std::fs::read_dir(home)
        .map_err(|e| Error::io("read", home, e))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name != LINK_DIR && layerstore_driver::validate_layer_id(name).is_ok())
        .collect();
    let mut problems = Vec::new();
    for _pass in 0..5 {
        problems.clear();
        let mut progress = false;
        for id in &layers {
            let dir = home.join(id);
            if !dir.join("diff").is_dir() {
                continue; // not a layer (staging, …)
            }
            let link = match read_link_id(id, &dir) {
                Ok(link) => link,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            let path = link_dir.join(&link);
            match std::fs::symlink_metadata(&path) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match std::os::unix::fs::symlink(link_target(id), &path) {
                        Ok(()) => progress = true,
                        Err(e) => problems.push(format!("symlink {}: {e}", path.display())),
                    }
                }
                Err(e) => problems.push(format!("lstat {}: {e}", path.display())),
            }
        }
        let entries = std::fs::read_dir(&link_dir).map_err(|e| Error::io("read", &link_dir, e))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let target = std::fs::read_link(&path).unwrap_or_default();
            let parts: Vec<_> = target.iter().map(|c| c.to_string_lossy()).collect();
            let target_id = match parts.as_slice() {
                [dots, id, diff] if dots == ".." && diff == "diff" && home.join(&**id).is_dir() => {
                    id.to_string()
                }
                _ => {
                    problems.push(format!(
                        "link target of {name:?} looks weird: {}",
                        target.display()
                    ));
                    if std::fs::remove_file(&path).is_ok() {
                        progress = true;
                    }
                    continue;
                }
            };
            let link_file = home.join(&target_id).join("link");
            if std::fs::read_to_string(&link_file).ok().as_deref() != Some(name.as_str()) {
                match std::fs::write(&link_file, name.as_bytes()) {
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
            &link_dir,
            io::Error::other(problems.join("; ")),
        ))
    }
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
        assert_eq!(
            parse_lower("id", p, "l/AAA:l/BBB").unwrap(),
            ["l/AAA", "l/BBB"]
        );
        assert!(parse_lower("id", p, "").unwrap().is_empty());
        for bad in ["l/../x", "../../etc", "l/a/b", "/abs", "l/"] {
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
        for (id, link) in [("aaa", "LINKA"), ("bbb", "LINKB")] {
            std::fs::create_dir_all(home.join(id).join("diff")).unwrap();
            std::fs::write(home.join(id).join("link"), link).unwrap();
        }
        std::fs::create_dir(home.join("l")).unwrap();
        // bbb's link file is lost, but its symlink survives; aaa's symlink is lost.
        std::os::unix::fs::symlink("../bbb/diff", home.join("l/LINKB")).unwrap();
        std::fs::remove_file(home.join("bbb/link")).unwrap();
        // A dangling, weird link is removed.
        std::os::unix::fs::symlink("/etc", home.join("l/WEIRD")).unwrap();
        let result = recreate_symlinks(home);
        // bbb had no link file during the first pass; the second pass is clean.
        result.unwrap();
        assert_eq!(
            std::fs::read_link(home.join("l/LINKA")).unwrap(),
            Path::new("../aaa/diff")
        );
        assert_eq!(
            std::fs::read_to_string(home.join("bbb/link")).unwrap(),
            "LINKB"
        );
        assert!(std::fs::symlink_metadata(home.join("l/WEIRD")).is_err());
    }
}
