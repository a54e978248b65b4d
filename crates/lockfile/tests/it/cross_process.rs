//! Two processes: the test binary re-runs itself as a child (`testsupport::helper`: the same
//! test with a role in the environment); the child takes a lock and reports over its stdout
//! pipe, the parent checks what it can take meanwhile, then closes the child's stdin to let it
//! release and exit.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use layerstore_lockfile::{Error, Holder, LockFile, LockState};
use layerstore_testsupport::helper;
use layerstore_testsupport::locks::{KernelMode, posix_locks_on};

const PATH_ENV: &str = "LAYERSTORE_LOCKFILE_TEST_CHILD_PATH";
/// Prefix of the child's report lines (libtest prints its own lines around them).
const REPORT: &str = "CHILD-REPORT ";

/// What the child does.
#[derive(Clone, Copy)]
enum Role {
    /// Hold a write lock until stdin closes.
    Write,
    /// Hold a read lock until stdin closes.
    Read,
    /// Try a write lock and a read lock once, report the outcomes, exit.
    TryBoth,
    /// Lock, record a write, report the token, unlock, exit.
    RecordWrite,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Write => "write",
            Role::Read => "read",
            Role::TryBoth => "try-both",
            Role::RecordWrite => "record-write",
        }
    }
}

/// In the child process, plays the role and returns `true`; in the parent returns `false`.
fn play_child_role() -> bool {
    let Some(role) = helper::role() else {
        return false;
    };
    let path = std::env::var(PATH_ENV).expect("child needs the lock path");
    let lock = LockFile::open_rw(&path).expect("child opens the lock");
    let report = |msg: &str| {
        println!("{REPORT}{msg}");
        std::io::stdout().flush().expect("flush stdout");
    };
    let wait_for_stdin_eof = || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    };
    match role.as_str() {
        "write" => {
            let guard = lock.lock().expect("child write lock");
            report("locked");
            wait_for_stdin_eof();
            drop(guard);
        }
        "read" => {
            let guard = lock.rlock().expect("child read lock");
            report("locked");
            wait_for_stdin_eof();
            drop(guard);
        }
        "try-both" => {
            let outcome = |r: Result<(), Error>| match r {
                Ok(()) => "acquired".to_string(),
                Err(Error::WouldBlock { holder, .. }) => format!("would-block:{holder:?}"),
                Err(e) => format!("error:{e}"),
            };
            let write = outcome(lock.try_lock().map(drop));
            let read = outcome(lock.try_rlock().map(drop));
            report(&format!("{write} {read}"));
        }
        "record-write" => {
            let guard = lock.lock().expect("child write lock");
            let written = guard.record_write().expect("child record_write");
            let hex: String = written
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            report(&hex);
        }
        other => panic!("unknown child role {other}"),
    }
    true
}

/// How long a child may take to report before the test fails (instead of hanging).
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process playing a role on a lock file.
struct ChildLocker {
    child: Child,
    stdin: Option<ChildStdin>,
    reports: mpsc::Receiver<String>,
}

impl ChildLocker {
    fn spawn(role: Role, path: &Path) -> Self {
        let mut child = helper::command(role.name())
            .env(PATH_ENV, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the test binary as a child");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let (tx, reports) = mpsc::channel();
        thread::spawn(move || {
            // libtest may print "test <name> ... " on the same line before our report.
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(at) = line.find(REPORT) {
                    let _ = tx.send(line[at + REPORT.len()..].trim_end().to_string());
                }
            }
        });
        ChildLocker {
            child,
            stdin,
            reports,
        }
    }

    /// The child's next report.
    fn report(&mut self) -> String {
        self.reports
            .recv_timeout(REPORT_TIMEOUT)
            .expect("the child exited or timed out without reporting")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's stdin (its signal to unlock) and waits for a clean exit.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }
}

impl Drop for ChildLocker {
    fn drop(&mut self) {
        // Only matters when a test fails half-way: do not leave a child holding a lock.
        if self.child.try_wait().is_ok_and(|status| status.is_none()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn assert_would_block_by_other_process<T: std::fmt::Debug>(result: Result<T, Error>) {
    match result {
        Err(Error::WouldBlock {
            holder: Holder::OtherProcess,
            ..
        }) => {}
        other => panic!("expected WouldBlock by another process, got {other:?}"),
    }
}

#[test]
fn a_writer_in_another_process_excludes_us() {
    if play_child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xproc-write.lock");
    let lock = LockFile::open_rw(&path).unwrap();
    let mut child = ChildLocker::spawn(Role::Write, &path);
    assert_eq!(child.report(), "locked");
    let kernel = posix_locks_on(&path);
    assert!(
        kernel
            .iter()
            .any(|l| l.pid == child.pid() && l.mode == KernelMode::Write && !l.blocked),
        "the child holds an fcntl write lock: {kernel:?}"
    );
    assert_would_block_by_other_process(lock.try_lock());
    assert_would_block_by_other_process(lock.try_rlock());
    assert_eq!(
        lock.state(),
        LockState::Unlocked,
        "failed tries leave nothing held"
    );

    // A blocking lock waits until the child lets go.
    let acquired = AtomicBool::new(false);
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let guard = lock.lock().unwrap();
            acquired.store(true, Ordering::SeqCst);
            drop(guard);
        });
        thread::sleep(Duration::from_millis(200));
        assert!(
            !acquired.load(Ordering::SeqCst),
            "lock() returned while the child held it"
        );
        child.finish();
        waiter.join().unwrap();
    });
    assert!(acquired.load(Ordering::SeqCst));
    drop(lock.try_lock().unwrap());
}

