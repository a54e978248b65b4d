//! The walker: the calling thread goes through the source tree iteratively, creates
//! directories and special files, hands regular files to the worker in batches, and finishes
//! each directory (its metadata last) once its files are copied.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};

use layerstore_driver::tree::{self, DirChain, mode};
use rustix::fs::{FileType, Mode, Statx};

use super::{BATCH_LEN, Copier, CopyError, Dir, DirFds, FileJob, Step, step};

/// A directory on the walker's current path.
struct Level {
    /// Its source's `statx`, which its copy gets at the end.
    stat: Statx,
    /// Whether the copy's owner must still be set.
    chown: bool,
    entries: std::vec::IntoIter<(CString, FileType)>,
    /// Regular files read but not yet handed over.
    files: Vec<CString>,
    /// One clone per pending batch.
    pending: Arc<()>,
}

/// A directory left by the walker whose queued files are not all copied yet: finished (its
/// times last) once they are.
pub(super) struct Deferred {
    src: Arc<OwnedFd>,
    dst: Arc<OwnedFd>,
    stat: Statx,
    chown: bool,
    pending: Arc<()>,
    path: PathBuf,
}

/// The calling thread: walks the source iteratively, both trees' descriptors in bounded
/// windows ([`DirChain`]).
pub(super) struct Walker<'a> {
    pub(super) copier: Copier<'a>,
    pub(super) src: DirChain,
    pub(super) dst: DirChain,
    /// The current directory, relative to the roots.
    pub(super) path: PathBuf,
    pub(super) deferred: Vec<Deferred>,
}

