//! Path resolution beneath a root directory, as if that directory were `/` (a chroot without
//! the chroot): the one resolver of the workspace, used to read a layer's files back for
//! assembly ([`DirFileGetter`](crate::DirFileGetter)) and, in `layerstore-archive`, to create
//! them.
//!
//! [`RootDir::open_dir`] uses `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` where the
//! kernel has it, otherwise a component-by-component walk with `O_NOFOLLOW` that reads symlinks
//! itself and resolves them against the root. Either way `..` stops at the root and absolute
//! symlinks restart at the root, so no lookup leaves it. The final component of a name is then
//! handled relative to the returned directory fd with `O_NOFOLLOW`, so it is never followed.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Symlinks followed in one lookup before giving up with `ELOOP` (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

/// Longest path handed to the kernel, terminating NUL included.
pub const PATH_MAX: usize = 4096;

/// A directory used as the root of every lookup made through it.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    /// `false` once `openat2` answered `ENOSYS` (or when forced, for tests).
    use_openat2: AtomicBool,
}

impl RootDir {
    /// Opens `path` (following symlinks: the caller chose it) as the root.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self::from_fd(fd))
    }

    /// Uses an already open directory fd as the root.
    pub fn from_fd(fd: OwnedFd) -> Self {
        RootDir {
            fd,
            use_openat2: AtomicBool::new(true),
        }
    }

    /// Forces the userspace walk (the path taken on kernels without `openat2`), for tests.
    pub fn force_walk(&self) {
        self.use_openat2.store(false, Ordering::Relaxed);
    }

    /// The root directory's fd (`O_PATH`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the directory at `components` (no `.`/`..`/empty components) beneath the root,
    /// following symlinks as if the root were `/`. Returns an `O_PATH` directory fd.
    pub fn open_dir(&self, components: &[&[u8]]) -> io::Result<OwnedFd> {
        if components.is_empty() {
            return rfs::openat(
                &self.fd,
                c".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(Into::into);
        }
        // One limit for both resolvers (the walk alone could go deeper than PATH_MAX).
        let path = components.join(&b'/');
        if path.len() >= PATH_MAX {
            return Err(Errno::NAMETOOLONG.into());
        }
        if self.use_openat2.load(Ordering::Relaxed) {
            for _ in 0..8 {
                match rfs::openat2(
                    &self.fd,
                    &path[..],
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                ) {
                    // EAGAIN: a concurrent rename somewhere in the fs; the kernel asks to retry.
                    Err(Errno::AGAIN) => continue,
                    Err(Errno::NOSYS) => {
                        self.use_openat2.store(false, Ordering::Relaxed);
                        break;
                    }
                    other => return other.map_err(Into::into),
                }
            }
            if self.use_openat2.load(Ordering::Relaxed) {
                return Err(Errno::AGAIN.into());
            }
        }
        self.walk(components)
    }

    /// Like [`open_dir`](Self::open_dir), creating missing directories (mode 0755) on the way. `created`
    /// is called with each directory fd this call made, so the caller can chown it. A dangling
    /// symlink on the way is an error (`ENOENT`): nothing is created through it.
    pub fn ensure_dir(
        &self,
        components: &[&[u8]],
        created: &mut dyn FnMut(BorrowedFd<'_>) -> io::Result<()>,
    ) -> io::Result<OwnedFd> {
        match self.open_dir(components) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        // Top-down: plain directories are opened with O_NOFOLLOW relative to the previous one;
        // anything else (a symlink) is resolved the rooted way.
        let mut fd = self.open_dir(&[])?;
        for (i, component) in components.iter().enumerate() {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            fd = match rfs::openat(&fd, *component, flags, Mode::empty()) {
                Ok(next) => next,
                Err(rustix::io::Errno::NOENT) => {
                    match rfs::mkdirat(&fd, *component, Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            let next = rfs::openat(&fd, *component, flags, Mode::empty())?;
                            created(next.as_fd())?;
                            next
                        }
                        Err(rustix::io::Errno::EXIST) => self.open_dir(&components[..=i])?,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                    self.open_dir(&components[..=i])?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(fd)
    }

    /// The `openat2`-less lookup: one `openat(O_PATH | O_NOFOLLOW)` per component; symlinks are
    /// read and their targets pushed in front of the remaining components.
    fn walk(&self, components: &[&[u8]]) -> io::Result<OwnedFd> {
        let mut queue: VecDeque<Vec<u8>> = components.iter().map(|c| c.to_vec()).collect();
        // The directories walked through, each opened beneath the previous one; `..` pops.
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut symlinks = 0;
        while let Some(component) = queue.pop_front() {
            match &component[..] {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let current = stack.last().map_or(self.fd.as_fd(), |fd| fd.as_fd());
            let fd = rfs::openat(
                current,
                &component[..],
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let stat = rfs::fstat(&fd)?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => stack.push(fd),
                FileType::Symlink => {
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(Errno::LOOP.into());
                    }
                    let target = rfs::readlinkat(&fd, c"", Vec::new())?.into_bytes();
                    if target.first() == Some(&b'/') {
                        stack.clear();
                    }
                    for part in target.split(|&b| b == b'/').rev() {
                        queue.push_front(part.to_vec());
                    }
                }
                _ => return Err(Errno::NOTDIR.into()),
            }
        }
        match stack.pop() {
            Some(fd) => Ok(fd),
            None => self.open_dir(&[]),
        }
    }

    /// Opens the regular file `rel` (a clean relative name: no `.`, `..` or empty components)
    /// for reading. Its directories resolve as [`open_dir`](Self::open_dir) does; the file
    /// itself is never followed (a symlink there is `ELOOP`), a fifo does not block the open,
    /// and anything but a regular file is refused.
    pub fn open_file(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        let mut components: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
        let name = components
            .pop()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty file name"))?;
        let dir = self.open_dir(&components)?;
        Self::open_file_in(dir.as_fd(), name)
    }

    /// Opens the regular file `name` (one component) in `dir`, a directory this root resolved:
    /// never followed, a fifo does not block, anything but a regular file is refused.
    pub fn open_file_in(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
        Self::open_file_with_size_in(dir, name).map(|(fd, _)| fd)
    }

    /// [`open_file_in`](Self::open_file_in), also giving the file's size at the time it was
    /// opened (from the `fstat` that checks its type, so it costs no extra system call).
    pub fn open_file_with_size_in(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<(OwnedFd, u64)> {
        let fd = rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        let stat = rfs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        // A regular file's size is never negative.
        Ok((fd, u64::try_from(stat.st_size).unwrap_or(0)))
    }
}
