//! Bad input gives a clear error, never a panic and never a silently different stream:
//! truncated streams, bad checksums, lying sizes, oversized extensions, corrupt tar-split files.

use layerstore_tarsplit::{
    Entry, EntryKind, Error, Limits, MemoryFileGetter, TarKind, Unpacker, assemble, disassemble,
    read_tar_split_gz,
};
use layerstore_testsupport::go_fixtures;

/// A header block: `name`, type flag, size field text, USTAR or GNU magic; checksum set.
fn block(name: &[u8], flag: u8, size: &[u8], gnu: bool) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..name.len()].copy_from_slice(name);
    b[100..108].copy_from_slice(b"0000644\0");
    b[108..116].copy_from_slice(b"0000000\0");
    b[116..124].copy_from_slice(b"0000000\0");
    b[124..124 + size.len()].copy_from_slice(size);
    b[136..148].copy_from_slice(b"14524770400\0");
    b[156] = flag;
    if gnu {
        b[257..265].copy_from_slice(b"ustar  \0");
    } else {
        b[257..265].copy_from_slice(b"ustar\x0000");
    }
    set_checksum(&mut b);
    b
}

fn set_checksum(b: &mut [u8]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn octal(n: u64) -> Vec<u8> {
    format!("{n:011o}\0").into_bytes()
}

fn padded(mut data: Vec<u8>) -> Vec<u8> {
    data.resize(data.len().div_ceil(512) * 512, 0);
    data
}

fn pax_data(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    out
}

fn end() -> Vec<u8> {
    vec![0u8; 1024]
}

fn basic() -> Vec<u8> {
    std::fs::read(go_fixtures().join("tars/basic.tar")).unwrap()
}

#[test]
fn truncated_streams_are_errors_never_panics() {
    let tarball = basic();
    // Anywhere: an error or (at an entry boundary, as Go) a shorter archive; never a panic.
    for cut in (1..tarball.len()).step_by(97) {
        match disassemble(&tarball[..cut], Vec::new()) {
            Ok(_) | Err(Error::Truncated { .. }) | Err(Error::Header { .. }) => {}
            Err(other) => panic!("cut at {cut}: unexpected {other}"),
        }
    }
    // Inside a header.
    let err = disassemble(&tarball[..700], Vec::new()).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { offset: 700, ref what } if what == "a header"),
        "{err}"
    );
    // Inside the 100,000 bytes of ./usr/bin/tool (they end 352 + 1024 + 5120 bytes before EOF).
    let content_end = tarball.len() - 352 - 1024 - 5120;
    let err = disassemble(&tarball[..content_end - 40_000], Vec::new()).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { ref what, .. } if what.contains("./usr/bin/tool")),
        "{err}"
    );
    // Inside the padding after it.
    let err = disassemble(&tarball[..content_end + 10], Vec::new()).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { ref what, .. } if what == "padding"),
        "{err}"
    );
}

