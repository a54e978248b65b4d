//! The tar header parser: one parser for recording (tar-split) and extraction.
//!
//! It follows Go's `archive/tar` reader (the one tar-split forks) wherever the two could
//! disagree on where an entry starts or what its name and size are: checksum accepted as signed
//! or unsigned sum, octal or base-256 numbers, USTAR prefix, GNU `L`/`K` long names, PAX records
//! overriding USTAR fields (an empty PAX value keeps the USTAR one), the PAX `size` deciding how
//! much content is skipped, header-only types (links, devices, directories, fifos) having no
//! content whatever their size field says, and GNU sparse files (old `S` headers, PAX 0.0, 0.1
//! and 1.0).

use crate::error::Error;

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// The kind of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TarKind {
    /// A regular file (`'0'`, `'\0'` without a trailing slash, `'7'` contiguous, GNU sparse
    /// `'S'` and PAX sparse files).
    Regular,
    /// A hard link (`'1'`) to [`TarHeader::link_name`].
    Hardlink,
    /// A symbolic link (`'2'`).
    Symlink,
    /// A character device (`'3'`).
    Char,
    /// A block device (`'4'`).
    Block,
    /// A directory (`'5'`, or `'\0'` with a name ending in `/`).
    Directory,
    /// A named pipe (`'6'`).
    Fifo,
    /// Any other type flag (its content, if any, is still read and recorded).
    Other(u8),
}

impl TarKind {
    /// The kind for a type flag, after Go's legacy rule (`'\0'` + trailing slash = directory).
    pub fn from_flag(flag: u8, name: &[u8]) -> Self {
        match flag {
            b'0' | b'7' | b'S' => TarKind::Regular,
            0 if name.last() == Some(&b'/') => TarKind::Directory,
            0 => TarKind::Regular,
            b'1' => TarKind::Hardlink,
            b'2' => TarKind::Symlink,
            b'3' => TarKind::Char,
            b'4' => TarKind::Block,
            b'5' => TarKind::Directory,
            b'6' => TarKind::Fifo,
            other => TarKind::Other(other),
        }
    }

    /// Whether entries of this kind never have content, whatever their size field says
    /// (Go's `isHeaderOnlyType`).
    pub fn is_header_only(self) -> bool {
        matches!(
            self,
            TarKind::Hardlink
                | TarKind::Symlink
                | TarKind::Char
                | TarKind::Block
                | TarKind::Directory
                | TarKind::Fifo
        )
    }
}

/// A timestamp: seconds since the epoch and nanoseconds (always `< 1_000_000_000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TarTime {
    /// Seconds since 1970-01-01T00:00:00Z (may be negative).
    pub secs: i64,
    /// Nanoseconds to add.
    pub nanos: u32,
}

/// The data regions of a sparse file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SparseMap {
    /// The logical (expanded) size of the file.
    pub real_size: u64,
    /// Data regions in stream order (ascending, not overlapping); everything else is a hole.
    pub regions: Vec<SparseRegion>,
}

impl SparseMap {
    /// Sum of the regions' lengths (saturating): the packed data size in the archive.
    pub fn packed_size(&self) -> u64 {
        self.regions
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.len))
    }

    /// Checks Go's (and BSD tar's) rules: regions ascending, not overlapping, within
    /// `real_size`, no overflow.
    pub fn validate(&self) -> Result<(), String> {
        let mut prev_end = 0u64;
        for r in &self.regions {
            let end = r
                .offset
                .checked_add(r.len)
                .ok_or_else(|| format!("sparse region {}+{} overflows", r.offset, r.len))?;
            if end > self.real_size {
                return Err(format!(
                    "sparse region {}+{} extends beyond the real size {}",
                    r.offset, r.len, self.real_size
                ));
            }
            if r.offset < prev_end {
                return Err(format!(
                    "sparse region at {} overlaps or is out of order",
                    r.offset
                ));
            }
            prev_end = end;
        }
        Ok(())
    }
}

