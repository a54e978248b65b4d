//! The command line: the Go tool's flags and commands, parsed with clap.
//!
//! `containers-storage` parses with `mflag`: global flags before and after the command,
//! `--long` and `-s` spellings, `--flag=value`, booleans that also take `=true`/`=false`,
//! hyphen-less command aliases (`createlayer`, `umount`, ...). The clap definitions below
//! reproduce that surface; [`crate::usage`] renders help in the Go tool's format and
//! [`crate::main`] maps clap's errors to the Go tool's messages and exit codes.
//!
//! Repeats follow mflag: a flag given twice keeps its last value (`--graph A --graph B`,
//! `--debug --debug=false`, `--json --json=false`), before and after the command alike; list
//! flags (`--storage-opt`, `--name`) collect every occurrence, and `--storage-opt` given both
//! before and after the command keeps both groups, in order ([`parse`]).
//! Differences kept on purpose: flags may also follow positional arguments (mflag stops at
//! the first positional and takes later `--json` as a layer name). Quotes in `--flag="value"`
//! and groups of one-letter flags (`-nj NAME`) are mflag's too: [`crate::mflag`] rewrites
//! them before clap parses.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::spec::{CommandSpec, command_spec};

mod subcommands;

pub use subcommands::Command;

/// Parses a Go boolean (`strconv.ParseBool`): `1 t T TRUE true True 0 f F FALSE false False`.
pub fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {value:?}: invalid syntax"
        )),
    }
}

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "layerstore",
    about = "Manage a container store: layers, images and containers (a drop-in for containers-storage)",
    disable_help_flag = true,
    disable_help_subcommand = true,
    disable_version_flag = true,
    allow_external_subcommands = true,
    external_subcommand_value_parser = clap::value_parser!(String),
    args_override_self = true
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalOptions,
    /// The command; `None` prints the usage. Not a clap `subcommand` field, so that
    /// `Cli::command()` defines the global flags alone: [`command`] adds every command,
    /// [`command_for`] only the one a command line names, and [`parse_with`] fills this in.
    #[arg(skip)]
    pub command: Option<Command>,
    /// The Go tool's facts about the command ([`parse`] fills it in from the name clap matched,
    /// an alias resolved); `None` without a command and for [`Command::External`].
    #[arg(skip)]
    pub spec: Option<&'static CommandSpec>,
}

/// The Go tool's global flags (its `makeFlags`), accepted before and after the command.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalOptions {
    /// `--run`/`-R`: the run root.
    #[arg(
        short = 'R',
        long = "run",
        global = true,
        allow_hyphen_values = true,
        help = "Root of the runtime state tree"
    )]
    pub run_root: Option<PathBuf>,
    /// `--graph`/`-g`: the graph root.
    #[arg(
        short = 'g',
        long = "graph",
        global = true,
        allow_hyphen_values = true,
        help = "Root of the storage tree"
    )]
    pub graph_root: Option<PathBuf>,
    /// `--storage-driver`/`-s`: the driver.
    #[arg(
        short = 's',
        long = "storage-driver",
        global = true,
        allow_hyphen_values = true,
        help = "Storage driver to use ($STORAGE_DRIVER)"
    )]
    pub storage_driver: Option<String>,
    /// `--storage-opt` (repeatable): driver options. Not a clap `global` argument: clap would
    /// let the occurrences after the command replace those before it, where mflag appends
    /// them; [`command`] gives every command its own `--storage-opt` and [`parse`] joins the two.
    #[arg(long = "storage-opt", action = ArgAction::Append, allow_hyphen_values = true, help = "Set storage driver options ($STORAGE_OPTS)")]
    pub storage_opts: Vec<String>,
    /// `--debug`/`-D`: debugging output on stderr.
    #[arg(short = 'D', long = "debug", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Print debugging information")]
    pub debug: Option<bool>,
    /// `--json-errors` (not in the Go tool): errors on stderr as one JSON object per line,
    /// `{"error":"..."}`.
    #[arg(
        long = "json-errors",
        global = true,
        help = "Print errors as JSON objects on stderr (layerstore only)"
    )]
    pub json_errors: bool,
    /// `--help`/`-h`: print the usage of the command.
    #[arg(short = 'h', long = "help", global = true, hide = true)]
    pub help: bool,
}

impl GlobalOptions {
    /// Whether any of the four store flags was given (then the Go tool ignores storage.conf's
    /// defaults and the environment for the driver and its options).
    pub fn any_store_flag(&self) -> bool {
        self.run_root.is_some()
            || self.graph_root.is_some()
            || self.storage_driver.is_some()
            || !self.storage_opts.is_empty()
    }