#[test]
fn bad_header_checksum_is_an_error() {
    let mut tarball = basic();
    tarball[512 + 5] ^= 0x20; // a letter of the second header's name
    let err = disassemble(&tarball[..], Vec::new()).unwrap_err();
    assert!(matches!(err, Error::Header { offset: 512, .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn signed_checksums_are_accepted() {
    // Old tars summed bytes as signed chars: a name with high bytes makes the difference.
    let mut b = block(b"caf\xe9", b'0', &octal(0), false);
    b[148..156].copy_from_slice(b"        ");
    let sum: i32 = b.iter().map(|&c| i32::from(c as i8)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let stream = [b, end()].concat();
    let entries = disassemble(&stream[..], Vec::new()).unwrap();
    assert_eq!(entries[1].name.as_deref(), Some(&b"caf\xe9"[..]));
}

#[test]
fn lying_sizes_are_errors() {
    // A size past the end of the stream.
    let stream = [block(b"big", b'0', &octal(10_000), false), vec![1; 512]].concat();
    let err = disassemble(&stream[..], Vec::new()).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { ref what, .. } if what.contains("\"big\"")),
        "{err}"
    );
    // A size that is not a number.
    let stream = [block(b"bad", b'0', b"12x4\0", false), end()].concat();
    let err = disassemble(&stream[..], Vec::new()).unwrap_err();
    assert!(matches!(err, Error::Header { offset: 0, .. }), "{err}");
    assert!(err.to_string().contains("size"), "{err}");
    // A negative PAX size.
    let pax = pax_data(&[("size", "-5")]);
    let stream = [
        block(b"pax", b'x', &octal(pax.len() as u64), false),
        padded(pax),
        block(b"f", b'0', &octal(0), false),
        end(),
    ]
    .concat();
    let err = disassemble(&stream[..], Vec::new()).unwrap_err();
    assert!(err.to_string().contains("negative size"), "{err}");
}

/// TARmageddon: the PAX size overrides the USTAR one for both the bytes skipped and the size
/// recorded, so what follows is parsed (and recorded) as a header, as every reader that
/// follows POSIX sees it, and the stream still assembles byte for byte.
#[test]
fn pax_size_wins_consistently() {
    let smuggled = block(b"smuggled", b'0', &octal(3), false);
    let pax = pax_data(&[("size", "0")]);
    let stream = [
        block(b"pax", b'x', &octal(pax.len() as u64), false),
        padded(pax),
        block(b"outer", b'0', &octal(1024), false),
        smuggled,
        padded(b"abc".to_vec()),
        end(),
    ]
    .concat();
    let mut d = layerstore_tarsplit::Disassembler::new(&stream[..], Vec::new());
    let outer = d.next_header().unwrap().unwrap();
    assert_eq!((outer.name.as_slice(), outer.size), (&b"outer"[..], 0));
    let inner = d.next_header().unwrap().unwrap();
    assert_eq!((inner.name.as_slice(), inner.size), (&b"smuggled"[..], 3));
    assert!(d.next_header().unwrap().is_none());
    let (_, entries) = d.finish().unwrap();
    let files: Vec<(&[u8], u64)> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| (e.name_bytes(), e.size))
        .collect();
    assert_eq!(files, [(&b"outer"[..], 0), (&b"smuggled"[..], 3)]);
    let mut getter = MemoryFileGetter::new();
    getter.insert(b"smuggled", b"abc".to_vec());
    let mut out = Vec::new();
    assemble(entries.into_iter().map(Ok), &getter, &mut out).unwrap();
    assert_eq!(out, stream);
}

#[test]
fn header_only_types_have_no_content_whatever_their_size() {
    // A hard link claiming 512 bytes: Go (and we) read none; the next block is a header.
    let stream = [
        block(b"link", b'1', &octal(512), false),
        block(b"f", b'0', &octal(0), false),
        end(),
    ]
    .concat();
    let entries = disassemble(&stream[..], Vec::new()).unwrap();
    let files: Vec<(&[u8], u64)> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| (e.name_bytes(), e.size))
        .collect();
    assert_eq!(files, [(&b"link"[..], 0), (&b"f"[..], 0)]);
}

#[test]
fn extension_limits_are_enforced_before_reading() {
    // A PAX header declaring 2 MiB (the data is not even there: the limit comes first).
    let stream = [block(b"pax", b'x', &octal(2 << 20), false), end()].concat();
    let err = disassemble(&stream[..], Vec::new()).unwrap_err();
    assert!(
        matches!(err, Error::Limit { offset: 0, size, limit, .. } if size == 2 << 20 && limit == 1 << 20),
        "{err}"
    );
    // A GNU long name over a custom limit.
    let name = vec![b'n'; 300];
    let stream = [
        block(b"././@LongLink", b'L', &octal(301), true),
        padded([name.clone(), vec![0]].concat()),
        block(b"short", b'0', &octal(0), true),
        end(),
    ]
    .concat();
    let limits = Limits {
        max_long_name: 256,
        ..Limits::default()
    };
    let mut d = layerstore_tarsplit::Disassembler::with_limits(&stream[..], Vec::new(), limits);
    let err = d.next_header().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                what: "GNU long name",
                ..
            }
        ),
        "{err}"
    );
    // Within the default limit the long name applies.
    let entries = disassemble(&stream[..], Vec::new()).unwrap();
    assert_eq!(entries[1].name.as_deref(), Some(name.as_slice()));
    // A run of 17 extension headers.
    let mut stream = Vec::new();
    for _ in 0..17 {
        stream.extend(block(b"././@LongLink", b'L', &octal(2), true));
        stream.extend(padded(b"a\0".to_vec()));
    }
    stream.extend(block(b"short", b'0', &octal(0), true));
    stream.extend(end());
    let err = disassemble(&stream[..], Vec::new()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                what: "run of extension headers",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn sparse_limits_and_consistency() {
    let sparse_gnu = std::fs::read(go_fixtures().join("tars/sparse-gnu.tar")).unwrap();
    let limits = Limits {
        max_sparse_regions: 1,
        ..Limits::default()
    };
    let mut d = layerstore_tarsplit::Disassembler::with_limits(&sparse_gnu[..], Vec::new(), limits);
    d.next_header().unwrap();
    let err = d.next_header().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                what: "sparse map",
                ..
            }
        ),
        "{err}"
    );

    // Regions that do not add up to the data in the stream.
    let mut bad = sparse_gnu.clone();
    let h = &mut bad[512..1024];
    h[398..409].copy_from_slice(b"00000020000"); // first region's length: 8192, data is 4096
    set_checksum(h);
    let err = disassemble(&bad[..], Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains("sparse regions hold 8192 bytes"),
        "{err}"
    );

    // An old-GNU sparse type in a USTAR header.
    let stream = [block(b"s", b'S', &octal(0), false), end()].concat();
    let err = disassemble(&stream[..], Vec::new()).unwrap_err();
    assert!(err.to_string().contains("non-GNU"), "{err}");
}

