//! `copy [--chown UID[:GID]] [LAYER:]PATH... LAYER:PATH`: files into a layer, as the Go
//! tool's `CopyWithTar` copies them. Ownership goes from the source's host IDs to container
//! IDs (through the source layer's mappings), is replaced by `--chown` if given, and goes to
//! host IDs through the target layer's mappings; modes and modification times are kept.
//!
//! Where the Go tool chroots into the target to stay inside it, every path in the target is
//! resolved beneath its mount point (`RESOLVE_IN_ROOT`) and entries are made relative to
//! their open parent directory without following symbolic links.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::Result;
use layerstore::IDMap;
use layerstore_archive::{to_container, to_host};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

use super::{Context, go_error_text, go_io_text};

/// One side of a copy: a host path, or a path in a layer (mounted for the copy).
struct Location {
    path: PathBuf,
    /// The mount point and mappings when the path is in a layer.
    layer: Option<(String, PathBuf, Vec<IDMap>, Vec<IDMap>)>,
}

/// Splits `LAYER:PATH` (the Go tool splits at the first colon) and mounts the layer.
fn locate(ctx: &mut Context<'_>, spec: &str) -> Result<Location, String> {
    let Some((layer_key, path)) = spec.split_once(':') else {
        return Ok(Location {
            path: PathBuf::from(spec),
            layer: None,
        });
    };
    let layer = ctx
        .store
        .layer(layer_key)
        .map_err(|e| format!("error finding layer {layer_key:?}: {}", go_error_text(&e)))?;
    let mount = ctx
        .store
        .mount(&layer.id, &layer.mount_label)
        .map_err(|e| format!("error mounting layer {:?}: {}", layer.id, go_error_text(&e)))?;
    Ok(Location {
        path: PathBuf::from(path),
        layer: Some((layer.id, mount, layer.uid_map, layer.gid_map)),
    })
}

/// How owners are translated.
struct Owners<'a> {
    source_uids: &'a [IDMap],
    source_gids: &'a [IDMap],
    chown: Option<(u32, u32)>,
    target_uids: &'a [IDMap],
    target_gids: &'a [IDMap],
}

impl Owners<'_> {
    fn map(&self, uid: u32, gid: u32) -> io::Result<(u32, u32)> {
        let (uid, gid) = match self.chown {
            Some(ids) => ids,
            None => (
                to_container(self.source_uids, uid).unwrap_or(uid),
                to_container(self.source_gids, gid).unwrap_or(gid),
            ),
        };
        let unmapped = |kind: &str, id| io::Error::other(format!("{kind} {id} is not mapped"));
        Ok((
            to_host(self.target_uids, uid).ok_or_else(|| unmapped("uid", uid))?,
            to_host(self.target_gids, gid).ok_or_else(|| unmapped("gid", gid))?,
        ))
    }
}

/// Parses `--chown UID[:GID]` as the Go tool does.
fn parse_chown(text: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = text.split_once(':').unwrap_or((text, text));
    let uid = go_parse_u32(uid).map_err(|e| format!("error {uid:?} as a numeric UID: {e}"))?;
    let gid = go_parse_u32(gid).map_err(|e| format!("error {gid:?} as a numeric GID: {e}"))?;
    Ok((uid, gid))
}

/// Go's `strconv.ParseUint(text, 10, 32)`: decimal digits only (no sign, no spaces), with its
/// error texts.
fn go_parse_u32(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseUint: parsing {text:?}: invalid syntax"
        ));
    }
    text.parse::<u32>()
        .map_err(|_| format!("strconv.ParseUint: parsing {text:?}: value out of range"))
}

pub(super) fn copy(ctx: &mut Context<'_>, chown: Option<&str>, args: &[String]) -> Result<i32> {
    let chown = match chown.filter(|c| !c.is_empty()).map(parse_chown).transpose() {
        Ok(chown) => chown,
        Err(text) if ctx.json_errors => return ctx.fail(&text),
        Err(text) => {
            // The Go tool prints this one error without a newline.
            write!(ctx.err, "{text}")?;
            return Ok(1);
        }
    };
    let Some((target_spec, sources)) = args.split_last() else {
        return Ok(1);
    };
    let mut mounted = Vec::new();
    let code = copy_all(ctx, chown, target_spec, sources, &mut mounted);
    for id in mounted {
        // As the Go tool's deferred unmounts: best effort.
        let _ = ctx.store.unmount(&id, false);
    }
    code
}

