//! Property tests: random archives written by the `tar` crate (long and non-UTF-8 names, all
//! common types, PAX records, trailing bytes) go through disassembly and assembly byte for
//! byte; the pull API, the pass-through reader and the `tar` crate agree on every entry.

use std::io::Read;

use layerstore_tarsplit::{
    Disassembler, Entry, EntryKind, JsonLinesPacker, MemoryFileGetter, TarKind, TeeDisassembler,
    assemble, assemble_pipelined, disassemble, read_tar_split_gz,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    Hardlink,
    Fifo,
    Char(u32, u32),
}

#[derive(Debug, Clone)]
struct Spec {
    name: Vec<u8>,
    kind: Kind,
    gnu: bool,
    pax: Vec<(String, Vec<u8>)>,
    /// Carry the name in a PAX `path` record (and the size in `size` for files).
    pax_path: bool,
}

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Components of printable ASCII or arbitrary non-NUL, non-slash bytes; total length up to
    // ~300 so that both USTAR-sized and long names appear.
    let component = prop_oneof![
        "[a-zA-Z0-9._-]{1,40}".prop_map(String::into_bytes),
        proptest::collection::vec(1u8..=255, 1..30)
            .prop_map(|v| v.into_iter().filter(|&b| b != b'/').collect::<Vec<u8>>()),
    ]
    .prop_filter("a normal component", |v| {
        !v.is_empty() && v.as_slice() != b"." && v.as_slice() != b".."
    });
    proptest::collection::vec(component, 1..8).prop_map(|parts| parts.join(&b'/'))
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Kind::File),
        1 => Just(Kind::Dir),
        1 => name_strategy().prop_map(Kind::Symlink),
        1 => Just(Kind::Hardlink),
        1 => Just(Kind::Fifo),
        1 => (0u32..4096, 0u32..4096).prop_map(|(a, b)| Kind::Char(a, b)),
    ]
}

fn pax_strategy() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::vec(
        prop_oneof![
            ("[a-z]{1,8}", proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(k, v)| (format!("SCHILY.xattr.user.{k}"), v)),
            ("[A-Z][a-z]{1,8}", "[ -~]{0,60}")
                .prop_map(|(k, v)| (format!("LS.{k}"), v.into_bytes())),
            "[0-9]{1,10}\\.[0-9]{1,9}".prop_map(|v| ("mtime".to_string(), v.into_bytes())),
        ],
        0..4,
    )
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        name_strategy(),
        kind_strategy(),
        any::<bool>(),
        pax_strategy(),
        any::<bool>(),
    )
        .prop_map(|(name, kind, gnu, pax, pax_path)| Spec {
            name,
            kind,
            gnu,
            pax,
            pax_path,
        })
}

/// Builds an archive; names get a unique prefix (tar-split refuses duplicate paths).
fn build(specs: &[Spec], trailing: &[u8]) -> Vec<u8> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let mut b = tar::Builder::new(Vec::new());
    let mut first_file: Option<Vec<u8>> = None;
    for (i, spec) in specs.iter().enumerate() {
        if matches!(spec.kind, Kind::Hardlink) && first_file.is_none() {
            continue;
        }
        let mut name = format!("e{i}/").into_bytes();
        name.extend_from_slice(&spec.name);
        let real_name = name.clone();
        let mut pax: Vec<(String, Vec<u8>)> = spec.pax.clone();
        // The `tar` crate splits PAX records at newlines (Go and GNU tar use the length), so
        // it would not see a `path` holding one: keep such names in GNU long-name headers.
        if spec.pax_path && !name.contains(&b'\n') {
            // First, so that the `tar` crate reads them before any value with a newline.
            pax.insert(0, ("path".to_string(), name.clone()));
            if let Kind::File(data) = &spec.kind {
                pax.insert(1, ("size".to_string(), data.len().to_string().into_bytes()));
            }
            // The header itself holds a short stand-in name.
            name = format!("pax-stand-in-{i}").into_bytes();
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .unwrap();
        }
        let mut h = if spec.gnu {
            tar::Header::new_gnu()
        } else {
            tar::Header::new_ustar()
        };
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        let path = std::path::Path::new(OsStr::from_bytes(&name));
        let data: &[u8] = match &spec.kind {
            Kind::File(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                if first_file.is_none() {
                    first_file = Some(real_name.clone());
                }
                data
            }
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                &[]
            }
            Kind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_size(0);
                &[]
            }
            Kind::Char(major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_size(0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                &[]
            }
            Kind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(
                    &mut h,
                    path,
                    std::path::Path::new(OsStr::from_bytes(target)),
                )
                .unwrap();
                continue;
            }
            Kind::Hardlink => {
                let target = first_file.clone().unwrap_or_default();
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(
                    &mut h,
                    path,
                    std::path::Path::new(OsStr::from_bytes(&target)),
                )
                .unwrap();
                continue;
            }
        };
        b.append_data(&mut h, path, data).unwrap();
    }
    let mut out = b.into_inner().unwrap();
    out.extend_from_slice(trailing);
    out
}

/// Names and contents of the regular files, as the `tar` crate reads the archive.
fn files_by_tar_crate(archive: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut a = tar::Archive::new(archive);
    let mut files = Vec::new();
    for entry in a.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let name = entry.path_bytes().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.push((name, data));
        }
    }
    files
}