    /// Whether `--debug` is on.
    pub fn debug(&self) -> bool {
        self.debug.unwrap_or(false)
    }
}

/// `--json`/`-j`: prefer JSON output.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonFlag {
    /// The flag's value.
    #[arg(short = 'j', long = "json", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Prefer JSON output")]
    pub json: Option<bool>,
}

impl JsonFlag {
    /// Whether JSON output was asked for.
    pub fn on(self) -> bool {
        self.json.unwrap_or(false)
    }
}

/// Positional arguments (layer IDs or names, keys, ...).
#[derive(Debug, Clone, Default, Args)]
pub struct Positional {
    /// The arguments, as given.
    #[arg(value_name = "ARG")]
    pub args: Vec<String>,
}

/// Flags of `create-layer` and `import-layer`.
#[derive(Debug, Clone, Default, Args)]
pub struct CreateFlags {
    /// `--id`/`-i`.
    #[arg(
        short = 'i',
        long = "id",
        allow_hyphen_values = true,
        help = "Layer ID"
    )]
    pub id: Option<String>,
    /// `--name`/`-n` (repeatable).
    #[arg(short = 'n', long = "name", action = ArgAction::Append, allow_hyphen_values = true, help = "Layer name")]
    pub names: Vec<String>,
    /// `--label`/`-l`.
    #[arg(
        short = 'l',
        long = "label",
        allow_hyphen_values = true,
        help = "Mount Label"
    )]
    pub label: Option<String>,
    /// `--readonly`/`-r`.
    #[arg(short = 'r', long = "readonly", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Mark as read-only")]
    pub readonly: Option<bool>,
    /// The ID-mapping flags.
    #[command(flatten)]
    pub maps: MapFlags,
    /// `--json`.
    #[command(flatten)]
    pub json: JsonFlag,
}

/// The ID-mapping flags of `create-layer`, `import-layer` and `create-container`.
#[derive(Debug, Clone, Default, Args)]
pub struct MapFlags {
    /// `--hostuidmap`.
    #[arg(long = "hostuidmap", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Force host UID map")]
    pub host_uid_map: Option<bool>,
    /// `--hostgidmap`.
    #[arg(long = "hostgidmap", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help = "Force host GID map")]
    pub host_gid_map: Option<bool>,
    /// `--uidmap` (`ctr:host:size[:ctr:host:size...]`).
    #[arg(long = "uidmap", allow_hyphen_values = true, help = "UID map")]
    pub uid_map: Option<String>,
    /// `--gidmap` (`ctr:host:size[:ctr:host:size...]`).
    #[arg(long = "gidmap", allow_hyphen_values = true, help = "GID map")]
    pub gid_map: Option<String>,
    /// `--subuidmap USER`.
    #[arg(
        long = "subuidmap",
        allow_hyphen_values = true,
        help = "subuid UID map for a user"
    )]
    pub sub_uid_map: Option<String>,
    /// `--subgidmap GROUP`.
    #[arg(
        long = "subgidmap",
        allow_hyphen_values = true,
        help = "subgid GID map for a group"
    )]
    pub sub_gid_map: Option<String>,
}

/// The ID of each command's own `--storage-opt` (the occurrences after the command word).
const STORAGE_OPT_AFTER_COMMAND: &str = "storage_opts_after_command";

/// The whole command line's clap definition: [`Cli`]'s global flags and every command, each
/// command's description taken from [`crate::spec::COMMANDS`] and `--storage-opt` added to every
/// command (see [`GlobalOptions::storage_opts`]). Help, completions and the tests use it; a
/// command line is parsed with [`command_for`]'s smaller definition.
pub fn command() -> clap::Command {
    Command::augment_subcommands(Cli::command()).mut_subcommands(finish_command)
}

/// The definition that parses `argv` (program name first): [`command`]'s with only the command
/// the line names. Building every command, and clap copying the global flags into each, was
/// most of a process start's CPU time (about 60 commands); where mflag's reading finds no
/// command word, the full definition is used, so clap sees what it always saw.
pub fn command_for(argv: &[OsString]) -> clap::Command {
    let top = Cli::command();
    let Some(word) = crate::mflag::command_word(argv, &top) else {
        return command();
    };
    match Command::augment_subcommands(clap::Command::new("commands")).find_subcommand(&word) {
        Some(sub) => top.subcommand(finish_command(sub.clone())),
        // An unknown command: clap makes it the external one.
        None => top,
    }
}

