//! Running one command and measuring it: wall time around spawn + `wait4`, and the child's
//! rusage from `wait4` (peak RSS, user + system CPU).

use std::fs::File;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The message of a command stopped, or not started, because the bench was interrupted.
pub const INTERRUPTED: &str = "interrupted by a signal: the bench stops and cleans up";

/// Makes SIGINT, SIGTERM and SIGHUP set the returned flag instead of killing the bench, so a
/// [`Runner`] given it ([`Runner::stopped_by`]) ends the running command and fails the next:
/// the bench then unwinds, and its guards put the machine back (page reporting's order, the
/// scratch tmpfs, the test registry). A second signal ends the bench at once (exit 130).
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flag)))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    Ok(flag)
}

/// What one timed run of a command cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Wall-clock time from just before `spawn` to the return of `wait4`.
    pub wall: Duration,
    /// User + system CPU time of the child (and of any grandchildren it waited for).
    pub cpu: Duration,
    /// Peak resident set size of the child (`ru_maxrss`), in KiB.
    pub max_rss_kib: u64,
}

/// A finished command: its cost and what it printed on stdout.
#[derive(Debug)]
pub struct Finished {
    /// The measurement.
    pub sample: Sample,
    /// Standard output, as text (lossy).
    pub stdout: String,
}

/// Runs commands with stdout and stderr captured in files under a scratch directory.
#[derive(Debug, Clone)]
pub struct Runner {
    scratch: PathBuf,
    time_limit: Duration,
    interrupted: Arc<AtomicBool>,
}

impl Runner {
    /// A runner keeping the captured output under `scratch` (which must exist); a command
    /// still running after `time_limit` is killed and counts as failed.
    pub fn new(scratch: &Path, time_limit: Duration) -> Runner {
        Runner {
            scratch: scratch.to_path_buf(),
            time_limit,
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// This runner with `flag` (from [`stop_on_signals`]): once it is set, the running command
    /// is killed and every command fails with [`INTERRUPTED`] instead of starting.
    pub fn stopped_by(mut self, flag: Arc<AtomicBool>) -> Runner {
        self.interrupted = flag;
        self
    }

    /// Whether the bench was interrupted ([`Runner::stopped_by`]'s flag is set).
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// Runs `cmd` to completion, timed; fails (with the tail of stderr) unless it exits 0.
    pub fn timed(&self, cmd: &mut Command) -> Result<Finished, String> {
        self.execute(cmd, true)
    }

    /// Like [`Runner::timed`] with stdout going to `/dev/null` (decompressors, `cat`).
    pub fn timed_discarding_stdout(&self, cmd: &mut Command) -> Result<Sample, String> {
        self.execute(cmd, false).map(|f| f.sample)
    }

    fn execute(&self, cmd: &mut Command, capture: bool) -> Result<Finished, String> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(INTERRUPTED.into());
        }
        let out_path = self.scratch.join("stdout");
        let err_path = self.scratch.join("stderr");
        let stdout = if capture {
            let file =
                File::create(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
            Stdio::from(file)
        } else {
            Stdio::null()
        };
        let stderr = File::create(&err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::from(stderr));
        let (status, sample) = spawn_and_wait4(cmd, self.time_limit, &self.interrupted)?;
        let text = if capture {
            read_lossy(&out_path)
        } else {
            String::new()
        };
        if !status.success() {
            let err = read_lossy(&err_path);
            let tail: Vec<&str> = err.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "`{}` failed ({status}): {}",
                describe(cmd),
                tail.join(" | ")
            ));
        }
        Ok(Finished {
            sample,
            stdout: text,
        })
    }

    /// Runs `cmd` untimed (a prepare step); fails unless it exits 0.
    pub fn run(&self, cmd: &mut Command) -> Result<String, String> {
        self.timed(cmd).map(|f| f.stdout)
    }

    /// Runs `cmd` and ignores how it ends (e.g. deleting a layer that may not exist).
    pub fn run_ignoring_failure(&self, cmd: &mut Command) {
        let _ = self.timed(cmd);
    }
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Why a command was killed before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Killed {
    /// It ran past the time limit.
    TimeLimit,
    /// The bench was interrupted ([`stop_on_signals`]).
    Interrupted,
}

/// How often a wait looks at the interrupt flag: a signal may reach another thread than the
/// waiting one, whose poll(2) then goes on sleeping.
const INTERRUPT_CHECK: Duration = Duration::from_millis(200);

