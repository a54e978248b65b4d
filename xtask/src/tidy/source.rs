//! Rules on the Rust sources: every `unsafe` block or impl carries a `// SAFETY:` comment,
//! a crate without `unsafe` forbids it (`#![forbid(unsafe_code)]` in its root), and no file
//! outgrows the size budget; no error message prints the cause it also returns as its
//! `source()`.

use std::path::{Path, PathBuf};

/// Lines a Rust file may have.
pub const MAX_LINES: usize = 1_500;
/// Lines a file under a crate's `src/` may have (its unit tests included).
pub const MAX_SOURCE_LINES: usize = 1_000;
/// Files allowed past the budget, each with the reason it reads best whole.
pub const SIZE_EXCEPTIONS: &[(&str, &str)] = &[(
    "crates/cli/tests/it/hostile_suite.rs",
    "one table of hostile inputs, each row a scenario the Go tool is compared on",
)];

/// Error variants allowed to print their source's message, each with the reason (as
/// `file: Variant`). Their chain printer ([`layerstore_model::error_chain`]) does not repeat it.
pub const SOURCE_IN_MESSAGE_EXCEPTIONS: &[(&str, &str)] = &[(
    "crates/layers/src/error.rs: Driver",
    "it names the layer once where the driver's message names it too, as the Go tool prints it",
)];

/// A workspace package, as the source rules need it.
pub struct Package {
    /// Its name (`layerstore-model`).
    pub name: String,
    /// Its folder, relative to the repository root (`crates/model`).
    pub dir: PathBuf,
}

/// Every problem the rules find among the repository's `files` (relative paths).
pub fn check(root: &Path, files: &[PathBuf], packages: &[Package]) -> Vec<String> {
    let mut problems = Vec::new();
    let rust: Vec<(&PathBuf, String)> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .filter_map(|f| Some((f, std::fs::read_to_string(root.join(f)).ok()?)))
        .collect();
    for (file, text) in &rust {
        problems.extend(missing_safety_comments(file, text));
        problems.extend(messages_naming_their_source(file, text));
        if let Some(problem) = over_budget(file, text.lines().count()) {
            problems.push(problem);
        }
    }
    for package in packages {
        let has_unsafe = rust
            .iter()
            .any(|(file, text)| file.starts_with(&package.dir) && !unsafe_uses(text).is_empty());
        if has_unsafe {
            continue;
        }
        for root_file in ["src/lib.rs", "src/main.rs"] {
            let path = package.dir.join(root_file);
            let Some((_, text)) = rust.iter().find(|(file, _)| **file == path) else {
                continue;
            };
            if !text.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]") {
                problems.push(format!(
                    "{}: {} has no `unsafe`: its root must say `#![forbid(unsafe_code)]`",
                    path.display(),
                    package.name
                ));
            }
        }
    }
    problems
}

/// The `#[error(...)]` messages of `text` that print a field the error also returns as its
/// `source()` (one named `source` or marked `#[source]` or `#[from]`): whoever prints the whole
/// chain would say that cause twice. A message says what failed; the cause is the source's.
fn messages_naming_their_source(file: &Path, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].trim_start().starts_with("#[error(") {
            i += 1;
            continue;
        }
        let attribute_line = i;
        let mut attribute = String::new();
        while i < lines.len() {
            attribute.push_str(lines[i].trim());
            i += 1;
            if attribute.ends_with(")]") {
                break;
            }
        }
        while i < lines.len() {
            let line = lines[i].trim_start();
            if !(line.is_empty() || line.starts_with("//") || line.starts_with("#[")) {
                break;
            }
            i += 1;
        }
        let Some(message) = error_message(&attribute) else {
            continue;
        };
        let (name, fields, tuple) = item_fields(&lines[i.min(lines.len())..]);
        let key = format!("{}: {name}", file.display());
        if SOURCE_IN_MESSAGE_EXCEPTIONS.iter().any(|(k, _)| *k == key) {
            continue;
        }
        for (index, field) in fields.iter().enumerate() {
            let field_name = if tuple {
                index.to_string()
            } else {
                field_name(field)
            };
            let is_source = field.contains("#[source]")
                || field.contains("#[from]")
                || (!tuple && field_name == "source");
            if is_source && message_names(&message, &field_name, tuple) {
                problems.push(format!(
                    "{}:{}: {name}'s message prints `{field_name}`, which is also its source(): \
                     say what failed and leave the cause to the chain printer",
                    file.display(),
                    attribute_line + 1
                ));
            }
        }
    }
    problems
}

