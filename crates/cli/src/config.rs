//! Where the store is: flags, `storage.conf`, environment and built-in defaults, resolved the
//! way the Go tool resolves them.
//!
//! * When none of `--graph`, `--run`, `--storage-driver`, `--storage-opt` is given, the
//!   defaults come from `storage.conf` (`$CONTAINERS_STORAGE_CONF`, else
//!   `/etc/containers/storage.conf` then `/usr/share/containers/storage.conf` as root,
//!   `$XDG_CONFIG_HOME/containers/storage.conf` otherwise), then `$STORAGE_DRIVER` and
//!   `$STORAGE_OPTS` (comma-separated) override the driver and its options.
//! * When any of them is given, the environment is not consulted, the driver is `auto` unless
//!   `-s` names one, and a graph or run root not given comes from the defaults.
//! * Built-in paths: `/var/lib/containers/storage` and `/run/containers/storage` as root;
//!   `$XDG_DATA_HOME/containers/storage` (else `~/.local/share/...`) and
//!   `$XDG_RUNTIME_DIR/containers/storage` (else `/tmp/storage-run-UID/containers`) otherwise.
//!
//! An ordinary user gets vfs with `vfs.ignore_chown_errors=true` unless a driver is named on the
//! command line or in `$STORAGE_DRIVER`: without a user namespace it can neither mount overlay
//! nor give files to other owners.
//!
//! `[storage.options]` is turned into driver options as Go does for the keys a driver reads:
//! `additionalimagestores` become `<driver>.imagestore=...`, `mountopt`, `mount_program`,
//! `size`, `skip_mount_home`, `ignore_chown_errors`, `force_mask` become `<driver>.<key>=...`,
//! and every scalar of the table `[storage.options.<driver>]` becomes `<driver>.<key>=...`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::args::GlobalOptions;

/// The resolved place and driver of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Graph root (absolute).
    pub graph_root: PathBuf,
    /// Run root (absolute).
    pub run_root: PathBuf,
    /// Driver name; empty means "pick one" (`auto`).
    pub driver: String,
    /// Driver options (`key=value`).
    pub options: Vec<String>,
    /// Whether the driver came from the command line or `$STORAGE_DRIVER` (rather than from a
    /// configuration file or the built-in default).
    pub driver_explicit: bool,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// A `storage.conf` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}: line {line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The parts of the process environment that decide the defaults (a value, so tests can
