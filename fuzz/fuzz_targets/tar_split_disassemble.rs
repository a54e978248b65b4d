//! Fuzzes the tar-split disassembler: any bytes must give records or an error, never a panic; when a
//! stream is accepted, its records plus the contents the pull API handed out must assemble
//! back to the very same bytes, and the pass-through reader (fed in small, uneven reads) must
//! give back the input and record the same entries.
#![no_main]

use std::collections::HashSet;
use std::io::Read;

use layerstore_tarsplit::entry::clean_path;
use layerstore_tarsplit::{Disassembler, MemoryFileGetter, TeeDisassembler, assemble};

/// Hands out at most 7 bytes per read.
struct Dribble<'a>(&'a [u8]);

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(7).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = Disassembler::new(data, Vec::new());
    let mut getter = MemoryFileGetter::new();
    let mut names = HashSet::new();
    let mut oracle = true;
    loop {
        let header = match d.next_header() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(_) => return,
        };
        let mut content = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match d.read_content(&mut buf) {
                Ok(0) => break,
                Ok(n) => content.extend_from_slice(&buf[..n]),
                Err(_) => return,
            }
        }
        assert_eq!(content.len() as u64, header.size);
        oracle &= names.insert(clean_path(&header.name));
        if let Some(map) = &header.sparse {
            // Expand the packed data as an extractor would (small files only).
            if map.real_size > 1 << 24 {
                oracle = false;
                continue;
            }
            let mut expanded = vec![0u8; map.real_size as usize];
            let mut at = 0usize;
            for r in &map.regions {
                let (o, l) = (r.offset as usize, r.len as usize);
                expanded[o..o + l].copy_from_slice(&content[at..at + l]);
                at += l;
            }
            content = expanded;
        }
        getter.insert(&header.name, content);
    }
    let Ok((_, entries)) = d.finish() else {
        return;
    };
    let mut tee = TeeDisassembler::new(Dribble(data), Vec::new());
    let mut passed = Vec::new();
    let mut buf = [0u8; 13];
    loop {
        let n = tee.read(&mut buf).expect("the stream was accepted above");
        if n == 0 {
            break;
        }
        passed.extend_from_slice(&buf[..n]);
    }
    assert!(passed == data, "pass-through bytes differ");
    assert_eq!(tee.into_parts().expect("finished").1, entries);
    if oracle {
        let mut rebuilt = Vec::new();
        assemble(entries.into_iter().map(Ok), &getter, &mut rebuilt).expect("assembles");
        assert!(rebuilt == data, "rebuilt stream differs");
    }
});