/// One data region of a sparse file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SparseRegion {
    /// Offset in the logical file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// One logical tar entry, after PAX and GNU extensions are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarHeader {
    /// Full path bytes as in the archive (PAX `path`, GNU long name, GNU sparse name applied).
    pub name: Vec<u8>,
    /// Link target (PAX `linkpath` / GNU long link applied).
    pub link_name: Vec<u8>,
    /// Entry kind.
    pub kind: TarKind,
    /// The raw type flag of the header block.
    pub type_flag: u8,
    /// Permission bits plus setuid/setgid/sticky (masked to `0o7777`).
    pub mode: u32,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Owner name.
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
    /// Modification time.
    pub mtime: TarTime,
    /// Access time, when the archive has one.
    pub atime: Option<TarTime>,
    /// Status change time, when the archive has one.
    pub ctime: Option<TarTime>,
    /// Bytes that [`Disassembler::read_content`](crate::Disassembler::read_content) yields
    /// (for sparse files: the packed data only; 0 for header-only kinds).
    pub size: u64,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Extended attributes from PAX `SCHILY.xattr.<name>` (and `LIBARCHIVE.xattr.<name>`,
    /// decoded), names without the prefix, in record order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every PAX record in force for this entry, in order: global ones first, then local ones.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// The sparse map of a sparse file.
    pub sparse: Option<SparseMap>,
}

/// Caps on extension data, against memory exhaustion by crafted archives (the class of Go's
/// CVE-2022-2879 and CVE-2025-58183).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest PAX extended header data (`x` or `g`), and largest GNU sparse 1.0 map, in bytes.
    pub max_pax_size: u64,
    /// Largest GNU long name or long link data, in bytes.
    pub max_long_name: u64,
    /// Most regions in one sparse map.
    pub max_sparse_regions: usize,
}

impl Default for Limits {
    /// 1 MiB for PAX data and long names (Go's `maxSpecialFileSize`), 65,536 sparse regions.
    fn default() -> Self {
        Limits {
            max_pax_size: 1 << 20,
            max_long_name: 1 << 20,
            max_sparse_regions: 1 << 16,
        }
    }
}

/// Which header layout a block uses (Go's `getFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    V7,
    /// `ustar\0` magic: USTAR or PAX.
    Ustar,
    /// `ustar\0` magic with the `tar\0` trailer.
    Star,
    /// `ustar ` magic with ` \0` version.
    Gnu,
}

/// The fields of one header block, as Go's `readHeader` reads them.
#[derive(Debug, Clone)]
pub(crate) struct RawHeader {
    pub(crate) format: Format,
    pub(crate) type_flag: u8,
    pub(crate) name: Vec<u8>,
    pub(crate) link_name: Vec<u8>,
    pub(crate) size: i64,
    pub(crate) mode: i64,
    pub(crate) uid: i64,
    pub(crate) gid: i64,
    pub(crate) mtime: i64,
    pub(crate) uname: Vec<u8>,
    pub(crate) gname: Vec<u8>,
    pub(crate) dev_major: i64,
    pub(crate) dev_minor: i64,
    pub(crate) atime: Option<i64>,
    pub(crate) ctime: Option<i64>,
}

/// Bytes up to the first NUL.
pub(crate) fn c_string(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

fn trim_nul_space(mut b: &[u8]) -> &[u8] {
    while let [b' ' | 0, rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | 0] = b {
        b = rest;
    }
    b
}

/// Go's `parseOctal`.
fn parse_octal(b: &[u8]) -> Option<i64> {
    let b = trim_nul_space(b);
    if b.is_empty() {
        return Some(0);
    }
    let digits = c_string(b);
    if digits.is_empty() {
        return None;
    }
    let mut x: u64 = 0;
    for &c in digits {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        x = x.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
    }
    // Go converts the uint64 to int64 and lets it wrap; callers reject negatives.
    Some(x as i64)
}

/// Go's `parseNumeric`: base-256 when the high bit of the first byte is set, else octal.
pub(crate) fn parse_numeric(b: &[u8]) -> Option<i64> {
    if let Some(&first) = b.first()
        && first & 0x80 != 0
    {
        let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return None;
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 > 0 {
            return None;
        }
        let v = x as i64;
        return Some(if inv == 0xff { !v } else { v });
    }
    parse_octal(b)
}

/// Unsigned and signed header checksums (the checksum field counted as spaces).
fn checksums(block: &[u8; BLOCK]) -> (i64, i64) {
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &c) in block.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    (unsigned, signed)
}