#[test]
fn readers_in_two_processes_coexist_and_exclude_writers() {
    if play_child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xproc-read.lock");
    let lock = LockFile::open_rw(&path).unwrap();
    let mut child = ChildLocker::spawn(Role::Read, &path);
    assert_eq!(child.report(), "locked");
    let reader = lock.try_rlock().expect("two processes may read at once");
    let second_reader = lock.rlock().unwrap();
    assert_eq!(lock.state(), LockState::Read { holders: 2 });
    let readers: Vec<_> = posix_locks_on(&path)
        .into_iter()
        .filter(|l| l.mode == KernelMode::Read && !l.blocked)
        .map(|l| l.pid)
        .collect();
    assert!(readers.contains(&child.pid()) && readers.contains(&std::process::id()));
    drop((reader, second_reader));
    // The child's F_RDLCK still refuses our writer.
    assert_would_block_by_other_process(lock.try_lock());
    child.finish();
    drop(lock.try_lock().unwrap());
}

#[test]
fn our_locks_exclude_another_process() {
    if play_child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xproc-ours.lock");
    let lock = LockFile::open_rw(&path).unwrap();

    let write = lock.lock().unwrap();
    let mut child = ChildLocker::spawn(Role::TryBoth, &path);
    assert_eq!(
        child.report(),
        "would-block:OtherProcess would-block:OtherProcess"
    );
    child.finish();
    drop(write);

    let read = lock.rlock().unwrap();
    let mut child = ChildLocker::spawn(Role::TryBoth, &path);
    assert_eq!(child.report(), "would-block:OtherProcess acquired");
    child.finish();
    drop(read);

    let mut child = ChildLocker::spawn(Role::TryBoth, &path);
    assert_eq!(child.report(), "acquired acquired");
    child.finish();
}

#[test]
fn a_write_in_another_process_is_seen_as_modified() {
    if play_child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xproc-modified.lock");
    let lock = LockFile::open_rw(&path).unwrap();
    let before = {
        let guard = lock.lock().unwrap();
        guard.touch().unwrap();
        assert!(!guard.modified().unwrap());
        guard.get_last_write().unwrap()
    };

    let mut child = ChildLocker::spawn(Role::RecordWrite, &path);
    let child_hex = child.report();
    let child_pid = child.pid();
    child.finish();

    let reader = lock.rlock().unwrap();
    let (now, changed) = reader.modified_since(&before).unwrap();
    assert!(changed);
    assert!(reader.modified().unwrap(), "the child's write is a change");
    assert!(!reader.modified().unwrap(), "and is seen once");
    let token = now.token().expect("a full token");
    assert_eq!(token.pid, child_pid);
    let our_hex: String = now.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(our_hex, child_hex);
}

#[test]
fn readers_waiting_for_another_process_share_one_kernel_lock() {
    if play_child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xproc-waiting-readers.lock");
    let lock = LockFile::open_rw(&path).unwrap();
    let mut child = ChildLocker::spawn(Role::Write, &path);
    assert_eq!(child.report(), "locked");
    let all_reading = std::sync::Barrier::new(3);
    let checked = std::sync::Barrier::new(3);
    thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let guard = lock.rlock().unwrap();
                    // Both readers hold the lock at once once the child is gone.
                    all_reading.wait();
                    checked.wait();
                    drop(guard);
                })
            })
            .collect();
        // One reader waits in F_SETLKW, the other for it; a try meanwhile must not block.
        let deadline = std::time::Instant::now() + REPORT_TIMEOUT;
        while !posix_locks_on(&path)
            .iter()
            .any(|l| l.pid == std::process::id() && l.blocked)
        {
            assert!(std::time::Instant::now() < deadline, "no reader waited");
            thread::sleep(Duration::from_millis(5));
        }
        assert_would_block_by_other_process(lock.try_rlock());
        assert_eq!(lock.state(), LockState::Unlocked);
        child.finish();
        all_reading.wait();
        assert_eq!(lock.state(), LockState::Read { holders: 2 });
        assert_eq!(
            posix_locks_on(&path)
                .iter()
                .filter(|l| l.pid == std::process::id())
                .count(),
            1,
            "one F_RDLCK for both readers"
        );
        checked.wait();
        for r in readers {
            r.join().unwrap();
        }
    });
    assert_eq!(lock.state(), LockState::Unlocked);
}
