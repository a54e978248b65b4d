//! Reporting command-line problems the way the Go tool's `mflag` does: unknown flags, missing
//! values and bad booleans (exit 125, `See '<prog> <cmd> --help'.`), and usage printing split
//! between stdout and stderr.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::usage::{Usage, top_usage};

/// Exit code of flag errors (mflag's `ExitOnError`).
pub const EXIT_FLAG_ERROR: u8 = 125;

/// The program name as invoked: the usage line shows its base name, "See '...'" the whole.
pub fn program(argv: &[OsString]) -> (String, String) {
    let full = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "layerstore".into());
    let base = Path::new(&full)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_else(|| full.clone());
    (full, base)
}

pub fn print_usage(usage: &Usage, flags_to_stdout: bool) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(usage.stdout.as_bytes())?;
    if flags_to_stdout {
        stdout.write_all(usage.flags.as_bytes())?;
        stdout.flush()
    } else {
        stdout.flush()?;
        io::stderr().write_all(usage.flags.as_bytes())
    }
}

/// Index in `argv` of the command word (the first word that is neither a flag nor a global
/// flag's value), if any.
fn command_index(argv: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let word = argv[i].to_string_lossy();
        if matches!(
            word.as_ref(),
            "-g" | "-R" | "-s" | "--graph" | "--run" | "--storage-driver" | "--storage-opt"
        ) {
            i += 2;
            continue;
        }
        if word.starts_with('-') && word.len() > 1 {
            i += 1;
            continue;
        }
        return Some(i);
    }
    None
}

fn context_string(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    }
}

/// Reports a clap error as mflag would and answers the exit code.
pub fn report_parse_error(argv: &[OsString], err: &clap::Error) -> io::Result<u8> {
    let (full, base) = program(argv);
    let cmd_index = command_index(argv);
    let command = cmd_index.map(|i| argv[i].to_string_lossy().into_owned());
    let see = match &command {
        Some(cmd) => format!("See '{full} {cmd} --help'."),
        None => format!("See '{full} --help'."),
    };
    let invalid = context_string(err, ContextKind::InvalidArg).map(|a| {
        a.split([' ', '=', '['])
            .next()
            .unwrap_or_default()
            .to_string()
    });
    let message = match err.kind() {
        ErrorKind::UnknownArgument => {
            let arg = invalid.unwrap_or_default();
            let position = argv
                .iter()
                .position(|a| a.to_string_lossy().split('=').next() == Some(arg.as_str()));
            if let (Some(pos), Some(cmd)) = (position, cmd_index)
                && pos < cmd
            {
                // Before the command: the top-level parser's ContinueOnError path.
                eprintln!("flag provided but not defined: {arg}\nSee '{full} --help'.");
                println!("flag provided but not defined: {arg} while parsing arguments (1)");
                print_usage(&top_usage(&base, true), false)?;
                return Ok(1);
            }
            format!("flag provided but not defined: {arg}")
        }
        ErrorKind::InvalidValue
            if context_string(err, ContextKind::InvalidValue).is_none_or(|v| v.is_empty()) =>
        {
            let typed = argv
                .last()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("flag needs an argument: {typed}")
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
            if invalid.as_deref().is_some_and(|a| a.starts_with('-')) =>
        {
            let value = context_string(err, ContextKind::InvalidValue).unwrap_or_default();
            // The flag as typed: the word that ends in `=<value>`.
            let suffix = format!("={value}");
            let typed = argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .find_map(|a| a.strip_suffix(&suffix).map(str::to_string))
                .or(invalid)
                .unwrap_or_default();
            format!(
                "invalid boolean value {value:?} for  {typed}: strconv.ParseBool: parsing {value:?}: invalid syntax"
            )
        }
        _ => err.to_string().trim_end().to_string(),
    };
    eprintln!("{message}\n{see}");
    Ok(EXIT_FLAG_ERROR)
}

/// Reports a group of one-letter flags mflag refuses ([`crate::mflag::GroupError`]) as the
/// Go tool does, and answers the exit code.
pub fn report_group_error(argv: &[OsString], err: &crate::mflag::GroupError) -> io::Result<u8> {
    let (full, base) = program(argv);
    let see = match command_index(argv).filter(|_| !err.before_command) {
        Some(i) => format!("See '{full} {} --help'.", argv[i].to_string_lossy()),
        None => format!("See '{full} --help'."),
    };
    if let Some(letter) = err.missing_value {
        eprintln!("flag needs an argument: -{letter}\n{see}");
    }
    let message = format!("flag provided but not defined: {}", err.word);
    eprintln!("{message}\n{see}");
    if err.before_command {
        println!("{message} while parsing arguments (1)");
        print_usage(&top_usage(&base, true), false)?;
        return Ok(1);
    }
    Ok(EXIT_FLAG_ERROR)
}

/// The word the user typed for the command (an alias shows as itself).
/// `definition` is the one the line was parsed with.
pub fn typed_command(argv: &[OsString], definition: &clap::Command, canonical: &str) -> String {
    let names: Vec<String> = definition
        .find_subcommand(canonical)
        .map(|sub| {
            std::iter::once(sub.get_name().to_string())
                .chain(sub.get_all_aliases().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    argv.iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .find(|word| names.contains(word))
        .unwrap_or_else(|| canonical.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_command_word_skips_global_flags_and_their_values() {
        let words = argv(&[
            "cs",
            "-g",
            "/g",
            "--debug",
            "--storage-opt",
            "a=b",
            "layers",
            "-j",
        ]);
        assert_eq!(command_index(&words), Some(6));
        assert_eq!(command_index(&argv(&["cs", "--run=/r", "-D"])), None);
    }

    #[test]
    fn aliases_are_reported_as_typed() {
        let words = argv(&["cs", "-s", "vfs", "umount", "x"]);
        assert_eq!(
            typed_command(&words, &crate::args::command(), "unmount"),
            "umount"
        );
        assert_eq!(
            typed_command(&argv(&["cs", "layers"]), &crate::args::command(), "layers"),
            "layers"
        );
    }

    #[test]
    fn program_names() {
        let (full, base) = program(&argv(&["/usr/bin/containers-storage", "layers"]));
        assert_eq!(
            (full.as_str(), base.as_str()),
            ("/usr/bin/containers-storage", "containers-storage")
        );
    }
}
