//! [`assemble_pipelined`]: the assembly on three threads (decoding, reading files, writing).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;

use super::{Assembler, FileGetter, assemble};
use crate::entry::Entry;
use crate::error::Error;

/// Bytes per chunk that [`assemble_pipelined`] hands from its file-reading thread to the
/// writing one.
pub const PIPELINE_CHUNK_SIZE: usize = 1 << 20;

/// Batches of decoded entries that may wait for the file-reading thread.
const PIPELINE_QUEUED_BATCHES: usize = 4;

/// A batch of decoded entries ends at this many entries ...
const PIPELINE_BATCH_ENTRIES: usize = 256;

/// ... or once its payloads and names hold this many bytes (segments hold up to 1 MiB).
const PIPELINE_BATCH_BYTES: usize = 256 << 10;

/// Filled chunks that may wait for the writer; with the one being filled and the one being
/// written, at most this + 2 chunks exist (6 MiB).
const PIPELINE_QUEUED_CHUNKS: usize = 4;

/// [`assemble`] on three threads, so that decoding the entries, reading the files and writing
/// the stream overlap. Returns the bytes written.
///
/// A scoped thread pulls `entries` (decoding the tar-split file, when that is what they come
/// from) and passes them on in batches; a second one opens, reads and checks the files into
/// [`PIPELINE_CHUNK_SIZE`] chunks; the calling thread writes the chunks to `out`. Only
/// `entries` and `getter` move to other threads (hence `Send`; pass `&getter` for a `Sync`
/// getter such as [`DirFileGetter`](super::DirFileGetter)); `out` stays on the calling thread
/// and need not be `Send`.
///
/// The output is [`assemble`]'s, byte for byte, and so are the errors (naming the entry, the
/// file or the output offset). The first error wins: a bad entry or file stops the pipeline
/// once the chunks before it are written; a failed write stops the other threads before they
/// read another file or decode another batch. On error `out` holds a prefix of the stream. A
/// panic of either thread is resumed on the calling thread. Memory stays bounded: at most six
/// chunks (recycled, not allocated per write) and four batches (256 entries or 256 KiB each)
/// are in flight.
///
/// Worth it with at least two CPUs free (measurements in the crate docs). When the process may
/// use only one ([`std::thread::available_parallelism`]: affinity, cgroup quota), this is
/// [`assemble`] on the calling thread.
pub fn assemble_pipelined<I, G, W>(entries: I, getter: G, mut out: W) -> Result<u64, Error>
where
    I: IntoIterator<Item = Result<Entry, Error>>,
    I::IntoIter: Send,
    G: FileGetter + Send,
    W: Write,
{
    // On one CPU the threads only take turns, and the hand-offs cost 8-10% (measured).
    if thread::available_parallelism().map_or(1, usize::from) < 2 {
        return assemble(entries, &getter, out);
    }
    let entries = entries.into_iter();
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let record = |error: Error| {
        first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(error);
    };
    let stop = AtomicBool::new(false);
    let total = thread::scope(|scope| {
        // Created here, not outside the scope, so that a panic of the writer drops its ends
        // while unwinding and the other threads cannot block on them forever.
        let (filled_tx, filled_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(PIPELINE_QUEUED_CHUNKS);
        let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
        let (batch_tx, batch_rx) =
            mpsc::sync_channel::<Vec<Result<Entry, Error>>>(PIPELINE_QUEUED_BATCHES);
        // The entries' buffers, used, back to the decoder to be freed there
        // (`Assembler::take_spent` says why). Bounded by the batches in flight.
        let (spent_tx, spent_rx) = mpsc::channel::<Vec<Vec<u8>>>();
        let (record, stop) = (&record, &stop);
        // Decoding the entries (for a tar-split file: gunzip, JSON, base64) costs as much CPU
        // as writing the stream, so it gets a thread of its own.
        let decoder = scope.spawn(move || {
            let mut entries = entries;
            loop {
                spent_rx.try_iter().for_each(drop);
                let mut batch = Vec::with_capacity(PIPELINE_BATCH_ENTRIES);
                let mut bytes = 0;
                let mut last = false;
                while batch.len() < PIPELINE_BATCH_ENTRIES && bytes < PIPELINE_BATCH_BYTES {
                    match entries.next() {
                        Some(Ok(entry)) => {
                            bytes += entry.payload.as_ref().map_or(0, Vec::len)
                                + entry.name.as_ref().map_or(0, Vec::len);
                            batch.push(Ok(entry));
                        }
                        // The assembler stops at the first error: no need to read on.
                        Some(Err(error)) => {
                            batch.push(Err(error));
                            last = true;
                            break;
                        }
                        None => {
                            last = true;
                            break;
                        }
                    }
                }
                if stop.load(Ordering::Relaxed)
                    || (!batch.is_empty() && batch_tx.send(batch).is_err())
                    || last
                {
                    return;
                }
            }
        });
        let reader = scope.spawn(move || {
            let mut assembler = Assembler::new(batch_rx.into_iter().flatten(), &getter);
            assembler.keep_spent();
            let mut allocated = 0;
            loop {
                let mut chunk = match spare_rx.try_recv() {
                    Ok(chunk) => chunk,
                    Err(_) if allocated < PIPELINE_QUEUED_CHUNKS + 2 => {
                        allocated += 1;
                        vec![0u8; PIPELINE_CHUNK_SIZE]
                    }
                    Err(_) => match spare_rx.recv() {
                        Ok(chunk) => chunk,
                        // The writer gave up (its error is recorded).
                        Err(_) => return,
                    },
                };
                let mut len = 0;
                while len < chunk.len() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match assembler.read_stream(&mut chunk[len..]) {
                        Ok(0) => break,
                        Ok(n) => len += n,
                        Err(error) => {
                            record(error);
                            return;
                        }
                    }
                }
                let spent = assembler.take_spent();
                if !spent.is_empty() {
                    // The decoder gone, they are freed here.
                    let _ = spent_tx.send(spent);
                }
                let end = len < chunk.len();
                if len > 0 && filled_tx.send((chunk, len)).is_err() {
                    return;
                }
                if end {
                    return;
                }
            }
        });
        let mut total = 0u64;
        // Ends when the reader is done (or failed) and every chunk it sent is written.
        while let Ok((chunk, len)) = filled_rx.recv() {
            if let Err(e) = out.write_all(&chunk[..len]) {
                stop.store(true, Ordering::Relaxed);
                record(Error::io(
                    format!("writing the tar stream at offset {total}"),
                    e,
                ));
                break;
            }
            total += len as u64;
            // The reader may be gone already; then the chunk is just freed.
            let _ = spare_tx.send(chunk);
        }
        drop(filled_rx);
        drop(spare_tx);
        // The decoder's panic first: the reader took its end for the end of the entries.
        let decoded = decoder.join();
        let read = reader.join();
        if let Err(panic) = decoded.and(read) {
            std::panic::resume_unwind(panic);
        }
        total
    });
    if let Some(error) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    out.flush()
        .map_err(|e| Error::io("flushing the tar stream", e))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read};

    use super::*;
    use crate::{Error, MemoryFileGetter};

    /// Fails every write after `limit` bytes.
    struct FailingWriter {
        written: usize,
        limit: usize,
    }

    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written >= self.limit {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = buf.len().min(self.limit - self.written);
            self.written += n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Counts the files opened.
    struct Counting<'a>(&'a MemoryFileGetter, std::sync::atomic::AtomicUsize);

    impl FileGetter for Counting<'_> {
        fn get(&self, name: &[u8]) -> io::Result<Box<dyn Read + '_>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.get(name)
        }
    }

    struct Panicking;

    impl FileGetter for Panicking {
        fn get(&self, _: &[u8]) -> io::Result<Box<dyn Read + '_>> {
            panic!("getter panicked");
        }
    }

    /// Entries for `count` files of `size` bytes each (with 512-byte header segments), their
    /// getter and the stream they assemble to.
    fn many_files(count: usize, size: usize) -> (Vec<Entry>, MemoryFileGetter, Vec<u8>) {
        let mut entries = Vec::new();
        let mut getter = MemoryFileGetter::new();
        let mut stream = Vec::new();
        for i in 0..count {
            let header = vec![(i % 251) as u8; 512];
            let content: Vec<u8> = (0..size).map(|j| ((i * 7 + j) % 253) as u8).collect();
            let name = format!("dir/file{i}").into_bytes();
            stream.extend_from_slice(&header);
            stream.extend_from_slice(&content);
            entries.push(Entry::segment(header));
            entries.push(Entry::file(
                name.clone(),
                size as u64,
                Some(crate::crc64(&content)),
            ));
            getter.insert(&name, content);
        }
        for (position, entry) in entries.iter_mut().enumerate() {
            entry.position = position as u64;
        }
        (entries, getter, stream)
    }

    #[test]
    fn pipelined_output_is_the_same_stream() {
        // 6.4 MiB: more chunks than are ever in flight, so chunks are recycled.
        let (entries, getter, stream) = many_files(100, (64 << 10) + 3);
        let mut out = Vec::new();
        let n = assemble_pipelined(entries.into_iter().map(Ok), &getter, &mut out).unwrap();
        assert_eq!(n, stream.len() as u64);
        assert!(out == stream, "pipelined stream differs");
        // Empty input: empty output.
        let mut out = Vec::new();
        assert_eq!(assemble_pipelined([], &getter, &mut out).unwrap(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn pipelined_read_errors_name_the_file_after_writing_what_came_before() {
        let (mut entries, getter, stream) = many_files(40, 100 << 10);
        // File 30 is missing from the getter.
        entries[61].name = Some(b"dir/missing".to_vec());
        let mut out = Vec::new();
        let err = assemble_pipelined(entries.into_iter().map(Ok), &getter, &mut out).unwrap_err();
        assert!(
            matches!(err, Error::File { ref name, .. } if name == "dir/missing"),
            "{err}"
        );
        assert!(stream.starts_with(&out), "the output is not a prefix");
    }

    #[test]
    fn pipelined_write_errors_stop_the_reader() {
        // 2,000 files of 64 KiB: 125 MiB if the reader went on.
        let (entries, getter, _) = many_files(2000, 64 << 10);
        let counting = Counting(&getter, Default::default());
        let out = FailingWriter {
            written: 0,
            limit: 3 << 20,
        };
        let err = assemble_pipelined(entries.into_iter().map(Ok), &counting, out).unwrap_err();
        assert!(
            matches!(err, Error::Io { ref context, ref source } if context == "writing the tar stream at offset 3145728" && source.kind() == io::ErrorKind::StorageFull),
            "{err}"
        );
        // The chunks in flight hold 6 MiB: about 100 files, far from 2,000.
        let opened = counting.1.load(Ordering::Relaxed);
        assert!(opened < 200, "{opened} files opened after the write failed");
    }

    #[test]
    fn pipelined_decoding_errors_are_returned() {
        let (mut entries, getter, _) = many_files(3, 10);
        entries[3].payload = Some(vec![1, 2, 3]);
        let err =
            assemble_pipelined(entries.iter().cloned().map(Ok), &getter, io::sink()).unwrap_err();
        assert!(err.to_string().contains("position 3"), "{err}");
        let items = entries
            .into_iter()
            .map(Ok)
            .take(2)
            .chain([Err(Error::record(9, "broken line"))]);
        let err = assemble_pipelined(items, &getter, io::sink()).unwrap_err();
        assert!(matches!(err, Error::Record { line: 9, .. }), "{err}");
    }

    #[test]
    fn pipelined_panics_reach_the_caller() {
        let entry = Entry::file(b"f".to_vec(), 1, Some(0));
        let result =
            std::panic::catch_unwind(|| assemble_pipelined([Ok(entry)], Panicking, io::sink()));
        let panic = result.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"getter panicked"));
        // A panic while decoding is not taken for the end of the entries.
        let (entries, getter, _) = many_files(3, 10);
        let result = std::panic::catch_unwind(|| {
            let items = entries
                .into_iter()
                .map(Ok)
                .chain(std::iter::from_fn(|| panic!("decoder panicked")));
            assemble_pipelined(items, &getter, io::sink())
        });
        let panic = result.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"decoder panicked"));
    }
}
