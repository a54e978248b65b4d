//! Mounting a layer: its mount options, the stack of lowers (deep chains mounted in two
//! steps), the mount counts of this process, and unmounting; the syscalls are `mount.rs`'s.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use layerstore_driver::tree;
use layerstore_driver::{Error, MountOpts, Result};

use crate::{Layer, MountMethod, OverlayDriver, mount};

/// Name of the read-only overlay of a deep chain's deepest layers, inside the layer dir.
const LOWER_STACK: &CStr = c"lower-stack";

/// What is known about one mounted layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MountState {
    pub(crate) count: u32,
    pub(crate) method: Option<MountMethod>,
}

impl OverlayDriver {
    pub(crate) fn lock_mounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, MountState>> {
        self.mounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The mount options of a mount of `id` with `opts`.
    fn mount_options(&self, opts: &MountOpts) -> Vec<String> {
        let mut options: Vec<String> = if opts.options.is_empty() {
            self.options.mount_options.clone()
        } else {
            let mut list = opts.options.clone();
            // The kernel only follows metacopy xattrs when the mount asks for them.
            if self.using_metacopy
                && self
                    .options
                    .mount_options
                    .iter()
                    .any(|o| o == "metacopy=on")
                && !list.iter().any(|o| o.starts_with("metacopy="))
            {
                list.push("metacopy=on".to_string());
            }
            list
        };
        if !self.using_metacopy {
            options.retain(|o| o != "metacopy=on");
        }
        options.retain(|o| !o.is_empty());
        let read_write = !options.iter().any(|o| o == "ro");
        if opts.volatile && read_write && !options.iter().any(|o| o == "volatile") {
            // No syncs to the upper dir (Linux 5.10+); the kernel marks the workdir, and the
            // marker is removed again before every mount (below), as Go does.
            options.push("volatile".to_string());
        }
        options
    }

    /// Mounts layer `id` (refcount already known to be 0).
    pub(crate) fn mount_layer(
        &self,
        id: &str,
        layer: &Layer,
        opts: &MountOpts,
    ) -> Result<MountMethod> {
        let options = self.mount_options(opts);
        let read_write = !options.iter().any(|o| o == "ro");
        let lowers = self.lowers(id, layer)?;
        let mut lower_fds: Vec<OwnedFd> = Vec::new();
        if !read_write {
            lower_fds.push(self.open_diff(id, layer)?);
        }
        let no_lowers = lowers.is_empty();
        lower_fds.extend(lowers.into_iter().map(|lower| lower.diff));
        if no_lowers {
            let empty = tree::ensure_dir_at(&layer.fd, c"empty", 0o700)
                .map_err(|e| Error::layer_io(id, "mkdir", layer.dir.join("empty"), e))?;
            lower_fds.push(empty);
        }
        let merged_path = layer.dir.join("merged");
        let merged = tree::ensure_dir_at(&layer.fd, c"merged", 0o700)
            .map_err(|e| Error::layer_io(id, "mkdir", &merged_path, e))?;
        let upper = if read_write {
            let work_path = layer.dir.join("work");
            let work = tree::ensure_dir_at(&layer.fd, c"work", 0o700)
                .map_err(|e| Error::layer_io(id, "mkdir", &work_path, e))?;
            // A stale marker from a volatile mount would make the kernel refuse the workdir.
            if let Ok(incompat) = tree::open_dir_at(&work, c"work")
                .and_then(|inner| tree::open_dir_at(&inner, c"incompat"))
            {
                let _ = tree::remove_all_at(incompat.as_fd(), c"volatile");
            }
            Some((self.open_diff(id, layer)?, work))
        } else {
            None
        };
        let mut spec = mount::MountSpec {
            lowers: lower_fds,
            upper,
            options,
            mount_label: opts.mount_label.clone(),
            target: merged,
        };
        if let Some(program) = &self.options.mount_program {
            return mount::mount_program(program, &spec)
                .map_err(|e| mount_error(id, &merged_path, &spec, e));
        }
        if spec.lowers.len() > mount::KERNEL_MAX_LAYERS {
            self.mount_stack(id, layer, &mut spec.lowers)?;
        }
        let result = mount::mount_kernel(&spec, self.new_mount_api)
            .map_err(|e| mount_error(id, &merged_path, &spec, e));
        if result.is_err() {
            let _ = self.unmount_stack(layer);
        }
        result
    }

    /// Mounts the deepest lowers (beyond what one overlay takes) read-only at
    /// `<id>/lower-stack` and replaces them in the list by that one directory.
    fn mount_stack(&self, id: &str, layer: &Layer, lowers: &mut Vec<OwnedFd>) -> Result<()> {
        let keep = mount::KERNEL_MAX_LAYERS - 1;
        let deep = lowers.split_off(keep);
        let stack_path = layer.dir.join(tree::name_path(LOWER_STACK));
        if deep.len() > mount::KERNEL_MAX_LAYERS {
            return Err(Error::layer_io(
                id,
                "mount",
                &stack_path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "max depth exceeded: {} layers (at most {} can be mounted)",
                        keep + deep.len() + 1,
                        2 * mount::KERNEL_MAX_LAYERS - 1
                    ),
                ),
            ));
        }
        let _ = self.unmount_stack(layer);
        let stack = tree::ensure_dir_at(&layer.fd, LOWER_STACK, 0o700)
            .map_err(|e| Error::layer_io(id, "mkdir", &stack_path, e))?;
        let spec = mount::MountSpec {
            lowers: deep,
            upper: None,
            options: vec!["ro".to_string()],
            mount_label: String::new(),
            target: stack,
        };
        mount::mount_kernel(&spec, self.new_mount_api)
            .map_err(|e| mount_error(id, &stack_path, &spec, e))?;
        // The stack's root, reached through the new mount.
        let mounted = tree::open_dir_at(&layer.fd, LOWER_STACK)
            .map_err(|e| Error::layer_io(id, "open", &stack_path, e))?;
        lowers.push(mounted);
        Ok(())
    }

    fn unmount_stack(&self, layer: &Layer) -> io::Result<()> {
        if layerstore_driver::mount::is_mount_root_at(layer.fd.as_fd(), LOWER_STACK) {
            layerstore_driver::mount::unmount_at(layer.fd.as_fd(), LOWER_STACK)?;
        }
        match rustix::fs::unlinkat(&layer.fd, LOWER_STACK, rustix::fs::AtFlags::REMOVEDIR) {
            Err(e) if e != rustix::io::Errno::NOENT => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Unmounts the layer's merged dir (and stack), then removes the mount point, as Go's
    /// `Put` does once the count reaches 0. Everything is addressed through the layer's
    /// descriptor with `UMOUNT_NOFOLLOW`: a `merged` swapped for a symlink unmounts nothing.
    pub(crate) fn unmount_layer(&self, id: &str, layer: &Layer) -> Result<()> {
        let merged_path = layer.dir.join("merged");
        let fuse = self.options.mount_program.is_some()
            && layerstore_driver::mount::is_mount_root_at(layer.fd.as_fd(), c"merged");
        let result = if fuse {
            mount::unmount_fuse_at(layer.fd.as_fd(), c"merged")
        } else {
            layerstore_driver::mount::unmount_at(layer.fd.as_fd(), c"merged")
        };
        result.map_err(|e| Error::layer_io(id, "unmount", &merged_path, e))?;
        self.unmount_stack(layer).map_err(|e| {
            Error::layer_io(
                id,
                "unmount",
                layer.dir.join(tree::name_path(LOWER_STACK)),
                e,
            )
        })?;
        // Go ignores a failing rmdir too (the mount point may be busy elsewhere).
        let _ = rustix::fs::unlinkat(&layer.fd, c"merged", rustix::fs::AtFlags::REMOVEDIR);
        Ok(())
    }

    /// The current mount count of `id`: ours, or 1 when someone else mounted it (Go's
    /// refcounter checks the mount table the first time it sees a path).
    pub(crate) fn current_count(
        &self,
        mounts: &HashMap<String, MountState>,
        id: &str,
        layer: &Layer,
    ) -> u32 {
        match mounts.get(id) {
            Some(state) => state.count,
            None => u32::from(layerstore_driver::mount::is_mount_root_at(
                layer.fd.as_fd(),
                c"merged",
            )),
        }
    }
}

fn mount_error(id: &str, target: &Path, spec: &mount::MountSpec, e: io::Error) -> Error {
    let mut data = spec.data("/proc/self/fd");
    if data.len() > 512 {
        let mut cut = 512;
        while !data.is_char_boundary(cut) {
            cut -= 1;
        }
        data.truncate(cut);
        data.push('…');
    }
    Error::layer_io(
        id,
        "mount",
        target,
        io::Error::new(e.kind(), format!("{e} (mount_data={data:?})")),
    )
}