/// The format string and arguments of an `#[error(...)]` attribute; `None` for
/// `#[error(transparent)]`, whose message is its source's own.
fn error_message(attribute: &str) -> Option<(String, String)> {
    let inner = attribute.strip_prefix("#[error(")?.strip_suffix(")]")?;
    let rest = inner.trim_start().strip_prefix('"')?;
    let mut escaped = false;
    let end = rest.char_indices().find_map(|(at, c)| {
        let close = c == '"' && !escaped;
        escaped = c == '\\' && !escaped;
        close.then_some(at)
    })?;
    Some((rest[..end].to_string(), rest[end + 1..].to_string()))
}

/// The name of the struct or variant that `lines` start with, its fields (comments removed),
/// and whether they are a tuple's.
fn item_fields(lines: &[&str]) -> (String, Vec<String>, bool) {
    let mut code = String::new();
    for line in lines {
        let line = line.split("//").next().unwrap_or_default();
        code.push_str(line);
        code.push('\n');
        let opened = code.find(['{', '(', ',', ';']);
        if opened.is_some_and(|at| matches!(code.as_bytes()[at], b',' | b';')) {
            break;
        }
        if opened.is_some() && balanced(&code) {
            break;
        }
    }
    let open = code.find(['{', '(', ',', ';']).unwrap_or(code.len());
    let name = code[..open]
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();
    let Some(delimiter) = code[open..]
        .chars()
        .next()
        .filter(|c| matches!(c, '{' | '('))
    else {
        return (name, Vec::new(), false);
    };
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut field = String::new();
    for c in code[open + 1..].chars() {
        match c {
            '{' | '(' | '[' | '<' => depth += 1,
            '}' | ')' | ']' | '>' if depth == 0 => break,
            '}' | ')' | ']' | '>' => depth -= 1,
            ',' if depth == 0 => {
                fields.push(std::mem::take(&mut field));
                continue;
            }
            _ => {}
        }
        field.push(c);
    }
    fields.push(field);
    fields.retain(|f| !f.trim().is_empty());
    (name, fields, delimiter == '(')
}

/// Whether every bracket of `code` is closed.
fn balanced(code: &str) -> bool {
    let opened = code.matches(['{', '(', '[']).count();
    let closed = code.matches(['}', ')', ']']).count();
    opened == closed
}

/// The name of a named field (`#[source] pub source: io::Error` gives `source`).
fn field_name(field: &str) -> String {
    let mut declaration = field.trim();
    while let Some(rest) = declaration.strip_prefix("#[") {
        declaration = rest
            .split_once(']')
            .map_or("", |(_, rest)| rest)
            .trim_start();
    }
    let before_type = declaration.split(':').next().unwrap_or_default();
    before_type
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// Whether an error message (format string, arguments) prints the field `name`.
fn message_names((format, arguments): &(String, String), name: &str, tuple: bool) -> bool {
    if format.contains(&format!("{{{name}}}")) || format.contains(&format!("{{{name}:")) {
        return true;
    }
    let needle = if tuple {
        format!(".{name}")
    } else {
        name.to_string()
    };
    arguments.match_indices(&needle).any(|(at, _)| {
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        let before = arguments[..at].chars().next_back();
        let after = arguments[at + needle.len()..].chars().next();
        (tuple || !before.is_some_and(|c| ident(c) || c == '.')) && !after.is_some_and(ident)
    })
}

/// The problem with a file of `lines` lines, if it is over its budget and not an exception.
fn over_budget(file: &Path, lines: usize) -> Option<String> {
    if SIZE_EXCEPTIONS
        .iter()
        .any(|(path, _)| file == Path::new(path))
    {
        return None;
    }
    let in_src = file.components().any(|c| c.as_os_str() == "src");
    let budget = if in_src { MAX_SOURCE_LINES } else { MAX_LINES };
    (lines > budget).then(|| {
        format!(
            "{}: {lines} lines, over the budget of {budget}: split it along its concerns \
             (or list it in tidy's SIZE_EXCEPTIONS with the reason it reads best whole)",
            file.display()
        )
    })
}

/// One `unsafe` of a file: its line (from 0) and whether it opens a block or an impl (which
/// need a `// SAFETY:` comment) rather than declaring an unsafe fn or trait.
#[derive(Debug, PartialEq, Eq)]
struct UnsafeUse {
    line: usize,
    needs_safety_comment: bool,
}

/// Where `text` uses the keyword `unsafe` in code (not in comments, strings or names).
fn unsafe_uses(text: &str) -> Vec<UnsafeUse> {
    let mut uses = Vec::new();
    for (line, code) in code_lines(text).iter().enumerate() {
        let mut rest = code.as_str();
        while let Some(at) = rest.find("unsafe") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + "unsafe".len()..];
            let word_starts = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
            let word_ends = !after
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            if word_starts && word_ends {
                let next = after.trim_start();
                uses.push(UnsafeUse {
                    line,
                    needs_safety_comment: next.starts_with('{')
                        || next.is_empty()
                        || next.starts_with("impl"),
                });
            }
            rest = after;
        }
    }
    uses
}