/// What [`command`] adds to each derived command: its description and its `--storage-opt`.
fn finish_command(sub: clap::Command) -> clap::Command {
    // One table holds the descriptions: the Go tool's (see `crate::spec`).
    let about = command_spec(sub.get_name()).map(|spec| spec.about);
    sub.about(about).long_about(None::<&str>).arg(
        Arg::new(STORAGE_OPT_AFTER_COMMAND)
            .long("storage-opt")
            .action(ArgAction::Append)
            .allow_hyphen_values(true)
            .value_name("STORAGE_OPTS")
            .help("Set storage driver options ($STORAGE_OPTS)"),
    )
}

/// Parses a command line as the Go tool's two flag sets do: global flags before the command,
/// then the command's flags, where the global ones may come again. `definition` is
/// [`command_for`]'s for this line (or [`command`]'s).
pub fn parse_with(definition: &mut clap::Command, argv: &[OsString]) -> Result<Cli, clap::Error> {
    let matches = definition.try_get_matches_from_mut(argv)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if matches.subcommand().is_some() {
        cli.command = Some(Command::from_arg_matches(&matches)?);
    }
    cli.spec = matches.subcommand_name().and_then(command_spec);
    cli.global
        .storage_opts
        .extend(storage_opts_after_command(&matches));
    Ok(cli)
}

