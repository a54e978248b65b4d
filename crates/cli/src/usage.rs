//! Usage text in the Go tool's format (`mflag.PrintDefaults` through a Go `tabwriter`).
//!
//! The Go tool prints the usage header on stdout and the flag table on stderr (the table's
//! writer is stderr unless `--help` was asked for at the top level); the table shows each
//! flag's *current* value as its default, so `-g=/path` reflects the resolved graph root.

use clap::{Arg, ArgAction, CommandFactory};

use crate::args::Cli;
use crate::spec::{COMMANDS, CommandSpec};

/// The values the Go tool shows as defaults of the global flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagDefaults {
    /// `--graph`.
    pub graph_root: String,
    /// `--run`.
    pub run_root: String,
    /// `--storage-driver`.
    pub driver: String,
    /// `--storage-opt`.
    pub options: Vec<String>,
}

/// Usage text split as the Go tool splits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// The part for stdout.
    pub stdout: String,
    /// The flag table (stderr, except for a top-level `--help`).
    pub flags: String,
}

/// Flags this tool adds to the Go tool's: left out of the Go-format table so that the text
/// stays the Go tool's, and listed by the top-level usage instead.
const EXTENSION_FLAGS: &[&str] = &["json-errors"];

/// A flag's line in the table: names, current value, help.
struct FlagRow {
    sort_key: String,
    names: String,
    value: String,
    help: String,
}

fn go_list(values: &[String]) -> String {
    format!("[{}]", values.join(" "))
}

fn row(arg: &Arg, defaults: &FlagDefaults) -> Option<FlagRow> {
    let long = arg.get_long()?;
    if arg.is_hide_set() || EXTENSION_FLAGS.contains(&long) {
        return None;
    }
    let mut names = vec![format!("--{long}")];
    names.extend(
        arg.get_visible_aliases()
            .unwrap_or_default()
            .into_iter()
            .map(|alias| format!("--{alias}")),
    );
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    let value = match long {
        "graph" => defaults.graph_root.clone(),
        "run" => defaults.run_root.clone(),
        "storage-driver" => defaults.driver.clone(),
        "storage-opt" => go_list(&defaults.options),
        _ if matches!(arg.get_action(), ArgAction::Append) => "[]".to_string(),
        _ => String::new(),
    };
    Some(FlagRow {
        sort_key: long.to_lowercase(),
        names: names.join(", "),
        value,
        help: arg.get_help().map(|h| h.to_string()).unwrap_or_default(),
    })
}

/// `$HOME` at the start of a default is shown as `~`, unless `$HOME` is `/`.
fn shorten_home(value: &str) -> String {
    match std::env::var("HOME") {
        Ok(home) if home != "/" && !home.is_empty() && value.starts_with(&home) => {
            format!("~{}", &value[home.len()..])
        }
        _ => value.to_string(),
    }
}

/// Renders rows the way Go's `tabwriter.NewWriter(w, 20, 1, 3, ' ', 0)` lays them out.
fn flag_table(mut rows: Vec<FlagRow>) -> String {
    rows.sort_by(|a, b| a.sort_key.cmp(&b.sort_key));
    let cells: Vec<(String, &str)> = rows
        .iter()
        .map(|row| {
            let value = shorten_home(&row.value);
            // Go's isZeroValue: "", "false" and "0" are not shown.
            let cell = if matches!(value.as_str(), "" | "false" | "0") {
                format!("  {}", row.names)
            } else {
                format!("  {}={}", row.names, value)
            };
            (cell, row.help.as_str())
        })
        .collect();
    let width = cells
        .iter()
        .map(|(cell, _)| cell.chars().count() + 3)
        .max()
        .unwrap_or(0)
        .max(20);
    let mut out = String::from(if cells.is_empty() { "" } else { "\n" });
    for (cell, help) in cells {
        let pad = width - cell.chars().count();
        out.push_str(&cell);
        out.push_str(&" ".repeat(pad));
        out.push(' ');
        out.push_str(help);
        out.push('\n');
    }
    out
}

/// The flags every command takes: clap's global ones and `--storage-opt` (which each command
/// defines again, see [`crate::args::command`]).
fn global_args() -> Vec<Arg> {
    Cli::command()
        .get_arguments()
        .filter(|arg| arg.is_global_set() || arg.get_long() == Some("storage-opt"))
        .cloned()
        .collect()
}