/// Whether a block is all zeros (an end-of-archive marker).
pub(crate) fn is_zero_block(block: &[u8; BLOCK]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Parses one header block the way Go's `readHeader` does. `offset` is for messages.
pub(crate) fn parse_header_block(block: &[u8; BLOCK], offset: u64) -> Result<RawHeader, Error> {
    let bad = |what: &str| Error::header(offset, format!("invalid {what} field"));
    let stored = parse_octal(&block[148..156]).ok_or_else(|| bad("checksum"))?;
    let (unsigned, signed) = checksums(block);
    if stored != unsigned && stored != signed {
        return Err(Error::header(
            offset,
            format!("checksum mismatch: header says {stored}, block sums to {unsigned}"),
        ));
    }
    let magic = &block[257..263];
    let version = &block[263..265];
    let format = if magic == b"ustar\0" && &block[508..512] == b"tar\0" {
        Format::Star
    } else if magic == b"ustar\0" {
        Format::Ustar
    } else if magic == b"ustar " && version == b" \0" {
        Format::Gnu
    } else {
        Format::V7
    };
    let num = |range: std::ops::Range<usize>, what: &str| {
        parse_numeric(&block[range]).ok_or_else(|| bad(what))
    };
    let mut h = RawHeader {
        format,
        type_flag: block[156],
        name: c_string(&block[0..100]).to_vec(),
        link_name: c_string(&block[157..257]).to_vec(),
        size: num(124..136, "size")?,
        mode: num(100..108, "mode")?,
        uid: num(108..116, "uid")?,
        gid: num(116..124, "gid")?,
        mtime: num(136..148, "mtime")?,
        uname: Vec::new(),
        gname: Vec::new(),
        dev_major: 0,
        dev_minor: 0,
        atime: None,
        ctime: None,
    };
    if format != Format::V7 {
        h.uname = c_string(&block[265..297]).to_vec();
        h.gname = c_string(&block[297..329]).to_vec();
        h.dev_major = num(329..337, "devmajor")?;
        h.dev_minor = num(337..345, "devminor")?;
        let prefix: &[u8] = match format {
            Format::Ustar => c_string(&block[345..500]),
            Format::Star => {
                h.atime = Some(num(476..488, "atime")?);
                h.ctime = Some(num(488..500, "ctime")?);
                c_string(&block[345..476])
            }
            Format::Gnu => {
                let atime = (block[345] != 0).then(|| parse_numeric(&block[345..357]));
                let ctime = (block[357] != 0).then(|| parse_numeric(&block[357..369]));
                if matches!(atime, Some(None)) || matches!(ctime, Some(None)) {
                    // Go's fallback for pre-Go1.8 writers that put a USTAR prefix here.
                    let p = c_string(&block[345..500]);
                    if p.is_ascii() { p } else { &[] }
                } else {
                    h.atime = atime.flatten();
                    h.ctime = ctime.flatten();
                    &[]
                }
            }
            Format::V7 => &[],
        };
        if !prefix.is_empty() {
            let mut name = Vec::with_capacity(prefix.len() + 1 + h.name.len());
            name.extend_from_slice(prefix);
            name.push(b'/');
            name.extend_from_slice(&h.name);
            h.name = name;
        }
    }
    Ok(h)
}

/// PAX records as (key, value) pairs, in order.
pub(crate) type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Parses PAX extended header data into records, in order, with Go's validation.
pub(crate) fn parse_pax_records(mut data: &[u8], offset: u64) -> Result<Records, Error> {
    let bad = |why: &str| Error::header(offset, format!("invalid PAX record: {why}"));
    let mut records = Vec::new();
    let mut sparse_pairs = 0usize;
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("no length"))?;
        let len_str = std::str::from_utf8(&data[..sp]).map_err(|_| bad("bad length"))?;
        let n: usize = len_str.parse().map_err(|_| bad("bad length"))?;
        if n < 5 || n > data.len() || n <= sp + 1 {
            return Err(bad("length out of range"));
        }
        let record = &data[sp + 1..n];
        let Some((&b'\n', rec)) = record.split_last() else {
            return Err(bad("missing newline"));
        };
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("no '='"))?;
        let (key, value) = (&rec[..eq], &rec[eq + 1..]);
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        let nul_checked: &[u8] = match key {
            b"path" | b"linkpath" | b"uname" | b"gname" => value,
            _ => key,
        };
        if nul_checked.contains(&0) {
            return Err(bad("NUL byte"));
        }
        if key == b"GNU.sparse.offset" || key == b"GNU.sparse.numbytes" {
            let want_offset = sparse_pairs.is_multiple_of(2);
            if want_offset != (key == b"GNU.sparse.offset") || value.contains(&b',') {
                return Err(bad("GNU sparse 0.0 records out of order"));
            }
            sparse_pairs += 1;
        }
        records.push((key.to_vec(), value.to_vec()));
        data = &data[n..];
    }
    Ok(records)
}