/// describe any machine).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Effective UID.
    pub uid: u32,
    /// The current directory, to make relative paths absolute.
    pub current_dir: PathBuf,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$XDG_DATA_HOME`.
    pub xdg_data_home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$CONTAINERS_STORAGE_CONF`.
    pub containers_storage_conf: Option<PathBuf>,
    /// `$STORAGE_DRIVER`.
    pub storage_driver: Option<String>,
    /// `$STORAGE_OPTS`.
    pub storage_opts: Option<String>,
    /// System configuration files tried in order as root (and for the driver when rootless).
    pub system_configs: Vec<PathBuf>,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Environment {
    /// This process's environment.
    pub fn from_process() -> Self {
        Environment {
            uid: rustix::process::geteuid().as_raw(),
            current_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            home: env_path("HOME"),
            xdg_config_home: env_path("XDG_CONFIG_HOME"),
            xdg_data_home: env_path("XDG_DATA_HOME"),
            xdg_runtime_dir: env_path("XDG_RUNTIME_DIR"),
            containers_storage_conf: env_path("CONTAINERS_STORAGE_CONF"),
            storage_driver: env_string("STORAGE_DRIVER"),
            storage_opts: env_string("STORAGE_OPTS"),
            system_configs: vec![
                PathBuf::from("/etc/containers/storage.conf"),
                PathBuf::from("/usr/share/containers/storage.conf"),
            ],
        }
    }

    fn rootless(&self) -> bool {
        self.uid != 0
    }

    fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_else(|| PathBuf::from("/"))
    }

    fn default_graph_root(&self) -> PathBuf {
        if !self.rootless() {
            return PathBuf::from("/var/lib/containers/storage");
        }
        self.xdg_data_home
            .clone()
            .unwrap_or_else(|| self.home().join(".local/share"))
            .join("containers/storage")
    }

    fn default_run_root(&self) -> PathBuf {
        if !self.rootless() {
            return PathBuf::from("/run/containers/storage");
        }
        match &self.xdg_runtime_dir {
            Some(dir) => dir.join("containers/storage"),
            None => PathBuf::from(format!("/tmp/storage-run-{}/containers", self.uid)),
        }
    }

    /// The configuration file to read, if one exists.
    fn config_file(&self) -> Option<PathBuf> {
        if let Some(path) = &self.containers_storage_conf {
            return Some(path.clone());
        }
        if self.rootless() {
            let user = self
                .xdg_config_home
                .clone()
                .unwrap_or_else(|| self.home().join(".config"))
                .join("containers/storage.conf");
            if user.exists() {
                return Some(user);
            }
        }
        self.system_configs.iter().find(|p| p.exists()).cloned()
    }

    fn absolute(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.current_dir.join(path)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfFile {
    #[serde(default)]
    storage: StorageSection,
}

#[derive(Debug, Default, Deserialize)]
struct StorageSection {
    #[serde(default)]
    driver: String,
    #[serde(default)]
    graphroot: String,
    #[serde(default)]
    runroot: String,
    #[serde(default)]
    rootless_storage_path: String,
    #[serde(default)]
    options: toml::Table,
}

/// Keys of `[storage.options]` that Go hands to the configured driver.
const DRIVER_KEYS: &[&str] = &[
    "mountopt",
    "mount_program",
    "size",
    "skip_mount_home",
    "ignore_chown_errors",
    "force_mask",
];

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Turns `[storage.options]` into driver options for `driver`.
fn driver_options(driver: &str, options: &toml::Table) -> Vec<String> {
    if driver.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(toml::Value::Array(stores)) = options.get("additionalimagestores") {
        out.extend(
            stores
                .iter()
                .filter_map(|s| s.as_str())
                .map(|s| format!("{driver}.imagestore={s}")),
        );
    }
    for key in DRIVER_KEYS {
        if let Some(value) = options.get(*key).and_then(scalar).filter(|v| !v.is_empty()) {
            out.push(format!("{driver}.{key}={value}"));
        }
    }
    let table_name = if driver == "overlay2" {
        "overlay"
    } else {
        driver
    };
    if let Some(toml::Value::Table(table)) = options.get(table_name) {
        for (key, value) in table {
            if let Some(value) = scalar(value).filter(|v| !v.is_empty()) {
                out.push(format!("{driver}.{key}={value}"));
            }
        }
    }
    out
}

/// Reads and parses a `storage.conf`, naming the line of a syntax or type error.
fn read_conf(path: &Path) -> Result<StorageSection, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        path: path.to_path_buf(),
        line: None,
        message: err.to_string(),
    })?;
    let conf: ConfFile = toml::from_str(&text).map_err(|err| ConfigError {
        path: path.to_path_buf(),
        line: err
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1),
        message: err.message().to_string(),
    })?;
    Ok(conf.storage)
}

