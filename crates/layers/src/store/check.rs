//! [`LayerStore::check`]: finds what is broken or left over in a store and, when asked, repairs
//! it. See [`CheckOptions`] for what is checked and how it differs from Go's `Store.Check`.

use std::collections::HashSet;

use super::{LayerStore, LayerWriter};
use crate::error::{Error, Result};

mod find;
mod rebuild;
mod repair;
mod report;

pub use rebuild::{LayerChain, Rebuilt, RebuiltLayer};

pub use report::{Action, CheckOptions, CheckReport, Problem, Repair};

impl LayerStore {
    /// Checks the whole store and, with [`CheckOptions::repair`], repairs it.
    ///
    /// For every layer record: not flagged incomplete; the driver has its files; its parent
    /// has a record; its big-data items have files; when it records a diff digest, its
    /// `<id>.tar-split.gz` exists and (with [`CheckOptions::verify_contents`]) rebuilds,
    /// through the driver's file getter, into a stream with the recorded uncompressed digest
    /// and size (hashed and counted as it streams; nothing is kept). Then: names are unique;
    /// the driver holds no layer without a record (`list_layers`); `<driver>-layers/` holds no
    /// tar-split file or big-data directory without a record and no temp file of an
    /// unfinished atomic write (nor do the big-data directories and the run root's
    /// `<driver>-layers/`); and, for drivers that mount (overlay), every counted mount is in
    /// `/proc/self/mountinfo` and every layer mounted there is counted.
    ///
    /// The check reads `layers.json` and `mountpoints.json` itself, under the shared lock, and
    /// changes nothing, so it reports what a normal load would silently clean up (incomplete
    /// layers, duplicate names). Repair holds the exclusive lock from the first read to the
    /// last write: it unmounts and flags every layer to delete (broken ones and their
    /// descendants) `incomplete` and saves once, deletes them children first, saves once more
    /// (a crash in between leaves flagged layers, which the next read-write open deletes),
    /// then removes orphans and temp files. Each step is reported as an [`Action`]; a failed
    /// one leaves its problem in [`CheckReport::remaining`].
    ///
    /// Errors are for what stops the check itself (a lock, an unreadable `layers.json`); what
    /// is wrong with layers is in the report. A read-only store can be checked, not repaired
    /// ([`Error::ReadOnly`]).
    pub fn check(&self, options: &CheckOptions) -> Result<CheckReport> {
        if options.repair {
            if self.read_only {
                return Err(Error::ReadOnly(self.layers_dir.clone()));
            }
            let guard = self.layers_lock.lock()?;
            let mut state = self.state.write();
            let result = self.check_and_repair(&mut state, &guard, options, &Beyond::default());
            if result.is_err() {
                state.layers_seen = None;
            }
            result
        } else {
            let _guard = self.layers_lock.rlock()?;
            let snapshot = self.snapshot()?;
            let problems = self.find_problems(&snapshot, options)?;
            Ok(CheckReport {
                remaining: problems.clone(),
                problems,
                actions: Vec::new(),
            })
        }
    }
}

/// What the caller of [`LayerWriter::check`] knows beyond this layer store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beyond {
    /// Layers (full IDs) that images or containers use: repair deletes none of them, nor a
    /// layer below one of them.
    pub keep: HashSet<String>,
    /// Layers of other layer stores (an additional image store's): a layer whose parent is
    /// one of them has its parent, so it is not `missing-parent`.
    pub other_layers: HashSet<String>,
}

impl LayerWriter<'_> {
    /// [`LayerStore::check`] under this session's exclusive lock, for a caller that holds
    /// other stores' locks too (the Store, which knows what images and containers use and
    /// which layers other stores hold: [`Beyond`]).
    ///
    /// With [`CheckOptions::repair`], a broken layer that is in [`Beyond::keep`], or below a
    /// layer in it, is not deleted: it stays, its problems stay in
    /// [`CheckReport::remaining`], and a failed [`Repair::DeleteLayer`] action says why.
    /// Without repair it only checks.
    pub fn check(&mut self, options: &CheckOptions, beyond: &Beyond) -> Result<CheckReport> {
        let store = self.store;
        if options.repair {
            if store.read_only {
                return Err(Error::ReadOnly(store.layers_dir.clone()));
            }
            self.run(|state, guard| store.check_and_repair(state, guard, options, beyond))
        } else {
            let mut problems = store.find_problems(&store.snapshot()?, options)?;
            beyond.drop_known_parents(&mut problems);
            Ok(CheckReport {
                remaining: problems.clone(),
                problems,
                actions: Vec::new(),
            })
        }
    }
}

impl Beyond {
    /// Drops `missing-parent` problems whose parent another store holds.
    pub(super) fn drop_known_parents(&self, problems: &mut Vec<Problem>) {
        problems.retain(|p| {
            !matches!(p, Problem::MissingParent { parent, .. } if self.other_layers.contains(parent))
        });
    }
}
