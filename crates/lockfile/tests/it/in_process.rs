//! One process: threads and handles exclude each other, holders are counted, the kernel lock
//! follows, tokens are written in Go's layout, files are created as Go creates them.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, SystemTime};

use layerstore_lockfile::{Access, Error, Holder, LockFile, LockState, ReadGuard, WriteGuard};
use layerstore_testsupport::locks::{KernelMode, held_by_us};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn handles_are_send_sync_and_guards_send() {
    assert_send_sync::<LockFile>();
    assert_send::<WriteGuard<'static>>();
    assert_send::<ReadGuard<'static>>();
    assert_send_sync::<Error>();
}

#[test]
fn threads_exclude_each_other_on_a_racy_counter() {
    let dir = tempfile::tempdir().unwrap();
    let lock = Arc::new(LockFile::open_rw(dir.path().join("counter.lock")).unwrap());
    let counter = Arc::new(AtomicU64::new(0));
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 200;
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (lock, counter) = (Arc::clone(&lock), Arc::clone(&counter));
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let _guard = lock.lock().unwrap();
                    // A load-yield-store increment loses updates unless the lock excludes.
                    let seen = counter.load(Ordering::Relaxed);
                    thread::yield_now();
                    counter.store(seen + 1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(counter.load(Ordering::Relaxed), THREADS * ROUNDS);
    assert_eq!(lock.state(), LockState::Unlocked);
}

#[test]
fn separate_handles_of_one_path_share_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.lock");
    let first = LockFile::open_rw(&path).unwrap();
    // A different spelling of the same file must map to the same registry entry.
    let second = LockFile::open_rw(dir.path().join(".").join("shared.lock")).unwrap();
    assert_eq!(first.path(), second.path());

    let guard = first.lock().unwrap();
    assert_eq!(second.state(), LockState::Write);
    let err = second.try_lock().unwrap_err();
    assert!(matches!(
        err,
        Error::WouldBlock {
            holder: Holder::ThisProcess,
            ..
        }
    ));
    assert!(second.try_rlock().unwrap_err().is_would_block());
    drop(guard);
    let r1 = first.rlock().unwrap();
    let r2 = second.rlock().unwrap();
    assert_eq!(first.state(), LockState::Read { holders: 2 });
    drop((r1, r2));
    assert_eq!(second.state(), LockState::Unlocked);
}

#[test]
fn holders_are_counted_and_the_kernel_lock_follows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("count.lock");
    let lock = LockFile::open_rw(&path).unwrap();
    assert_eq!(lock.state(), LockState::Unlocked);
    assert_eq!(held_by_us(&path), None);

    let r1 = lock.rlock().unwrap();
    let r2 = lock.try_rlock().unwrap();
    let r3 = lock.rlock().unwrap();
    assert_eq!(lock.state(), LockState::Read { holders: 3 });
    assert_eq!(held_by_us(&path), Some(KernelMode::Read));
    drop(r2);
    assert_eq!(lock.state(), LockState::Read { holders: 2 });
    r1.unlock();
    assert_eq!(lock.state(), LockState::Read { holders: 1 });
    assert_eq!(held_by_us(&path), Some(KernelMode::Read));
    drop(r3);
    assert_eq!(lock.state(), LockState::Unlocked);
    assert_eq!(held_by_us(&path), None, "the last reader releases F_RDLCK");

    let w = lock.lock().unwrap();
    assert_eq!(lock.state(), LockState::Write);
    assert_eq!(held_by_us(&path), Some(KernelMode::Write));
    w.unlock();
    assert_eq!(held_by_us(&path), None);
    let w = lock.try_lock().unwrap();
    assert_eq!(held_by_us(&path), Some(KernelMode::Write));
    drop(w);
    assert_eq!(lock.state(), LockState::Unlocked);
}