/// The defaults: configuration file, then built-in paths.
fn defaults(env: &Environment) -> Result<StoreConfig, ConfigError> {
    let mut config = StoreConfig {
        graph_root: env.default_graph_root(),
        run_root: env.default_run_root(),
        driver: String::new(),
        options: Vec::new(),
        driver_explicit: false,
        config_file: None,
    };
    let Some(path) = env.config_file() else {
        return Ok(config);
    };
    let section = read_conf(&path)?;
    let own_file = !env.rootless()
        || env.containers_storage_conf.is_some()
        || !env.system_configs.contains(&path);
    if own_file {
        if !env.rootless() {
            if !section.graphroot.is_empty() {
                config.graph_root = PathBuf::from(&section.graphroot);
            }
            if !section.runroot.is_empty() {
                config.run_root = PathBuf::from(&section.runroot);
            }
        } else {
            // Rootless: Go uses rootless_storage_path (or graphroot of the user's own file).
            if !section.rootless_storage_path.is_empty() {
                config.graph_root = PathBuf::from(&section.rootless_storage_path);
            } else if !section.graphroot.is_empty() {
                config.graph_root = PathBuf::from(&section.graphroot);
            }
            if !section.runroot.is_empty() {
                config.run_root = PathBuf::from(&section.runroot);
            }
        }
    }
    config.driver = section.driver.clone();
    config.options = driver_options(&section.driver, &section.options);
    config.config_file = Some(path);
    Ok(config)
}

/// Resolves the store's place and driver from the global flags and the environment.
pub fn resolve(global: &GlobalOptions, env: &Environment) -> Result<StoreConfig, ConfigError> {
    let mut config = defaults(env)?;
    if global.any_store_flag() {
        if let Some(graph) = &global.graph_root {
            config.graph_root = graph.clone();
        }
        if let Some(run) = &global.run_root {
            config.run_root = run.clone();
        }
        config.driver = global.storage_driver.clone().unwrap_or_default();
        config.driver_explicit = global.storage_driver.is_some();
        config.options = global.storage_opts.clone();
    } else {
        if let Some(driver) = &env.storage_driver {
            config.driver = driver.clone();
            config.driver_explicit = true;
        }
        if let Some(opts) = &env.storage_opts {
            config.options = opts
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect();
        }
    }
    if env.rootless() && !config.driver_explicit {
        rootless_vfs(&mut config);
    }
    config.graph_root = env.absolute(&config.graph_root);
    config.run_root = env.absolute(&config.run_root);
    Ok(config)
}

