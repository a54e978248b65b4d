//! The parts of the Go tool's flag parser (`pkg/mflag`) that clap does not share, applied to
//! the command line before clap sees it:
//!
//! * In the `--flag=value` and `-f=value` forms, one level of matching outer quotes (`"…"` or
//!   `'…'`) is stripped from the value (`--name="q"` names `q`); a value given as the next
//!   argument keeps its quotes.
//! * A single-dash word of several letters (`-jn`, `-graph`) is a group of one-letter flags;
//!   a letter that needs a value takes the next *argument*, not the rest of the word
//!   (`-nj x` is `-n x -j`). If any letter is not a flag, or one lacks its value, the whole
//!   word is reported (`flag provided but not defined: -graph`).
//!
//! The words are rewritten into the spelling clap reads the same way (`-nj x` becomes
//! `-n x -j`, `--name="q"` becomes `--name=q`); nothing else changes. A value-taking flag's
//! value is never rewritten as a flag, and `--` ends the flags. Before the command word, a
//! `--` followed by a word is dropped: it ends the global flags, as in mflag.

use std::collections::HashMap;
use std::ffi::OsString;

use clap::Arg;

/// A group of one-letter flags mflag refuses, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupError {
    /// The whole word as given (`-graph`).
    pub word: String,
    /// The first letter that needed a value and had none (mflag reports it first).
    pub missing_value: Option<char>,
    /// Whether the word came before the command word (the top-level parser's error path).
    pub before_command: bool,
}

/// The flags one parser knows: by long name and by letter, and whether each takes a value
/// (a separate argument); booleans do not.
#[derive(Debug, Default)]
struct Scope {
    longs: HashMap<String, bool>,
    shorts: HashMap<char, bool>,
}

impl Scope {
    fn add(&mut self, arg: &Arg) {
        if arg.is_positional() {
            return;
        }
        let takes_value = arg.get_action().takes_values() && !arg.is_require_equals_set();
        for long in arg.get_long_and_visible_aliases().unwrap_or_default() {
            self.longs.insert(long.to_string(), takes_value);
        }
        for short in arg.get_short_and_visible_aliases().unwrap_or_default() {
            self.shorts.insert(short, takes_value);
        }
    }

    /// Whether the flag spelled `name` (without dashes; one letter for a short flag) is
    /// known, and whether it takes a value.
    fn lookup(&self, name: &str, long: bool) -> Option<bool> {
        if long {
            return self.longs.get(name).copied();
        }
        let mut letters = name.chars();
        match (letters.next(), letters.next()) {
            (Some(letter), None) => self.shorts.get(&letter).copied(),
            _ => None,
        }
    }
}

/// The scope before the command word (the global flags) and each command's.
fn scopes(cli: &clap::Command) -> (Scope, HashMap<String, Scope>) {
    let mut top = Scope::default();
    let globals: Vec<&Arg> = cli.get_arguments().collect();
    for arg in &globals {
        top.add(arg);
    }
    let mut commands = HashMap::new();
    for sub in cli.get_subcommands() {
        let mut scope = Scope::default();
        for arg in globals.iter().filter(|a| a.is_global_set()) {
            scope.add(arg);
        }
        for arg in sub.get_arguments() {
            scope.add(arg);
        }
        for name in std::iter::once(sub.get_name()).chain(sub.get_all_aliases()) {
            commands.insert(
                name.to_string(),
                Scope {
                    longs: scope.longs.clone(),
                    shorts: scope.shorts.clone(),
                },
            );
        }
    }
    (top, commands)
}