fn trailing_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => (1usize..40).prop_map(|blocks| vec![0u8; blocks * 512]),
        1 => proptest::collection::vec(any::<u8>(), 1..5000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_archives_round_trip(
        specs in proptest::collection::vec(spec_strategy(), 0..12),
        trailing in trailing_strategy(),
        chunk in 1usize..70_000,
    ) {
        let archive = build(&specs, &trailing);
        let files = files_by_tar_crate(&archive);

        // Pull API: headers and contents agree with the tar crate.
        let mut d = Disassembler::new(&archive[..], Vec::new());
        let mut ours = Vec::new();
        while let Some(h) = d.next_header().unwrap() {
            let mut data = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = d.read_content(&mut buf).unwrap();
                if n == 0 { break; }
                data.extend_from_slice(&buf[..n]);
            }
            prop_assert_eq!(data.len() as u64, h.size);
            if h.kind == TarKind::Regular {
                ours.push((h.name, data));
            }
        }
        let (_, entries) = d.finish().unwrap();
        prop_assert_eq!(&ours, &files);

        // The records equal those of the draining form.
        let drained: Vec<Entry> = disassemble(&archive[..], Vec::new()).unwrap();
        prop_assert_eq!(&entries, &drained);
        prop_assert!(entries.iter().enumerate().all(|(i, e)| e.position == i as u64));
        prop_assert_eq!(
            entries.iter().filter(|e| e.kind == EntryKind::File && e.size > 0).count(),
            files.iter().filter(|(_, d)| !d.is_empty()).count()
        );

        // Through the gzip file and back, then assembled from the files' contents.
        let gz = disassemble(&archive[..], layerstore_tarsplit::gzip_packer(Vec::new()))
            .unwrap().finish().unwrap();
        let mut getter = MemoryFileGetter::new();
        for (name, data) in &files {
            getter.insert(name, data.clone());
        }
        let mut rebuilt = Vec::new();
        let n = assemble(read_tar_split_gz(&gz[..]), &getter, &mut rebuilt).unwrap();
        prop_assert_eq!(n, archive.len() as u64);
        prop_assert!(rebuilt == archive, "rebuilt stream differs");
        // The same on two threads.
        let mut pipelined = Vec::new();
        let n = assemble_pipelined(read_tar_split_gz(&gz[..]), &getter, &mut pipelined).unwrap();
        prop_assert_eq!(n, archive.len() as u64);
        prop_assert!(pipelined == archive, "pipelined stream differs");

        // The pass-through reader gives the input back unchanged and records the same.
        let mut tee = TeeDisassembler::new(&archive[..], JsonLinesPacker::new(Vec::new()));
        let mut passed = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = tee.read(&mut buf).unwrap();
            if n == 0 { break; }
            passed.extend_from_slice(&buf[..n]);
        }
        prop_assert!(passed == archive, "pass-through bytes differ");
        let (_, packer) = tee.into_parts().unwrap();
        let lines = packer.into_inner().unwrap();
        let direct = disassemble(&archive[..], JsonLinesPacker::new(Vec::new()))
            .unwrap().into_inner().unwrap();
        prop_assert!(lines == direct, "pass-through records differ");
    }
}

/// Reads `data` in reads of at most `max` bytes, to vary how the input arrives.
struct Dribble<'a> {
    data: &'a [u8],
    max: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.max).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn records_do_not_depend_on_read_sizes(
        specs in proptest::collection::vec(spec_strategy(), 0..8),
        trailing in trailing_strategy(),
        max in 1usize..3000,
        out in 1usize..5000,
    ) {
        let archive = build(&specs, &trailing);
        let whole: Vec<Entry> = disassemble(&archive[..], Vec::new()).unwrap();
        let dribbled: Vec<Entry> =
            disassemble(Dribble { data: &archive, max }, Vec::new()).unwrap();
        prop_assert_eq!(&whole, &dribbled);

        // The pass-through reader over a dribbling input, read in other small pieces.
        let mut tee = TeeDisassembler::new(Dribble { data: &archive, max }, Vec::new());
        let mut passed = Vec::new();
        let mut buf = vec![0u8; out];
        loop {
            let n = tee.read(&mut buf).unwrap();
            if n == 0 { break; }
            passed.extend_from_slice(&buf[..n]);
        }
        prop_assert!(passed == archive, "pass-through bytes differ");
        prop_assert_eq!(&tee.into_parts().unwrap().1, &whole);
    }
}

#[test]
fn trailing_bytes_are_chunked_as_go_chunks_them() {
    let archive = build(
        &[Spec {
            name: b"f".to_vec(),
            kind: Kind::File(vec![7; 100]),
            gnu: true,
            pax: vec![],
            pax_path: false,
        }],
        &vec![0u8; 3 << 20],
    );
    let entries: Vec<Entry> = disassemble(&archive[..], Vec::new()).unwrap();
    let sizes: Vec<usize> = entries
        .iter()
        .skip(2)
        .map(|e| e.payload.as_ref().map_or(0, Vec::len))
        .collect();
    // Padding + end blocks, then up to the 10240 boundary, then 1 MiB reads, then empty.
    let eoa_end = 512 + 512 + 1024;
    let first = 10240 - eoa_end;
    let rest = archive.len() - 10240;
    let mut expected = vec![412 + 1024, first];
    expected.extend(std::iter::repeat_n(1 << 20, rest / (1 << 20)));
    if !rest.is_multiple_of(1 << 20) {
        expected.push(rest % (1 << 20));
    }
    expected.push(0);
    assert_eq!(sizes, expected);
}
