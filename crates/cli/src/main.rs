//! `layerstore`: Go's `containers-storage` (v1.43) over the Rust [`layerstore`] Store (layers,
//! images and containers): same command lines, same output, same exit codes, so a script
//! switches by changing the binary's name.
//!
//! ```text
//! layerstore import-layer -f examples/layer.tar.gz -n example   # prints the new layer's ID
//! layerstore layers -t                                          # the layer tree
//! layerstore diff -u example > layer.tar                        # the diff, byte for byte
//! layerstore create-image -n localhost/example example         # an image on that layer
//! layerstore create-container -n web localhost/example         # a container from it
//! layerstore --graph /tmp/s/root --run /tmp/s/run -s vfs layers --json
//! ```
//!
//! The store comes from the global flags, else `storage.conf` and `$STORAGE_DRIVER` /
//! `$STORAGE_OPTS`, else the built-in paths (see [`config`]). Beyond the Go tool: a progress
//! bar on stderr for `applydiff`, `import-layer` and `diff` when stderr is a terminal,
//! `--json-errors`, `completions SHELL`, `check [--repair [--force]] [--quick] [--json]` (the
//! whole store's consistency check, [`layerstore::Store::check`] and
//! [`layerstore::Store::repair`]), `images` and `containers` as a table when stdout is a
//! terminal (`--format go|table`), `mount -o OPTS` passed to the driver (`-o ro` read-only or
//! an error), and vfs (without chown) for an ordinary user.
//!
//! Deliberate differences (kept out of the differential test): flags may follow positional
//! arguments; `mount NAME` works; `delete` and `delete-layer` by name refuse a layer with
//! children; `shutdown -f` terminates; texts the Go tool prints in map order come in argument
//! order; the Store's own fixes of Go 1.43 (see the [`layerstore`] crate doc: `delete-image`
//! of a read-only layer, copy-up on rename, `delete` of a container whose layer is gone);
//! `version` prints what v1.43 prints (nothing, or `[]` with `--json`).

#![forbid(unsafe_code)]

mod args;
mod commands;
mod config;
mod flags;
mod mflag;
mod output;
mod progress;
mod spec;
mod usage;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

/// Large blocks (an import's 1 MiB chunk buffers) on transparent huge pages: a few faults per
/// import instead of ~4,000 (see the crate's documentation).
#[global_allocator]
static ALLOCATOR: layerstore_hugealloc::HugePageAlloc = layerstore_hugealloc::HugePageAlloc;

use layerstore::{Store, StoreOptions};

use crate::args::{Cli, Command};
use crate::config::{Environment, StoreConfig};
use crate::flags::{
    EXIT_FLAG_ERROR, print_usage, program, report_group_error, report_parse_error, typed_command,
};
use crate::usage::{FlagDefaults, command_usage, top_usage};

/// Raises the soft limit on open files to the hard limit, as the Go tool does (its runtime
/// does it for every Go ≥ 1.19 program, `os/rlimit.go`): removing or copying a deep layer
/// tree holds a descriptor per level, and 1,024 (a common default) is not enough.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        // Best effort, as in Go: a limit that cannot be raised leaves the default.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

fn main() -> ExitCode {
    raise_open_file_limit();
    let argv: Vec<OsString> = std::env::args_os().collect();
    match run(&argv) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // Only output failures get here: a closed pipe is not worth a message.
            if err
                .downcast_ref::<io::Error>()
                .is_none_or(|e| e.kind() != io::ErrorKind::BrokenPipe)
            {
                eprintln!("layerstore: {}", layerstore_model::error_chain(&*err));
            }
            ExitCode::from(1)
        }
    }
}

fn flag_defaults(cli: &Cli, env: &Environment) -> FlagDefaults {
    if cli.global.any_store_flag() {
        let show = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        return FlagDefaults {
            graph_root: show(&cli.global.graph_root),
            run_root: show(&cli.global.run_root),
            driver: cli.global.storage_driver.clone().unwrap_or_default(),
            options: cli.global.storage_opts.clone(),
        };
    }
    match config::resolve(&cli.global, env) {
        Ok(c) => FlagDefaults {
            graph_root: c.graph_root.display().to_string(),
            run_root: c.run_root.display().to_string(),
            driver: c.driver,
            options: c.options,
        },
        Err(_) => FlagDefaults::default(),
    }
}

/// A debug line in logrus's text format, as the Go tool prints with `--debug`.
fn debug_line(text: &str) {
    let now = layerstore_model::Timestamp::now();
    let time = layerstore_model::Timestamp::from_unix(now.unix_seconds(), 0).unwrap_or(now);
    eprintln!("time=\"{time}\" level=debug msg={text:?}");
}