/// The usage of one command, as `containers-storage CMD --help` prints it; `typed` is the
/// command word as given (an alias shows as itself).
pub fn command_usage(
    prog: &str,
    typed: &str,
    spec: &CommandSpec,
    defaults: &FlagDefaults,
) -> Usage {
    let cli = crate::args::command();
    let mut rows: Vec<FlagRow> = global_args()
        .iter()
        .filter_map(|arg| row(arg, defaults))
        .collect();
    if let Some(sub) = cli.find_subcommand(spec.name) {
        rows.extend(
            sub.get_arguments()
                // `--storage-opt` is among the global rows already.
                .filter(|arg| {
                    !arg.is_global_set()
                        && !arg.is_positional()
                        && arg.get_long() != Some("storage-opt")
                })
                .filter_map(|arg| row(arg, defaults)),
        );
    }
    Usage {
        stdout: format!(
            "Usage: {prog} {typed} {}\n\n{}\n\nOptions:\n",
            spec.options_help, spec.about
        ),
        flags: flag_table(rows),
    }
}

/// The top-level usage; `with_help` adds the `--help` row (the Go tool defines it only once
/// it parses arguments).
pub fn top_usage(prog: &str, with_help: bool) -> Usage {
    let mut stdout = format!("Usage: {prog} command [options [...]]\n\nCommands:\n\n");
    for spec in COMMANDS {
        stdout.push_str(&format!("  {:<30}{}\n", spec.name, spec.about));
    }
    stdout.push_str("\nOptions:\n");
    let defaults = FlagDefaults::default();
    let mut rows: Vec<FlagRow> = global_args()
        .iter()
        .filter_map(|arg| row(arg, &defaults))
        .collect();
    if with_help {
        rows.push(FlagRow {
            sort_key: "help".into(),
            names: "--help".into(),
            value: String::new(),
            help: "Print usage".into(),
        });
    }
    let mut flags = flag_table(rows);
    flags.push_str(
        "\nlayerstore only: --json-errors prints errors as JSON objects on stderr; \
         `completions SHELL` prints a completion script.\n",
    );
    Usage { stdout, flags }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::command_spec;

    fn defaults() -> FlagDefaults {
        FlagDefaults {
            graph_root: "/tmp/study/root".into(),
            run_root: "/tmp/study/run".into(),
            driver: "vfs".into(),
            options: vec![],
        }
    }

    #[test]
    fn layer_usage_is_the_go_tools() {
        let spec = command_spec("layer").expect("layer");
        let usage = command_usage("containers-storage", "layer", spec, &defaults());
        assert_eq!(
            usage.stdout,
            "Usage: containers-storage layer [options [...]] layerNameOrID [...]\n\nExamine a layer\n\nOptions:\n"
        );
        // Observed from containers-storage 1.43 (`layer` with no argument).
        let expected = "
  --debug, -D                    Print debugging information
  --graph, -g=/tmp/study/root    Root of the storage tree
  --json, -j                     Prefer JSON output
  --run, -R=/tmp/study/run       Root of the runtime state tree
  --storage-driver, -s=vfs       Storage driver to use ($STORAGE_DRIVER)
  --storage-opt=[]               Set storage driver options ($STORAGE_OPTS)
";
        assert_eq!(usage.flags, expected);
    }

    #[test]
    fn diff_usage_lists_every_spelling() {
        let spec = command_spec("diff").expect("diff");
        let mut d = defaults();
        d.options = vec!["a=b".into(), "c=d".into()];
        let usage = command_usage("containers-storage", "diff", spec, &d);
        assert!(usage.flags.starts_with(
            "\n  --bzip2, --bz2, -b             Compress using bzip2 (not currently supported)\n"
        ));
        assert!(
            usage
                .flags
                .contains("  --storage-opt=[a=b c=d]        Set storage")
        );
        assert!(usage.flags.ends_with(
            "  --xz, -x                       Compress using xz (not currently supported)\n"
        ));
    }

    #[test]
    fn create_layer_shows_list_defaults() {
        let spec = command_spec("create-layer").expect("create-layer");
        let usage = command_usage("containers-storage", "createlayer", spec, &defaults());
        assert!(usage.stdout.starts_with(
            "Usage: containers-storage createlayer [options [...]] [parentLayerNameOrID]\n"
        ));
        assert!(
            usage
                .flags
                .contains("\n  --name, -n=[]                  Layer name\n")
        );
        assert!(
            usage
                .flags
                .contains("\n  --hostgidmap                   Force host GID map\n")
        );
    }

    #[test]
    fn top_usage_lists_commands_and_help() {
        let usage = top_usage("layerstore", true);
        assert!(
            usage
                .stdout
                .contains("\n  create-layer                  Create a new layer\n")
        );
        assert!(
            usage
                .flags
                .contains("  --help                  Print usage\n")
        );
        assert!(
            usage
                .flags
                .contains("  --storage-opt=[]        Set storage driver options ($STORAGE_OPTS)\n")
        );
        assert!(!top_usage("layerstore", false).flags.contains("--help"));
    }
}
