//! Stat-ahead: while a backup opens the repository (the key's Argon2 derivation, the index, the snapshots:
//! work for one core, a fifth to a third of an unchanged run), another thread lists the folders the walk
//! meets first and lstats their entries, so that the walk finds part of its system calls done.
//!
//! It is bounded by a number of entries ([`crate::config::Tuning::stat_ahead`]); it stops when the walk
//! starts ([`StatAhead::finish`] waits for the folder at hand), and the walk takes each folder's listing
//! out as it enters it. It lists only what the walk would: the sources, and below them the folders the
//! exclusions keep, depth first in name order (where the walk starts); not a folder the walk splits into
//! parts. A folder that cannot be opened or listed whole is left to the walk, which reports it.

use crate::exclude::Excluder;
use crate::fsmeta::{Folder, SortedNames, Stat};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A folder listed ahead: its names (sorted) and each one's lstat, in name order.
#[derive(Debug)]
pub struct Listed {
    pub names: SortedNames,
    pub stats: Vec<std::io::Result<Stat>>,
}

/// The folders listed ahead, by path as the walk joins it; each is taken once.
#[derive(Debug, Default)]
pub struct Listings {
    folders: Mutex<HashMap<PathBuf, Listed>>,
    entries: usize,
}

impl Listings {
    /// Takes the listing of the folder at `path`, if it was listed ahead.
    pub fn take(&self, path: &Path) -> Option<Listed> {
        self.folders.lock().expect("lock").remove(path)
    }

    /// How many folders listed ahead are not taken yet, and how many entries were listed in all.
    pub fn size(&self) -> (usize, usize) {
        (self.folders.lock().expect("lock").len(), self.entries)
    }
}

/// The stat-ahead thread.
pub struct StatAhead {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Listings>>,
}

impl StatAhead {
    /// Starts listing below `sources` (with the exclusions of `exclude`), at most `budget` entries in
    /// folders of at most `largest` entries each; none when `budget` is 0.
    pub fn start(
        sources: &[PathBuf],
        exclude: Option<Arc<Excluder>>,
        budget: usize,
        largest: usize,
    ) -> Option<StatAhead> {
        if budget == 0 {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sources = sources.to_vec();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("stat-ahead".into())
            .spawn(move || list_ahead(&sources, exclude.as_deref(), budget, largest, &flag))
            .ok()?;
        Some(StatAhead {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (after the folder at hand) and returns what it listed.
    pub fn finish(self) -> Listings {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits for the thread to list all it may (tests), and returns what it listed.
    pub(crate) fn join(mut self) -> Listings {
        let thread = self.thread.take().expect("joined once");
        // a panic there loses only the head start
        thread.join().unwrap_or_default()
    }
}

impl Drop for StatAhead {
    /// A backup that fails before its walk (the repository does not open) stops the thread too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn list_ahead(
    sources: &[PathBuf],
    exclude: Option<&Excluder>,
    budget: usize,
    largest: usize,
    stop: &AtomicBool,
) -> Listings {
    let mut out = Listings::default();
    let folders = out.folders.get_mut().expect("lock");
    let mut todo: Vec<PathBuf> = sources
        .iter()
        .rev()
        .filter(|s| std::fs::symlink_metadata(s).is_ok_and(|m| m.is_dir()))
        .cloned()
        .collect();
    while let Some(path) = todo.pop() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(folder) = Folder::open(&path) else {
            continue;
        };
        let mut whole = true;
        let Ok(names) = folder.names(|_| whole = false) else {
            continue;
        };
        if !whole {
            continue;
        }
        if names.len() > largest || out.entries + names.len() > budget {
            break;
        }
        let mut stats = Vec::with_capacity(names.len());
        let mut subdirs = vec![];
        for name in names.iter() {
            let st = folder.lstat(name);
            if let Ok(m) = &st {
                let p = path.join(name);
                if m.is_dir() && !exclude.is_some_and(|x| x.excludes(&p, m)) {
                    subdirs.push(p);
                }
            }
            stats.push(st);
        }
        out.entries += names.len();
        todo.extend(subdirs.into_iter().rev());
        folders.insert(path, Listed { names, stats });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        for d in ["a", "a/x", "b", "skip", "skip/deep"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["a/1", "a/x/2", "b/3", "skip/4", "top"] {
            std::fs::write(root.join(f), f).unwrap();
        }
    }

    fn names(l: &Listed) -> Vec<String> {
        l.names.iter().map(|n| n.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn lists_depth_first_what_the_walk_keeps_and_each_folder_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        tree(&root);
        let policy = crate::exclude::Exclusions {
            patterns: vec!["skip".into()],
            ..Default::default()
        };
        let x = policy.compile(std::slice::from_ref(&root)).unwrap();
        let l = StatAhead::start(std::slice::from_ref(&root), Some(Arc::new(x)), 1000, 1000)
            .unwrap()
            .join();
        assert_eq!(l.size(), (4, 8), "src, a, a/x and b; not skip");
        let top = l.take(&root).unwrap();
        assert_eq!(names(&top), ["a", "b", "skip", "top"]);
        let want = crate::fsmeta::Folder::open(&root)
            .unwrap()
            .lstat("top".as_ref())
            .unwrap();
        assert_eq!(*top.stats[3].as_ref().unwrap(), want);
        assert!(l.take(&root).is_none(), "taken once");
        assert_eq!(names(&l.take(&root.join("a/x")).unwrap()), ["2"]);
        assert!(l.take(&root.join("skip")).is_none(), "excluded: not entered");
    }

    #[test]
    fn stops_at_the_budget_and_before_a_folder_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        tree(&root);
        // the root's 4 entries fit, a's 2 more would not
        let l = StatAhead::start(std::slice::from_ref(&root), None, 5, 1000)
            .unwrap()
            .join();
        assert_eq!(l.size(), (1, 4));
        let l = StatAhead::start(std::slice::from_ref(&root), None, 1000, 3)
            .unwrap()
            .join();
        assert_eq!(l.size(), (0, 0), "the root has 4 entries, more than 3");
        assert!(StatAhead::start(&[root], None, 0, 1000).is_none());
    }
}