/// Opens the store. A driver this build lacks, or one that cannot work here, is an error, as
/// in Go (`error initializing: ...`), wherever it was named: since overlay and btrfs are
/// built in, a `storage.conf` naming a driver we lack names one Go lacks too (or a typo), and
/// silently picking another driver would hide the store the user meant. An ordinary user
/// needs no fallback either: [`config::resolve`] gives them vfs unless they name a driver.
fn open_store(config: &StoreConfig) -> Result<Store, String> {
    let mut options =
        StoreOptions::new(&config.graph_root, &config.run_root, config.driver.as_str());
    options.driver_options = config.options.clone();
    options.max_layer_size = max_layer_size()?;
    Store::open(options).map_err(|err| match err {
        // Go prints the driver's own complaint (`vfs driver does not support a options`).
        layerstore::Error::Layers(layerstore_layers::Error::Driver { source, .. }) => {
            layerstore_model::error_chain(&*source)
        }
        other => commands::go_error_text(&other),
    })
}

/// The environment variable that caps a layer's uncompressed size (beyond the Go tool, which
/// has no cap): bytes, or a number with a `K`, `M`, `G` or `T` suffix (powers of 1024); `0`
/// lifts the cap. Unset, the store's default applies ([`layerstore_layers::DEFAULT_MAX_LAYER_SIZE`],
/// 1 TiB).
const MAX_LAYER_SIZE_ENV: &str = "LAYERSTORE_MAX_LAYER_SIZE";

fn max_layer_size() -> Result<Option<u64>, String> {
    max_layer_size_from(std::env::var(MAX_LAYER_SIZE_ENV).ok().as_deref())
}

fn max_layer_size_from(value: Option<&str>) -> Result<Option<u64>, String> {
    match value {
        Some(value) if !value.trim().is_empty() => match parse_size(value) {
            Some(0) => Ok(None),
            Some(bytes) => Ok(Some(bytes)),
            None => Err(format!(
                "{MAX_LAYER_SIZE_ENV}={value:?}: not a size (e.g. 8G, or 0 for no cap)"
            )),
        },
        _ => Ok(Some(layerstore_layers::DEFAULT_MAX_LAYER_SIZE)),
    }
}

/// `4096`, `64K`, `512M`, `8G`, `1T` (powers of 1024; a trailing `B`/`iB` is accepted).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text
        .strip_suffix("iB")
        .or_else(|| text.strip_suffix('B'))
        .unwrap_or(text);
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'K' | 'k') => (&text[..i], 10),
        (i, 'M' | 'm') => (&text[..i], 20),
        (i, 'G' | 'g') => (&text[..i], 30),
        (i, 'T' | 't') => (&text[..i], 40),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

