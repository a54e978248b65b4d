//! Reading headers: the next entry's header with the extension headers before it (PAX,
//! GNU long names, global records) and the sparse maps of both formats, recorded as read.

use std::io::Read;

use data_encoding::{BASE64, BASE64_NOPAD};

use super::{CurrentFile, Disassembler, MAX_EXTENSION_HEADERS, MAX_GLOBAL_RECORDS, State, padding};
use crate::entry::{Entry, EntrySink};
use crate::error::{Error, lossy};
use crate::tar::{
    BLOCK, Format, GNU_EXT_ENTRIES, GNU_EXT_ISEXTENDED, GNU_ISEXTENDED, GNU_REALSIZE,
    GNU_SPARSE_ENTRIES, GNU_SPARSE_OFFSET, RawHeader, Records, SparseMap, SparseRegion, TarHeader,
    TarKind, TarTime, c_string, is_zero_block, parse_decimal, parse_gnu_sparse_entries,
    parse_header_block, parse_numeric, parse_pax_records, parse_pax_time, pax_get, percent_decode,
};

impl<R: Read, S: EntrySink> Disassembler<R, S> {
    /// The next entry's header, after recording the raw bytes before it as a segment.
    /// Unread content of the previous entry is skipped (and checksummed) first.
    /// `Ok(None)` at the end of the archive (two zero blocks, or EOF at a header boundary,
    /// which Go accepts too); call [`finish`](Self::finish) then.
    pub fn next_header(&mut self) -> Result<Option<TarHeader>, Error> {
        match self.state {
            State::Content => self.skip_content()?,
            State::Headers => {}
            State::End | State::Trailing | State::Finished => return Ok(None),
        }
        let mut local_pax: Option<Records> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut extensions = 0u32;
        loop {
            if self.pad > 0 {
                let pad = std::mem::take(&mut self.pad);
                self.read_raw_exact(pad, "padding")?;
            }
            let offset = self.offset;
            let Some(block) = self.read_block("a header")? else {
                self.state = State::End;
                return Ok(None);
            };
            if is_zero_block(&block) {
                match self.read_block("the end-of-archive marker")? {
                    Some(second) if !is_zero_block(&second) => {
                        return Err(Error::header(
                            offset + BLOCK as u64,
                            "a zero block followed by a non-zero block",
                        ));
                    }
                    _ => {}
                }
                self.state = State::End;
                return Ok(None);
            }
            let raw = parse_header_block(&block, offset)?;
            let size = u64::try_from(raw.size)
                .map_err(|_| Error::header(offset, format!("negative size {}", raw.size)))?;
            match raw.type_flag {
                b'x' | b'g' | b'L' | b'K' => {
                    extensions += 1;
                    if extensions > MAX_EXTENSION_HEADERS {
                        return Err(Error::Limit {
                            offset,
                            what: "run of extension headers",
                            size: u64::from(extensions),
                            limit: u64::from(MAX_EXTENSION_HEADERS),
                        });
                    }
                    let (limit, what) = if matches!(raw.type_flag, b'x' | b'g') {
                        (self.limits.max_pax_size, "PAX extended header")
                    } else {
                        (self.limits.max_long_name, "GNU long name")
                    };
                    if size > limit {
                        return Err(Error::Limit {
                            offset,
                            what,
                            size,
                            limit,
                        });
                    }
                    let start = self.raw.len();
                    self.read_raw_exact(size, what)?;
                    self.pad = padding(size);
                    let data = &self.raw[start..];
                    match raw.type_flag {
                        b'x' => local_pax = Some(parse_pax_records(data, offset)?),
                        b'L' => long_name = Some(c_string(data).to_vec()),
                        b'K' => long_link = Some(c_string(data).to_vec()),
                        _ => {
                            let records = parse_pax_records(data, offset)?;
                            self.global_header(raw, records, offset)?;
                            local_pax = None;
                            long_name = None;
                            long_link = None;
                            extensions = 0;
                        }
                    }
                }
                _ => {
                    return self
                        .entry_header(raw, &block, offset, local_pax, long_name, long_link)
                        .map(Some);
                }
            }
        }
    }