#[test]
fn sparse_gnu_header_reports_the_map() {
    let sparse_gnu = std::fs::read(go_fixtures().join("tars/sparse-gnu.tar")).unwrap();
    let mut d = layerstore_tarsplit::Disassembler::new(&sparse_gnu[..], Vec::new());
    d.next_header().unwrap();
    let h = d.next_header().unwrap().unwrap();
    assert_eq!(h.kind, TarKind::Regular);
    assert_eq!(h.size, 4096);
    let map = h.sparse.unwrap();
    assert_eq!(map.real_size, 4_194_304);
    assert_eq!(
        map.regions
            .iter()
            .map(|r| (r.offset, r.len))
            .collect::<Vec<_>>(),
        [(1_998_848, 4096), (4_194_304, 0)]
    );
}

#[test]
fn zero_block_then_garbage_is_an_error() {
    let stream = [
        block(b"f", b'0', &octal(0), false),
        vec![0; 512],
        vec![1; 512],
    ]
    .concat();
    let err = disassemble(&stream[..], Vec::new()).unwrap_err();
    assert!(matches!(err, Error::Header { offset: 1024, .. }), "{err}");
}

#[test]
fn missing_end_blocks_are_accepted_as_go_does() {
    let stream = [block(b"f", b'0', &octal(0), false)].concat();
    let entries = disassemble(&stream[..], Vec::new()).unwrap();
    assert_eq!(entries.len(), 3); // segment, file, final empty segment
    assert_eq!(entries[2], {
        let mut e = Entry::segment(Vec::new());
        e.position = 2;
        e
    });
}

fn go_basic_lines() -> Vec<String> {
    let gz = std::fs::read(go_fixtures().join("tar-split/basic.tar-split.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    text.lines().map(str::to_string).collect()
}

fn assemble_lines(lines: &[String]) -> Result<u64, Error> {
    let text = lines.join("\n") + "\n";
    assemble(
        Unpacker::new(text.as_bytes()),
        &MemoryFileGetter::new(),
        std::io::sink(),
    )
}

#[test]
fn corrupt_tar_split_files_are_errors() {
    let good = go_basic_lines();
    // Bad JSON.
    let mut lines = good.clone();
    lines[4] = "{\"type\":2,\"payload\":".into();
    let err = assemble_lines(&lines).unwrap_err();
    assert!(matches!(err, Error::Json { line: 5, .. }), "{err}");
    // Bad base64.
    let mut lines = good.clone();
    lines[2] = lines[2].replacen("\"payload\":\"Li", "\"payload\":\"!i", 1);
    let err = assemble_lines(&lines).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Base64 {
                line: 3,
                field: "payload",
                ..
            }
        ),
        "{err}"
    );
    // Positions out of order.
    let mut lines = good.clone();
    lines.swap(2, 4);
    let err = assemble_lines(&lines).unwrap_err();
    assert!(err.to_string().contains("out of order"), "{err}");
    // Truncated gzip.
    let gz = std::fs::read(go_fixtures().join("tar-split/basic.tar-split.gz")).unwrap();
    let result: Result<Vec<Entry>, Error> = read_tar_split_gz(&gz[..gz.len() / 2]).collect();
    assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
    // Not gzip at all.
    let result: Result<Vec<Entry>, Error> = read_tar_split_gz(&b"plain text"[..]).collect();
    assert!(result.is_err());
}
