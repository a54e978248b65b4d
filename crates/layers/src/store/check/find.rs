//! Finding what is wrong: the records, files and mounts of a store compared, nothing changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use layerstore_driver::mount::is_mount_point;
use layerstore_model::{Digest, DigestAlgorithm, Layer};
use rustix::fs::FileType;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::error::{Error, Result};
use crate::files::{StoreDir, big_data_file_name};
use crate::state::State;
use crate::store::{Counting, LayerStore, is_temp_name, tar_split_name, usable};

use super::{CheckOptions, Problem};

/// Drivers whose [`get`](layerstore_driver::Driver::get) makes a kernel mount, so that a mount
/// count can be compared with the mount table. vfs and btrfs hand out a directory.
const MOUNTING_DRIVERS: &[&str] = &["overlay"];

/// One entry of `/proc/self/mountinfo` we care about: the mount point.
fn mount_points() -> Result<HashSet<PathBuf>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read(path).map_err(|e| Error::io("read", path, e))?;
    Ok(parse_mountinfo(&text))
}

/// The mount points (5th field, octal escapes decoded) of a mountinfo table.
fn parse_mountinfo(text: &[u8]) -> HashSet<PathBuf> {
    layerstore_driver::mount::mountinfo_mount_points(text).collect()
}

/// A hasher for any digest algorithm a record may name, fed as a `Write`.
pub(super) enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    pub(super) fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            DigestAlgorithm::Sha384 => Hasher::Sha384(Sha384::new()),
            DigestAlgorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub(super) fn finish(self) -> Result<Digest> {
        Ok(match self {
            Hasher::Sha256(h) => Digest::from_hash(DigestAlgorithm::Sha256, &h.finalize())?,
            Hasher::Sha384(h) => Digest::from_hash(DigestAlgorithm::Sha384, &h.finalize())?,
            Hasher::Sha512(h) => Digest::from_hash(DigestAlgorithm::Sha512, &h.finalize())?,
        })
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Hasher::Sha256(h) => h.update(buf),
            Hasher::Sha384(h) => h.update(buf),
            Hasher::Sha512(h) => h.update(buf),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether a tar-split failure is about the layer's files rather than the tar-split file.
fn is_content_error(err: &layerstore_tarsplit::Error) -> bool {
    use layerstore_tarsplit::Error as E;
    matches!(err, E::Checksum { .. } | E::Size { .. } | E::File { .. })
}

/// The first path component of `path` below `home`, if `path` is strictly below it.
fn component_below<'p>(home: &Path, path: &'p Path) -> Option<&'p str> {
    path.strip_prefix(home)
        .ok()?
        .components()
        .next()?
        .as_os_str()
        .to_str()
}

impl LayerStore {
    /// The records and mount counts as the files hold them now, with no load-time cleanup.
    pub(super) fn snapshot(&self) -> Result<State> {
        let records = self.read_layers_json()?;
        let mut state = State {
            layers: records.layers,
            unreadable: records.unreadable,
            ..State::default()
        };
        state.rebuild();
        if self.mounts_lock.is_some() {
            let (records, bad) = self.read_mountpoints_json()?;
            state.apply_mounts(records, |id, path| self.trusted_mount_point(id, path));
            state.untrusted_mounts.extend(bad);
        } else {
            // A read-only store counts mounts in this process only.
            let current = self.state.read();
            for layer in &mut state.layers {
                if let Some(known) = current.by_id.get(&layer.id).map(|&i| &current.layers[i]) {
                    layer.mount_point = known.mount_point.clone();
                    layer.mount_count = known.mount_count;
                }
            }
        }
        Ok(state)
    }

    pub(super) fn find_problems(
        &self,
        state: &State,
        options: &CheckOptions,
    ) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        for record in &state.unreadable {
            problems.push(Problem::UnreadableRecord {
                index: record.index,
                id: record.id.clone(),
                detail: record.reason.clone(),
            });
        }
        // Every record's ID, usable or not: their files are not orphans, their children have
        // a parent.
        let ids: HashSet<&str> = state
            .live()
            .map(|l| l.id.as_str())
            .chain(state.unreadable.iter().filter_map(|u| u.id.as_deref()))
            .collect();
        for layer in state.live() {
            match usable(layer) {
                Ok(layer) => self.check_layer(layer, &ids, options, &mut problems)?,
                Err(Error::UnsafeId { id, reason }) => {
                    problems.push(Problem::UnsafeId { id, detail: reason });
                }
                Err(other) => return Err(other),
            }
        }