    /// Go returns a global PAX header as an entry of its own: tar-split records it as a
    /// segment and a size-0 file entry. Its records apply to the `pax` list of later entries.
    fn global_header(
        &mut self,
        raw: RawHeader,
        records: Records,
        offset: u64,
    ) -> Result<(), Error> {
        let mut name = raw.name;
        if let Some(path) = pax_get(&records, b"path").filter(|p| !p.is_empty()) {
            name = path.to_vec();
        }
        self.flush_segment()?;
        self.put(Entry::file(name, 0, None))?;
        for (k, v) in records {
            self.globals.retain(|(gk, _)| *gk != k);
            self.globals.push((k, v));
        }
        let total: u64 = self
            .globals
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        let limit = self.limits.max_pax_size.min(MAX_GLOBAL_RECORDS);
        if total > limit {
            return Err(Error::Limit {
                offset,
                what: "accumulated global PAX records",
                size: total,
                limit,
            });
        }
        Ok(())
    }

    fn entry_header(
        &mut self,
        raw: RawHeader,
        block: &[u8; BLOCK],
        offset: u64,
        local_pax: Option<Records>,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<TarHeader, Error> {
        let bad = |why: String| Error::header(offset, why);
        let non_negative = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| Error::header(offset, format!("negative {what} {v}")))
        };
        let device = |v: i64, what: &str| {
            u32::try_from(v).map_err(|_| Error::header(offset, format!("{what} {v} out of range")))
        };
        let mut h = TarHeader {
            name: raw.name,
            link_name: raw.link_name,
            kind: TarKind::Regular,
            type_flag: raw.type_flag,
            mode: (raw.mode & 0o7777) as u32,
            uid: non_negative(raw.uid, "uid")?,
            gid: non_negative(raw.gid, "gid")?,
            uname: raw.uname,
            gname: raw.gname,
            mtime: TarTime {
                secs: raw.mtime,
                nanos: 0,
            },
            atime: raw.atime.map(|secs| TarTime { secs, nanos: 0 }),
            ctime: raw.ctime.map(|secs| TarTime { secs, nanos: 0 }),
            size: 0,
            dev_major: device(raw.dev_major, "device major")?,
            dev_minor: device(raw.dev_minor, "device minor")?,
            xattrs: Vec::new(),
            pax: self.globals.clone(),
            sparse: None,
        };
        let mut size = raw.size;
        let local = local_pax.unwrap_or_default();
        for (key, value) in &local {
            if value.is_empty() && !key.starts_with(b"SCHILY.xattr.") {
                continue; // Go keeps the USTAR value
            }
            let number = |what: &str| {
                parse_decimal(value)
                    .ok_or_else(|| bad(format!("invalid PAX {what} {:?}", lossy(value))))
            };
            let time = |what: &str| {
                parse_pax_time(value)
                    .ok_or_else(|| bad(format!("invalid PAX {what} {:?}", lossy(value))))
            };
            match key.as_slice() {
                b"path" => h.name = value.clone(),
                b"linkpath" => h.link_name = value.clone(),
                b"uname" => h.uname = value.clone(),
                b"gname" => h.gname = value.clone(),
                b"uid" => h.uid = non_negative(number("uid")?, "uid")?,
                b"gid" => h.gid = non_negative(number("gid")?, "gid")?,
                b"mtime" => h.mtime = time("mtime")?,
                b"atime" => h.atime = Some(time("atime")?),
                b"ctime" => h.ctime = Some(time("ctime")?),
                b"size" => size = number("size")?,
                k => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        set_xattr(&mut h.xattrs, name.to_vec(), value.clone());
                    } else if let Some(name) = k.strip_prefix(b"LIBARCHIVE.xattr.") {
                        let name = percent_decode(name).ok_or_else(|| {
                            bad(format!("invalid LIBARCHIVE.xattr name {:?}", lossy(name)))
                        })?;
                        let value = BASE64
                            .decode(value)
                            .or_else(|_| BASE64_NOPAD.decode(value))
                            .map_err(|_| {
                                bad(format!(
                                    "invalid LIBARCHIVE.xattr value for {:?}",
                                    lossy(&name)
                                ))
                            })?;
                        set_xattr(&mut h.xattrs, name, value);
                    }
                }
            }
        }
        if let Some(name) = long_name.filter(|n| !n.is_empty()) {
            h.name = name;
        }
        if let Some(link) = long_link.filter(|n| !n.is_empty()) {
            h.link_name = link;
        }
        h.kind = TarKind::from_flag(raw.type_flag, &h.name);
        let size = u64::try_from(size).map_err(|_| bad(format!("negative size {size}")))?;
        // What the stream holds after this header; the size we skip is the size we record.
        let physical = if h.kind.is_header_only() { 0 } else { size };
        self.pad = padding(physical);
        let mut data = physical;

        let sparse = if raw.type_flag == b'S' {
            if raw.format != Format::Gnu {
                return Err(bad("GNU sparse header in a non-GNU header block".into()));
            }
            Some(self.old_gnu_sparse_map(block, offset)?)
        } else {
            self.pax_sparse_map(&local, &mut h, size, &mut data, offset)?
        };
        if let Some(map) = &sparse {
            if h.kind.is_header_only() {
                return Err(bad("sparse map on an entry that has no content".into()));
            }
            if map.regions.len() > self.limits.max_sparse_regions {
                return Err(Error::Limit {
                    offset,
                    what: "sparse map",
                    size: map.regions.len() as u64,
                    limit: self.limits.max_sparse_regions as u64,
                });
            }
            map.validate().map_err(bad)?;
            if map.packed_size() != data {
                return Err(bad(format!(
                    "sparse regions hold {} bytes but the entry has {data}",
                    map.packed_size()
                )));
            }
        }
        h.size = data;
        h.pax.extend(local);
        h.sparse = sparse.clone();

        self.flush_segment()?;
        self.current = Some(CurrentFile {
            name: h.name.clone(),
            size: data,
            sparse,
        });
        self.remaining = data;
        if data == 0 {
            self.finish_content()?;
        } else {
            self.state = State::Content;
        }
        Ok(h)
    }

    /// Reads an old GNU sparse map: entries in the header, then extension blocks (recorded raw).
    fn old_gnu_sparse_map(&mut self, block: &[u8; BLOCK], offset: u64) -> Result<SparseMap, Error> {
        let bad = |why: &str| Error::header(offset, format!("invalid GNU sparse header: {why}"));
        let real_size = parse_numeric(&block[GNU_REALSIZE])
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| bad("real size"))?;
        let mut pairs = Vec::new();
        parse_gnu_sparse_entries(block, GNU_SPARSE_OFFSET, GNU_SPARSE_ENTRIES, &mut pairs)
            .ok_or_else(|| bad("sparse entry"))?;
        let mut extended = block[GNU_ISEXTENDED] != 0;
        while extended {
            if pairs.len() > self.limits.max_sparse_regions {
                return Err(Error::Limit {
                    offset,
                    what: "sparse map",
                    size: pairs.len() as u64,
                    limit: self.limits.max_sparse_regions as u64,
                });
            }
            let Some(ext) = self.read_block("a GNU sparse extension block")? else {
                return Err(Error::Truncated {
                    offset: self.offset,
                    what: "a GNU sparse extension block".into(),
                });
            };
            parse_gnu_sparse_entries(&ext, 0, GNU_EXT_ENTRIES, &mut pairs)
                .ok_or_else(|| bad("sparse extension entry"))?;
            extended = ext[GNU_EXT_ISEXTENDED] != 0;
        }
        to_sparse_map(real_size, &pairs).ok_or_else(|| bad("negative sparse entry"))
    }

    /// Detects a PAX GNU sparse file (formats 0.0, 0.1, 1.0, as Go does) and reads its map.
    /// For 1.0 the map sits at the start of the content: it is read into the segment and
    /// `data` is reduced accordingly.
    fn pax_sparse_map(
        &mut self,
        records: &[(Vec<u8>, Vec<u8>)],
        h: &mut TarHeader,
        size: u64,
        data: &mut u64,
        offset: u64,
    ) -> Result<Option<SparseMap>, Error> {
        let bad =
            |why: &str| Error::header(offset, format!("invalid GNU sparse PAX header: {why}"));
        let get = |k: &[u8]| pax_get(records, k).unwrap_or_default();
        let (major, minor) = (get(b"GNU.sparse.major"), get(b"GNU.sparse.minor"));
        let has_00_records = records.iter().any(|(k, _)| k == b"GNU.sparse.offset");
        let is_1x0 = match (major, minor) {
            (b"0", b"0" | b"1") => false,
            (b"1", b"0") => true,
            (a, b) if !a.is_empty() || !b.is_empty() => return Ok(None),
            _ if !get(b"GNU.sparse.map").is_empty() || has_00_records => false,
            _ => return Ok(None),
        };
        if !get(b"GNU.sparse.name").is_empty() {
            h.name = get(b"GNU.sparse.name").to_vec();
        }
        let mut real = get(b"GNU.sparse.size");
        if real.is_empty() {
            real = get(b"GNU.sparse.realsize");
        }
        let real_size = if real.is_empty() {
            size
        } else {
            parse_decimal(real)
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| bad("real size"))?
        };
        let max = self.limits.max_sparse_regions as u64;
        let limit = |n: u64| Error::Limit {
            offset,
            what: "sparse map",
            size: n,
            limit: max,
        };
        let mut pairs: Vec<(i64, i64)> = Vec::new();
        if is_1x0 {
            let map_start = self.raw.len();
            let mut newlines = 0u64;
            let mut needed = 1u64;
            let mut counted = false;
            let mut consumed = 0u64;
            while newlines < needed {
                if consumed + BLOCK as u64 > *data {
                    return Err(bad("sparse map runs past the entry's data"));
                }
                if consumed + BLOCK as u64 > self.limits.max_pax_size {
                    return Err(Error::Limit {
                        offset,
                        what: "GNU sparse 1.0 map",
                        size: consumed + BLOCK as u64,
                        limit: self.limits.max_pax_size,
                    });
                }
                self.read_raw_exact(BLOCK as u64, "a GNU sparse 1.0 map")?;
                consumed += BLOCK as u64;
                let block = &self.raw[self.raw.len() - BLOCK..];
                newlines += block.iter().filter(|&&b| b == b'\n').count() as u64;
                if !counted && newlines >= 1 {
                    counted = true;
                    let text = &self.raw[map_start..];
                    let first = &text[..text.iter().position(|&b| b == b'\n').unwrap_or(0)];
                    let n = parse_decimal(first)
                        .and_then(|v| u64::try_from(v).ok())
                        .ok_or_else(|| bad("entry count"))?;
                    if n > max {
                        return Err(limit(n));
                    }
                    needed = 1 + 2 * n;
                }
            }
            *data -= consumed;
            let text = &self.raw[map_start..];
            let mut tokens = text.split(|&b| b == b'\n').skip(1);
            let count = (needed - 1) / 2;
            for _ in 0..count {
                let mut next = || {
                    tokens
                        .next()
                        .and_then(parse_decimal)
                        .ok_or_else(|| bad("map entry"))
                };
                let off = next()?;
                let len = next()?;
                pairs.push((off, len));
            }
        } else {
            let count = parse_decimal(get(b"GNU.sparse.numblocks"))
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| bad("numblocks"))?;
            if count > max {
                return Err(limit(count));
            }
            let values: Vec<&[u8]> = if has_00_records {
                records
                    .iter()
                    .filter(|(k, _)| k == b"GNU.sparse.offset" || k == b"GNU.sparse.numbytes")
                    .map(|(_, v)| v.as_slice())
                    .collect()
            } else {
                let map = get(b"GNU.sparse.map");
                if map.is_empty() {
                    Vec::new()
                } else {
                    map.split(|&b| b == b',').collect()
                }
            };
            if values.len() as u64 != 2 * count {
                return Err(bad("map length does not match numblocks"));
            }
            for pair in values.chunks_exact(2) {
                let off = parse_decimal(pair[0]).ok_or_else(|| bad("map offset"))?;
                let len = parse_decimal(pair[1]).ok_or_else(|| bad("map length"))?;
                pairs.push((off, len));
            }
        }
        to_sparse_map(real_size, &pairs)
            .map(Some)
            .ok_or_else(|| bad("negative map entry"))
    }
}

fn set_xattr(xattrs: &mut Vec<(Vec<u8>, Vec<u8>)>, name: Vec<u8>, value: Vec<u8>) {
    xattrs.retain(|(n, _)| *n != name);
    xattrs.push((name, value));
}

fn to_sparse_map(real_size: u64, pairs: &[(i64, i64)]) -> Option<SparseMap> {
    let regions = pairs
        .iter()
        .map(|&(o, l)| {
            Some(SparseRegion {
                offset: u64::try_from(o).ok()?,
                len: u64::try_from(l).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(SparseMap { real_size, regions })
}
