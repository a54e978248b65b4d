//! A progress bar on stderr for long streams (applydiff, import-layer, diff), drawn only when
//! stderr is a terminal: scripts that pipe or redirect stderr see exactly the Go tool's output.

use std::io::{self, IsTerminal, Read, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar, or nothing when stderr is not a terminal.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar for `total` bytes (unknown: `None`) labelled `what`; hidden unless stderr is a
    /// terminal.
    pub fn new(what: &str, total: Option<u64>) -> Self {
        if !io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{msg} {spinner} {bytes} {binary_bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(what.to_string());
        Progress { bar: Some(bar) }
    }

    /// Wraps a reader so that bytes read advance the bar.
    pub fn reader<R: Read>(&self, inner: R) -> ProgressReader<R> {
        ProgressReader {
            inner,
            bar: self.bar.clone(),
        }
    }

    /// Wraps a writer so that bytes written advance the bar.
    pub fn writer<W: Write>(&self, inner: W) -> ProgressWriter<W> {
        ProgressWriter {
            inner,
            bar: self.bar.clone(),
        }
    }

    /// Draws the final state and leaves it on the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    /// Removes the bar (on failure, so the error line stands alone).
    pub fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A reader that advances a progress bar.
#[derive(Debug)]
pub struct ProgressReader<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}

/// A writer that advances a progress bar.
#[derive(Debug)]
pub struct ProgressWriter<W> {
    inner: W,
    bar: Option<ProgressBar>,
}

impl<W: Write> Write for ProgressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrappers_pass_bytes_through_unchanged() {
        let progress = Progress {
            bar: Some(ProgressBar::hidden()),
        };
        let mut read = Vec::new();
        progress
            .reader(&b"hello world"[..])
            .read_to_end(&mut read)
            .expect("reads");
        assert_eq!(read, b"hello world");
        let mut written = Vec::new();
        progress
            .writer(&mut written)
            .write_all(b"abc")
            .expect("writes");
        assert_eq!(written, b"abc");
        assert_eq!(progress.bar.as_ref().map(ProgressBar::position), Some(14));
        progress.finish();
    }
}
