//! Printing an error for a person: its message and then each cause.

use std::error::Error as StdError;
use std::fmt;

/// Displays an error followed by every cause its `source()` chain gives, as
/// `message: cause: cause`.
///
/// Our errors say only what failed and leave their cause to `source()`; whoever prints an
/// error for a person prints it through this adapter. A cause whose text the message
/// already ends with (a library error that prints its own cause, or one wrapped as
/// `#[error("{0}")]`) is not said twice, nor one whose message the error repeats without its
/// leading `subject: ` (the layer store names a layer once where its driver's error names it too).
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&error_chain(self.0))
    }
}

/// The text [`ErrorChain`] displays: the error's message and each cause not already said.
pub fn error_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let more = e.to_string();
        let tail = more
            .split_once(": ")
            .map_or(more.as_str(), |(_, tail)| tail);
        if !more.is_empty() && !text.ends_with(&more) && !text.ends_with(tail) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening {path}")]
    struct Outer {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    /// A library error that prints its cause and also returns it (what our errors do not).
    #[derive(Debug)]
    struct SaysItsCause(Outer);

    impl fmt::Display for SaysItsCause {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "loading: {}", self.0)
        }
    }

    impl StdError for SaysItsCause {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn outer() -> Outer {
        Outer {
            path: "/a",
            source: std::io::Error::from_raw_os_error(2),
        }
    }

    #[test]
    fn every_cause_follows_the_message() {
        let err = outer();
        let io = std::io::Error::from_raw_os_error(2).to_string();
        assert_eq!(error_chain(&err), format!("opening /a: {io}"));
        assert_eq!(ErrorChain(&err).to_string(), format!("opening /a: {io}"));
    }

    #[test]
    fn a_cause_the_message_already_ends_with_is_said_once() {
        let err = SaysItsCause(outer());
        let io = std::io::Error::from_raw_os_error(2).to_string();
        assert_eq!(error_chain(&err), format!("loading: opening /a: {io}"));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("layer 1: mount {path}")]
    struct LayerIo {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    /// An error that repeats its cause's message without the cause's subject.
    #[derive(Debug)]
    struct RenamesItsSubject(LayerIo);

    impl fmt::Display for RenamesItsSubject {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "layer 1: mount: mount {}", self.0.path)
        }
    }

    impl StdError for RenamesItsSubject {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_repeated_without_its_subject_is_said_once() {
        let err = RenamesItsSubject(LayerIo {
            path: "/a",
            source: std::io::Error::from_raw_os_error(2),
        });
        let io = std::io::Error::from_raw_os_error(2).to_string();
        assert_eq!(error_chain(&err), format!("layer 1: mount: mount /a: {io}"));
    }
}
