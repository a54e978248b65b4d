//! Finishing small regular files on a second thread.
//!
//! The extracting thread creates each file itself (`openat(O_CREAT | O_EXCL)`, so the name
//! exists at the same point of the archive order as in a one-thread extraction) and reads its
//! content out of the tar stream; this worker then writes the content and applies owner, mode
//! and times through the open fd, and closes it. Nothing later in the archive depends on those
//! steps: a later entry can only replace or remove the *name* (the worker then finishes an
//! unlinked inode, as if it had finished first), a hardlink shares the inode (same final
//! metadata), and directory times are set only after [`FileWriter::finish`] has joined the
//! worker. Files with xattrs or sparse maps stay on the extracting thread (chown clears some
//! xattrs, so their order matters).
//!
//! Bounded: jobs travel in batches (at most [`BATCH_BYTES`] of content or [`BATCH_JOBS`] files
//! each) through a channel of depth [`DEPTH`], so at most `DEPTH + 2` batches exist at once
//! (≤ 6 MiB of content, ≤ 192 open fds). The worker stops at its first error and keeps it; the
//! extracting thread reports it in preference to any error of its own, because the worker's
//! entries come earlier in the archive (first error wins, as in a one-thread extraction).
//! Before the extracting thread may block on input it calls [`FileWriter::flush`], so a
//! stalled input never keeps finished files open (a read-only remount, for one, needs that).
//! The worker is a `SCHED_BATCH` thread, so that waking it never preempts the extracting
//! thread (`crate::sched`).
//!
//! `fchown` is skipped when the extracting thread proved it a no-op (the owner is us and the
//! parent's group is our group: a setgid parent cannot make it another). Considered and left
//! out: skipping `fchmod` when the create mode is already the final one (a default ACL on the
//! parent, which a layer can set through a PAX xattr, would then decide the mode instead of the
//! header).

use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rustix::fs::{self as rfs, Gid, Mode, Timestamps, Uid};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Files larger than this are written by the extracting thread itself.
pub(crate) const SMALL_FILE: u64 = 256 * 1024;
/// A batch is sent once it holds this much content.
const BATCH_BYTES: usize = 1024 * 1024;
/// A batch is sent once it holds this many files.
const BATCH_JOBS: usize = 32;
/// Batches queued for the worker.
const DEPTH: usize = 4;

/// The metadata the worker applies, in this order, after writing the content.
#[derive(Debug)]
pub(crate) struct FileMeta {
    /// `None`: the file has its owner already (the extracting thread knows when).
    pub(crate) owner: Option<(Uid, Gid)>,
    pub(crate) mode: Mode,
    pub(crate) times: Timestamps,
}

/// One file to finish: its open fd, where its entry name (for errors) is in the batch's
/// names and where its content is in the batch's buffer.
#[derive(Debug)]
struct Job {
    file: File,
    entry: Range<usize>,
    content: Range<usize>,
    meta: FileMeta,
}

/// Files and their contents, `data[..used]`. `data` is zeroed once when the batch is made and
/// then reused as it is: reading each file through `read_to_end` zero-filled the spare
/// capacity first (std's default `read_buf` on a `dyn Read`), 2% of the extracting thread.
/// The jobs' entry names are in `names`, one buffer per batch rather than an allocation
/// per file (freed on the other thread: `malloc_consolidate` and `_int_free` were ≈ 2% of
/// the extracting thread).
#[derive(Debug)]
struct Batch {
    jobs: Vec<Job>,
    names: Vec<u8>,
    data: Box<[u8]>,
    used: usize,
}

/// The extracting thread's handle on the worker (started at the first file).
#[derive(Debug)]
pub(crate) struct FileWriter {
    ignore_chown_errors: bool,
    batch: Batch,
    worker: Option<Worker>,
    /// Batches sent to the current worker.
    sent: u64,
}

#[derive(Debug)]
struct Worker {
    tx: SyncSender<Batch>,
    /// Emptied batches coming back, so their buffers are reused.
    recycled: Receiver<Batch>,
    failed: Arc<AtomicBool>,
    /// Batches the worker finished.
    done: Arc<AtomicU64>,
    thread: JoinHandle<Result<()>>,
}

impl Batch {
    fn new() -> Self {
        // A batch is sent before a file would take it past `BATCH_BYTES`.
        Batch {
            jobs: Vec::with_capacity(BATCH_JOBS),
            names: Vec::with_capacity(BATCH_JOBS * 64),
            data: vec![0; BATCH_BYTES].into_boxed_slice(),
            used: 0,
        }
    }