fn storage_opts_after_command(matches: &ArgMatches) -> Vec<String> {
    matches
        .subcommand()
        .and_then(|(_, sub)| {
            sub.try_get_many::<String>(STORAGE_OPT_AFTER_COMMAND)
                .ok()
                .flatten()
        })
        .map(|values| values.cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Parses as `main` does: with the definition [`command_for`] picks for the line.
    fn try_parse<T: Into<OsString> + Clone>(
        argv: impl IntoIterator<Item = T>,
    ) -> Result<Cli, clap::Error> {
        let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
        parse_with(&mut command_for(&argv), &argv)
    }

    fn parse(args: &[&str]) -> Cli {
        try_parse(args).expect("parses")
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn one_commands_definition_parses_as_the_whole_one() {
        let whole = command();
        for sub in whole.get_subcommands() {
            for name in std::iter::once(sub.get_name()).chain(sub.get_all_aliases()) {
                for line in [
                    vec!["cs", name],
                    vec!["cs", "-gD", "/g", name, "--storage-opt=a", "-D", "x"],
                    vec![
                        "cs", "--run", "/r", name, "--json", "-R", "/r2", "-j", "y", "z",
                    ],
                    vec!["cs", name, "--no-such-flag"],
                ] {
                    let argv: Vec<OsString> = line.iter().map(OsString::from).collect();
                    let mut one = command_for(&argv);
                    assert_eq!(one.get_subcommands().count(), 1, "{line:?}");
                    let by_one = parse_with(&mut one, &argv);
                    let by_whole = parse_with(&mut command(), &argv);
                    assert_eq!(
                        by_one.map(|cli| format!("{cli:?}")).map_err(|e| e.kind()),
                        by_whole.map(|cli| format!("{cli:?}")).map_err(|e| e.kind()),
                        "{line:?}"
                    );
                }
            }
        }
        // No command word (nothing, or a flag, after `--`): the whole definition.
        for line in [
            &["cs", "-D"][..],
            &["cs", "--"],
            &["cs", "--", "-j", "layers"],
        ] {
            let argv: Vec<OsString> = line.iter().map(OsString::from).collect();
            assert_eq!(
                command_for(&argv).get_subcommands().count(),
                whole.get_subcommands().count()
            );
        }
        // `--` before a word ends the global flags: the word is the command.
        let argv: Vec<OsString> = ["cs", "--", "layers"].map(OsString::from).to_vec();
        let mut one = command_for(&argv);
        assert_eq!(one.get_subcommands().count(), 1);
        let rewritten = crate::mflag::rewrite(&argv, &one).expect("rewrites");
        let cli = parse_with(&mut one, &rewritten).expect("parses");
        assert!(matches!(cli.command, Some(Command::Layers { .. })));
    }

    #[test]
    fn global_flags_before_and_after_the_command() {
        let cli = parse(&[
            "cs",
            "-g",
            "/g",
            "layers",
            "--run=/r",
            "-s",
            "vfs",
            "--storage-opt",
            "a=b",
            "--storage-opt=c=d",
        ]);
        assert_eq!(cli.global.graph_root, Some(PathBuf::from("/g")));
        assert_eq!(cli.global.run_root, Some(PathBuf::from("/r")));
        assert_eq!(cli.global.storage_driver.as_deref(), Some("vfs"));
        assert_eq!(cli.global.storage_opts, ["a=b", "c=d"]);
        assert!(cli.global.any_store_flag());
    }

    #[test]
    fn repeats_keep_the_last_value_and_lists_keep_every_one() {
        let cli = parse(&[
            "cs",
            "--debug",
            "-g",
            "/a",
            "--debug=false",
            "--storage-opt",
            "o1",
            "-g",
            "/b",
            "layers",
            "--storage-opt=o2",
            "-R",
            "/r1",
            "--run",
            "/r2",
            "-j",
            "--json=false",
        ]);
        assert_eq!(cli.global.graph_root, Some(PathBuf::from("/b")));
        assert_eq!(cli.global.run_root, Some(PathBuf::from("/r2")));
        assert!(!cli.global.debug());
        assert_eq!(cli.global.storage_opts, ["o1", "o2"]);
        let Some(Command::Layers { json, .. }) = cli.command else {
            panic!("not layers")
        };
        assert!(!json.on());
        let cli = parse(&[
            "cs",
            "create-layer",
            "--id",
            "a",
            "--id",
            "b",
            "-n",
            "x",
            "--name",
            "y",
            "--uidmap",
            "0:1:1",
            "--uidmap",
            "0:2:1",
        ]);
        let Some(Command::CreateLayer { flags, .. }) = cli.command else {
            panic!("not create-layer")
        };
        assert_eq!(flags.id.as_deref(), Some("b"));
        assert_eq!(flags.names, ["x", "y"]);
        assert_eq!(flags.maps.uid_map.as_deref(), Some("0:2:1"));
    }

    #[test]
    fn booleans_take_go_values_and_combine() {
        let cli = parse(&["cs", "layers", "-jt"]);
        let Some(Command::Layers { tree, json, .. }) = cli.command else {
            panic!("not layers")
        };
        assert_eq!((tree, json.on()), (Some(true), true));
        let cli = parse(&["cs", "layers", "--json=false", "--tree=T"]);
        let Some(Command::Layers { tree, json, .. }) = cli.command else {
            panic!("not layers")
        };
        assert_eq!((tree, json.on()), (Some(true), false));
        assert!(try_parse(["cs", "layers", "--json=maybe"]).is_err());
    }

    #[test]
    fn aliases_name_the_same_command() {
        for (alias, name) in [
            ("createlayer", "create-layer"),
            ("umount", "unmount"),
            ("diff-size", "diffsize"),
            ("apply-diff", "applydiff"),
            ("getnames", "get-names"),
            ("setlayerdata", "set-layer-data"),
        ] {
            let cli = parse(&["cs", alias, "x", "y"]);
            assert_eq!(cli.spec.map(|spec| spec.name), Some(name), "{alias}");
        }
    }

    #[test]
    fn unknown_words_are_external() {
        let cli = parse(&["cs", "frobnicate", "-j"]);
        assert!(
            matches!(cli.command, Some(Command::External(ref words)) if words[0] == "frobnicate")
        );
        assert!(cli.spec.is_none());
    }

    #[test]
    fn values_may_start_with_a_hyphen() {
        let cli = parse(&["cs", "set-metadata", "-m", "-x-", "layer"]);
        let Some(Command::SetMetadata { metadata, pos, .. }) = cli.command else {
            panic!("not set-metadata")
        };
        assert_eq!(metadata.as_deref(), Some("-x-"));
        assert_eq!(pos.args, ["layer"]);
    }

    #[test]
    fn clap_and_the_go_table_list_the_same_commands_with_one_description() {
        let clap = command();
        for sub in clap.get_subcommands() {
            let spec = command_spec(sub.get_name());
            assert!(spec.is_some(), "{} has no spec", sub.get_name());
            assert_eq!(
                sub.get_about().map(ToString::to_string).as_deref(),
                spec.map(|spec| spec.about),
                "{}",
                sub.get_name()
            );
        }
        for spec in crate::spec::COMMANDS {
            assert!(
                clap.find_subcommand(spec.name).is_some(),
                "{} is not a clap command",
                spec.name
            );
        }
    }

    #[test]
    fn go_bool_accepts_what_strconv_accepts() {
        for word in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(word), Ok(true));
        }
        for word in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(word), Ok(false));
        }
        assert!(parse_go_bool("yes").is_err());
    }
}