#[test]
fn try_lock_from_another_thread_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let lock = LockFile::open_rw(dir.path().join("try.lock")).unwrap();
    let write = lock.lock().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            for result in [lock.try_lock().map(drop), lock.try_rlock().map(drop)] {
                match result {
                    Err(Error::WouldBlock { path, holder }) => {
                        assert_eq!(holder, Holder::ThisProcess);
                        assert_eq!(path, lock.path());
                    }
                    other => panic!("expected WouldBlock, got {other:?}"),
                }
            }
        });
    });
    drop(write);

    let read = lock.rlock().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            assert!(lock.try_lock().unwrap_err().is_would_block());
            // Readers coexist.
            let other_reader = lock.try_rlock().unwrap();
            assert_eq!(lock.state(), LockState::Read { holders: 2 });
            drop(other_reader);
        });
    });
    drop(read);
    thread::scope(|s| {
        s.spawn(|| drop(lock.try_lock().unwrap()));
    });
}

#[test]
fn a_writer_blocks_readers_until_it_unlocks() {
    let dir = tempfile::tempdir().unwrap();
    let lock = LockFile::open_rw(dir.path().join("block.lock")).unwrap();
    let writer_done = AtomicBool::new(false);
    let readers_started = Barrier::new(3);
    let write = lock.lock().unwrap();
    thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    readers_started.wait();
                    let guard = lock.rlock().unwrap();
                    // The writer flagged completion before unlocking.
                    assert!(writer_done.load(Ordering::SeqCst));
                    drop(guard);
                })
            })
            .collect();
        readers_started.wait();
        thread::sleep(Duration::from_millis(100));
        assert!(readers.iter().all(|r| !r.is_finished()));
        writer_done.store(true, Ordering::SeqCst);
        drop(write);
        for r in readers {
            r.join().unwrap();
        }
    });
    assert_eq!(lock.state(), LockState::Unlocked);
}

#[test]
fn guards_can_be_released_on_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let lock = LockFile::open_rw(dir.path().join("send.lock")).unwrap();
    let (tx, rx) = mpsc::channel::<WriteGuard<'_>>();
    thread::scope(|s| {
        s.spawn(move || drop(rx.recv().unwrap()));
        tx.send(lock.lock().unwrap()).unwrap();
    });
    assert_eq!(lock.state(), LockState::Unlocked);
    drop(lock.try_lock().unwrap());
}

#[test]
fn own_writes_are_not_modified_and_tokens_use_gos_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.lock");
    let lock = LockFile::open_rw(&path).unwrap();
    let before = SystemTime::now();
    let guard = lock.lock().unwrap();
    assert!(
        guard.modified().unwrap(),
        "the first look is always a change"
    );
    assert!(
        guard.modified().unwrap(),
        "an empty file always counts as modified (v1.43)"
    );
    assert!(guard.get_last_write().unwrap().as_bytes().is_empty());

    guard.touch().unwrap();
    assert!(
        !guard.modified().unwrap(),
        "our own touch is not someone else's write"
    );
    let first = guard
        .get_last_write()
        .unwrap()
        .token()
        .expect("64-byte token");
    let written = guard.record_write().unwrap();
    assert!(!guard.modified().unwrap());
    let second = written.token().expect("64-byte token");
    drop(guard);

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 64);
    assert_eq!(bytes, written.as_bytes());
    assert_eq!(&bytes[16..20], &std::process::id().to_le_bytes());
    assert_eq!(first.pid, std::process::id());
    assert!(
        second.counter > first.counter,
        "the per-process counter increments"
    );
    assert!(first.time() >= before - Duration::from_secs(1));
    assert!(second.time() <= SystemTime::now());
    assert_ne!(first.random, second.random);

    // A second handle on the same path has its own "last seen".
    let other = LockFile::open_rw(&path).unwrap();
    let reader = other.rlock().unwrap();
    assert!(reader.modified().unwrap());
    assert!(!reader.modified().unwrap());
    let (now, changed) = reader.modified_since(&written).unwrap();
    assert!(!changed);
    assert_eq!(now, written);
    drop(reader);

    let guard = lock.lock().unwrap();
    let newer = guard.record_write().unwrap();
    drop(guard);
    let reader = other.rlock().unwrap();
    assert!(
        reader.modified().unwrap(),
        "the other handle sees the write"
    );
    assert_eq!(reader.modified_since(&written).unwrap(), (newer, true));
}