fn run(argv: &[OsString]) -> anyhow::Result<u8> {
    let (_, base) = program(argv);
    if argv.len() < 2 {
        print_usage(&top_usage(&base, false), false)?;
        return Ok(1);
    }
    let mut definition = args::command_for(argv);
    let argv = match mflag::rewrite(argv, &definition) {
        Ok(words) => words,
        Err(err) => return Ok(report_group_error(argv, &err)?),
    };
    let argv = argv.as_slice();
    let cli = match args::parse_with(&mut definition, argv) {
        Ok(cli) => cli,
        Err(err) => return Ok(report_parse_error(argv, &err)?),
    };
    let env = Environment::from_process();
    let Some(command) = &cli.command else {
        let help = cli.global.help;
        print_usage(&top_usage(&base, true), help)?;
        return Ok(if help { 0 } else { 1 });
    };
    let Some(spec) = cli.spec else {
        let word = match command {
            Command::External(words) => words.first().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        println!("{word}: unrecognized command.");
        return Ok(1);
    };
    let typed = typed_command(argv, &definition, spec.name);
    if cli.global.help {
        print_usage(
            &command_usage(&base, &typed, spec, &flag_defaults(&cli, &env)),
            false,
        )?;
        return Ok(EXIT_FLAG_ERROR);
    }
    let positional = command.positional();
    if positional.len() < spec.min_args {
        println!("{typed}: more arguments required.");
        print_usage(
            &command_usage(&base, &typed, spec, &flag_defaults(&cli, &env)),
            false,
        )?;
        return Ok(1);
    }
    if spec.max_args.is_some_and(|max| positional.len() > max) {
        println!("{typed}: too many arguments ([{}]).", positional.join(" "));
        print_usage(
            &command_usage(&base, &typed, spec, &flag_defaults(&cli, &env)),
            false,
        )?;
        return Ok(1);
    }
    if let Command::Completions { shell } = command {
        let Some(shell) = shell.or_else(clap_complete::Shell::from_env) else {
            eprintln!("completions: name a shell: bash, zsh, fish, elvish or powershell");
            return Ok(1);
        };
        // Into memory first: clap_complete panics when its writer fails (a closed pipe).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut args::command(), "layerstore", &mut script);
        io::stdout().write_all(&script)?;
        return Ok(0);
    }
    let config = match config::resolve(&cli.global, &env) {
        Ok(config) => config,
        Err(err) => {
            println!("error initializing: {err}");
            return Ok(1);
        }
    };
    let debug = cli.global.debug();
    if debug {
        // As Go prints them: with a store flag given, the roots as given (empty when not
        // given, made absolute and defaulted later); else the configured ones.
        let flags_given = cli.global.any_store_flag();
        let as_given = |flag: &Option<std::path::PathBuf>, resolved: &std::path::Path| match flag {
            Some(path) => path.display().to_string(),
            None if flags_given => String::new(),
            None => resolved.display().to_string(),
        };
        debug_line(&format!(
            "Root: {}",
            as_given(&cli.global.graph_root, &config.graph_root)
        ));
        debug_line(&format!(
            "Run Root: {}",
            as_given(&cli.global.run_root, &config.run_root)
        ));
        debug_line(&format!("Driver Name: {}", config.driver));
        debug_line(&format!("Driver Options: [{}]", config.options.join(" ")));
        if !config.driver.is_empty() {
            debug_line(&format!(
                "[graphdriver] trying provided driver {:?}",
                config.driver
            ));
        }
    }
    if let Command::Check {
        repair: Some(true), ..
    } = command
        && let Err(err) = commands::rebuild_damaged_layers(&config)
    {
        println!(
            "error initializing: {}",
            layerstore_model::error_chain(&*err)
        );
        return Ok(1);
    }
    if let Command::Pull { .. } | Command::Push { .. } = command {
        return commands::pull::run(&config, command, cli.global.json_errors);
    }
    let store = match open_store(&config) {
        Ok(store) => store,
        Err(err) => {
            println!("error initializing: {err}");
            return Ok(1);
        }
    };
    for (id, err) in store.layer_store().cleanup_failures() {
        output::write_error(
            &mut io::stderr(),
            cli.global.json_errors,
            &format!(
                "warning: incomplete layer {id} could not be deleted: {err} (`check --repair` tries again)"
            ),
        )?;
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    // Not locked for the whole command: the progress bar draws on stderr from the thread
    // that reads the diff, and would wait forever for a lock held here.
    let mut err = io::stderr();
    let mut ctx = commands::Context {
        store: &store,
        config: &config,
        out: &mut out,
        err: &mut err,
        json_errors: cli.global.json_errors,
    };
    let code = commands::run(&mut ctx, command)?;
    out.flush()?;
    drop(out);
    // The process ends now: freeing every record of a big store one by one would be a tenth
    // of a listing's time (10,000 images), and the kernel takes back the memory and the lock
    // files' descriptors at exit anyway. Nothing in the Store's drop writes or unmounts.
    std::mem::forget(store);
    Ok(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_size_cap_is_on_by_default_and_zero_lifts_it() {
        assert_eq!(max_layer_size_from(None), Ok(Some(1 << 40)));
        assert_eq!(max_layer_size_from(Some(" ")), Ok(Some(1 << 40)));
        assert_eq!(max_layer_size_from(Some("0")), Ok(None));
        assert_eq!(max_layer_size_from(Some("8G")), Ok(Some(8 << 30)));
        assert!(max_layer_size_from(Some("lots")).is_err());
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size(" 512M "), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("1t"), Some(1 << 40));
        for bad in ["", "G", "-1", "1.5G", "12X", "99999999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    fn config(dir: &std::path::Path, driver: &str, explicit: bool) -> StoreConfig {
        StoreConfig {
            graph_root: dir.join("graph"),
            run_root: dir.join("run"),
            driver: driver.to_string(),
            options: Vec::new(),
            driver_explicit: explicit,
            config_file: None,
        }
    }

    #[test]
    fn a_driver_we_lack_is_an_error_wherever_it_was_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        for explicit in [true, false] {
            let err = open_store(&config(dir.path(), "zfs", explicit)).expect_err("no zfs");
            assert!(err.starts_with("unknown graph driver \"zfs\""), "{err}");
        }
        let store = open_store(&config(dir.path(), "vfs", false)).expect("vfs opens");
        assert_eq!(store.driver_name(), "vfs");
    }
}
