//! `key=value` driver options, as containers/storage's `--storage-opt` / `storage.conf`
//! `[storage.options.<driver>]` entries.
//!
//! A raw option is `[<prefix>.]<key>=<value>`: the prefix is the driver's name, one of its
//! aliases (e.g. `overlay2`), or empty (`.mountopt=…` applies to whichever driver is used).
//! Keys are compared case-insensitively (Go lowercases them); values are kept verbatim after
//! trimming surrounding white space, as Go's `parsers.ParseKeyValueOpt` does.
//!
//! A driver takes the keys it knows with the `take_*` methods and then calls
//! [`DriverOptions::finish`], which fails on the first option nobody took, naming it.

use crate::error::{Error, Result};

/// One parsed option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverOption {
    /// The key without its prefix, lowercased (`ignore_chown_errors`).
    pub key: String,
    /// The value, trimmed (`true`).
    pub value: String,
    /// The option exactly as given (`vfs.ignore_chown_errors=true`), for messages.
    pub raw: String,
}

/// The options given to one driver, not yet consumed by it.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    driver: String,
    pending: Vec<DriverOption>,
}

impl DriverOptions {
    /// Parses `raw` options for the driver `driver`, whose options may also be prefixed with
    /// one of `aliases` (or with just `.`).
    ///
    /// Fails on an option without `=`, with an empty key, or with a prefix naming some other
    /// driver (`overlay.mountopt` given to vfs): Go reports the latter as "does not support".
    pub fn parse<S: AsRef<str>>(driver: &str, aliases: &[&str], raw: &[S]) -> Result<Self> {
        let mut pending = Vec::with_capacity(raw.len());
        for option in raw {
            let option = option.as_ref();
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| Error::MalformedOption {
                    driver: driver.to_string(),
                    option: option.to_string(),
                    reason: "expected key=value",
                })?;
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim().to_string();
            let bare = std::iter::once(driver)
                .chain(aliases.iter().copied())
                .chain(std::iter::once(""))
                .find_map(|prefix| {
                    key.strip_prefix(prefix)
                        .and_then(|rest| rest.strip_prefix('.'))
                })
                .ok_or_else(|| Error::UnsupportedOption {
                    driver: driver.to_string(),
                    key: key.clone(),
                })?;
            if bare.is_empty() {
                return Err(Error::MalformedOption {
                    driver: driver.to_string(),
                    option: option.to_string(),
                    reason: "empty key",
                });
            }
            pending.push(DriverOption {
                key: bare.to_string(),
                value,
                raw: option.to_string(),
            });
        }
        Ok(DriverOptions {
            driver: driver.to_string(),
            pending,
        })
    }

    /// The driver these options are for.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Whether no option is left.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Removes and returns every option with `key` (without prefix), in the order given.
    pub fn take_all(&mut self, key: &str) -> Vec<DriverOption> {
        let (taken, kept) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|o| o.key == key);
        self.pending = kept;
        taken
    }

    /// Removes every option with `key` and returns the last one's value (later ones win, as
    /// Go applies options in order).
    pub fn take_string(&mut self, key: &str) -> Option<String> {
        self.take_all(key).pop().map(|o| o.value)
    }

    /// Like [`take_string`](Self::take_string), parsing the value as Go's `strconv.ParseBool`
    /// does (`1 t T TRUE true True 0 f F FALSE false False`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        let Some(option) = self.take_all(key).pop() else {
            return Ok(None);
        };
        match option.value.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Some(true)),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Some(false)),
            _ => Err(Error::MalformedOption {
                driver: self.driver.clone(),
                option: option.raw,
                reason: "expected a boolean (true or false)",
            }),
        }
    }

    /// Removes every option with `key` and returns all their comma-separated values, in
    /// order, empty items dropped (`vfs.imagestore=/a,/b`).
    pub fn take_list(&mut self, key: &str) -> Vec<String> {
        self.take_all(key)
            .into_iter()
            .flat_map(|o| {
                o.value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Fails with `message` (e.g. "does not support mount options") if `key` was given.
    pub fn forbid(&mut self, key: &str, message: &'static str) -> Result<()> {
        match self.take_all(key).into_iter().next() {
            None => Ok(()),
            Some(option) => Err(Error::RejectedOption {
                driver: self.driver.clone(),
                option: option.raw,
                message,
            }),
        }
    }

    /// Succeeds when every option was taken; otherwise fails naming the first one left.
    pub fn finish(self) -> Result<()> {
        match self.pending.into_iter().next() {
            None => Ok(()),
            Some(option) => Err(Error::UnsupportedOption {
                driver: self.driver,
                key: option
                    .raw
                    .split_once('=')
                    .map_or(option.raw.clone(), |(k, _)| k.trim().to_ascii_lowercase()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_stripped_and_keys_lowercased() {
        let mut o = DriverOptions::parse(
            "overlay",
            &["overlay2"],
            &[
                "overlay.MountOpt=nodev",
                "overlay2.size=10G",
                ".ignore_chown_errors = true ",
            ],
        )
        .unwrap();
        assert_eq!(o.take_string("mountopt").as_deref(), Some("nodev"));
        assert_eq!(o.take_string("size").as_deref(), Some("10G"));
        assert_eq!(o.take_bool("ignore_chown_errors").unwrap(), Some(true));
        assert!(o.is_empty());
        o.finish().unwrap();
    }

    #[test]
    fn other_driver_prefix_is_rejected_naming_the_key() {
        let err = DriverOptions::parse("vfs", &[], &["overlay.mountopt=x"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vfs driver does not support overlay.mountopt options"
        );
        // Without any prefix the key cannot be attributed to a driver either.
        assert!(DriverOptions::parse("vfs", &[], &["mountopt=x"]).is_err());
    }

    #[test]
    fn malformed_options_name_the_option() {
        let err = DriverOptions::parse("vfs", &[], &["vfs.ignore_chown_errors"]).unwrap_err();
        assert!(err.to_string().contains("vfs.ignore_chown_errors"), "{err}");
        let err = DriverOptions::parse("vfs", &[], &["vfs.=1"]).unwrap_err();
        assert!(err.to_string().contains("vfs.=1"), "{err}");
        let mut o = DriverOptions::parse("vfs", &[], &["vfs.ignore_chown_errors=maybe"]).unwrap();
        let err = o.take_bool("ignore_chown_errors").unwrap_err();
        assert!(
            err.to_string().contains("ignore_chown_errors=maybe"),
            "{err}"
        );
    }

    #[test]
    fn leftovers_fail_in_finish() {
        let o = DriverOptions::parse("vfs", &[], &["vfs.Frobnicate=1"]).unwrap();
        assert_eq!(
            o.finish().unwrap_err().to_string(),
            "vfs driver does not support vfs.frobnicate options"
        );
    }

    #[test]
    fn lists_accumulate_and_last_scalar_wins() {
        let mut o = DriverOptions::parse(
            "vfs",
            &[],
            &[
                "vfs.imagestore=/a,/b",
                ".imagestore=/c",
                "vfs.ignore_chown_errors=false",
                "vfs.ignore_chown_errors=1",
            ],
        )
        .unwrap();
        assert_eq!(o.take_list("imagestore"), ["/a", "/b", "/c"]);
        assert_eq!(o.take_bool("ignore_chown_errors").unwrap(), Some(true));
        o.finish().unwrap();
    }

    #[test]
    fn forbidden_key_gives_its_message() {
        let mut o = DriverOptions::parse("vfs", &[], &["vfs.mountopt=nodev"]).unwrap();
        let err = o
            .forbid("mountopt", "does not support mount options")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "vfs driver does not support mount options (option \"vfs.mountopt=nodev\")"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// Parsing never panics, and every accepted option is found again under its key.
        #[test]
        fn parse_is_total(raw in proptest::collection::vec("[a-zA-Z0-9._= ,/-]{0,24}", 0..6)) {
            if let Ok(mut o) = DriverOptions::parse("vfs", &[], &raw) {
                let keys: Vec<String> = o.pending.iter().map(|p| p.key.clone()).collect();
                for key in keys {
                    let _ = o.take_all(&key);
                }
                proptest::prop_assert!(o.is_empty());
            }
        }
    }
}
