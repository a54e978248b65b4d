//! Building overlay mount data and mounting it: `mount(2)` with every directory named
//! through `/proc/self/fd` (descriptors the driver opened without following symlinks), the new
//! mount API (`fsopen`/`fsconfig` with `lowerdir+`, `move_mount` onto the descriptor of the
//! mount point) for chains whose data does not fit a page, or a FUSE mount program.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags};

/// The kernel's limit on overlay layers in one mount (`OVL_MAX_STACK`).
pub const KERNEL_MAX_LAYERS: usize = 500;

/// Go's `mount.ParseOptions`: options naming mount flags (`nodev`, `ro`, …) become flags, the
/// others stay in the data string (joined by `,` again, so commas inside a quoted SELinux
/// label survive).
pub fn parse_options(options: &str) -> (MountFlags, String) {
    let mut flags = MountFlags::empty();
    let mut data = Vec::new();
    for option in options.split(',') {
        let (set, clear) = match option {
            "defaults" => (MountFlags::empty(), MountFlags::empty()),
            "ro" => (MountFlags::RDONLY, MountFlags::empty()),
            "rw" => (MountFlags::empty(), MountFlags::RDONLY),
            "nosuid" => (MountFlags::NOSUID, MountFlags::empty()),
            "suid" => (MountFlags::empty(), MountFlags::NOSUID),
            "nodev" => (MountFlags::NODEV, MountFlags::empty()),
            "dev" => (MountFlags::empty(), MountFlags::NODEV),
            "noexec" => (MountFlags::NOEXEC, MountFlags::empty()),
            "exec" => (MountFlags::empty(), MountFlags::NOEXEC),
            "sync" => (MountFlags::SYNCHRONOUS, MountFlags::empty()),
            "async" => (MountFlags::empty(), MountFlags::SYNCHRONOUS),
            "dirsync" => (MountFlags::DIRSYNC, MountFlags::empty()),
            "noatime" => (MountFlags::NOATIME, MountFlags::empty()),
            "atime" => (MountFlags::empty(), MountFlags::NOATIME),
            "nodiratime" => (MountFlags::NODIRATIME, MountFlags::empty()),
            "diratime" => (MountFlags::empty(), MountFlags::NODIRATIME),
            "relatime" => (MountFlags::RELATIME, MountFlags::empty()),
            "norelatime" => (MountFlags::empty(), MountFlags::RELATIME),
            "strictatime" => (MountFlags::STRICTATIME, MountFlags::empty()),
            "nostrictatime" => (MountFlags::empty(), MountFlags::STRICTATIME),
            _ => {
                data.push(option);
                continue;
            }
        };
        flags = (flags | set) - clear;
    }
    (flags, data.join(","))
}

/// go-selinux's `FormatMountLabel`: appends `context="<label>"` when there is a label.
pub fn format_mount_label(options: &str, label: &str) -> String {
    match (options.is_empty(), label.is_empty()) {
        (_, true) => options.to_string(),
        (true, false) => format!("context={label:?}"),
        (false, false) => format!("{options},context={label:?}"),
    }
}

/// Everything needed to mount one layer, every directory an open descriptor: the mount data
/// names them `/proc/self/fd/<n>` (`/proc/<pid>/fd/<n>` for a mount program), which the kernel
/// resolves to exactly the directories opened, so nothing read from the layer's files and no
/// symlink swapped in meanwhile can reach the mount data or redirect it.
#[derive(Debug)]
pub struct MountSpec {
    /// Every lower dir, nearest first (a read-only mount starts with the layer's own `diff`).
    pub lowers: Vec<OwnedFd>,
    /// Upper and work dirs of a writeable mount.
    pub upper: Option<(OwnedFd, OwnedFd)>,
    /// Caller / default options (`nodev`, `metacopy=on`, …).
    pub options: Vec<String>,
    /// SELinux label, passed as `context=`.
    pub mount_label: String,
    /// The mount point.
    pub target: OwnedFd,
}

/// `<prefix>/<n>` for the descriptor `fd`.
fn fd_path(prefix: &str, fd: &OwnedFd) -> String {
    format!("{prefix}/{}", fd.as_raw_fd())
}

/// The prefix naming this process's descriptors for itself.
const OWN_FDS: &str = "/proc/self/fd";

impl MountSpec {
    /// The overlay mount data, descriptors named under `prefix` (`/proc/self/fd`).
    pub fn data(&self, prefix: &str) -> String {
        let lowers: Vec<String> = self.lowers.iter().map(|fd| fd_path(prefix, fd)).collect();
        let mut opts = format!("lowerdir={}", lowers.join(":"));
        if let Some((upper, work)) = &self.upper {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                fd_path(prefix, upper),
                fd_path(prefix, work)
            ));
        }
        let extra: Vec<&str> = self
            .options
            .iter()
            .map(String::as_str)
            .filter(|o| !o.is_empty())
            .collect();
        if !extra.is_empty() {
            opts.push(',');
            opts.push_str(&extra.join(","));
        }
        format_mount_label(&opts, &self.mount_label)
    }
}

