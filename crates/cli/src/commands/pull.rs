//! `pull SOURCE [NAME]` and `push IMAGE DEST` (not in the Go tool): images into and out of the
//! whole Store (layers + images), as podman writes and reads them, through
//! [`layerstore_pull`]. Progress bars (one per layer and a total) on a terminal only; the
//! image ID printed at the end, as `podman pull` prints it.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use layerstore::{Store, StoreOptions};
use layerstore_model::error_chain;
use layerstore_pull::auth::Credentials;
use layerstore_pull::{
    ImageReference, Platform, PullEvent, PullOptions, RegistryOptions, TransportOptions,
    open_destination, open_source, pull_into_store,
};

use crate::args::Command;
use crate::config::StoreConfig;
use crate::output::write_error;

/// Flags of `pull` and `push`.
#[derive(Debug, Clone, Default, Args)]
pub struct PullFlags {
    /// `--creds USER[:PASSWORD]`.
    #[arg(
        long = "creds",
        help = "Credentials (USER[:PASSWORD]) for the registry"
    )]
    pub creds: Option<String>,
    /// `--authfile PATH`.
    #[arg(long = "authfile", help = "Path of the authentication file")]
    pub authfile: Option<std::path::PathBuf>,
    /// `--tls-verify[=false]`.
    #[arg(long = "tls-verify", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = crate::args::parse_go_bool, help = "Require HTTPS and verify certificates (false: plain HTTP)")]
    pub tls_verify: Option<bool>,
    /// `--platform OS/ARCH[/VARIANT]`.
    #[arg(
        long = "platform",
        help = "The platform to pull from a multi-platform image"
    )]
    pub platform: Option<String>,
    /// `--quiet`/`-q`.
    #[arg(short = 'q', long = "quiet", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = crate::args::parse_go_bool, help = "No progress; print only the image ID")]
    pub quiet: Option<bool>,
}

impl PullFlags {
    fn transport(&self) -> Result<TransportOptions, String> {
        let credentials = self.creds.as_deref().map(|creds| {
            let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
            Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
            }
        });
        Ok(TransportOptions {
            registry: RegistryOptions {
                credentials,
                auth_files: self.authfile.clone().map(|f| vec![f]),
                tls_verify: self.tls_verify.unwrap_or(true),
                ..RegistryOptions::default()
            },
        })
    }
}

/// Runs `pull` or `push` on the Store `config` names; the exit code.
pub fn run(config: &StoreConfig, command: &Command, json_errors: bool) -> anyhow::Result<u8> {
    let outcome = match command {
        Command::Pull { flags, pos } => pull(config, flags, &pos.args),
        Command::Push { flags, pos } => push(config, flags, &pos.args),
        _ => return Ok(1),
    };
    match outcome {
        Ok(line) => {
            let mut out = io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
            Ok(0)
        }
        Err(text) => {
            write_error(&mut io::stderr(), json_errors, &text)?;
            Ok(1)
        }
    }
}

fn open(config: &StoreConfig) -> Result<Store, String> {
    let driver = if config.driver.is_empty() {
        "vfs"
    } else {
        config.driver.as_str()
    };
    let mut options = StoreOptions::new(&config.graph_root, &config.run_root, driver);
    for option in &config.options {
        options = options.driver_option(option.clone());
    }
    Store::open(options).map_err(|e| format!("error initializing: {}", error_chain(&e)))
}

fn pull(config: &StoreConfig, flags: &PullFlags, args: &[String]) -> Result<String, String> {
    let reference: ImageReference = args[0].parse().map_err(|e| error_chain(&e))?;
    let platform = match &flags.platform {
        Some(p) => p.parse::<Platform>().map_err(|e| error_chain(&e))?,
        None => Platform::host(),
    };
    let source = open_source(&reference, &flags.transport()?).map_err(|e| error_chain(&e))?;
    let store = open(config)?;
    let bars = Bars::new(!flags.quiet.unwrap_or(false) && io::stderr().is_terminal());
    let progress = |event: PullEvent| bars.event(event);
    let options = PullOptions {
        platform,
        names: args.get(1).map(|name| vec![name.clone()]),
        progress: bars
            .on()
            .then_some(&progress as &(dyn Fn(PullEvent) + Sync)),
        ..PullOptions::default()
    };
    let report = pull_into_store(&store, source.as_ref(), &options).map_err(|e| error_chain(&e));
    bars.finish();
    let report = report?;
    Ok(report.image.id)
}

fn push(config: &StoreConfig, flags: &PullFlags, args: &[String]) -> Result<String, String> {
    let dest: ImageReference = args[1].parse().map_err(|e| error_chain(&e))?;
    let destination = open_destination(&dest, &flags.transport()?).map_err(|e| error_chain(&e))?;
    let store = open(config)?;
    let digest = layerstore_pull::push_from_store(&store, &args[0], destination.as_ref(), 4)
        .map_err(|e| error_chain(&e))?;
    Ok(digest.to_string())
}

/// One bar per layer and a total, on stderr; nothing when off.
struct Bars {
    multi: Option<MultiProgress>,
    layers: Mutex<HashMap<usize, ProgressBar>>,
    total: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new(on: bool) -> Bars {
        Bars {
            multi: on.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            layers: Mutex::new(HashMap::new()),
            total: Mutex::new(None),
        }
    }

    fn on(&self) -> bool {
        self.multi.is_some()
    }

    fn event(&self, event: PullEvent) {
        let Some(multi) = &self.multi else { return };
        let style = ProgressStyle::with_template(
            "{msg:20} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        match event {
            PullEvent::Planned { layers, present } => {
                let mut bars = self.layers.lock().expect("not poisoned");
                let mut total_bytes = 0;
                for (index, ((digest, size), present)) in layers.iter().zip(present).enumerate() {
                    let short: String = digest
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect();
                    let bar = multi.add(ProgressBar::new(*size).with_style(style.clone()));
                    if present {
                        bar.finish_with_message(format!("{short} exists"));
                    } else {
                        bar.set_message(short);
                        total_bytes += size;
                    }
                    bars.insert(index, bar);
                }
                let total = multi.add(ProgressBar::new(total_bytes).with_style(style));
                total.set_message("total");
                *self.total.lock().expect("not poisoned") = Some(total);
            }
            PullEvent::Read { index, bytes } => {
                if let Some(bar) = self.layers.lock().expect("not poisoned").get(&index) {
                    bar.inc(bytes);
                }
                if let Some(total) = &*self.total.lock().expect("not poisoned") {
                    total.inc(bytes);
                }
            }
            PullEvent::Committed { index } => {
                if let Some(bar) = self.layers.lock().expect("not poisoned").get(&index) {
                    bar.finish();
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(total) = &*self.total.lock().expect("not poisoned") {
            total.finish_and_clear();
        }
        for bar in self.layers.lock().expect("not poisoned").values() {
            bar.finish_and_clear();
        }
    }
}
