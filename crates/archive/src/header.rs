//! The parsed form of one tar entry that extraction works from.
//!
//! It mirrors `layerstore_tarsplit::TarHeader` (the one tar parser of the workspace) minus what
//! extraction does not need, so that extraction can be tested with hand-made headers too.

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    Hardlink,
    Symlink,
    Char,
    Block,
    Directory,
    Fifo,
    Other(u8),
}

/// A time stamp from a tar header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Time {
    pub(crate) secs: i64,
    pub(crate) nanos: u32,
}

/// One logical entry of the archive, PAX and GNU extensions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) name: Vec<u8>,
    pub(crate) link_name: Vec<u8>,
    pub(crate) kind: Kind,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: Time,
    pub(crate) atime: Option<Time>,
    /// Bytes of content the entry carries in the stream (for sparse files: the packed data).
    pub(crate) size: u64,
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For sparse files: the file's real size and its data regions `(offset, len)` in stream order.
    pub(crate) sparse: Option<(u64, Vec<(u64, u64)>)>,
}

impl Header {
    /// A header with defaults (root-owned, mtime 0) for tests and synthesised entries.
    #[cfg(test)]
    pub(crate) fn new(name: &[u8], kind: Kind, mode: u32) -> Self {
        Header {
            name: name.to_vec(),
            link_name: Vec::new(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: Time::default(),
            atime: None,
            size: 0,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
            sparse: None,
        }
    }
}

impl From<layerstore_tarsplit::TarHeader> for Header {
    fn from(h: layerstore_tarsplit::TarHeader) -> Self {
        use layerstore_tarsplit::TarKind as T;
        let time = |t: layerstore_tarsplit::TarTime| Time {
            secs: t.secs,
            nanos: t.nanos,
        };
        Header {
            kind: match h.kind {
                T::Regular => Kind::Regular,
                T::Hardlink => Kind::Hardlink,
                T::Symlink => Kind::Symlink,
                T::Char => Kind::Char,
                T::Block => Kind::Block,
                T::Directory => Kind::Directory,
                T::Fifo => Kind::Fifo,
                T::Other(flag) => Kind::Other(flag),
            },
            name: h.name,
            link_name: h.link_name,
            mode: h.mode,
            uid: h.uid,
            gid: h.gid,
            mtime: time(h.mtime),
            atime: h.atime.map(time),
            size: h.size,
            dev_major: h.dev_major,
            dev_minor: h.dev_minor,
            xattrs: h.xattrs,
            sparse: h.sparse.map(|s| {
                (
                    s.real_size,
                    s.regions.iter().map(|r| (r.offset, r.len)).collect(),
                )
            }),
        }
    }
}