/// mflag's `trimQuotes`: one level of matching outer `"` or `'` quotes.
fn trim_quotes(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

/// Rewrites `argv` (program name first) as described in the [module docs](self), or reports
/// the group of letters mflag would refuse.
pub fn rewrite(argv: &[OsString], cli: &clap::Command) -> Result<Vec<OsString>, GroupError> {
    scan(argv, cli).map(|(words, _)| words)
}

/// The command word of `argv` as mflag finds it: the first word that is neither a global flag
/// nor a global flag's value. `None` when there is none before the end or a `--`, or when a
/// group of letters before it is refused. `top` needs only the global flags: the commands'
/// definitions play no part in finding the word.
pub fn command_word(argv: &[OsString], top: &clap::Command) -> Option<String> {
    scan(argv, top).ok().and_then(|(_, word)| word)
}

/// [`rewrite`], and the command word when one was found.
fn scan(
    argv: &[OsString],
    cli: &clap::Command,
) -> Result<(Vec<OsString>, Option<String>), GroupError> {
    let (top, commands) = scopes(cli);
    let mut out: Vec<OsString> = Vec::with_capacity(argv.len());
    let mut words = argv.iter().cloned();
    out.extend(words.next());
    let mut scope = Some(&top);
    let mut before_command = true;
    let mut command_word = None;
    while let Some(word) = words.next() {
        let Some(current) = scope else {
            out.push(word);
            continue;
        };
        let Some(text) = word.to_str().map(str::to_string) else {
            out.push(word);
            continue;
        };
        if text == "--" {
            // Before the command word, `--` ends only the global flags (the Go tool's
            // `cs -- layers` runs `layers`): it goes, and the next word is the command.
            if before_command
                && let Some(next) = words.clone().next()
                && next.to_str().is_some_and(|n| !n.starts_with('-'))
            {
                continue;
            }
            out.push(word);
            out.extend(words.by_ref());
            break;
        }
        if !text.starts_with('-') || text.len() == 1 {
            if before_command {
                before_command = false;
                // An unknown command is the Go tool's "unrecognized command": leave it be.
                scope = commands.get(&text);
                command_word = Some(text);
            }
            out.push(word);
            continue;
        }
        let long = text.starts_with("--");
        let body = &text[if long { 2 } else { 1 }..];
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        match current.lookup(name, long) {
            Some(takes_value) => {
                match value {
                    Some(value) => {
                        let dashes = if long { "--" } else { "-" };
                        out.push(format!("{dashes}{name}={}", trim_quotes(value)).into());
                    }
                    None => {
                        out.push(word);
                        if takes_value {
                            out.extend(words.next());
                        }
                    }
                }
                continue;
            }
            None if long || name.chars().count() < 2 => {
                // Unknown: clap reports it as mflag does.
                out.push(word);
                continue;
            }
            None => {}
        }
        // A group of letters (mflag ignores an `=value` part here).
        let mut group = Vec::new();
        let mut missing_value = None;
        let mut known = true;
        for letter in name.chars() {
            match current.shorts.get(&letter) {
                Some(&takes_value) => {
                    group.push(OsString::from(format!("-{letter}")));
                    if takes_value {
                        match words.next() {
                            Some(value) => group.push(value),
                            None => {
                                missing_value = Some(letter);
                                break;
                            }
                        }
                    }
                }
                None => {
                    known = false;
                    break;
                }
            }
        }
        if !known || missing_value.is_some() {
            return Err(GroupError {
                word: text,
                missing_value,
                before_command,
            });
        }
        out.extend(group);
    }
    Ok((out, command_word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    fn rewritten(line: &str) -> Result<String, GroupError> {
        let out = rewrite(&words(line), &crate::args::command())?;
        Ok(out
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "))
    }

    #[test]
    fn equals_values_lose_one_level_of_quotes() {
        assert_eq!(
            rewritten("cs create-layer --name=\"q\" -n \"r\" -n='s' --id='\"t\"'").unwrap(),
            "cs create-layer --name=q -n \"r\" -n=s --id=\"t\""
        );
        // Not a matching pair, or a lone quote: kept.
        assert_eq!(
            rewritten("cs create-layer -n=\"x -n=' --name='y\"").unwrap(),
            "cs create-layer -n=\"x -n=' --name='y\""
        );
        // Before the command too, and booleans.
        assert_eq!(
            rewritten("cs --graph=\"/g\" layers --json='false'").unwrap(),
            "cs --graph=/g layers --json=false"
        );
    }

    #[test]
    fn letter_groups_take_values_from_the_next_arguments() {
        assert_eq!(
            rewritten("cs create-layer -nj x").unwrap(),
            "cs create-layer -n x -j"
        );
        assert_eq!(
            rewritten("cs create-layer -nn a b").unwrap(),
            "cs create-layer -n a -n b"
        );
        assert_eq!(
            rewritten("cs -gD g -R r layers -jt").unwrap(),
            "cs -g g -D -R r layers -j -t"
        );
        // A value is never taken for a flag, even when it looks like one.
        assert_eq!(
            rewritten("cs create-layer -n -jq").unwrap(),
            "cs create-layer -n -jq"
        );
        // After `--` nothing is a flag.
        assert_eq!(
            rewritten("cs create-layer -- -nj").unwrap(),
            "cs create-layer -- -nj"
        );
    }

    #[test]
    fn a_double_dash_before_the_command_ends_only_the_global_flags() {
        assert_eq!(rewritten("cs -- layers -jt").unwrap(), "cs layers -j -t");
        assert_eq!(rewritten("cs -D -- layers").unwrap(), "cs -D layers");
        // Nothing, or a flag, after it: left to clap as before.
        assert_eq!(rewritten("cs --").unwrap(), "cs --");
        assert_eq!(rewritten("cs -- -j layers").unwrap(), "cs -- -j layers");
    }

    #[test]
    fn a_bad_group_is_reported_whole() {
        let err = rewritten("cs -graph g layers").unwrap_err();
        assert_eq!(
            err,
            GroupError {
                word: "-graph".into(),
                missing_value: None,
                before_command: true
            }
        );
        let err = rewritten("cs create-layer -name x").unwrap_err();
        assert_eq!((err.word.as_str(), err.before_command), ("-name", false));
        let err = rewritten("cs create-layer -jn").unwrap_err();
        assert_eq!((err.word.as_str(), err.missing_value), ("-jn", Some('n')));
    }

    #[test]
    fn unknown_commands_and_single_flags_are_left_to_clap() {
        assert_eq!(rewritten("cs frob -qj").unwrap(), "cs frob -qj");
        // A group of a known command's one-letter flags is split, as mflag does.
        assert_eq!(rewritten("cs images -qj").unwrap(), "cs images -q -j");
        assert_eq!(rewritten("cs layers --zz -z").unwrap(), "cs layers --zz -z");
        assert_eq!(rewritten("cs layers -").unwrap(), "cs layers -");
    }
}