/// The lines of `text` with comments removed and the contents of string and char literals
/// blanked (strings may span lines), so that only code is searched.
fn code_lines(text: &str) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        LineComment,
        BlockComment(usize),
        Str,
        RawStr(usize),
    }
    let chars: Vec<char> = text.chars().collect();
    let mut lines = vec![String::new()];
    let mut state = State::Code;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            lines.push(String::new());
            if state == State::LineComment {
                state = State::Code;
            }
            i += 1;
            continue;
        }
        let line = lines.last_mut().expect("one line at least");
        match state {
            State::Code => match (c, next) {
                ('/', Some('/')) => state = State::LineComment,
                ('/', Some('*')) => {
                    state = State::BlockComment(1);
                    i += 1;
                }
                ('"', _) => {
                    line.push('"');
                    state = State::Str;
                }
                ('r', Some('"' | '#'))
                    if !line
                        .chars()
                        .next_back()
                        .is_some_and(|p| p.is_alphanumeric() || p == '_') =>
                {
                    let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
                    if chars.get(i + 1 + hashes) == Some(&'"') {
                        line.push('"');
                        state = State::RawStr(hashes);
                        i += 1 + hashes;
                    } else {
                        line.push(c);
                    }
                }
                ('\'', _) => {
                    // A char literal ('x', '\n', '\u{41}'); a lifetime ('a) has no closing quote.
                    let close = if next == Some('\\') {
                        chars[i + 2..]
                            .iter()
                            .take(10)
                            .position(|&q| q == '\'')
                            .map(|p| i + 2 + p)
                    } else {
                        (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
                    };
                    match close {
                        Some(close) => {
                            line.push_str("' '");
                            i = close;
                        }
                        None => line.push(c),
                    }
                }
                _ => line.push(c),
            },
            State::LineComment => {}
            State::BlockComment(depth) => match (c, next) {
                ('*', Some('/')) => {
                    state = if depth == 1 {
                        State::Code
                    } else {
                        State::BlockComment(depth - 1)
                    };
                    i += 1;
                }
                ('/', Some('*')) => {
                    state = State::BlockComment(depth + 1);
                    i += 1;
                }
                _ => {}
            },
            State::Str => match c {
                // An escape; a backslash before a line break keeps the break counted.
                '\\' if next != Some('\n') => i += 1,
                '"' => {
                    line.push('"');
                    state = State::Code;
                }
                _ => {}
            },
            State::RawStr(hashes) => {
                if c == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    line.push('"');
                    state = State::Code;
                    i += hashes;
                }
            }
        }
        i += 1;
    }
    lines
}