fn copy_all(
    ctx: &mut Context<'_>,
    chown: Option<(u32, u32)>,
    target_spec: &str,
    sources: &[String],
    mounted: &mut Vec<String>,
) -> Result<i32> {
    let target = match locate(ctx, target_spec) {
        Ok(target) => target,
        Err(text) => return ctx.fail(&text),
    };
    let (target_root, target_uids, target_gids) = match &target.layer {
        Some((id, mount, uids, gids)) => {
            mounted.push(id.clone());
            (mount.clone(), uids.clone(), gids.clone())
        }
        None => (PathBuf::from("/"), Vec::new(), Vec::new()),
    };
    for spec in sources {
        let source = match locate(ctx, spec) {
            Ok(source) => source,
            Err(text) => return ctx.fail(&text),
        };
        let (source_path, source_uids, source_gids) = match &source.layer {
            Some((id, mount, uids, gids)) => {
                mounted.push(id.clone());
                (
                    mount.join(source.path.strip_prefix("/").unwrap_or(&source.path)),
                    uids.clone(),
                    gids.clone(),
                )
            }
            None => (source.path.clone(), Vec::new(), Vec::new()),
        };
        let owners = Owners {
            source_uids: &source_uids,
            source_gids: &source_gids,
            chown,
            target_uids: &target_uids,
            target_gids: &target_gids,
        };
        if let Err(e) = copy_into(&source_path, &target_root, &target.path, &owners) {
            return ctx.fail(&format!(
                "error copying {:?} to {:?}: {e}",
                source_path.display().to_string(),
                target_root
                    .join(target.path.strip_prefix("/").unwrap_or(&target.path))
                    .display()
                    .to_string()
            ));
        }
    }
    Ok(0)
}

/// Opens (making it and its parents if needed) the directory `path` beneath `root`.
fn open_dir_in(root: &OwnedFd, path: &Path) -> io::Result<OwnedFd> {
    let mut dir = rustix::fs::openat2(
        root,
        ".",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )?;
    for part in path.components() {
        let std::path::Component::Normal(name) = part else {
            continue;
        };
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        dir = rustix::fs::openat2(
            &dir,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )?;
    }
    Ok(dir)
}

/// Copies `source` (a file, symbolic link or directory tree) to `target` beneath `root`: a
/// directory's contents go into the target directory; a file into the target, or into it
/// as a directory when it ends in `/` (Go's `CopyFileWithTar`).
fn copy_into(source: &Path, root: &Path, target: &Path, owners: &Owners<'_>) -> io::Result<()> {
    let root = rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let meta = fs::symlink_metadata(source)
        .map_err(|e| io::Error::new(e.kind(), go_io_text("stat", source, &e)))?;
    if meta.is_dir() {
        let dir = open_dir_in(&root, target)?;
        copy_metadata(&dir, None, &meta, owners)?;
        return copy_tree(source, dir, owners);
    }
    let into_dir = target.as_os_str().to_string_lossy().ends_with('/');
    let (parent, name) = if into_dir {
        (
            target.to_path_buf(),
            source.file_name().map(ToOwned::to_owned),
        )
    } else {
        (
            target.parent().map(Path::to_path_buf).unwrap_or_default(),
            target.file_name().map(ToOwned::to_owned),
        )
    };
    let name = name.ok_or_else(|| io::Error::other("no file name to copy to"))?;
    let parent = open_dir_in(&root, &parent)?;
    copy_entry(source, &meta, &parent, Path::new(&name), owners)?;
    Ok(())
}

/// Copies the tree below `source` into the open directory `target`, with an explicit stack.
/// Paths of one inode (other than directories) stay one inode: the later ones are linked to
/// the first copy, as Go's tar stream carries them as hard links.
fn copy_tree(source: &Path, target: OwnedFd, owners: &Owners<'_>) -> io::Result<()> {
    // (device, inode) of a multiply-linked source → the directory and name of its copy; the
    // directory is held open so the link is made without resolving a path again.
    let mut copies: HashMap<(u64, u64), (Rc<OwnedFd>, PathBuf)> = HashMap::new();
    let mut stack = vec![(source.to_path_buf(), Rc::new(target))];
    while let Some((dir, target)) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            let name = PathBuf::from(entry.file_name());
            if !meta.is_dir() && meta.nlink() > 1 {
                if let Some((first_dir, first_name)) = copies.get(&(meta.dev(), meta.ino())) {
                    link_over(first_dir, first_name, &target, &name)?;
                    continue;
                }
                copies.insert((meta.dev(), meta.ino()), (target.clone(), name.clone()));
            }
            if let Some(child) = copy_entry(&path, &meta, &target, &name, owners)? {
                stack.push((path, Rc::new(child)));
            }
        }
    }
    Ok(())
}

/// Makes `name` in `dir` a hard link to `first_name` in `first_dir`, replacing a file that
/// is there (as the copy of a file replaces it).
fn link_over(first_dir: &OwnedFd, first_name: &Path, dir: &OwnedFd, name: &Path) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    rustix::fs::linkat(first_dir, first_name, dir, name, AtFlags::empty())?;
    Ok(())
}