/// Waits until the child behind `pid` exits, `limit` passes or `interrupted` is set; in the
/// latter two cases kills it. A pidfd cannot name a recycled pid, and poll(2) on it wakes at
/// the exit itself (no polling delay).
fn enforce_time_limit(
    pid: libc::pid_t,
    limit: Duration,
    what: &str,
    interrupted: &AtomicBool,
) -> Result<Option<Killed>, String> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
    let pid = Pid::from_raw(pid).ok_or_else(|| format!("bad pid {pid}"))?;
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).map_err(|e| format!("pidfd_open: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        if interrupted.load(Ordering::Relaxed) {
            // It may have exited just now; then there is nothing to kill.
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
            return Ok(Some(Killed::Interrupted));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let slice = left.min(INTERRUPT_CHECK);
        let timeout = Timespec {
            tv_sec: i64::try_from(slice.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(slice.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) if left.is_zero() => {
                eprintln!("bench: `{what}` still running after {limit:?}: killing it");
                let _ = pidfd_send_signal(&pidfd, Signal::KILL);
                return Ok(Some(Killed::TimeLimit));
            }
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => return Ok(None),
            Err(e) => return Err(format!("poll on the pidfd of `{what}`: {e}")),
        }
    }
}

/// Lowers this process's peak RSS to its current RSS, and that as far as the allocator can.
///
/// A child's `ru_maxrss` is not its own alone: Linux keeps a process's peak across `execve`,
/// and std spawns with `CLONE_VM`, so the child starts with the bench's own peak (which
/// writing the 100,000-layer store takes past 90 MiB). Without this, every command timed
/// after that reported the bench's peak: `cat` at 100 MiB.
fn reset_own_peak_rss() {
    // SAFETY: malloc_trim only returns the allocator's free memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    // "5" resets the mm's high-water mark to its current RSS (proc(5), clear_refs). Best
    // effort: without it (an old kernel) the numbers are what they were.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Spawns `cmd` and reaps it with `wait4`, which also hands back its rusage.
fn spawn_and_wait4(
    cmd: &mut Command,
    limit: Duration,
    interrupted: &AtomicBool,
) -> Result<(ExitStatus, Sample), String> {
    reset_own_peak_rss();
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(cmd)))?;
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| format!("pid {} out of range", child.id()))?;
    let killed = enforce_time_limit(pid, limit, &describe(cmd), interrupted)?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a C struct of integers and `timeval`s; all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own, not yet reaped child (std's `Child` never waits unless
        // asked, and we drop it without waiting); both out-pointers are valid for writes.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {err}"));
        }
    }
    let wall = started.elapsed();
    drop(child);
    match killed {
        Some(Killed::TimeLimit) => {
            return Err(format!(
                "`{}` killed after the time limit of {limit:?}",
                describe(cmd)
            ));
        }
        Some(Killed::Interrupted) => return Err(INTERRUPTED.into()),
        None => {}
    }
    let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    let max_rss_kib = u64::try_from(usage.ru_maxrss).unwrap_or(0);
    Ok((
        ExitStatus::from_raw(status),
        Sample {
            wall,
            cpu,
            max_rss_kib,
        },
    ))
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_run_reports_output_and_rusage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runner = Runner::new(dir.path(), Duration::from_secs(60));
        // `head -c` of 32 MiB through a buffer: a child with a measurable RSS and CPU time.
        let done = runner
            .timed(
                Command::new("sh").args(["-c", "echo hello; head -c 33554432 /dev/zero | wc -c"]),
            )
            .expect("sh runs");
        assert_eq!(done.stdout, "hello\n33554432\n");
        assert!(done.sample.max_rss_kib > 100, "{:?}", done.sample);
        assert!(done.sample.wall >= done.sample.cpu / 4, "{:?}", done.sample);
    }

    #[test]
    fn a_childs_peak_rss_is_its_own_not_the_benchs() {
        // The bench grows big, then frees (as writing a big store does).
        let big: Vec<u8> = vec![1u8; 256 << 20];
        std::hint::black_box(&big);
        drop(big);
        let dir = tempfile::tempdir().expect("tempdir");
        let runner = Runner::new(dir.path(), Duration::from_secs(60));
        let done = runner.timed(&mut Command::new("true")).expect("true runs");
        // `true` itself needs a few MiB; 256 MiB would be the bench's peak.
        assert!(
            done.sample.max_rss_kib < 64 * 1024,
            "{} KiB",
            done.sample.max_rss_kib
        );
    }

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runner = Runner::new(dir.path(), Duration::from_secs(60));
        let err = runner
            .timed(Command::new("sh").args(["-c", "echo broken-thing >&2; exit 3"]))
            .expect_err("exit 3 is a failure");
        assert!(err.contains("sh -c"), "{err}");
        assert!(err.contains("broken-thing"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }

    #[test]
    fn a_command_over_the_time_limit_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runner = Runner::new(dir.path(), Duration::from_millis(200));
        let started = Instant::now();
        let err = runner
            .timed(Command::new("sleep").arg("30"))
            .expect_err("killed");
        assert!(err.contains("time limit"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn an_interrupt_kills_the_running_command_and_refuses_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = Arc::new(AtomicBool::new(false));
        let runner = Runner::new(dir.path(), Duration::from_secs(60)).stopped_by(Arc::clone(&flag));
        runner
            .timed(&mut Command::new("true"))
            .expect("runs before the interrupt");
        let setter = {
            let flag = Arc::clone(&flag);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                flag.store(true, Ordering::Relaxed);
            })
        };
        let started = Instant::now();
        let err = runner
            .timed(Command::new("sleep").arg("30"))
            .expect_err("killed by the interrupt");
        setter.join().expect("setter");
        assert_eq!(err, INTERRUPTED);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let marker = dir.path().join("ran");
        let err = runner
            .timed(Command::new("touch").arg(&marker))
            .expect_err("not started");
        assert_eq!(err, INTERRUPTED);
        assert!(
            !marker.exists(),
            "the command after the interrupt never ran"
        );
    }

    #[test]
    fn missing_program_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Runner::new(dir.path(), Duration::from_secs(60))
            .timed(&mut Command::new("/nonexistent/lsbench-tool"))
            .expect_err("no such program");
        assert!(err.contains("/nonexistent/lsbench-tool"), "{err}");
    }
}
