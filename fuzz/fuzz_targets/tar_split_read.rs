//! Fuzzes the tar-split entry reader: any bytes, as JSON lines and as gzip, must give entries
//! or an error, never a panic; entries that decode must re-encode to lines that decode to the
//! same entries.
#![no_main]

use layerstore_tarsplit::entry::encode_entry;
use layerstore_tarsplit::{Entry, Unpacker, read_tar_split_gz};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoded: Vec<Entry> = Vec::new();
    for entry in Unpacker::new(data).take(10_000) {
        match entry {
            Ok(e) => decoded.push(e),
            Err(_) => break,
        }
    }
    let mut text = Vec::new();
    for e in &decoded {
        encode_entry(&mut text, e, e.position);
    }
    let again: Vec<Entry> = Unpacker::new(&text[..])
        .collect::<Result<_, _>>()
        .expect("re-encoded entries decode");
    assert_eq!(again, decoded);

    for entry in read_tar_split_gz(data).take(10_000) {
        if entry.is_err() {
            break;
        }
    }
});
