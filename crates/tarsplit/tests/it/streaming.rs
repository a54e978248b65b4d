//! Streaming with bounded memory: a tarball with a 512 MiB file (generated on the fly, never
//! held in memory) is disassembled and assembled while the process's peak memory stays flat.

use std::io::{self, Read, Write};

use layerstore_tarsplit::{Entry, FileGetter, assemble, assemble_pipelined, disassemble};

// Over 512 MiB, the size of a real layer file; kept modest because unoptimised (dev-profile)
// builds of this crate checksum at a few hundred MB/s.
const BIG: u64 = (512 << 20) + 77;

/// Bytes of the file: a cheap pattern that still exercises the checksum.
fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((offset + i as u64) % 251) as u8;
    }
}

/// Reads `len` bytes of the pattern, in large pieces.
struct Pattern {
    offset: u64,
    len: u64,
    scratch: Vec<u8>,
}

impl Pattern {
    fn new(len: u64) -> Self {
        // One period-aligned tile is copied repeatedly, so generation costs a memcpy.
        let mut scratch = vec![0u8; 251 * 4096];
        pattern(0, &mut scratch);
        Pattern {
            offset: 0,
            len,
            scratch,
        }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.offset;
        let phase = (self.offset % 251) as usize;
        let n = (buf.len() as u64)
            .min(left)
            .min((self.scratch.len() - phase) as u64) as usize;
        buf[..n].copy_from_slice(&self.scratch[phase..phase + n]);
        self.offset += n as u64;
        Ok(n)
    }
}

fn header() -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path("big.bin").unwrap();
    h.set_size(BIG);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// The whole tarball as a stream: header, the file, padding, end blocks.
fn tarball() -> impl Read {
    let pad = (512 - BIG % 512) % 512;
    io::Cursor::new(header())
        .chain(Pattern::new(BIG))
        .chain(io::repeat(0).take(pad + 1024))
}

struct Generated;

impl FileGetter for Generated {
    fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>> {
        assert_eq!(name, b"big.bin");
        Ok(Box::new(Pattern::new(BIG)))
    }
}

struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_huge_file_streams_in_bounded_memory() {
    let before = peak_rss_kib();
    let entries: Vec<Entry> = disassemble(tarball(), Vec::new()).unwrap();
    assert_eq!(entries[1].size, BIG);
    assert_eq!(entries.len(), 4); // header, file, padding + end blocks, final empty segment
    let mut out = Count(0);
    let written = assemble(entries.iter().cloned().map(Ok), &Generated, &mut out).unwrap();
    let total = 512 + BIG + (512 - BIG % 512) % 512 + 1024;
    assert_eq!((written, out.0), (total, total));
    // On three threads: a handful of chunks in flight, not the file.
    let mut out = Count(0);
    let written = assemble_pipelined(entries.into_iter().map(Ok), Generated, &mut out).unwrap();
    assert_eq!((written, out.0), (total, total));
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
}