        problems.extend(parent_cycles(state));

        let mut holders: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for layer in state.live() {
            for name in &layer.names {
                let ids = holders.entry(name.as_str()).or_default();
                if !ids.contains(&layer.id) {
                    ids.push(layer.id.clone());
                }
            }
        }
        for (name, ids) in holders {
            if ids.len() > 1 {
                problems.push(Problem::DuplicateName {
                    name: name.to_string(),
                    ids,
                });
            }
        }

        let driver_layers = self
            .driver
            .list_layers()
            .map_err(|e| Error::driver("-", "list the driver's layers", e))?;
        for id in driver_layers {
            if !ids.contains(id.as_str()) {
                problems.push(Problem::OrphanLayerData { id });
            }
        }
        self.find_stray_files(&ids, &mut problems)?;
        self.find_mount_problems(state, &mut problems)?;
        Ok(problems)
    }

    fn check_layer(
        &self,
        layer: &Layer,
        ids: &HashSet<&str>,
        options: &CheckOptions,
        problems: &mut Vec<Problem>,
    ) -> Result<()> {
        let id = layer.id.as_str();
        if layer.is_incomplete() {
            // Its files are half made or half removed: nothing more to learn.
            problems.push(Problem::IncompleteLayer { id: id.to_string() });
            return Ok(());
        }
        if let Some(parent) = layer.parent()
            && !ids.contains(parent)
        {
            problems.push(Problem::MissingParent {
                id: id.to_string(),
                parent: parent.to_string(),
            });
        }
        if !layer.big_data_names.is_empty() {
            // A big-data directory that is not one (a symlink, ...) holds none of the items.
            let dir = match self.open_layers_dir()? {
                Some(layers) => layers.subdir(id, false).ok().flatten(),
                None => None,
            };
            for key in &layer.big_data_names {
                let name = big_data_file_name(key);
                let present = match &dir {
                    Some(dir) => dir.file_type(&name)? == Some(FileType::RegularFile),
                    None => false,
                };
                if !present {
                    problems.push(Problem::MissingBigData {
                        id: id.to_string(),
                        key: key.clone(),
                        path: self.big_data_dir(id).join(name),
                    });
                }
            }
        }
        if !self.driver.exists(id) {
            problems.push(Problem::MissingLayerData { id: id.to_string() });
            return Ok(());
        }
        let Some(expected) = &layer.uncompressed_digest else {
            // Never given a diff (an empty or container layer): nothing to rebuild.
            return Ok(());
        };
        let path = self.tar_split_path(id);
        let file = match self.open_in_layers_dir(&tar_split_name(id)) {
            Ok(Some(file)) => file,
            Ok(None) => {
                problems.push(Problem::MissingTarSplit {
                    id: id.to_string(),
                    path,
                });
                return Ok(());
            }
            // A FIFO or a symlink in its place: reported without being opened or followed.
            Err(err @ Error::UnexpectedFileType { .. }) => {
                problems.push(Problem::CorruptTarSplit {
                    id: id.to_string(),
                    path,
                    detail: layerstore_model::error_chain(&err),
                });
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        if !options.verify_contents {
            return Ok(());
        }
        let mut sink = Counting {
            inner: Hasher::new(expected.algorithm()),
            count: 0,
        };
        match self.assemble(layer, file, &path, &mut sink) {
            Ok(()) => {
                let actual = sink.inner.finish()?;
                if &actual != expected {
                    problems.push(Problem::DigestMismatch {
                        id: id.to_string(),
                        expected: expected.clone(),
                        actual,
                    });
                }
                if let Some(size) = layer.known_uncompressed_size()
                    && u64::try_from(size).ok() != Some(sink.count)
                {
                    problems.push(Problem::SizeMismatch {
                        id: id.to_string(),
                        expected: size,
                        actual: sink.count,
                    });
                }
            }
            Err(Error::TarSplit { source, .. }) if is_content_error(&source) => {
                problems.push(Problem::ModifiedContent {
                    id: id.to_string(),
                    detail: layerstore_model::error_chain(&source),
                });
            }
            Err(Error::TarSplit { source, .. }) => problems.push(Problem::CorruptTarSplit {
                id: id.to_string(),
                path,
                detail: layerstore_model::error_chain(&source),
            }),
            Err(other) => problems.push(Problem::ModifiedContent {
                id: id.to_string(),
                detail: other.to_string(),
            }),
        }
        Ok(())
    }

    /// Orphaned tar-split files and big-data directories, temp files of atomic writes, and
    /// entries of a kind the store never makes (symlinks, FIFOs, ...), none of them followed.
    fn find_stray_files(&self, ids: &HashSet<&str>, problems: &mut Vec<Problem>) -> Result<()> {
        let mut found = Vec::new();
        if let Some(layers) = self.open_layers_dir()? {
            for (name, file_type) in layers.entries()? {
                let path = layers.join(&name);
                match file_type {
                    FileType::RegularFile => {
                        if is_temp_name(&name) {
                            found.push(Problem::StaleTempFile { path });
                        } else if let Some(id) = name.strip_suffix(".tar-split.gz")
                            && !name.starts_with('.')
                            && !ids.contains(id)
                        {
                            found.push(Problem::OrphanTarSplit { path });
                        }
                    }
                    FileType::Directory if !ids.contains(name.as_str()) => {
                        // `tmp/` is newer Go's staging area, not a layer's.
                        if name != "tmp" && layerstore_model::validate_id(&name).is_ok() {
                            found.push(Problem::OrphanBigData { path });
                        }
                    }
                    FileType::Directory => {
                        let Some(dir) = layers.subdir(&name, false)? else {
                            continue;
                        };
                        for (inner, inner_type) in dir.entries()? {
                            let inner_path = dir.join(&inner);
                            match inner_type {
                                FileType::RegularFile if is_temp_name(&inner) => {
                                    found.push(Problem::StaleTempFile { path: inner_path });
                                }
                                FileType::RegularFile | FileType::Directory => {}
                                other => found.push(Problem::UnexpectedFile {
                                    path: inner_path,
                                    found: crate::files::kind_name(other),
                                }),
                            }
                        }
                    }
                    other => found.push(Problem::UnexpectedFile {
                        path,
                        found: crate::files::kind_name(other),
                    }),
                }
            }
        }
        if self.mounts_lock.is_some()
            && let Some(mounts) = StoreDir::open(crate::files::parent_of(&self.mounts_json))?
        {
            for (name, file_type) in mounts.entries()? {
                if file_type == FileType::RegularFile && name.starts_with(crate::files::TEMP_PREFIX)
                {
                    found.push(Problem::StaleTempFile {
                        path: mounts.join(&name),
                    });
                }
            }
        }
        problems.extend(found);
        Ok(())
    }

    fn find_mount_problems(&self, state: &State, problems: &mut Vec<Problem>) -> Result<()> {
        for record in &state.untrusted_mounts {
            problems.push(Problem::UntrustedMountRecord {
                id: record.id.clone(),
                path: PathBuf::from(&record.path),
            });
        }
        if !MOUNTING_DRIVERS.contains(&self.driver.name()) {
            return Ok(());
        }
        let table = mount_points()?;
        // The table shows resolved paths; the records may hold a path through a symlink.
        let home = self.driver.home();
        let homes = [
            home.to_path_buf(),
            fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf()),
        ];
        // A layer whose ID breaks the rule is neither mounted nor unmounted by this store.
        for layer in state.live().filter(|l| usable(l).is_ok()) {
            if layer.mount_count > 0
                && let Some(path) = &layer.mount_point
                && !table.contains(path)
                && !is_mount_point(path)
            {
                problems.push(Problem::StaleMountCount {
                    id: layer.id.clone(),
                    path: path.clone(),
                    count: layer.mount_count,
                });
            }
        }
        let mut uncounted: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in &table {
            let Some(first) = homes.iter().find_map(|h| component_below(h, path)) else {
                continue;
            };
            if let Some(&index) = state.by_id.get(first) {
                let layer = &state.layers[index];
                if layer.mount_count == 0 && usable(layer).is_ok() {
                    let shortest = uncounted
                        .entry(layer.id.clone())
                        .or_insert_with(|| path.clone());
                    if path.as_os_str().len() < shortest.as_os_str().len() {
                        *shortest = path.clone();
                    }
                }
            }
        }
        for (id, path) in uncounted {
            problems.push(Problem::UncountedMount { id, path });
        }
        Ok(())
    }
}