/// How a layer got mounted (for tests and debug output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMethod {
    /// `mount(2)`, every directory named through `/proc/self/fd`.
    Descriptors,
    /// `fsopen`/`fsconfig` with `lowerdir+` (mount data longer than a page).
    NewApi,
    /// A FUSE mount program.
    Program,
}

fn page_size() -> usize {
    rustix::param::page_size()
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount data"))
}

/// Refuses a mount label that could end the quoted `context="…"` option early (a `"` or a
/// `\`) or that holds control characters: a label comes from the layer's record, which is
/// input like every file of the store.
pub fn check_mount_label(label: &str) -> io::Result<()> {
    if label
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mount label {label:?} holds a quote, a backslash or a control character"),
        ));
    }
    Ok(())
}

/// Mounts `spec` with the kernel's overlay: `mount(2)` when the data fits a page, else the
/// new mount API (Linux 6.8+ for `lowerdir+`).
pub fn mount_kernel(spec: &MountSpec, new_api: bool) -> io::Result<MountMethod> {
    check_mount_label(&spec.mount_label)?;
    let data = spec.data(OWN_FDS);
    if data.len() < page_size() {
        let (flags, data) = parse_options(&data);
        rustix::mount::mount(
            "overlay",
            fd_path(OWN_FDS, &spec.target).as_str(),
            "overlay",
            flags,
            cstring(&data)?.as_c_str(),
        )?;
        return Ok(MountMethod::Descriptors);
    }
    if new_api {
        mount_new_api(spec)?;
        return Ok(MountMethod::NewApi);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "cannot mount layer, mount data too large {} >= page size {} (and the kernel has no fsconfig lowerdir+)",
            data.len(),
            page_size()
        ),
    ))
}

/// Whether the kernel's overlay accepts `lowerdir+` through `fsconfig` (Linux 6.8 and later):
/// probed by configuring (never creating) a context with one lower dir.
pub fn new_api_supported(probe_dir: &Path) -> bool {
    let Ok(fs) = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) else {
        return false;
    };
    rustix::mount::fsconfig_set_string(&fs, "lowerdir+", probe_dir).is_ok()
}