impl Walker<'_> {
    fn fail(&self, name: Option<&CStr>, (op, source): (&'static str, io::Error)) {
        let path = match name {
            Some(name) => self.path.join(tree::name_path(name)),
            None => self.path.clone(),
        };
        self.copier.shared.fail(CopyError { path, op, source });
    }

    fn level(&mut self, stat: Statx, chown: bool) -> Option<Level> {
        match self.copier.read_entries(self.src.current()) {
            Ok(entries) => Some(Level {
                stat,
                chown,
                entries: entries.into_iter(),
                files: Vec::new(),
                pending: Arc::new(()),
            }),
            Err(e) => {
                self.fail(None, ("readdir", e));
                None
            }
        }
    }

    /// Copies everything below the roots; directories are finished on the way back up (or
    /// deferred while files of theirs are queued), the root is left to the caller.
    pub(super) fn walk(&mut self, root_stat: Statx, queue: Option<&SyncSender<FileJob>>) {
        let Some(root) = self.level(root_stat, true) else {
            return;
        };
        let mut levels = vec![root];
        while let Some(level) = levels.last_mut() {
            if self.copier.shared.failed() {
                return;
            }
            let Some((name, file_type)) = level.entries.next() else {
                let batch = std::mem::take(&mut level.files);
                self.dispatch_last(&mut levels, batch, queue);
                if levels.len() == 1 {
                    return; // the root: finished by the caller once the worker is done
                }
                if let Some(done) = levels.pop() {
                    self.leave(done);
                }
                continue;
            };
            // `getdents` says regular file: its one `statx` comes with its open.
            if file_type == FileType::RegularFile {
                level.files.push(name);
                if level.files.len() == BATCH_LEN {
                    let batch = std::mem::take(&mut level.files);
                    self.dispatch_last(&mut levels, batch, queue);
                }
                continue;
            }
            match self.entry(&name) {
                Ok(Entry::Done) => {}
                Ok(Entry::File) => {
                    if let Some(level) = levels.last_mut() {
                        level.files.push(name);
                    }
                }
                Ok(Entry::Dir(st)) => match self.enter(&name, &st) {
                    Ok(()) => {
                        self.path.push(tree::name_path(&name));
                        let chown = !self.copier.shared.owner_at_create(&st);
                        match self.level(*st, chown) {
                            Some(level) => levels.push(level),
                            None => return,
                        }
                    }
                    Err(e) => {
                        self.fail(Some(&name), e);
                        return;
                    }
                },
                Err(e) => {
                    self.fail(Some(&name), e);
                    return;
                }
            }
        }
    }

    /// Anything but a regular file known as one from `getdents`: stat by name, then make it
    /// (a directory is only reported, for the walk to enter).
    fn entry(&mut self, name: &CStr) -> Step<Entry> {
        let dir = Dir {
            src: self.src.current(),
            dst: self.dst.current(),
            path: &self.path,
        };
        let st = tree::stat_at(dir.src, name).map_err(step("stat"))?;
        match tree::file_type(&st) {
            mode::S_IFDIR => Ok(Entry::Dir(Box::new(st))),
            // The filesystem did not say (`DT_UNKNOWN`), or the entry changed since.
            mode::S_IFREG => Ok(Entry::File),
            _ => self
                .copier
                .copy_special(dir, name, &st)
                .map(|()| Entry::Done),
        }
    }

    /// Makes the copy of directory `name` and makes it (and its source) current.
    fn enter(&mut self, name: &CStr, st: &Statx) -> Step<()> {
        rustix::fs::mkdirat(self.dst.current(), name, Mode::from_raw_mode(0o700))
            .map_err(step("mkdir"))?;
        let src = tree::open_dir_checked(self.src.current(), name, st).map_err(step("open"))?;
        let dst = tree::open_dir_at(self.dst.current(), name).map_err(step("open"))?;
        self.src.push(src).map_err(step("open"))?;
        self.dst.push(dst).map_err(step("open"))
    }

    /// Hands `batch` (files of the current directory, the last level) to the worker, or
    /// copies it here when the queue is full or there is no worker.
    fn dispatch_last(
        &mut self,
        levels: &mut [Level],
        batch: Vec<CString>,
        queue: Option<&SyncSender<FileJob>>,
    ) {
        if batch.is_empty() {
            return;
        }
        let Some(level) = levels.last_mut() else {
            return;
        };
        if let Some(queue) = queue {
            let fds = DirFds {
                src: self.src.current_shared(),
                dst: self.dst.current_shared(),
            };
            let job = FileJob {
                fds,
                _pending: Arc::clone(&level.pending),
                path: self.path.clone(),
                names: batch,
            };
            match queue.try_send(job) {
                Ok(()) => return,
                Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                    let dir = Dir {
                        src: back.fds.src.as_fd(),
                        dst: back.fds.dst.as_fd(),
                        path: &back.path,
                    };
                    self.copier.copy_files(dir, &back.names);
                    return;
                }
            }
        }
        let dir = Dir {
            src: self.src.current(),
            dst: self.dst.current(),
            path: &self.path,
        };
        self.copier.copy_files(dir, &batch);
    }

    /// Goes back up from the finished directory `done`: finishes it, or defers it while
    /// batches of its files are queued.
    fn leave(&mut self, done: Level) {
        let popped = self.src.pop().and_then(|src| Ok((src, self.dst.pop()?)));
        let (src, dst) = match popped {
            Ok(fds) => fds,
            Err(e) => {
                self.fail(None, ("open the parent directory", e));
                return;
            }
        };
        let Level {
            stat,
            chown,
            pending,
            ..
        } = done;
        let deferred = Deferred {
            src,
            dst,
            stat,
            chown,
            pending,
            path: self.path.clone(),
        };
        self.path.pop();
        self.deferred.push(deferred);
        self.finish_deferred(false);
    }

    /// Finishes the deferred directories whose files are all copied (`all`: every one; the
    /// worker is done).
    pub(super) fn finish_deferred(&mut self, all: bool) {
        let mut index = 0;
        while index < self.deferred.len() {
            if !all && Arc::strong_count(&self.deferred[index].pending) > 1 {
                index += 1;
                continue;
            }
            let dir = self.deferred.swap_remove(index);
            if self.copier.shared.failed() {
                continue;
            }
            let result = self
                .copier
                .finish_fd(&dir.src, &dir.dst, &dir.stat, dir.chown, true);
            if let Err((op, source)) = result {
                self.copier.shared.fail(CopyError {
                    path: dir.path,
                    op,
                    source,
                });
                continue;
            }
            self.copier.stats.directories += 1;
        }
    }

    pub(super) fn finish_root(&mut self, root_stat: &Statx) {
        if self.copier.shared.failed() {
            return;
        }
        let result = self.copier.finish_fd(
            &self.src.current(),
            &self.dst.current(),
            root_stat,
            true,
            true,
        );
        match result {
            Ok(()) => self.copier.stats.directories += 1,
            Err((op, source)) => self.copier.shared.fail(CopyError {
                path: PathBuf::new(),
                op,
                source,
            }),
        }
    }
}

/// What [`Walker::entry`] made of an entry.
enum Entry {
    /// Copied (a symlink, device, FIFO or socket).
    Done,
    /// A regular file after all: to be batched.
    File,
    /// A directory, to enter (boxed: a `statx` is large).
    Dir(Box<Statx>),
}
