//! Starting the driver: its home and run home, the private bind mount of the home, and Go's
//! feature probes (or their cached results).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;

use layerstore_driver::tree;
use layerstore_driver::{DriverConfig, Error, Result};

use crate::{NAME, OverlayDriver, OverlayOptions, features, layout, mount, not_supported};

/// The directories [`OverlayDriver::new`] hands to `start`.
struct Homes {
    graph_root: PathBuf,
    home: PathBuf,
    home_fd: OwnedFd,
    run_home: PathBuf,
}

impl OverlayDriver {
    /// Starts the driver in `<graph_root>/overlay`: parses the options, checks the backing
    /// filesystem, runs (or reads the cached results of) Go's feature probes, and bind-mounts
    /// the home onto itself as a private mount unless `skip_mount_home`.
    ///
    /// Fails with [`Error::NotSupported`] when overlay cannot work here (no kernel overlay, a
    /// backing filesystem overlay cannot stack on, no `d_type`), so automatic selection moves
    /// on to the next driver.
    pub fn new(config: &DriverConfig) -> Result<Self> {
        let options = OverlayOptions::parse(&config.options)?;
        // Messages and metadata name the layers by absolute path: a relative root is made
        // absolute (lexically, keeping symlinks as given, as Go keeps the configured path).
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let graph_root = absolute(config.graph_root.clone());
        let home = graph_root.join(NAME);
        let run_home = absolute(config.run_root.join(NAME));
        let unmounted = tree::open_home(&graph_root, c"overlay", 0o700)
            .map_err(|e| Error::io("mkdir", &home, e))?;
        tree::open_home(&absolute(config.run_root.clone()), c"overlay", 0o700)
            .map_err(|e| Error::io("mkdir", &run_home, e))?;
        let magic = rustix::fs::fstatfs(&unmounted)
            // `f_type`'s C type differs between architectures.
            .map(
                #[allow(clippy::unnecessary_cast)]
                |st| st.f_type as i64,
            )
            .map_err(|e| Error::io("statfs", &home, e))?;
        drop(unmounted);
        let root_fd =
            tree::open_dir_following(&graph_root).map_err(|e| Error::io("open", &graph_root, e))?;
        // First, so that not even the probes' mounts propagate to other namespaces.
        let (bound_home, home_fd) = if options.skip_mount_home {
            let fd =
                tree::open_dir_at(&root_fd, c"overlay").map_err(|e| Error::io("open", &home, e))?;
            (false, fd)
        } else {
            layerstore_driver::mount::make_private_at(root_fd.as_fd(), c"overlay").map_err(|e| {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    // Rootless without a user namespace: let automatic selection move on.
                    not_supported(
                        &config.graph_root,
                        format!("cannot make {} a private mount: {e}", home.display()),
                    )
                } else {
                    Error::io("make private mount of", &home, e)
                }
            })?
        };
        let started = Self::start(
            config,
            options,
            Homes {
                graph_root,
                home,
                home_fd,
                run_home,
            },
            magic,
        );
        started.inspect_err(|_| {
            // A driver that does not start leaves no bind mount of its own behind.
            if bound_home {
                let _ = layerstore_driver::mount::unmount_at(root_fd.as_fd(), c"overlay");
            }
        })
    }

    fn start(
        config: &DriverConfig,
        mut options: OverlayOptions,
        homes: Homes,
        magic: i64,
    ) -> Result<Self> {
        let Homes {
            graph_root,
            home,
            home_fd,
            run_home,
        } = homes;
        // The probes work in scratch directories below the home, named through its descriptor.
        let probe_home = layerstore_driver::mount::proc_path(home_fd.as_fd());
        let backing_fs = features::backing_fs_name(magic);
        let has_program = options.mount_program.is_some();
        if let Some(program) = &options.mount_program
            && !program.is_file()
        {
            return Err(not_supported(
                &config.graph_root,
                format!("mount program {} does not exist", program.display()),
            ));
        }
        let mount_opts = options.mount_options.join(",");
        let (supports_d_type, native_diff, using_metacopy) = if has_program {
            (true, true, false)
        } else {
            if features::needs_mount_program(magic) {
                return Err(not_supported(
                    &config.graph_root,
                    format!(
                        "'overlay' is not supported over {backing_fs}, a mount_program is required"
                    ),
                ));
            }
            let (overlay, why) = features::check(&run_home, "overlay", || {
                features::probe_overlay(&probe_home)
            });
            if !overlay {
                return Err(not_supported(
                    &config.graph_root,
                    format!("kernel overlay does not work here: {why}"),
                ));
            }
            let d_type = features::supports_d_type(&probe_home).unwrap_or(false);
            if !d_type {
                return Err(not_supported(
                    &config.graph_root,
                    format!("the backing {backing_fs} filesystem lacks d_type support"),
                ));
            }
            let (metacopy, _) =
                features::check(&run_home, &format!("metacopy({mount_opts})"), || {
                    features::probe_metacopy(&probe_home, &mount_opts)
                });
            let (native, _) =
                features::check(&run_home, &format!("native-diff({mount_opts})"), || {
                    features::probe_native_diff(&probe_home, &mount_opts)
                });
            (d_type, native, metacopy)
        };
        if !using_metacopy {
            // Go strips metacopy=on when the kernel cannot follow it.
            options.mount_options.retain(|o| o != "metacopy=on");
        }
        let flag_file = home.join(".has-mount-program");
        tree::write_file_at(
            &home_fd,
            c".has-mount-program",
            if has_program { b"true" } else { b"false" },
            0o600,
        )
        .map_err(|e| Error::io("write", &flag_file, e))?;
        let link_dir = home.join(layout::LINK_DIR);
        tree::ensure_dir_at(&home_fd, c"l", 0o755).map_err(|e| Error::io("mkdir", &link_dir, e))?;
        let new_mount_api = !has_program && mount::new_api_supported(&probe_home);
        let image_store_homes = options
            .image_stores
            .iter()
            .map(|store| {
                let home = store.join(NAME);
                let fd = tree::open_dir(&home).ok();
                (home, fd)
            })
            .collect();
        let driver = OverlayDriver {
            graph_root,
            home,
            home_fd,
            run_home,
            options,
            default_mappings: config.id_mappings.clone(),
            backing_fs,
            supports_d_type,
            native_diff,
            using_metacopy,
            new_mount_api,
            mounts: Mutex::new(HashMap::new()),
            image_store_homes,
        };
        // What killed processes left staging: best effort, a store we cannot write still opens.
        let _ = driver.staging().sweep_abandoned();
        Ok(driver)
    }
}
