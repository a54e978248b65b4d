//! `bench-bound copy-alone threads|range DIR OUT`: the kernel's copy of a layer's file bytes
//! into a diff's output, with nothing else a diff does (no tar headers, no tar-split, no
//! CRC-64, no store).
//!
//! A `diff -u` of a layer of a few big files must read every byte of those files out of the
//! page cache and write it into the output's. Writing alone (`write-alone`) is below what any
//! diff can reach: it leaves out the read, and copies from a buffer that stays in the core's
//! cache, where a diff's bytes come from memory. This bound does both halves, one of the two
//! ways the kernel offers per process:
//!
//! * `threads`: one thread `read(2)`s the files in 1 MiB chunks, another `write(2)`s them, with
//!   4 chunks in flight (two copies, one per core);
//! * `range`: `copy_file_range(2)` of each file into the output (one copy, in the kernel, on
//!   one thread; a reflink where the filesystem can share extents between the two files).
//!
//! The bench times each way as a process, like every other bound, after an untimed `sync(2)`,
//! and takes the faster of the two for each run. The files are DIR's regular files in the
//! order of their paths, as a tar of the tree lists them; OUT must not exist.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use super::CHUNK;
use crate::tools::regular_files;

/// Chunks in flight between the reading and the writing thread.
const DEPTH: usize = 4;

fn create_new(out: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(out)
}

/// One way of copying `files` into the output, returning the bytes it wrote.
type CopyFn = fn(&[PathBuf], &mut File) -> io::Result<u64>;

/// The ways, by the name the command line gives them.
pub(crate) const WAYS: [&str; 2] = ["threads", "range"];

/// `read(2)` on a thread of its own, `write(2)` on this one.
fn with_threads(files: &[PathBuf], output: &mut File) -> io::Result<u64> {
    let (filled_tx, filled_rx) = sync_channel::<(Vec<u8>, usize)>(DEPTH);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(DEPTH);
    for _ in 0..DEPTH {
        empty_tx
            .send(vec![0u8; CHUNK])
            .expect("the channel holds DEPTH buffers");
    }
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> io::Result<()> {
            // The buffer a file's end left unfilled, for the next file.
            let mut spare = None;
            for path in files {
                let mut file = File::open(path)?;
                loop {
                    let Some(mut buf) = spare.take().or_else(|| empty_rx.recv().ok()) else {
                        return Ok(()); // the writer failed and went away
                    };
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        spare = Some(buf);
                        break;
                    }
                    if filled_tx.send((buf, n)).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        let mut total = 0u64;
        let mut outcome = Ok(());
        for (buf, n) in filled_rx.iter() {
            if let Err(e) = output.write_all(&buf[..n]) {
                outcome = Err(e);
                break;
            }
            total += n as u64;
            // Refused once the reader is done; the chunks it queued are still written.
            let _ = empty_tx.send(buf);
        }
        drop(empty_tx);
        drop(filled_rx);
        reader
            .join()
            .map_err(|_| io::Error::other("the reading thread panicked"))??;
        outcome.map(|()| total)
    })
}

/// `copy_file_range(2)` of each file, to its end.
fn with_copy_file_range(files: &[PathBuf], output: &mut File) -> io::Result<u64> {
    let mut total = 0u64;
    for path in files {
        let file = File::open(path)?;
        loop {
            let n = rustix::fs::copy_file_range(&file, None, &*output, None, 1 << 30)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

/// Copies DIR's files into a new `out` the way named `way`; `Ok(None)` where the kernel
/// refuses `copy_file_range(2)` between the two filesystems (`EXDEV`: a layer on a disk, the
/// output on a tmpfs), so that way does not apply. The output is left for the caller.
pub(crate) fn copy_one_way(way: &str, dir: &Path, out: &Path) -> Result<Option<u64>, String> {
    let copy: CopyFn = match way {
        "threads" => with_threads,
        "range" => with_copy_file_range,
        other => return Err(format!("unknown way `{other}` (threads, range)")),
    };
    let files = regular_files(dir).map_err(|e| format!("list {}: {e}", dir.display()))?;
    let mut expected = 0u64;
    for path in &files {
        expected += fs::metadata(path)
            .map_err(|e| format!("stat {}: {e}", path.display()))?
            .len();
    }
    let failed =
        |e: io::Error| format!("copy {} into {} ({way}): {e}", dir.display(), out.display());
    let mut output = create_new(out).map_err(failed)?;
    let bytes = match copy(&files, &mut output) {
        Ok(bytes) => bytes,
        Err(e) if way == "range" && e.raw_os_error() == Some(libc::EXDEV) => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    if bytes != expected {
        return Err(format!(
            "copy {} ({way}) wrote {bytes} bytes, its files hold {expected}",
            dir.display()
        ));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_copy_every_regular_file_in_path_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layer = dir.path().join("layer");
        fs::create_dir_all(layer.join("b/c")).expect("mkdir");
        let big: Vec<u8> = (0..2 * CHUNK + 3).map(|i| (i % 249) as u8).collect();
        fs::write(layer.join("b/c/big"), &big).expect("write");
        fs::write(layer.join("a"), b"first").expect("write");
        fs::write(layer.join("z"), b"").expect("write");
        // More files than buffers in flight: each file's end hands its buffer on.
        for i in 0..2 * DEPTH {
            fs::write(layer.join(format!("b/f{i}")), [i as u8]).expect("write");
        }
        std::os::unix::fs::symlink("a", layer.join("link")).expect("symlink");
        let files = regular_files(&layer).expect("list");
        let names: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(&layer).expect("under").to_owned())
            .collect();
        let mut want_names = vec![PathBuf::from("a"), PathBuf::from("b/c/big")];
        want_names.extend((0..2 * DEPTH).map(|i| PathBuf::from(format!("b/f{i}"))));
        want_names.sort();
        want_names.push(PathBuf::from("z"));
        assert_eq!(names, want_names);
        let mut want = b"first".to_vec();
        want.extend_from_slice(&big);
        let mut small: Vec<(String, u8)> =
            (0..2 * DEPTH).map(|i| (format!("f{i}"), i as u8)).collect();
        small.sort();
        want.extend(small.iter().map(|(_, b)| *b));
        for copy in [with_threads, with_copy_file_range] {
            let out = dir.path().join("out");
            let mut output = create_new(&out).expect("create");
            assert_eq!(copy(&files, &mut output).expect("copy"), want.len() as u64);
            drop(output);
            assert!(fs::read(&out).expect("read") == want, "the bytes, in order");
            fs::remove_file(&out).expect("rm");
        }
        for way in WAYS {
            let out = dir.path().join(format!("out-{way}"));
            let bytes = copy_one_way(way, &layer, &out).expect(way);
            assert_eq!(
                bytes,
                Some(want.len() as u64),
                "one filesystem: {way} applies"
            );
            assert!(fs::read(&out).expect("read") == want, "{way}");
        }
    }

    #[test]
    fn an_existing_output_or_a_missing_layer_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        fs::write(&out, b"stale").expect("write");
        let err = copy_one_way("threads", dir.path(), &out).expect_err("exists");
        assert!(err.contains("out"), "{err}");
        let err = copy_one_way("range", &dir.path().join("nope"), &dir.path().join("o2"))
            .expect_err("gone");
        assert!(err.contains("nope"), "{err}");
        let err = copy_one_way("mmap", dir.path(), &dir.path().join("o3")).expect_err("way");
        assert!(err.contains("mmap"), "{err}");
    }
}