#[test]
fn touched_since_follows_the_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let lock = LockFile::open_rw(dir.path().join("mtime.lock")).unwrap();
    let guard = lock.lock().unwrap();
    guard.touch().unwrap();
    let after_touch = SystemTime::now() + Duration::from_millis(1);
    assert!(guard.touched_since(SystemTime::UNIX_EPOCH).unwrap());
    assert!(
        !guard
            .touched_since(after_touch + Duration::from_secs(60))
            .unwrap()
    );
    let before_touch = SystemTime::now() - Duration::from_secs(5);
    guard.touch().unwrap();
    assert!(guard.touched_since(before_touch).unwrap());
}

#[test]
fn read_only_lock_files_take_shared_locks_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.lock");
    drop(LockFile::open_rw(&path).unwrap());
    let ro = LockFile::open_ro(&path).unwrap();
    assert_eq!(ro.access(), Access::ReadOnly);
    let err = ro.lock().unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("ro.lock"), "{err}");
    assert!(matches!(ro.try_lock().unwrap_err(), Error::ReadOnly { .. }));
    let reader = ro.rlock().unwrap();
    assert!(reader.modified().unwrap());
    assert_eq!(held_by_us(&path), Some(KernelMode::Read));
    drop(reader);

    // The same path cannot be open both ways in one process (Go refuses too).
    let err = LockFile::open_rw(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::AccessMismatch {
                requested: Access::ReadWrite,
                existing: Access::ReadOnly,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("ro.lock"), "{err}");
    drop(ro);
    // Once no handle is left, the path may be reopened the other way.
    let rw = LockFile::open_rw(&path).unwrap();
    assert!(matches!(
        LockFile::open_ro(&path).unwrap_err(),
        Error::AccessMismatch { .. }
    ));
    drop(rw);
}

#[test]
fn opening_creates_the_file_and_directories_as_go_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph/vfs-layers/layers.lock");
    let lock = LockFile::open_rw(&path).unwrap();
    let umask = current_umask();
    let file_mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(file_mode, 0o644 & !umask);
    for d in ["graph", "graph/vfs-layers"] {
        let mode = std::fs::metadata(dir.path().join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700 & !umask, "{d}");
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "new files are empty"
    );
    assert_eq!(lock.path(), std::fs::canonicalize(&path).unwrap());

    // A parent removed after opening is recreated at the next lock, as Go's openLock does.
    drop(lock);
    let lock = LockFile::open_rw(&path).unwrap();
    std::fs::remove_dir_all(dir.path().join("graph")).unwrap();
    drop(lock.lock().unwrap());
    assert!(path.exists());
}

#[test]
fn bad_paths_and_unopenable_files_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = LockFile::open_rw(dir.path().join("..")).unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err:?}");
    assert!(err.to_string().contains(".."), "{err}");

    // A directory where the lock file should be cannot be opened read-write.
    let not_a_file = dir.path().join("a-directory");
    std::fs::create_dir(&not_a_file).unwrap();
    let err = LockFile::open_rw(&not_a_file).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("a-directory"), "{err}");

    // A file in the way of the parent directory.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let err = LockFile::open_rw(blocker.join("x.lock")).unwrap_err();
    assert!(err.to_string().contains("x.lock"), "{err}");
}

/// The process umask, from `/proc/self/status` (reading it with umask(2) would change it).
fn current_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("Umask in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

#[test]
fn a_fifo_or_a_symlink_in_the_lock_files_place_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.lock");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .expect("mkfifo");
    let target = dir.path().join("target.lock");
    std::fs::write(&target, "").expect("target");
    let link = dir.path().join("link.lock");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    // Nothing ever opens the FIFO for writing: a blocking read-only open would never return.
    for (path, found) in [(&fifo, "a FIFO"), (&link, "a symlink")] {
        for read_only in [true, false] {
            let opened = if read_only {
                LockFile::open_ro(path)
            } else {
                LockFile::open_rw(path)
            };
            match opened {
                Err(Error::NotRegular { path: p, found: f }) => {
                    assert_eq!((p.file_name(), f), (path.file_name(), found));
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }
}