/// The `unsafe` blocks and impls of `text` with no `// SAFETY:` comment on their line or on
/// the lines of the statement and comments just above it.
fn missing_safety_comments(file: &Path, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    unsafe_uses(text)
        .into_iter()
        .filter(|u| u.needs_safety_comment)
        .filter(|u| {
            // Up to the end of the previous statement or block: the comment and any lines
            // of the same statement above (`let x =` on the line before `unsafe { … }`).
            let mut first = u.line;
            while first > 0 {
                let above = lines[first - 1].trim();
                if above.is_empty()
                    || (above.ends_with([';', '{', '}', ',']) && !above.starts_with("//"))
                {
                    break;
                }
                first -= 1;
            }
            !lines[first..=u.line]
                .iter()
                .any(|l| l.contains("// SAFETY:"))
        })
        .map(|u| {
            format!(
                "{}:{}: `unsafe` without a `// SAFETY:` comment saying why it is sound",
                file.display(),
                u.line + 1
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_is_found_in_code_only() {
        let text = "fn f() {\n\
                    // an unsafe comment\n\
                    let s = \"unsafe { in a string }\";\n\
                    let not_unsafe_name = 1;\n\
                    let c = '\"'; unsafe { g() };\n\
                    }\n\
                    unsafe fn h() {}\n\
                    unsafe impl Send for X {}\n\
                    /* unsafe { in a comment } */ let r = r#\"unsafe {\n\
                    unsafe { in a raw string }\"#;\n";
        let uses = unsafe_uses(text);
        assert_eq!(
            uses,
            [
                UnsafeUse {
                    line: 4,
                    needs_safety_comment: true
                },
                UnsafeUse {
                    line: 6,
                    needs_safety_comment: false
                },
                UnsafeUse {
                    line: 7,
                    needs_safety_comment: true
                },
            ]
        );
    }

    #[test]
    fn safety_comments_count_above_the_statement() {
        let file = Path::new("x.rs");
        let ok = "fn f() {\n\
                  // SAFETY: the pointer is valid.\n\
                  let x =\n\
                  unsafe { g() };\n\
                  // SAFETY: no arguments.\n\
                  match unsafe { h() } {\n\
                  _ => {}\n\
                  }\n\
                  }\n";
        assert!(missing_safety_comments(file, ok).is_empty());
        let missing = "fn f() {\n\
                       // SAFETY: for the first one only.\n\
                       unsafe { g() };\n\
                       let y = 1;\n\
                       unsafe { h() };\n\
                       }\n";
        let found = missing_safety_comments(file, missing);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("x.rs:5:"), "{found:?}");
    }

    #[test]
    fn files_over_the_budget_are_named() {
        assert!(over_budget(Path::new("crates/a/src/lib.rs"), MAX_SOURCE_LINES).is_none());
        assert!(over_budget(Path::new("crates/a/src/lib.rs"), MAX_SOURCE_LINES + 1).is_some());
        assert!(over_budget(Path::new("crates/a/tests/it/x.rs"), MAX_SOURCE_LINES + 1).is_none());
        assert!(over_budget(Path::new("crates/a/tests/it/x.rs"), MAX_LINES + 1).is_some());
        let (exception, _) = SIZE_EXCEPTIONS[0];
        assert!(over_budget(Path::new(exception), MAX_LINES * 2).is_none());
    }

    #[test]
    fn a_crate_without_unsafe_must_forbid_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for (path, text) in [
            ("safe/src/lib.rs", "//! Doc.\n\nfn f() {}\n"),
            ("forbids/src/lib.rs", "//! Doc.\n#![forbid(unsafe_code)]\n"),
            (
                "uses/src/lib.rs",
                "//! Doc.\n// SAFETY: sound.\nunsafe impl Send for X {}\n",
            ),
        ] {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), text).unwrap();
        }
        let files: Vec<PathBuf> = ["safe", "forbids", "uses"]
            .iter()
            .map(|p| PathBuf::from(p).join("src/lib.rs"))
            .collect();
        let packages: Vec<Package> = ["safe", "forbids", "uses"]
            .iter()
            .map(|p| Package {
                name: p.to_string(),
                dir: PathBuf::from(p),
            })
            .collect();
        let problems = check(root, &files, &packages);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("safe/src/lib.rs:"), "{problems:?}");
    }

    #[test]
    fn a_message_must_not_print_its_own_source() {
        let text = r#"
pub enum Error {
    /// Named `source`, printed.
    #[fail("opening {path:?}: {source}")]
    Open {
        /// Where.
        path: PathBuf,
        source: io::Error,
    },
    /// A tuple's `#[from]`, printed.
    #[fail("reading: {0}")]
    Read(#[from] io::Error),
    /// Printed through an argument.
    #[fail(
        "layer {}: {}", id, cause
    )]
    Layer { id: String, #[source] cause: Box<Error> },
    /// Fine: the cause is left to `source()`.
    #[fail("writing {}", path.display())]
    Write { path: PathBuf, #[source] source: io::Error },
    /// Fine: transparent.
    #[fail(transparent)]
    Inner(#[from] inner::Error),
    /// Fine: a field that is not a source.
    #[fail("bad name {0}")]
    Name(String),
    /// Fine: a unit variant.
    #[fail("gone")]
    Gone,
}
#[derive(Debug, thiserror::Error)]
#[fail("decoding {document}: {0}", document = "x")]
pub struct Decode(#[source] serde_json::Error);
"#
        // Spelled `fail` here so that tidy, reading this file, does not take it for an error.
        .replace("#[fail(", "#[error(");
        let problems = messages_naming_their_source(Path::new("e.rs"), &text);
        let lines: Vec<&str> = problems
            .iter()
            .map(|p| p.split(": ").next().unwrap_or_default())
            .collect();
        assert_eq!(
            lines,
            ["e.rs:4", "e.rs:11", "e.rs:14", "e.rs:32"],
            "{problems:?}"
        );
        assert!(
            problems[0].contains("Open's message prints `source`"),
            "{problems:?}"
        );
    }
}
