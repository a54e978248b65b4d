//! Shared helpers of the integration tests: tree snapshots, GNU tar, hand-made tar bytes.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore_archive::{ApplyOptions, ApplyReport, Error};
use sha2::{Digest, Sha256};

/// Everything compared about one entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: Option<String>,
    pub link: Option<Vec<u8>>,
    pub rdev: u64,
    pub mtime: Option<i64>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For a multiply-linked file: the first path (in sorted order) of its inode.
    pub hardlink_group: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapOptions {
    /// Compare mtimes of non-directories.
    pub mtimes: bool,
    /// Compare mtimes of directories too.
    pub dir_mtimes: bool,
    /// Compare the root directory itself.
    pub root: bool,
}

pub const FULL: SnapOptions = SnapOptions {
    mtimes: true,
    dir_mtimes: true,
    root: true,
};

/// Snapshot of a tree: relative path ("" = the root) → entry.
pub fn snapshot(top: &Path, opts: SnapOptions) -> BTreeMap<PathBuf, Snap> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    walk(top, Path::new(""), opts, &mut out, &mut inodes);
    if !opts.root {
        out.remove(Path::new(""));
    }
    out
}

fn walk(
    top: &Path,
    rel: &Path,
    opts: SnapOptions,
    out: &mut BTreeMap<PathBuf, Snap>,
    inodes: &mut BTreeMap<(u64, u64), PathBuf>,
) {
    let full = top.join(rel);
    let md = std::fs::symlink_metadata(&full).expect("lstat");
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_file() {
        '-'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        's'
    };
    let content = (kind == '-').then(|| {
        let data = std::fs::read(&full).expect("read");
        format!("{:x}", Sha256::digest(&data))
    });
    let link = (kind == 'l').then(|| {
        std::fs::read_link(&full)
            .expect("readlink")
            .as_os_str()
            .as_bytes()
            .to_vec()
    });
    let hardlink_group = (kind == '-' && md.nlink() > 1).then(|| {
        inodes
            .entry((md.dev(), md.ino()))
            .or_insert_with(|| rel.to_path_buf())
            .clone()
    });
    let mtime = match kind {
        'd' if opts.dir_mtimes => Some(md.mtime()),
        'd' => None,
        _ if opts.mtimes => Some(md.mtime()),
        _ => None,
    };
    out.insert(
        rel.to_path_buf(),
        Snap {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: if kind == 'd' { 0 } else { md.size() },
            content,
            link,
            rdev: md.rdev(),
            mtime,
            xattrs: xattrs(&full),
            hardlink_group,
        },
    );
    if kind == 'd' {
        let mut names: Vec<_> = std::fs::read_dir(&full)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for name in names {
            walk(top, &rel.join(name), opts, out, inodes);
        }
    }
}

fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut list = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(path, &mut list[..]) else {
        return out;
    };
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            value.truncate(len);
            out.insert(name.to_vec(), value);
        }
    }
    out
}

/// Panics with a readable diff when two snapshots differ.
pub fn assert_same_tree(got: &BTreeMap<PathBuf, Snap>, want: &BTreeMap<PathBuf, Snap>, what: &str) {
    let mut diffs = Vec::new();
    for (path, w) in want {
        match got.get(path) {
            None => diffs.push(format!("missing {path:?}: {w:?}")),
            Some(g) if g != w => {
                diffs.push(format!("differs {path:?}:\n   got  {g:?}\n   want {w:?}"))
            }
            Some(_) => {}
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        diffs.push(format!("extra {path:?}: {:?}", got[path]));
    }
    assert!(
        diffs.is_empty(),
        "{what}: trees differ:\n{}",
        diffs.join("\n")
    );
}

/// Extracts `tarball` with GNU tar as root would.
pub fn gnu_tar_extract(tarball: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).expect("mkdir");
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(tarball)
        .arg("-C")
        .arg(dest)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "GNU tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sha256:<hex>` of a file.
pub fn sha256_file(path: &Path) -> String {
    format!(
        "sha256:{:x}",
        Sha256::digest(std::fs::read(path).expect("read"))
    )
}

/// Applies bytes to a fresh `target` dir (created), keeping the tar-split entries.
pub fn apply_bytes(
    target: &Path,
    bytes: &[u8],
    opts: &ApplyOptions,
) -> Result<(ApplyReport, Vec<layerstore_tarsplit::Entry>), Error> {
    std::fs::create_dir_all(target).expect("mkdir target");
    layerstore_archive::apply(target, bytes, Vec::new(), opts)
}

pub fn fixtures() -> PathBuf {
    layerstore_testsupport::go_fixtures()
}

// ---- hand-made tar bytes ----

/// One 512-byte USTAR header with the given raw fields (no sanitising at all).
pub fn header(name: &[u8], type_flag: u8, size: u64, link: &[u8], mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    put_octal(&mut h[100..108], u64::from(mode));
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], 1_700_000_000);
    h[156] = type_flag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_checksum(&mut h);
    h
}

pub fn set_owner(h: &mut [u8; 512], uid: u64, gid: u64) {
    put_octal(&mut h[108..116], uid);
    put_octal(&mut h[116..124], gid);
    set_checksum(h);
}

pub fn set_device(h: &mut [u8; 512], major: u64, minor: u64) {
    put_octal(&mut h[329..337], major);
    put_octal(&mut h[337..345], minor);
    set_checksum(h);
}

fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// Builds an archive from entries; content is padded to 512 and two zero blocks end it.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        RawTar::default()
    }

    pub fn raw(&mut self, h: [u8; 512], content: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(&h);
        self.bytes.extend_from_slice(content);
        let pad = (512 - content.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn dir(&mut self, name: &[u8]) -> &mut Self {
        self.raw(header(name, b'5', 0, b"", 0o755), b"")
    }

    pub fn file(&mut self, name: &[u8], content: &[u8]) -> &mut Self {
        self.raw(
            header(name, b'0', content.len() as u64, b"", 0o644),
            content,
        )
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        self.raw(header(name, b'2', 0, target, 0o777), b"")
    }

    pub fn hardlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        self.raw(header(name, b'1', 0, target, 0o644), b"")
    }

    /// A PAX extended header applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body_len = key.len() + value.len() + 3; // ' ' '=' '\n'
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(
            header(b"PaxHeader", b'x', data.len() as u64, b"", 0o644),
            &data,
        )
    }

    /// A GNU long name ('L') for the next entry.
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.raw(
            header(b"././@LongLink", b'L', data.len() as u64, b"", 0o644),
            &data,
        )
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.bytes);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}