/// Every layer that is its own ancestor, in record order. Each layer has at most one parent,
/// so following parents from each layer not seen yet finds every cycle in linear time.
fn parent_cycles(state: &State) -> Vec<Problem> {
    let mut finished: HashSet<&str> = HashSet::new();
    let mut in_cycle: HashMap<&str, Vec<String>> = HashMap::new();
    for start in state.live() {
        let mut path: Vec<&str> = Vec::new();
        let mut on_path: HashMap<&str, usize> = HashMap::new();
        let mut current = Some(start.id.as_str());
        while let Some(id) = current {
            if finished.contains(id) {
                break;
            }
            if let Some(&at) = on_path.get(id) {
                let cycle: Vec<&str> = path[at..].to_vec();
                for (n, member) in cycle.iter().enumerate() {
                    let rotated: Vec<String> = cycle[n..]
                        .iter()
                        .chain(&cycle[..n])
                        .map(|s| s.to_string())
                        .collect();
                    in_cycle.insert(member, rotated);
                }
                break;
            }
            on_path.insert(id, path.len());
            path.push(id);
            current = state.by_id.get(id).and_then(|&i| state.layers[i].parent());
        }
        finished.extend(path);
    }
    state
        .live()
        .filter_map(|layer| {
            let cycle = in_cycle.get(layer.id.as_str())?;
            Some(Problem::ParentCycle {
                id: layer.id.clone(),
                cycle: cycle.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let table = parse_mountinfo(
            b"36 35 98:0 /mnt1 /mnt\\040with\\040space rw - ext3 /dev/root rw\n\
              37 35 98:0 / /plain rw - ext4 /dev/sda rw\n",
        );
        assert!(table.contains(Path::new("/mnt with space")));
        assert!(table.contains(Path::new("/plain")));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp_name(".tmp-layers.json123"));
        assert!(is_temp_name(".abc.tar-split.gz.tmp"));
        assert!(!is_temp_name("abc.tar-split.gz"));
        assert!(!is_temp_name("layers.json"));
    }

    #[test]
    fn components_below_home() {
        let home = Path::new("/g/overlay");
        assert_eq!(
            component_below(home, Path::new("/g/overlay/abc/merged")),
            Some("abc")
        );
        assert_eq!(component_below(home, Path::new("/g/overlay")), None);
        assert_eq!(component_below(home, Path::new("/g/other/abc")), None);
    }

    #[test]
    fn parent_cycles_are_found_and_the_layers_above_them_are_not_in_them() {
        let mut state = State::default();
        for (id, parent) in [
            ("a", "a"),
            ("b", "c"),
            ("c", "b"),
            ("d", "b"),
            ("e", ""),
            ("f", "g"),
            ("g", "h"),
            ("h", "f"),
            ("i", "missing"),
        ] {
            let mut layer = Layer::new(id);
            layer.parent = parent.to_string();
            state.push(layer);
        }
        let found: Vec<(String, Vec<String>)> = parent_cycles(&state)
            .into_iter()
            .map(|p| match p {
                Problem::ParentCycle { id, cycle } => (id, cycle),
                other => panic!("{other:?}"),
            })
            .collect();
        let expected = [
            ("a", vec!["a"]),
            ("b", vec!["b", "c"]),
            ("c", vec!["c", "b"]),
            ("f", vec!["f", "g", "h"]),
            ("g", vec!["g", "h", "f"]),
            ("h", vec!["h", "f", "g"]),
        ];
        assert_eq!(found.len(), expected.len(), "{found:?}");
        for ((id, cycle), (want_id, want_cycle)) in found.iter().zip(expected) {
            assert_eq!(
                (
                    id.as_str(),
                    cycle.iter().map(String::as_str).collect::<Vec<_>>()
                ),
                (want_id, want_cycle)
            );
        }
    }
}
