//! Building overlay mount data as Go does, and mounting it: `mount(2)` with absolute paths,
//! `mount(2)` with paths relative to the driver home (from a thread with its own working
//! directory), the new mount API (`fsopen`/`fsconfig` with `lowerdir+`) for chains whose
//! options do not fit a page, or a FUSE mount program.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

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

/// Everything needed to mount one layer.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// The driver home (working directory for the relative form).
    pub home: PathBuf,
    /// The layer.
    pub id: String,
    /// Upper and work dirs (`<id>/diff`, `<id>/work`) are used: a writeable mount.
    pub read_write: bool,
    /// Every lower dir as an absolute path, nearest first (`<home>/l/X`, `<home>/<id>/empty`;
    /// a read-only mount starts with the layer's own `diff`).
    pub lowers_abs: Vec<PathBuf>,
    /// The same lower dirs as the relative form names them (`l/X`, `<id>/empty`; Go keeps a
    /// read-only mount's own `diff` absolute).
    pub lowers_rel: Vec<String>,
    /// Caller / default options (`nodev`, `metacopy=on`, …).
    pub options: Vec<String>,
    /// SELinux label, passed as `context=`.
    pub mount_label: String,
    /// Where to mount.
    pub target: PathBuf,
    /// The same, relative to the home (`<id>/merged`).
    pub target_rel: String,
}

impl MountSpec {
    /// The mount data Go builds: absolute paths (`relative = false`) or, when that does not
    /// fit a page, paths relative to the home.
    pub fn data(&self, relative: bool) -> String {
        let join_abs = || {
            self.lowers_abs
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(":")
        };
        let lowers = if relative {
            self.lowers_rel.join(":")
        } else {
            join_abs()
        };
        let mut opts = if self.read_write {
            let (upper, work) = if relative {
                (format!("{}/diff", self.id), format!("{}/work", self.id))
            } else {
                let dir = self.home.join(&self.id);
                (
                    dir.join("diff").to_string_lossy().into_owned(),
                    dir.join("work").to_string_lossy().into_owned(),
                )
            };
            format!("lowerdir={lowers},upperdir={upper},workdir={work}")
        } else {
            format!("lowerdir={lowers}")
        };
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
    /// `mount(2)` with absolute paths.
    Absolute,
    /// `mount(2)` with paths relative to the home.
    Relative,
    /// `fsopen`/`fsconfig` with `lowerdir+`.
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

/// Mounts `spec` with the kernel's overlay, choosing the method as Go does and, beyond Go,
/// the new mount API when even the relative form does not fit a page.
pub fn mount_kernel(spec: &MountSpec, new_api: bool) -> io::Result<MountMethod> {
    let absolute = spec.data(false);
    if absolute.len() < page_size() {
        let (flags, data) = parse_options(&absolute);
        rustix::mount::mount(
            "overlay",
            &spec.target,
            "overlay",
            flags,
            cstring(&data)?.as_c_str(),
        )?;
        return Ok(MountMethod::Absolute);
    }
    let relative = spec.data(true);
    if relative.len() < page_size() {
        mount_relative(spec, &relative)?;
        return Ok(MountMethod::Relative);
    }
    if new_api {
        mount_new_api(spec)?;
        return Ok(MountMethod::NewApi);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "cannot mount layer, mount label {:?} too large {} >= page size {} (and the kernel has no fsconfig lowerdir+)",
            spec.mount_label,
            relative.len(),
            page_size()
        ),
    ))
}