/// Mounts through `fsopen`/`fsconfig`/`fsmount`/`move_mount`, one `lowerdir+` per lower.
fn mount_new_api(spec: &MountSpec) -> io::Result<()> {
    use rustix::mount::{fsconfig_set_flag, fsconfig_set_string};
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let with_key = |key: &str, e: rustix::io::Errno| {
        io::Error::new(io::Error::from(e).kind(), format!("fsconfig {key}: {e}"))
    };
    for lower in &spec.lowers {
        fsconfig_set_string(&fs, "lowerdir+", fd_path(OWN_FDS, lower).as_str())
            .map_err(|e| with_key("lowerdir+", e))?;
    }
    if let Some((upper, work)) = &spec.upper {
        fsconfig_set_string(&fs, "upperdir", fd_path(OWN_FDS, upper).as_str())
            .map_err(|e| with_key("upperdir", e))?;
        fsconfig_set_string(&fs, "workdir", fd_path(OWN_FDS, work).as_str())
            .map_err(|e| with_key("workdir", e))?;
    }
    let (flags, data) = parse_options(&spec.options.join(","));
    for option in data.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some((key, value)) => fsconfig_set_string(&fs, key, value),
            None => fsconfig_set_flag(&fs, option),
        }
        .map_err(|e| with_key(option, e))?;
    }
    if !spec.mount_label.is_empty() {
        fsconfig_set_string(&fs, "context", spec.mount_label.as_str())
            .map_err(|e| with_key("context", e))?;
    }
    let mut attrs = MountAttrFlags::empty();
    for (flag, attr) in [
        (MountFlags::RDONLY, MountAttrFlags::MOUNT_ATTR_RDONLY),
        (MountFlags::NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (MountFlags::NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (MountFlags::NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        (MountFlags::NOATIME, MountAttrFlags::MOUNT_ATTR_NOATIME),
        (
            MountFlags::STRICTATIME,
            MountAttrFlags::MOUNT_ATTR_STRICTATIME,
        ),
        (
            MountFlags::NODIRATIME,
            MountAttrFlags::MOUNT_ATTR_NODIRATIME,
        ),
    ] {
        if flags.contains(flag) {
            attrs |= attr;
        }
    }
    if flags.contains(MountFlags::RDONLY) {
        fsconfig_set_flag(&fs, "ro").map_err(|e| with_key("ro", e))?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(|e| with_key("create", e))?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    rustix::mount::move_mount(
        mnt.as_fd(),
        c"",
        spec.target.as_fd(),
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?;
    Ok(())
}

/// Mounts `spec` with a FUSE program (`fuse-overlayfs -o <data> <target>`): the program is
/// another process, so the descriptors are named `/proc/<our pid>/fd/<n>` (it opens them
/// before it returns, while they are still open here).
pub fn mount_program(program: &Path, spec: &MountSpec) -> io::Result<MountMethod> {
    check_mount_label(&spec.mount_label)?;
    let prefix = format!("/proc/{}/fd", std::process::id());
    let data = spec.data(&prefix);
    let output = Command::new(program)
        .arg("-o")
        .arg(&data)
        .arg(fd_path(&prefix, &spec.target))
        .output()?;
    if output.status.success() {
        Ok(MountMethod::Program)
    } else {
        Err(io::Error::other(format!(
            "{} failed ({}): {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Unmounts the FUSE mount at the entry `name` of `dir` with `fusermount3 -u` /
/// `fusermount -u` (named through `/proc/<our pid>/fd`), falling back to
/// [`layerstore_driver::mount::unmount_at`] (root may always unmount).
pub fn unmount_fuse_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<()> {
    let mut path = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        dir.as_raw_fd()
    ));
    path.push(layerstore_driver::tree::name_path(name));
    for tool in ["fusermount3", "fusermount"] {
        let ok = Command::new(tool)
            .arg("-u")
            .arg(&path)
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(());
        }
    }
    layerstore_driver::mount::unmount_at(dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_options_become_flags_and_the_rest_stays_data() {
        let (flags, data) = parse_options("lowerdir=/a:/b,nodev,metacopy=on,ro,context=\"x,y\"");
        assert_eq!(flags, MountFlags::NODEV | MountFlags::RDONLY);
        assert_eq!(data, "lowerdir=/a:/b,metacopy=on,context=\"x,y\"");
        let (flags, _) = parse_options("ro,rw,nosuid");
        assert_eq!(flags, MountFlags::NOSUID);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// Every option either becomes a flag or stays, in order, in the data string.
        #[test]
        fn options_are_partitioned(options in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("nodev".to_string()),
                proptest::strategy::Just("ro".to_string()),
                proptest::strategy::Just("noexec".to_string()),
                "[a-z]{1,8}=[a-z0-9/:]{0,12}",
            ],
            0..8,
        )) {
            let (flags, data) = parse_options(&options.join(","));
            let kept: Vec<&String> = options.iter().filter(|o| o.contains('=')).collect();
            let kept: Vec<&str> = kept.iter().map(|s| s.as_str()).collect();
            proptest::prop_assert_eq!(data, kept.join(","));
            proptest::prop_assert_eq!(
                flags.contains(MountFlags::NODEV),
                options.iter().any(|o| o == "nodev")
            );
            proptest::prop_assert_eq!(
                flags.contains(MountFlags::RDONLY),
                options.iter().any(|o| o == "ro")
            );
        }
    }

    #[test]
    fn labels_are_quoted_context_options() {
        assert_eq!(format_mount_label("a=b", ""), "a=b");
        assert_eq!(format_mount_label("", "l"), "context=\"l\"");
        assert_eq!(
            format_mount_label("a=b", "system_u:object_r:container_file_t:s0:c1,c2"),
            "a=b,context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
    }

    #[test]
    fn mount_data_names_descriptors_only() {
        let tmp = tempfile::tempdir().unwrap();
        let open = || layerstore_driver::tree::open_dir(tmp.path()).unwrap();
        let spec = MountSpec {
            lowers: vec![open(), open()],
            upper: Some((open(), open())),
            options: vec!["nodev".into()],
            mount_label: "lbl".into(),
            target: open(),
        };
        let data = spec.data("/proc/self/fd");
        let fds: Vec<i32> = spec.lowers.iter().map(|fd| fd.as_raw_fd()).collect();
        let (upper, work) = spec
            .upper
            .as_ref()
            .map(|(u, w)| (u.as_raw_fd(), w.as_raw_fd()))
            .unwrap();
        assert_eq!(
            data,
            format!(
                "lowerdir=/proc/self/fd/{}:/proc/self/fd/{},upperdir=/proc/self/fd/{upper},workdir=/proc/self/fd/{work},nodev,context=\"lbl\"",
                fds[0], fds[1]
            )
        );
        // Nothing but descriptors names a directory.
        assert!(!data.contains(tmp.path().to_str().unwrap()));
        assert!(check_mount_label("system_u:object_r:container_file_t:s0:c1,c2").is_ok());
        assert!(check_mount_label("x\",upperdir=/tmp,\"").is_err());
    }
}