/// An ordinary user cannot mount overlay or chown files to other owners outside a user
/// namespace (which this tool does not enter): unless a driver was named on the command line
/// or in `$STORAGE_DRIVER`, use vfs, keeping files owned by the user when a layer says root.
fn rootless_vfs(config: &mut StoreConfig) {
    if config.driver != "vfs" {
        config.driver = "vfs".to_string();
        config.options.retain(|o| o.starts_with("vfs."));
    }
    if !config
        .options
        .iter()
        .any(|o| o.contains("ignore_chown_errors"))
    {
        config
            .options
            .push("vfs.ignore_chown_errors=true".to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_env(conf: Option<&Path>) -> Environment {
        Environment {
            uid: 0,
            current_dir: PathBuf::from("/cwd"),
            containers_storage_conf: conf.map(Path::to_path_buf),
            system_configs: vec![PathBuf::from("/nonexistent/storage.conf")],
            ..Environment::default()
        }
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("storage.conf");
        std::fs::write(&path, text).expect("write conf");
        path
    }

    #[test]
    fn built_in_defaults_as_root() {
        let config = resolve(&GlobalOptions::default(), &root_env(None)).expect("resolves");
        assert_eq!(
            config.graph_root,
            PathBuf::from("/var/lib/containers/storage")
        );
        assert_eq!(config.run_root, PathBuf::from("/run/containers/storage"));
        assert_eq!(config.driver, "");
        assert!(config.options.is_empty());
    }

    #[test]
    fn built_in_defaults_rootless() {
        let env = Environment {
            uid: 1000,
            home: Some(PathBuf::from("/home/u")),
            xdg_runtime_dir: Some(PathBuf::from("/run/user/1000")),
            ..root_env(None)
        };
        let config = resolve(&GlobalOptions::default(), &env).expect("resolves");
        assert_eq!(
            config.graph_root,
            PathBuf::from("/home/u/.local/share/containers/storage")
        );
        assert_eq!(
            config.run_root,
            PathBuf::from("/run/user/1000/containers/storage")
        );
        assert_eq!(config.driver, "vfs");
        assert_eq!(config.options, ["vfs.ignore_chown_errors=true"]);
        let flags = GlobalOptions {
            storage_driver: Some("overlay".into()),
            ..GlobalOptions::default()
        };
        let named = resolve(&flags, &env).expect("resolves");
        assert_eq!(named.driver, "overlay", "a named driver is kept");
        assert!(named.options.is_empty());
        let env = Environment {
            xdg_runtime_dir: None,
            xdg_data_home: Some("/d".into()),
            ..env
        };
        let config = resolve(&GlobalOptions::default(), &env).expect("resolves");
        assert_eq!(config.graph_root, PathBuf::from("/d/containers/storage"));
        assert_eq!(
            config.run_root,
            PathBuf::from("/tmp/storage-run-1000/containers")
        );
    }

    #[test]
    fn storage_conf_is_honoured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"/g\"\nrunroot = \"/r\"\n\
             [storage.options]\nadditionalimagestores = [\"/ro\"]\npull_options = {a = \"b\"}\n\
             [storage.options.vfs]\nignore_chown_errors = \"true\"\n\
             [storage.options.overlay]\nmountopt = \"nodev\"\n",
        );
        let config = resolve(&GlobalOptions::default(), &root_env(Some(&path))).expect("resolves");
        assert_eq!(config.graph_root, PathBuf::from("/g"));
        assert_eq!(config.run_root, PathBuf::from("/r"));
        assert_eq!(config.driver, "vfs");
        assert!(!config.driver_explicit);
        assert_eq!(
            config.options,
            ["vfs.imagestore=/ro", "vfs.ignore_chown_errors=true"]
        );
        assert_eq!(config.config_file.as_deref(), Some(path.as_path()));
    }

    #[test]
    fn environment_overrides_conf_only_without_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "[storage]\ndriver = \"overlay\"\n");
        let env = Environment {
            storage_driver: Some("vfs".into()),
            storage_opts: Some("a=b,c=d".into()),
            ..root_env(Some(&path))
        };
        let config = resolve(&GlobalOptions::default(), &env).expect("resolves");
        assert_eq!(
            (config.driver.as_str(), config.driver_explicit),
            ("vfs", true)
        );
        assert_eq!(config.options, ["a=b", "c=d"]);

        let flags = GlobalOptions {
            graph_root: Some("rel/g".into()),
            ..GlobalOptions::default()
        };
        let config = resolve(&flags, &env).expect("resolves");
        assert_eq!(config.graph_root, PathBuf::from("/cwd/rel/g"));
        assert_eq!(config.run_root, PathBuf::from("/run/containers/storage"));
        assert_eq!(
            config.driver, "",
            "flags given: no env, driver auto-detected"
        );
        assert!(config.options.is_empty());
    }

    #[test]
    fn malformed_conf_names_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "[storage]\ndriver = \"vfs\"\n\nrunroot = /tmp/run\n",
        );
        let err =
            resolve(&GlobalOptions::default(), &root_env(Some(&path))).expect_err("malformed");
        assert_eq!(err.line, Some(4));
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{}: line 4: ", path.display())),
            "{text}"
        );
    }

    #[test]
    fn wrong_type_names_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "[storage]\ndriver = \"vfs\"\ngraphroot = 7\n");
        let err = resolve(&GlobalOptions::default(), &root_env(Some(&path))).expect_err("bad type");
        assert_eq!(err.line, Some(3), "{err}");
    }

    #[test]
    fn missing_named_conf_is_an_error() {
        let err = resolve(
            &GlobalOptions::default(),
            &root_env(Some(Path::new("/nonexistent/x.conf"))),
        )
        .expect_err("missing");
        assert_eq!(err.line, None);
        assert!(err.to_string().starts_with("/nonexistent/x.conf: "));
    }
}