/// Makes `name` in `parent` as a copy of `source`; a directory is returned open, for its
/// contents.
fn copy_entry(
    source: &Path,
    meta: &fs::Metadata,
    parent: &OwnedFd,
    name: &Path,
    owners: &Owners<'_>,
) -> io::Result<Option<OwnedFd>> {
    let file_type = meta.file_type();
    if file_type.is_dir() {
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )?;
        copy_metadata(&dir, None, meta, owners)?;
        return Ok(Some(dir));
    }
    if file_type.is_symlink() {
        let link = fs::read_link(source)?;
        match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        rustix::fs::symlinkat(&link, parent, name)?;
        copy_metadata(parent, Some(name), meta, owners)?;
        return Ok(None);
    }
    if !file_type.is_file() {
        return Err(io::Error::other(format!(
            "{}: only files, directories and symbolic links can be copied",
            source.display()
        )));
    }
    let mut input = fs::File::open(source)?;
    let out = rustix::fs::openat(
        parent,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    let mut output = fs::File::from(out);
    io::copy(&mut input, &mut output)?;
    copy_metadata(&output.as_fd().try_clone_to_owned()?, None, meta, owners)?;
    Ok(None)
}

/// Sets owner, mode and times on an open file (`name` None) or on the link `name` in the
/// directory `fd`.
fn copy_metadata(
    fd: &OwnedFd,
    name: Option<&Path>,
    meta: &fs::Metadata,
    owners: &Owners<'_>,
) -> io::Result<()> {
    let (uid, gid) = owners.map(meta.uid(), meta.gid())?;
    let uid = rustix::fs::Uid::from_raw(uid);
    let gid = rustix::fs::Gid::from_raw(gid);
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    match name {
        Some(name) => {
            rustix::fs::chownat(fd, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
            rustix::fs::utimensat(fd, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        None => {
            rustix::fs::fchown(fd, Some(uid), Some(gid))?;
            // After the chown, which clears set-ID bits.
            rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode() & 0o7777))?;
            rustix::fs::futimens(fd, &times)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_takes_one_or_two_ids() {
        assert_eq!(parse_chown("100"), Ok((100, 100)));
        assert_eq!(parse_chown("1:2"), Ok((1, 2)));
        assert!(parse_chown("x:2").is_err());
    }

    #[test]
    fn chown_errors_are_go_strconv_errors() {
        assert_eq!(
            parse_chown("x:y").unwrap_err(),
            r#"error "x" as a numeric UID: strconv.ParseUint: parsing "x": invalid syntax"#
        );
        assert_eq!(
            parse_chown("1:+2").unwrap_err(),
            r#"error "+2" as a numeric GID: strconv.ParseUint: parsing "+2": invalid syntax"#
        );
        assert_eq!(
            parse_chown("4294967296").unwrap_err(),
            r#"error "4294967296" as a numeric UID: strconv.ParseUint: parsing "4294967296": value out of range"#
        );
        assert!(parse_chown(":1").is_err());
    }

    #[test]
    fn owners_map_through_both_layers() {
        let src = [IDMap {
            container_id: 0,
            host_id: 1000,
            size: 10,
        }];
        let dst = [IDMap {
            container_id: 0,
            host_id: 5000,
            size: 10,
        }];
        let owners = Owners {
            source_uids: &src,
            source_gids: &src,
            chown: None,
            target_uids: &dst,
            target_gids: &dst,
        };
        assert_eq!(owners.map(1003, 1004).expect("mapped"), (5003, 5004));
        let owners = Owners {
            chown: Some((7, 8)),
            ..owners
        };
        assert_eq!(owners.map(1003, 1004).expect("mapped"), (5007, 5008));
    }

    /// Go's tar stream keeps hard links within the copied tree (issue 19: `copy
    /// base-layer:/etc free-layer:/etc2` had `passwd` and `passwd-hard` apart); a link to a
    /// file outside the tree is a file of its own.
    #[test]
    fn copying_a_tree_keeps_its_hard_links() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let source = scratch.path().join("source");
        fs::create_dir_all(source.join("sub")).expect("mkdir");
        fs::write(source.join("passwd"), "root:x:0:0").expect("write");
        fs::hard_link(source.join("passwd"), source.join("passwd-hard")).expect("link");
        fs::hard_link(source.join("passwd"), source.join("sub/passwd-deep")).expect("link");
        fs::write(source.join("outside-linked"), "x").expect("write");
        fs::hard_link(
            source.join("outside-linked"),
            scratch.path().join("outside"),
        )
        .expect("link");
        let root = scratch.path().join("root");
        fs::create_dir(&root).expect("mkdir");
        let owners = Owners {
            source_uids: &[],
            source_gids: &[],
            chown: None,
            target_uids: &[],
            target_gids: &[],
        };
        copy_into(&source, &root, Path::new("/etc2"), &owners).expect("copy");
        let copied = |name: &str| fs::symlink_metadata(root.join("etc2").join(name)).expect(name);
        let first = copied("passwd");
        assert_eq!(first.nlink(), 3, "one inode for the three paths");
        for name in ["passwd-hard", "sub/passwd-deep"] {
            assert_eq!(copied(name).ino(), first.ino(), "{name}");
        }
        assert_ne!(
            first.ino(),
            fs::metadata(source.join("passwd")).expect("stat").ino(),
            "a copy, not a link to the source"
        );
        assert_eq!(copied("outside-linked").nlink(), 1);
        assert_eq!(
            fs::read_to_string(root.join("etc2/sub/passwd-deep")).expect("read"),
            "root:x:0:0"
        );
    }
}