/// The last value of `key` among `records` (later records override earlier ones, as in Go's map).
pub(crate) fn pax_get<'a>(records: &'a [(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<&'a [u8]> {
    records
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

/// Go's `strconv.ParseInt(s, 10, 64)`.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse::<i64>().ok()
}

/// Go's `parsePAXTime`.
pub(crate) fn parse_pax_time(s: &[u8]) -> Option<TarTime> {
    let (secs_part, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let secs = parse_decimal(secs_part)?;
    let Some(frac) = frac.filter(|f| !f.is_empty()) else {
        return Some(TarTime { secs, nanos: 0 });
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    if secs_part.first() == Some(&b'-') && nanos > 0 {
        Some(TarTime {
            secs: secs.checked_sub(1)?,
            nanos: 1_000_000_000 - nanos,
        })
    } else {
        Some(TarTime { secs, nanos })
    }
}

/// Decodes `%XX` escapes (libarchive's xattr name encoding).
pub(crate) fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Offsets of the old GNU sparse fields.
pub(crate) const GNU_SPARSE_OFFSET: usize = 386;
pub(crate) const GNU_SPARSE_ENTRIES: usize = 4;
pub(crate) const GNU_ISEXTENDED: usize = 482;
pub(crate) const GNU_REALSIZE: std::ops::Range<usize> = 483..495;
pub(crate) const GNU_EXT_ENTRIES: usize = 21;
pub(crate) const GNU_EXT_ISEXTENDED: usize = 504;

/// Appends the sparse entries of an old-GNU sparse area (`count` entries of 24 bytes from
/// `start`) to `regions`. Stops at the first entry whose offset starts with NUL (GNU and BSD
/// tar's rule).
pub(crate) fn parse_gnu_sparse_entries(
    block: &[u8; BLOCK],
    start: usize,
    count: usize,
    regions: &mut Vec<(i64, i64)>,
) -> Option<()> {
    for i in 0..count {
        let at = start + i * 24;
        if block[at] == 0 {
            break;
        }
        let offset = parse_numeric(&block[at..at + 12])?;
        let len = parse_numeric(&block[at + 12..at + 24])?;
        regions.push((offset, len));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_octal_and_base256() {
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b"  644 \0"), Some(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_numeric(b"12\x0034"), Some(0o12));
        assert_eq!(parse_numeric(b"0008"), None);
        assert_eq!(
            parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00]),
            Some(256)
        );
        assert_eq!(parse_numeric(&[0xff; 8]), Some(-1));
        assert_eq!(
            parse_numeric(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1795817672.332171549"),
            Some(TarTime {
                secs: 1795817672,
                nanos: 332171549
            })
        );
        assert_eq!(
            parse_pax_time(b"5.1"),
            Some(TarTime {
                secs: 5,
                nanos: 100_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"-1.5"),
            Some(TarTime {
                secs: -2,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"7.1234567891"),
            Some(TarTime {
                secs: 7,
                nanos: 123456789
            })
        );
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b"1.2x"), None);
    }

    #[test]
    fn pax_records() {
        let r = parse_pax_records(b"30 mtime=1432668921.098285006\n8 a=b=c\n", 0).unwrap();
        assert_eq!(r[0], (b"mtime".to_vec(), b"1432668921.098285006".to_vec()));
        assert_eq!(r[1], (b"a".to_vec(), b"b=c".to_vec()));
        for bad in [
            &b"3 a=b\n"[..],
            b"9 a=b\n",
            b"6 a=b\0",
            b"6 =bb\n",
            b"x a=b\n",
            b"11 path=a\0\n",
        ] {
            assert!(
                parse_pax_records(bad, 0).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn sparse_map_validation() {
        let ok = SparseMap {
            real_size: 10,
            regions: vec![
                SparseRegion { offset: 0, len: 2 },
                SparseRegion { offset: 5, len: 5 },
            ],
        };
        assert!(ok.validate().is_ok());
        let overlap = SparseMap {
            real_size: 10,
            regions: vec![
                SparseRegion { offset: 3, len: 2 },
                SparseRegion { offset: 4, len: 1 },
            ],
        };
        assert!(overlap.validate().is_err());
        let beyond = SparseMap {
            real_size: 4,
            regions: vec![SparseRegion { offset: 3, len: 2 }],
        };
        assert!(beyond.validate().is_err());
    }
}
