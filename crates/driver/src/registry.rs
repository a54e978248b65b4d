//! Driver names → constructors, and automatic selection.
//!
//! Driver crates must not depend on one another, so no crate here knows the full list: each
//! driver crate exports a [`Registration`], and the top crate (`layerstore`) composes a
//! [`Registry`] in priority order (overlay, btrfs, vfs):
//!
//! ```
//! use layerstore_driver::{DriverConfig, Error, Registration, Registry};
//!
//! // What a driver crate exports (here one that never works).
//! fn btrfs_registration() -> Registration {
//!     Registration {
//!         name: "btrfs",
//!         aliases: &[],
//!         init: |config| Err(Error::NotSupported {
//!             driver: "btrfs".into(),
//!             root: config.graph_root.clone(),
//!             reason: "not on a btrfs filesystem".into(),
//!         }),
//!     }
//! }
//! let mut registry = Registry::new();
//! registry.register(btrfs_registration()); // then vfs::registration(), …
//! assert_eq!(registry.names().collect::<Vec<_>>(), ["btrfs"]);
//! let root = tempfile::tempdir()?;
//! let err = registry.open("auto", &DriverConfig::new(root.path(), root.path())).unwrap_err();
//! assert!(matches!(err, Error::NoDriver { .. }), "{err}");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Automatic selection ([`Registry::open_auto`]) follows Go's `graphdriver.New`: when the
//! graph root already holds the home directory of a registered driver (`<root>/<name>`), that
//! driver is used (and it is an error if there are several, or if it fails to start); **vfs
//! state does not count** here, as in Go (`vfs/` alone does not pin the choice: Go 1.43 picks
//! overlay for such a root, checked with the Go tool). Otherwise the drivers are tried in
//! registration order, skipping those whose constructor fails with
//! [`Error::NotSupported`](crate::Error::NotSupported).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::{Driver, IdMappings};

/// Everything a driver constructor gets.
#[derive(Debug, Clone, Default)]
pub struct DriverConfig {
    /// The store's graph root; the driver's home is `<graph_root>/<name>`.
    pub graph_root: PathBuf,
    /// The store's run root (volatile state: mount counts, feature caches).
    pub run_root: PathBuf,
    /// Raw `key=value` options (`--storage-opt`), parsed by the driver with
    /// [`DriverOptions`](crate::DriverOptions).
    pub options: Vec<String>,
    /// The store's default ID mappings (base layers' root directories are owned by the mapped
    /// root).
    pub id_mappings: IdMappings,
}

impl DriverConfig {
    /// A configuration with no options and identity ID mappings.
    pub fn new(graph_root: impl Into<PathBuf>, run_root: impl Into<PathBuf>) -> Self {
        DriverConfig {
            graph_root: graph_root.into(),
            run_root: run_root.into(),
            ..Default::default()
        }
    }

    /// The home directory of the driver `name`: `<graph_root>/<name>`.
    pub fn home(&self, name: &str) -> PathBuf {
        self.graph_root.join(name)
    }
}

/// A driver constructor: starts the driver on `config`'s graph root.
pub type InitFn = fn(&DriverConfig) -> Result<Box<dyn Driver>>;

/// One driver as known to a [`Registry`].
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// The canonical name, also the home directory's name (`vfs`, `overlay`, `btrfs`).
    pub name: &'static str,
    /// Other names accepted for it (`overlay2`).
    pub aliases: &'static [&'static str],
    /// The constructor.
    pub init: InitFn,
}

/// Known drivers, in automatic-selection priority order.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    entries: Vec<Registration>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a driver after those already registered (lower priority). A driver registered
    /// again under the same name replaces the earlier registration, keeping its place.
    pub fn register(&mut self, registration: Registration) -> &mut Self {
        match self
            .entries
            .iter_mut()
            .find(|r| r.name == registration.name)
        {
            Some(existing) => *existing = registration,
            None => self.entries.push(registration),
        }
        self
    }

    /// The canonical names, in priority order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|r| r.name)
    }

    /// The registration called `name` (canonical name or alias).
    pub fn lookup(&self, name: &str) -> Option<&Registration> {
        self.entries
            .iter()
            .find(|r| r.name == name || r.aliases.contains(&name))
    }

    /// Starts the driver called `name`; an empty name or `auto` means [`open_auto`](Self::open_auto).
    pub fn open(&self, name: &str, config: &DriverConfig) -> Result<Box<dyn Driver>> {
        if name.is_empty() || name == "auto" {
            return self.open_auto(config);
        }
        let registration = self.lookup(name).ok_or_else(|| Error::UnknownDriver {
            name: name.to_string(),
            known: self.names().map(str::to_string).collect(),
        })?;
        (registration.init)(config)
    }

    /// The drivers whose home directory exists in `graph_root`, vfs excepted (see the module
    /// documentation), in priority order.
    pub fn prior_drivers(&self, graph_root: &Path) -> Vec<&'static str> {
        self.names()
            .filter(|&name| name != "vfs")
            .filter(|name| graph_root.join(name).is_dir())
            .collect()
    }

    /// Picks and starts a driver as Go's `graphdriver.New("")` does (see the module docs).
    pub fn open_auto(&self, config: &DriverConfig) -> Result<Box<dyn Driver>> {
        let prior = self.prior_drivers(&config.graph_root);
        match prior.as_slice() {
            [] => {}
            [name] => return self.open(name, config),
            several => {
                return Err(Error::SeveralPriorDrivers {
                    root: config.graph_root.clone(),
                    drivers: several.iter().map(|s| s.to_string()).collect(),
                });
            }
        }
        let mut reasons = Vec::new();
        for registration in &self.entries {
            match (registration.init)(config) {
                Ok(driver) => return Ok(driver),
                Err(e) if e.is_not_supported() => reasons.push(layerstore_model::error_chain(&e)),
                Err(e) => return Err(e),
            }
        }
        Err(Error::NoDriver {
            root: config.graph_root.clone(),
            reasons,
        })
    }
}