    /// Reads `content` to its end into the free space (at most `cap` bytes); returns the count,
    /// or `None` when the content holds more than `cap` bytes.
    fn read_in(&mut self, content: &mut dyn Read, cap: usize) -> io::Result<Option<usize>> {
        let space = &mut self.data[self.used..self.used + cap];
        let mut filled = 0;
        loop {
            let n = if filled < space.len() {
                content.read(&mut space[filled..])
            } else {
                // Full: the content must end here.
                content.read(&mut [0u8; 1])
            };
            match n {
                Ok(0) => return Ok(Some(filled)),
                Ok(_) if filled == space.len() => return Ok(None),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl FileWriter {
    pub(crate) fn new(ignore_chown_errors: bool) -> Self {
        FileWriter {
            ignore_chown_errors,
            batch: Batch::new(),
            worker: None,
            sent: 0,
        }
    }

    /// Whether the worker's queue is full, so that handing over one more batch would wait for
    /// it. The extracting thread then finishes a file itself rather than idle: on a layer of
    /// many small files the worker is the slower of the two, and waiting for it left a core
    /// idle a quarter of the time (smallfiles.tar: 705 → 607 ms, rootfs.tar.zst: 255 → 238 ms).
    pub(crate) fn backlogged(&self) -> bool {
        self.worker
            .as_ref()
            .is_some_and(|w| self.sent - w.done.load(Ordering::Relaxed) >= DEPTH as u64)
    }

    /// Reads the content of `entry` (at most [`SMALL_FILE`] bytes, `size` expected) from
    /// `content` and queues it to be written to `file` with `meta`. Returns the bytes read.
    /// An error is the worker's (an earlier entry), or reading this entry's content.
    pub(crate) fn submit(
        &mut self,
        file: File,
        entry: &[u8],
        size: u64,
        content: &mut dyn Read,
        meta: impl FnOnce() -> Result<FileMeta>,
    ) -> Result<u64> {
        if self
            .worker
            .as_ref()
            .is_some_and(|w| w.failed.load(Ordering::Relaxed))
        {
            return Err(self.stop().err().unwrap_or(Error::WorkerPanicked));
        }
        let size = usize::try_from(size.min(SMALL_FILE)).unwrap_or(0);
        if self.batch.used + size > BATCH_BYTES {
            self.send()?;
        }
        let start = self.batch.used;
        let read = match self.batch.read_in(content, size) {
            // The caller checked the header's size; the parser bounds the content by it.
            Ok(None) => {
                return Err(Error::entry(
                    entry,
                    "write",
                    io::Error::other("more content than the header's size"),
                ));
            }
            Ok(Some(n)) => n,
            Err(e) => return Err(Error::entry(entry, "write", e)),
        };
        let meta = meta()?;
        self.batch.used += read;
        let name_start = self.batch.names.len();
        self.batch.names.extend_from_slice(entry);
        self.batch.jobs.push(Job {
            file,
            entry: name_start..self.batch.names.len(),
            content: start..start + read,
            meta,
        });
        if self.batch.jobs.len() >= BATCH_JOBS || self.batch.used >= BATCH_BYTES {
            self.send()?;
        }
        Ok(read as u64)
    }

    /// Hands the queued files to the worker now (without waiting for them).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.send()
    }

    /// Sends the current batch (starting the worker if needed).
    fn send(&mut self) -> Result<()> {
        if self.batch.jobs.is_empty() {
            self.batch.used = 0;
            self.batch.names.clear();
            return Ok(());
        }
        let ignore = self.ignore_chown_errors;
        let worker = self.worker.get_or_insert_with(|| Worker::start(ignore));
        let next = worker.recycled.try_recv().unwrap_or_else(|_| Batch::new());
        let full = std::mem::replace(&mut self.batch, next);
        self.sent += 1;
        if worker.tx.send(full).is_err() {
            // The worker only hangs up after a failure (or a panic): report it.
            return Err(self.stop().err().unwrap_or(Error::WorkerPanicked));
        }
        Ok(())
    }

    /// Writes everything queued, joins the worker and returns its first error, if any.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.send()?;
        self.stop()
    }

    /// Joins the worker (after it finished what it was sent; unsent jobs are dropped).
    fn stop(&mut self) -> Result<()> {
        self.batch.jobs.clear();
        self.batch.names.clear();
        self.batch.used = 0;
        self.sent = 0;
        let Some(worker) = self.worker.take() else {
            return Ok(());
        };
        drop(worker.tx);
        worker.thread.join().map_err(|_| Error::WorkerPanicked)?
    }

    /// `err`, unless the worker failed on an (earlier) entry: then the worker's error. The
    /// worker finishes what it was given first, so an earlier entry's failure is not missed.
    pub(crate) fn first_error(&mut self, err: Error) -> Error {
        match self.finish() {
            Ok(()) => err,
            Err(earlier) => earlier,
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Never leave a thread writing beneath the target after `apply` returned.
        let _ = self.stop();
    }
}

impl Worker {
    fn start(ignore_chown_errors: bool) -> Self {
        let (tx, rx) = sync_channel::<Batch>(DEPTH);
        let (recycle, recycled) = sync_channel::<Batch>(DEPTH + 2);
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let done = Arc::new(AtomicU64::new(0));
        let finished = Arc::clone(&done);
        let thread = std::thread::spawn(move || -> Result<()> {
            // Woken for every batch: it must not preempt the extracting thread.
            crate::sched::run_as_batch_thread();
            for mut batch in rx {
                for job in batch.jobs.drain(..) {
                    let finished = finish_file(job, &batch.names, &batch.data, ignore_chown_errors);
                    if let Err(e) = finished {
                        flag.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                batch.used = 0;
                batch.names.clear();
                // The extracting thread may have enough buffers already.
                let _ = recycle.try_send(batch);
                finished.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        Worker {
            tx,
            recycled,
            failed,
            done,
            thread,
        }
    }
}

/// Content, owner, mode, times: the order of a one-thread extraction (chmod after chown, so
/// setuid and setgid bits survive).
fn finish_file(job: Job, names: &[u8], data: &[u8], ignore_chown_errors: bool) -> Result<()> {
    let Job {
        mut file,
        entry,
        content,
        meta,
    } = job;
    let entry = &names[entry];
    file.write_all(&data[content])
        .map_err(|e| Error::entry(entry, "write", e))?;
    if let Some((uid, gid)) = meta.owner {
        match rfs::fchown(&file, Some(uid), Some(gid)) {
            Err(Errno::PERM | Errno::INVAL) if ignore_chown_errors => {}
            other => other.map_err(|e| Error::entry(entry, "chown", e))?,
        }
    }
    rfs::fchmod(&file, meta.mode).map_err(|e| Error::entry(entry, "chmod", e))?;
    rfs::futimens(&file, &meta.times).map_err(|e| Error::entry(entry, "set times", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn meta(mode: u32) -> Result<FileMeta> {
        Ok(FileMeta {
            owner: Some((rustix::process::getuid(), rustix::process::getgid())),
            mode: Mode::from_raw_mode(mode),
            times: Timestamps {
                last_access: rfs::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                },
                last_modification: rfs::Timespec {
                    tv_sec: 2,
                    tv_nsec: 3,
                },
            },
        })
    }

    #[test]
    fn files_are_finished_in_batches_with_their_metadata() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = FileWriter::new(true);
        // More files and bytes than one batch holds.
        let count = BATCH_JOBS * 3 + 5;
        for i in 0..count {
            let path = dir.path().join(format!("f{i}"));
            let file = File::create(&path).expect("create");
            let body = vec![b'a' + (i % 26) as u8; i * 997];
            let size = body.len() as u64;
            let read = writer
                .submit(
                    file,
                    path.as_os_str().as_encoded_bytes(),
                    size,
                    &mut &body[..],
                    || meta(0o640),
                )
                .expect("submit");
            assert_eq!(read, size);
        }
        writer.finish().expect("finish");
        for i in 0..count {
            let path = dir.path().join(format!("f{i}"));
            let body = std::fs::read(&path).expect("read");
            assert_eq!(body, vec![b'a' + (i % 26) as u8; i * 997]);
            let md = std::fs::metadata(&path).expect("metadata");
            assert_eq!(md.mode() & 0o7777, 0o640);
            assert_eq!((md.mtime(), md.mtime_nsec()), (2, 3));
        }
    }

    #[test]
    fn the_first_failure_is_reported_and_later_jobs_are_not_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = FileWriter::new(true);
        // A read-only fd: the worker's write fails (EBADF) for this entry.
        let bad = dir.path().join("bad");
        std::fs::write(&bad, b"").expect("write");
        let read_only = File::open(&bad).expect("open");
        writer
            .submit(read_only, b"bad", 3, &mut &b"abc"[..], || meta(0o644))
            .expect("queued");
        let later = dir.path().join("later");
        let file = File::create(&later).expect("create");
        writer
            .submit(file, b"later", 3, &mut &b"xyz"[..], || meta(0o600))
            .expect("queued");
        let err = writer.first_error(Error::WorkerPanicked);
        assert!(
            err.to_string().contains("bad") && err.to_string().contains("write"),
            "{err}"
        );
        // The worker stopped at the first error: the later file was never written.
        assert_eq!(std::fs::read(&later).expect("read"), b"");
    }

    #[test]
    fn content_beyond_the_declared_size_is_refused_and_the_batch_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = FileWriter::new(true);
        let file = File::create(dir.path().join("long")).expect("create");
        let err = writer
            .submit(file, b"dir/long", 3, &mut &b"abcde"[..], || meta(0o644))
            .expect_err("more than 3 bytes");
        assert!(err.to_string().contains("dir/long"), "{err}");
        // The refused content took no room: the next file's bytes are its own.
        let path = dir.path().join("next");
        let file = File::create(&path).expect("create");
        let read = writer
            .submit(file, b"next", 3, &mut &b"xyz"[..], || meta(0o644))
            .expect("submit");
        assert_eq!(read, 3);
        writer.finish().expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), b"xyz");
    }

    #[test]
    fn a_content_read_error_names_the_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = FileWriter::new(true);
        let file = File::create(dir.path().join("f")).expect("create");
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::UnexpectedEof.into())
            }
        }
        let err = writer
            .submit(file, b"dir/f", 10, &mut Failing, || meta(0o644))
            .expect_err("read fails");
        assert!(err.to_string().contains("dir/f"), "{err}");
        writer.finish().expect("nothing was queued");
    }
}