/// `mount(2)` with relative paths from a short-lived thread that has its own working
/// directory (`unshare(CLONE_FS)`), so the process's working directory never changes (Go
/// re-executes itself for the same purpose).
fn mount_relative(spec: &MountSpec, data: &str) -> io::Result<()> {
    let (flags, data) = parse_options(data);
    let data = cstring(&data)?;
    let target = Path::new(&spec.target_rel);
    let home = &spec.home;
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<()> {
                // SAFETY: CLONE_FS only gives this thread its own root, working directory
                // and umask; no file descriptor table is unshared, so no fd the rest of the
                // process relies on changes meaning.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS)? };
                rustix::process::chdir(home)?;
                rustix::mount::mount("overlay", target, "overlay", flags, data.as_c_str())?;
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the mount thread panicked")))
    })
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
    for lower in &spec.lowers_abs {
        fsconfig_set_string(&fs, "lowerdir+", lower).map_err(|e| with_key("lowerdir+", e))?;
    }
    if spec.read_write {
        let dir = spec.home.join(&spec.id);
        fsconfig_set_string(&fs, "upperdir", dir.join("diff"))
            .map_err(|e| with_key("upperdir", e))?;
        fsconfig_set_string(&fs, "workdir", dir.join("work"))
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
        rustix::fs::CWD,
        &spec.target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// Mounts `spec` with a FUSE program (`fuse-overlayfs -o <data> <target>`), working directory
/// the home, as Go does.
pub fn mount_program(program: &Path, spec: &MountSpec) -> io::Result<MountMethod> {
    let data = spec.data(false);
    let output = Command::new(program)
        .arg("-o")
        .arg(&data)
        .arg(&spec.target)
        .current_dir(&spec.home)
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

/// Whether `path` is the root of a mount: its device differs from its parent's, or it is the
/// same inode as its parent (a bind mount of a directory onto itself keeps the device, so
/// `statx`'s mount-root attribute is asked first).
pub fn is_mount_point(path: &Path) -> bool {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    if let Ok(st) = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) && st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
    {
        return st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
    }
    let (Ok(own), Some(Ok(parent))) = (
        rustix::fs::lstat(path),
        path.parent().map(rustix::fs::lstat),
    ) else {
        return false;
    };
    own.st_dev != parent.st_dev
}

/// Unmounts `target` with `MNT_DETACH`; "not mounted" (`EINVAL`) and "gone" (`ENOENT`) are
/// not errors, as in Go's `Put`.
pub fn unmount(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Unmounts a FUSE mount with `fusermount3 -u` / `fusermount -u`, falling back to
/// [`unmount`] (root may always unmount).
pub fn unmount_fuse(target: &Path) -> io::Result<()> {
    for tool in ["fusermount3", "fusermount"] {
        let ok = Command::new(tool)
            .arg("-u")
            .arg(target)
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(());
        }
    }
    unmount(target)
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

    fn spec(read_write: bool) -> MountSpec {
        let (mut lowers_abs, mut lowers_rel) = (Vec::new(), Vec::new());
        if !read_write {
            lowers_abs.push("/g/overlay/top/diff".into());
            lowers_rel.push("/g/overlay/top/diff".into());
        }
        lowers_abs.extend(["/g/overlay/l/A".into(), "/g/overlay/l/B".into()]);
        lowers_rel.extend(["l/A".into(), "l/B".into()]);
        MountSpec {
            home: "/g/overlay".into(),
            id: "top".into(),
            read_write,
            lowers_abs,
            lowers_rel,
            options: vec!["nodev".into()],
            mount_label: "lbl".into(),
            target: "/g/overlay/top/merged".into(),
            target_rel: "top/merged".into(),
        }
    }

    #[test]
    fn mount_data_matches_go() {
        assert_eq!(
            spec(true).data(false),
            "lowerdir=/g/overlay/l/A:/g/overlay/l/B,upperdir=/g/overlay/top/diff,workdir=/g/overlay/top/work,nodev,context=\"lbl\""
        );
        assert_eq!(
            spec(true).data(true),
            "lowerdir=l/A:l/B,upperdir=top/diff,workdir=top/work,nodev,context=\"lbl\""
        );
        assert_eq!(
            spec(false).data(false),
            "lowerdir=/g/overlay/top/diff:/g/overlay/l/A:/g/overlay/l/B,nodev,context=\"lbl\""
        );
        assert_eq!(
            spec(false).data(true),
            "lowerdir=/g/overlay/top/diff:l/A:l/B,nodev,context=\"lbl\""
        );
    }
}
