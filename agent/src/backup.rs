//! The backup pipeline: walkers (a rayon pool) -> N reader/chunker/encrypt workers -> one pack writer.
//!
//! The walkers list directories in parallel, keep each directory's nodes in memory until its tree is stored
//! and send each changed regular file to a bounded channel; workers read it (only its data extents: holes are skipped with
//! SEEK_DATA/SEEK_HOLE), cut it into chunks, name each chunk by keyed BLAKE3 and, when the chunk is new,
//! compress and encrypt it and pass it to the pack writer through another bounded channel (small blobs in
//! batches). Files whose size, mtime, ctime and inode equal the parent snapshot's are not read: their chunk
//! list is reused. A directory is complete when its walk has ended, its files' results are in and its
//! subdirectories are complete; whoever completes it (the walker or a reader) serialises and stores its tree
//! at once and hands only the tree id up, so memory holds the directories in flight (the walk's paths, and
//! at most [`WriterOptions::dirs_in_flight`] walked directories waiting for their files), not the whole tree.
//! The parent snapshot's tree of a directory is read when the walk enters it and dropped after its listing.
//! When the root is complete the index is flushed and only then is the snapshot written. Cancelling stops the walk; whatever was packed and
//! indexed is reused by the next run.

use crate::ahead::Listings;
use crate::exclude::Excluder;
use crate::fsmeta::{self, Names};
use crate::progress::Counters;
use crossbeam_channel::{bounded, Receiver, Sender};
use rayon::prelude::*;
use seedship_shared::blob::leaves::Leaves;
use seedship_shared::repo::{
    encode_blob, encode_blob_into, id_hex, names_digest, parse_id, walk_digest, ChunkId, ChunkRef,
    EncodedBlob, IndexPolicy, Listing, Node, NodeKind, PackWriter, Repository, Snapshot, SnapshotStats,
    SplitRule, Tree, VolumeDigest, WalkRecord, BLOB_DATA, BLOB_TREE, SNAPSHOT_VERSION,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// What one backup run produced.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The snapshot id, unless interrupted.
    pub snapshot: Option<String>,
    pub stats: SnapshotStats,
    pub volumes: Vec<VolumeDigest>,
    /// Messages about files that were unreadable or changed while read.
    pub problems: Vec<String>,
    /// The directories (and their nodes) held in memory at most.
    pub in_flight: InFlight,
}

/// Blobs smaller than this are sent to the pack writer in batches (see [`BlobOut`]).
const SMALL_BLOB: usize = 256 << 10;
/// A batch is sent when it holds this many bytes of envelopes or [`BATCH_BLOBS`] blobs.
const BATCH_BYTES: usize = 1 << 20;
const BATCH_BLOBS: usize = 64;

/// Where readers send blobs, and where they take reusable buffers from. Small blobs (most files of a file
/// server are small) are gathered into batches: one channel operation and one wake-up of the pack writer
/// per batch instead of per blob (per-blob hand-offs cost about a tenth of the CPU time of a /usr backup in
/// spinning and context switches).
struct BlobOut {
    tx: Sender<Vec<EncodedBlob>>,
    pool: Receiver<Vec<u8>>,
    batch: Vec<EncodedBlob>,
    batch_bytes: usize,
}

impl BlobOut {
    fn new(tx: Sender<Vec<EncodedBlob>>, pool: Receiver<Vec<u8>>) -> Self {
        BlobOut {
            tx,
            pool,
            batch: vec![],
            batch_bytes: 0,
        }
    }

    /// Queues a blob; `Err` when the pack writer has stopped.
    fn send(&mut self, blob: EncodedBlob) -> Result<(), ()> {
        if blob.envelope.len() >= SMALL_BLOB {
            self.flush()?;
            return self.tx.send(vec![blob]).map_err(|_| ());
        }
        self.batch_bytes += blob.envelope.len();
        self.batch.push(blob);
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_BLOBS {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the batch gathered so far.
    fn flush(&mut self) -> Result<(), ()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        self.tx.send(std::mem::take(&mut self.batch)).map_err(|_| ())
    }
}

struct FileJob {
    path: PathBuf,
    node_size: u64,
    mtime: (i64, u32),
    /// The directory waiting for the result, and the index of the file's node in it.
    dir: Arc<Dir>,
    node: usize,
    /// Device and inode of a hard-linked file, and its link count: its other links may wait for the result.
    link: Option<((u64, u64), u64)>,
}

/// Content, extended attributes, and a message when the file changed while being read.
type FileResult = Result<(Vec<ChunkRef>, Vec<(String, String)>, Option<String>), String>;

/// One directory from its listing until its tree is stored. It is complete when its walk has ended, every
/// file job of its nodes has its result and every subdirectory is complete; whoever completes it (the
/// walker or a reader) stores its tree at once and hands only the tree id to its parent directory.
///
/// A folder of more entries than [`SplitRule::above`] is split: each part of its nodes is a directory of its
/// own here (its `up` is the folder and the part's index), and the folder waits for its parts' ids only.
struct Dir {
    /// The directory it is in, and the index of its node there (none: the root of the snapshot); for a part
    /// of a split folder, the folder and the part's index.
    up: Option<(Arc<Dir>, usize)>,
    /// Results and subtrees still awaited, plus one until its walk has ended.
    pending: AtomicUsize,
    parts: Mutex<DirParts>,
}

/// What a directory in flight holds: its nodes (sorted by name) and what has arrived for them.
#[derive(Default)]
struct DirParts {
    nodes: Vec<Node>,
    /// File results by node index, and whether this node reports the file's problem (a hard-linked file's
    /// problem is reported once, by the node whose job read it).
    results: Vec<(usize, FileResult, bool)>,
    /// Subdirectories' tree ids by node index, and whether each is its tree in the parent snapshot.
    subtrees: Vec<(usize, ChunkId, bool)>,
    /// Whether any of its own entries differs from its tree in the parent snapshot (added, removed, other
    /// metadata, content read again, unreadable). When none does and every subdirectory kept its tree, the
    /// directory keeps its tree id as well, without serialising and hashing its tree again.
    differs: bool,
    /// Its tree in the parent snapshot, when its nodes may be the same (for a part of a split folder: the
    /// parent's part that held exactly the same run of names).
    parent_id: Option<ChunkId>,
    /// A split folder: it holds no nodes, and its subtrees are its parts.
    split: bool,
    /// Its nodes were kept by the parent tree's walk record without reading that tree: its files' nodes
    /// lack their content and attributes, read from the parent tree if its tree must be written again.
    contentless: bool,
}

impl Dir {
    fn new(up: Option<(Arc<Dir>, usize)>) -> Arc<Dir> {
        Arc::new(Dir {
            up,
            pending: AtomicUsize::new(1),
            parts: Mutex::new(DirParts::default()),
        })
    }
}

/// A hard-linked file (nlink > 1) met by the walk: its links share one file job.
enum Link {
    /// Its job is queued or being read: the other nodes waiting for its result.
    Waiting(Vec<(Arc<Dir>, usize)>),
    /// Read: the result, and how many more of its links the walk may still meet (the entry is dropped then).
    Done(FileResult, u64),
}

/// Directories in flight during a backup: the most at one time, and the most nodes they held together.
/// Memory for trees is bounded by these (not by the number of files): a directory is held from its listing
/// until its tree is stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    pub peak_dirs: usize,
    pub peak_nodes: usize,
}

/// The trees of a backup as directories complete: file results and subtree ids are delivered to the
/// directories waiting for them, and each complete directory's tree is serialised, stored and dropped.
struct Trees<'a> {
    repo: &'a Repository,
    /// Where trees go; taken (closed) when every directory is complete.
    blobs: Mutex<Option<Sender<Vec<EncodedBlob>>>>,
    cancel: &'a AtomicBool,
    links: Mutex<HashMap<(u64, u64), Link>>,
    errors: AtomicU64,
    problems: Mutex<Vec<String>>,
    /// The first error storing a tree (the backup fails with it).
    failure: Mutex<Option<anyhow::Error>>,
    /// The root tree's id, once the root is complete.
    root: Mutex<Option<ChunkId>>,
    /// Directories whose walk has ended but whose tree is not stored yet (they wait for file results);
    /// the walk enters no further directory while `limit` of them wait.
    waiting: Mutex<usize>,
    wake: Condvar,
    limit: usize,
    dirs: AtomicUsize,
    nodes: AtomicUsize,
    peak_dirs: AtomicUsize,
    peak_nodes: AtomicUsize,
    /// Whether a split folder was stored (the snapshot is then version 2).
    split: AtomicBool,
}

impl<'a> Trees<'a> {
    fn new(
        repo: &'a Repository,
        blobs: Sender<Vec<EncodedBlob>>,
        cancel: &'a AtomicBool,
        limit: usize,
    ) -> Self {
        Trees {
            repo,
            blobs: Mutex::new(Some(blobs)),
            cancel,
            links: Mutex::new(HashMap::new()),
            errors: AtomicU64::new(0),
            problems: Mutex::new(vec![]),
            failure: Mutex::new(None),
            root: Mutex::new(None),
            waiting: Mutex::new(0),
            wake: Condvar::new(),
            limit: limit.max(1),
            dirs: AtomicUsize::new(0),
            nodes: AtomicUsize::new(0),
            peak_dirs: AtomicUsize::new(0),
            peak_nodes: AtomicUsize::new(0),
            split: AtomicBool::new(false),
        }
    }

    fn problem(&self, msg: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.problems.lock().expect("lock").push(msg);
    }

    /// Waits while `limit` walked directories wait for file results. Cannot deadlock: those directories
    /// wait only for file jobs already queued (the readers finish them without the walk) and for
    /// subdirectories in the same state.
    fn enter(&self) {
        let mut w = self.waiting.lock().expect("lock");
        while *w >= self.limit {
            w = self.wake.wait(w).expect("lock");
        }
    }

    /// A directory (or a part of a split folder) is created for a listing.
    fn open(&self, up: Option<(Arc<Dir>, usize)>) -> Arc<Dir> {
        let n = self.dirs.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_dirs.fetch_max(n, Ordering::Relaxed);
        Dir::new(up)
    }

    /// The directory's listing is done: its nodes are kept until it is complete. `parent_id` is its tree in
    /// the parent snapshot if it may be kept.
    fn listed(&self, dir: &Dir, nodes: Vec<Node>, differs: bool, parent_id: Option<ChunkId>) {
        let n = self.nodes.fetch_add(nodes.len(), Ordering::Relaxed) + nodes.len();
        self.peak_nodes.fetch_max(n, Ordering::Relaxed);
        let mut p = dir.parts.lock().expect("lock");
        p.nodes = nodes;
        p.differs |= differs;
        p.parent_id = parent_id;
    }

    /// The directory's listing equals its tree `parent_id` in the parent snapshot by that tree's walk
    /// record ([`Walker::walk_kept`]): its nodes lack their files' content.
    fn listed_kept(&self, dir: &Dir, nodes: Vec<Node>, parent_id: ChunkId) {
        self.listed(dir, nodes, false, Some(parent_id));
        dir.parts.lock().expect("lock").contentless = true;
    }

    /// A split folder's listing is done (its parts are directories of their own); `parent_id` is its tree in
    /// the parent snapshot.
    fn listed_split(&self, dir: &Dir, parent_id: Option<ChunkId>) {
        let mut p = dir.parts.lock().expect("lock");
        p.split = true;
        p.parent_id = parent_id;
    }

    /// The walk of the directory (its listing and its subdirectories' walks) has ended.
    fn walked(&self, dir: Arc<Dir>) {
        *self.waiting.lock().expect("lock") += 1;
        self.release(dir);
    }

    /// One thing the directory waited for has arrived; the last one completes it.
    fn release(&self, dir: Arc<Dir>) {
        if dir.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.complete(dir);
        }
    }

    /// A file job's result: to the node that sent the job and, for a hard-linked file, to the other nodes
    /// waiting for it (the result is kept for links the walk has not met yet).
    fn file_done(&self, job: FileJob, r: FileResult) {
        if let Some((key, nlink)) = job.link {
            let waiters = {
                let mut links = self.links.lock().expect("lock");
                let waiters = match links.remove(&key) {
                    Some(Link::Waiting(w)) => w,
                    _ => vec![],
                };
                let left = nlink.saturating_sub(1 + waiters.len() as u64);
                if left > 0 {
                    links.insert(key, Link::Done(r.clone(), left));
                }
                waiters
            };
            for (dir, node) in waiters {
                self.deliver(dir, node, r.clone(), false);
            }
        }
        self.deliver(job.dir, job.node, r, true);
    }

    fn deliver(&self, dir: Arc<Dir>, node: usize, r: FileResult, report: bool) {
        dir.parts.lock().expect("lock").results.push((node, r, report));
        self.release(dir);
    }

    /// Stores a complete directory's tree, hands its id to its parent directory, and completes that one too
    /// when it was the last thing it waited for (and so on up).
    fn complete(&self, mut dir: Arc<Dir>) {
        loop {
            let (id, kept) = self.store(&dir);
            self.dirs.fetch_sub(1, Ordering::Relaxed);
            {
                let mut w = self.waiting.lock().expect("lock");
                *w -= 1;
                self.wake.notify_all();
            }
            match dir.up.clone() {
                Some((up, node)) => {
                    up.parts.lock().expect("lock").subtrees.push((node, id, kept));
                    drop(dir);
                    if up.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
                        return;
                    }
                    dir = up;
                }
                None => {
                    *self.root.lock().expect("lock") = Some(id);
                    return;
                }
            }
        }
    }

    /// Serialises, names and (when new) stores the directory's tree, dropping its nodes; returns the id and
    /// whether it is the directory's tree in the parent snapshot. After a cancel or a failure nothing is
    /// stored any more (the id returned is then meaningless: no snapshot will be written).
    fn store(&self, dir: &Dir) -> (ChunkId, bool) {
        let DirParts {
            mut nodes,
            results,
            mut subtrees,
            differs,
            parent_id,
            split,
            contentless,
        } = std::mem::take(&mut *dir.parts.lock().expect("lock"));
        self.nodes.fetch_sub(nodes.len(), Ordering::Relaxed);
        if !split {
            let mut same = !differs;
            for &(ni, id, kept) in &subtrees {
                same &= kept;
                nodes[ni].subtree = Some(id_hex(&id));
            }
            if let (true, Some(id)) = (same, parent_id) {
                self.remember(&id, &nodes);
                return (id, true);
            }
        }
        if self.cancel.load(Ordering::Relaxed) || self.failure.lock().expect("lock").is_some() {
            return ([0; 32], false);
        }
        if contentless {
            // a subfolder changed: the files' content comes from the parent tree the record kept
            let filled = parent_id
                .ok_or_else(|| anyhow::anyhow!("a kept folder has no parent tree"))
                .and_then(|id| fill_content(self.repo, &id, &mut nodes));
            if let Err(e) = filled {
                self.failure.lock().expect("lock").get_or_insert(e);
                return ([0; 32], false);
            }
        }
        let tree = if split {
            // the folder's tree is the list of its parts' ids, written whenever it is complete (it is small;
            // it is the same tree, and so the same id, when every part is)
            self.split.store(true, Ordering::Relaxed);
            subtrees.sort_unstable_by_key(|s| s.0);
            Tree {
                nodes: vec![],
                parts: subtrees.iter().map(|(_, id, _)| id_hex(id)).collect(),
            }
        } else {
            self.tree_of(nodes, results)
        };
        match self.write(&tree) {
            Ok(id) => {
                if !split {
                    self.remember(&id, &tree.nodes);
                }
                (id, parent_id == Some(id))
            }
            Err(e) => {
                self.failure.lock().expect("lock").get_or_insert(e);
                ([0; 32], false)
            }
        }
    }

    /// The tree of a folder's `nodes` with its files' `results` (a file that could not be read is left out);
    /// reports the files' problems.
    fn tree_of(&self, mut nodes: Vec<Node>, results: Vec<(usize, FileResult, bool)>) -> Tree {
        let mut failed = HashSet::new();
        for (ni, r, report) in results {
            match r {
                Ok((content, xattrs, changed)) => {
                    nodes[ni].content = content;
                    nodes[ni].xattrs = xattrs;
                    if let (Some(msg), true) = (changed, report) {
                        self.problem(msg);
                    }
                }
                Err(msg) => {
                    if report {
                        self.problem(msg);
                    }
                    failed.insert(ni);
                }
            }
        }
        Tree::of(
            nodes
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !failed.contains(i))
                .map(|(_, n)| n)
                .collect(),
        )
    }

    /// Records the walk record of folder tree `id` of `nodes` (their subtrees set) in the tree cache, unless
    /// it holds one: the next backup keeps the folder without reading its tree while it is unchanged.
    fn remember(&self, id: &ChunkId, nodes: &[Node]) {
        if self.repo.has_walk_record(id) {
            return;
        }
        let subtrees = nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Dir)
            .map(|n| n.subtree.as_deref().and_then(parse_id))
            .collect::<Option<Vec<_>>>();
        // a folder node without a valid subtree id has no record (its tree is read next time)
        if let Some(subtrees) = subtrees {
            let digest = walk_digest(nodes);
            let names = names_digest(nodes.iter().map(|n| n.name_cow()));
            self.repo.save_walk_record(
                id,
                &WalkRecord {
                    digest,
                    names,
                    subtrees,
                },
            );
        }
    }

    /// Serialises and names a tree and sends it to the pack writer unless the repository holds it (an
    /// unchanged directory has the same id: it is not compressed and encrypted again).
    fn write(&self, tree: &Tree) -> anyhow::Result<ChunkId> {
        let raw = serde_json::to_vec(tree)?;
        let id = self.repo.key().chunk_id(&raw);
        if !self.repo.contains(&id) {
            let blob = encode_blob(self.repo.key(), 3, BLOB_TREE, id, &raw)?;
            let tx = self.blobs.lock().expect("lock");
            tx.as_ref()
                .and_then(|tx| tx.send(vec![blob]).ok())
                .ok_or_else(|| anyhow::anyhow!("the pack writer stopped"))?;
        }
        Ok(id)
    }
}

/// The walk of the sources. Directories are walked in parallel (each directory's listing, lstat and parent
/// tree on one task; its subdirectories as further tasks), so its state is shared.
struct Walker<'a> {
    repo: &'a Repository,
    names: Names,
    jobs: Sender<FileJob>,
    trees: &'a Trees<'a>,
    stats: Mutex<SnapshotStats>,
    problems: Mutex<Vec<String>>,
    cancel: &'a AtomicBool,
    counters: &'a Counters,
    /// What the walk leaves out (none: nothing).
    exclude: Option<&'a Excluder>,
    /// When a folder's tree is split into parts.
    split: SplitRule,
    /// Folders listed ahead of the walk.
    ahead: Option<&'a Listings>,
}
/// How the pack writer of a backup works, staging or vault ([`crate::config::Tuning`] builds both); how many
/// walked directories may wait for their files' results, and how many reader threads there are.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Pack size in bytes (`SEEDSHIP_PACK_SIZE_KIB`, default 16 MiB).
    pub pack_size: usize,
    /// When index objects are written.
    pub index: IndexPolicy,
    /// Whether volume digests are computed (for the staging job descriptor).
    pub digests: bool,
    /// How many directories whose walk has ended may wait for their files' results before the walk waits
    /// (`SEEDSHIP_DIRS_IN_FLIGHT`, default 64): with the walk's own path (depth times the walk's threads),
    /// what bounds the directories held in memory.
    pub dirs_in_flight: usize,
    /// Reader/chunker/encrypt threads (`SEEDSHIP_READERS`, default the available parallelism).
    pub readers: usize,
    /// Leaves of the staged volumes as the job descriptor records them: appending to the newest volume then
    /// reads back only its last leaf.
    pub known_leaves: BTreeMap<String, Leaves>,
    /// When a folder's tree is split into parts (the default everywhere but in tests).
    pub split: SplitRule,
}

/// What to back up: the sources and what to leave out of them.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    pub sources: &'a [PathBuf],
    /// The compiled exclusions, and their description recorded in the snapshot.
    pub exclude: Option<(&'a Excluder, &'a [String])>,
    /// Folders listed ahead of the walk ([`crate::ahead`]), taken as the walk enters them.
    pub ahead: Option<&'a Listings>,
}
/// Runs one backup of `sel` into `repo`, using `parent` to skip unchanged files.
pub fn run(
    repo: Arc<Repository>,
    sel: Selection<'_>,
    parent: Option<(String, Snapshot)>,
    host: &str,
    cancel: &AtomicBool,
    counters: &Counters,
    wopts: WriterOptions,
) -> anyhow::Result<BackupOutcome> {
    let sources = sel.sources;
    let threads = wopts.readers;
    let (job_tx, job_rx) = bounded::<FileJob>(256);
    let (blob_tx, blob_rx) = bounded::<Vec<EncodedBlob>>(threads * 2);
    // envelope buffers circulate readers -> writer -> readers instead of being allocated per blob
    let (pool_tx, pool_rx) = bounded::<Vec<u8>>(threads * 4);
    let writer = {
        let mut w = PackWriter::open(repo.clone(), wopts.pack_size, wopts.index.packs)?
            .with_known_leaves(wopts.known_leaves.clone());
        w.set_index_policy(wopts.index);
        if !wopts.digests {
            w = w.without_digests();
        }
        std::thread::spawn(move || -> anyhow::Result<(Vec<VolumeDigest>, u64, u64)> {
            for batch in blob_rx {
                for b in batch {
                    w.add(&b)?;
                    // hand the buffer back to the readers (dropped when the pool is full)
                    let _ = pool_tx.try_send(b.envelope);
                }
            }
            let (n, bytes) = (w.blobs_stored, w.bytes_stored);
            Ok((w.finish()?, n, bytes))
        })
    };
    let trees = Trees::new(&repo, blob_tx.clone(), cancel, wopts.dirs_in_flight);
    let parent_root = match &parent {
        Some((_, s)) => parse_id(&s.tree).and_then(|id| repo.load_tree(&id).ok()),
        None => None,
    };
    let walker = Walker {
        repo: &repo,
        names: Names::default(),
        jobs: job_tx,
        trees: &trees,
        stats: Mutex::new(SnapshotStats::default()),
        problems: Mutex::new(vec![]),
        cancel,
        counters,
        exclude: sel.exclude.map(|(e, _)| e),
        split: wopts.split,
        ahead: sel.ahead,
    };
    let (stats, problems) = std::thread::scope(|s| -> anyhow::Result<_> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (rx, tx) = (job_rx.clone(), BlobOut::new(blob_tx.clone(), pool_rx.clone()));
                let c = counters.clone();
                let (repo, trees) = (&repo, &trees);
                s.spawn(move || worker(repo, rx, tx, trees, &c, cancel))
            })
            .collect();
        drop(job_rx);
        walker.walk_sources(sources, parent_root.as_ref());
        let Walker {
            jobs,
            stats,
            problems,
            ..
        } = walker;
        drop(jobs);
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a reader thread panicked"))?;
        }
        Ok((into_inner(stats), into_inner(problems)))
    })?;
    let (mut stats, mut problems) = (stats, problems);
    drop(parent_root);
    // every directory is complete once the walk and the readers are done: no more trees
    drop(trees.blobs.lock().expect("lock").take());
    drop(blob_tx);
    let (volumes, blobs, bytes) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the pack writer panicked"))??;
    if let Some(e) = into_inner(trees.failure) {
        return Err(e);
    }
    stats.errors += trees.errors.load(Ordering::Relaxed);
    problems.extend(into_inner(trees.problems));
    stats.blobs_new = blobs;
    stats.bytes_stored = bytes;
    stats.bytes_read = counters.bytes.load(Ordering::Relaxed);
    let in_flight = InFlight {
        peak_dirs: trees.peak_dirs.into_inner(),
        peak_nodes: trees.peak_nodes.into_inner(),
    };
    let root_tree = into_inner(trees.root);
    let (false, Some(root_tree)) = (cancel.load(Ordering::SeqCst), root_tree) else {
        return Ok(BackupOutcome {
            snapshot: None,
            stats,
            volumes,
            problems,
            in_flight,
        });
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let snap = Snapshot {
        // a snapshot holding a split folder is version 2: an agent from before split folders refuses it
        version: if trees.split.load(Ordering::Relaxed) {
            SNAPSHOT_VERSION
        } else {
            1
        },
        time: now.as_secs() as i64,
        time_nsec: now.subsec_nanos(),
        host: host.to_string(),
        paths: sources.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
        tree: id_hex(&root_tree),
        parent: parent.map(|(id, _)| id),
        partial: stats.errors > 0,
        stats: stats.clone(),
        excludes: sel.exclude.map(|(_, d)| d.to_vec()).unwrap_or_default(),
    };
    let id = repo.save_snapshot(&snap)?;
    Ok(BackupOutcome {
        snapshot: Some(id),
        stats,
        volumes,
        problems,
        in_flight,
    })
}

fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(|e| e.into_inner())
}

impl Walker<'_> {
    /// Walks the sources; the root directory (one entry per source) completes when the last tree is stored.
    fn walk_sources(&self, sources: &[PathBuf], parent: Option<&Tree>) {
        let root = self.trees.open(None);
        let mut nodes = vec![];
        let mut subdirs = vec![];
        for src in sources {
            let name = src.to_string_lossy().trim_start_matches('/').to_string();
            let pnode = parent
                .and_then(|t| t.nodes.iter().find(|n| n.name == name))
                .cloned();
            match std::fs::symlink_metadata(src) {
                Ok(m) => {
                    let m = fsmeta::Stat::from(&m);
                    self.add_entry(
                        &root,
                        &mut nodes,
                        &mut subdirs,
                        std::ffi::OsStr::new(&name),
                        src,
                        &m,
                        pnode,
                    );
                }
                Err(e) => self.problem(format!("{}: {e}", src.display())),
            }
        }
        // the root is always encoded again: it is small
        self.trees.listed(&root, nodes, true, None);
        self.walk_subdirs(&root, subdirs);
        self.trees.walked(root);
    }

    fn problem(&self, msg: String) {
        tracing::warn!("{msg}");
        self.problems.lock().expect("lock").push(msg);
        self.stats.lock().expect("lock").errors += 1;
    }

    /// Walks the subdirectories found in directory `dir`, in parallel. Each one's tree in the parent snapshot
    /// is read when the walk enters it (a part at a time, for a split folder) and dropped when its listing is
    /// done.
    fn walk_subdirs(&self, dir: &Arc<Dir>, subdirs: Vec<PendingDir>) {
        // counted before any of them can complete (which releases one each)
        dir.pending.fetch_add(subdirs.len(), Ordering::AcqRel);
        subdirs.into_par_iter().for_each(|sd| {
            self.trees.enter();
            let sub = self.trees.open(Some((dir.clone(), sd.node)));
            self.walk_dir(&sub, &sd.path, sd.parent);
            self.trees.walked(sub);
        });
    }

    fn walk_dir(&self, dir: &Arc<Dir>, path: &Path, parent: Option<ChunkId>) {
        let mut differs = parent.is_none();
        let ahead = self.ahead.and_then(|a| a.take(path));
        let listing = fsmeta::Folder::open(path).and_then(|f| {
            let (names, stats) = match ahead {
                Some(l) => (l.names, Some(l.stats)),
                None => {
                    let names = f.names(|e| {
                        differs = true;
                        self.problem(format!("{}: cannot list: {e}", path.display()))
                    })?;
                    (names, None)
                }
            };
            Ok((f, names, stats))
        });
        let (folder, entries, stats) = match listing {
            Ok(l) => l,
            Err(e) => {
                self.problem(format!("{}: cannot list: {e}", path.display()));
                self.trees.listed(dir, vec![], differs, None);
                return;
            }
        };
        if entries.len() <= self.split.above {
            let metas = match stats {
                Some(s) if s.len() == entries.len() => s,
                _ => lstat_all(&folder, entries.iter()),
            };
            // a folder whose fresh nodes match the walk record of its parent tree keeps that tree unread
            let record = parent
                .filter(|_| !differs)
                .and_then(|id| Some((id, self.repo.walk_record(&id)?)));
            if let Some((id, record)) = record {
                if let Some((nodes, subdirs)) = self.walk_kept(path, entries.iter(), &metas, &record) {
                    self.trees.listed_kept(dir, nodes, id);
                    drop(folder);
                    self.walk_subdirs(dir, subdirs);
                    return;
                }
            }
            let mut prev = ParentCursor::open(self.repo, parent);
            let (entries, passed) = prev.pair(entries);
            let (nodes, subdirs, d) = self.walk_entries(dir, path, entries, metas);
            // entries of the parent tree that are gone; a parent tree stored split is never kept (the folder
            // is not split now)
            differs |= d | passed | prev.rest();
            let keep = parent.filter(|_| !prev.split);
            self.trees.listed(dir, nodes, differs, keep);
            // closed before the walk goes down: a deep tree must not hold a descriptor per level
            drop(folder);
            self.walk_subdirs(dir, subdirs);
            return;
        }
        // A split folder: its parts are cut and paired with the parent's nodes in name order, two at a time,
        // while the two cut before are walked (their `lstat` on every core): each is listed, its
        // subdirectories walked, and its files handed to the readers. Only the parts in those two batches and
        // those whose files are being read are in memory. The folder stays open until its last part.
        let mut prev = ParentCursor::open(self.repo, parent);
        let mut entries = entries.into_iter().peekable();
        let mut k = 0;
        let mut next = self.cut_parts(dir, &mut entries, &mut prev, &mut k);
        while !next.is_empty() {
            let batch = std::mem::take(&mut next);
            rayon::join(
                || batch.into_iter().for_each(|w| self.walk_part(path, &folder, w)),
                || next = self.cut_parts(dir, &mut entries, &mut prev, &mut k),
            );
        }
        self.trees.listed_split(dir, parent);
    }

    /// Cuts the next few parts of a split folder from its sorted `entries`, each a directory in flight
    /// paired with the parent's nodes; `k` counts the parts.
    fn cut_parts(
        &self,
        dir: &Arc<Dir>,
        entries: &mut std::iter::Peekable<fsmeta::SortedNamesIter>,
        prev: &mut ParentCursor<'_>,
        k: &mut usize,
    ) -> Vec<PartWork> {
        let mut out = vec![];
        while out.len() < PARTS_AT_ONCE && entries.peek().is_some() && !self.cancel.load(Ordering::Relaxed) {
            let mut part = vec![];
            for name in entries.by_ref() {
                let end = self
                    .split
                    .ends_part(&self.repo.key().chunk_id(name.as_bytes()), part.len() + 1);
                part.push(name);
                if end {
                    break;
                }
            }
            self.trees.enter();
            dir.pending.fetch_add(1, Ordering::AcqRel);
            let dir = self.trees.open(Some((dir.clone(), *k)));
            *k += 1;
            // the parent's next part, unread, with a walk record of the same names: passed unread, its
            // nodes compared by the record's digest once the part's entries are lstat'ed
            let kept = prev.unread_part().and_then(|(tree, part_id)| {
                let record = self.repo.walk_record(&part_id)?;
                (record.names == names_digest(part.iter().map(|n| n.as_bytes()))).then_some(KeptPart {
                    tree,
                    part: part_id,
                    record,
                })
            });
            if let Some(kept) = kept {
                prev.skip_part(part.len());
                out.push(PartWork {
                    dir,
                    entries: part.into_iter().map(|n| (n, None)).collect(),
                    passed: false,
                    keep: Some(kept.part),
                    kept: Some(kept),
                });
                continue;
            }
            let start = prev.part_start();
            let (entries, passed) = prev.pair(part);
            let keep = prev.whole_part(start);
            out.push(PartWork {
                dir,
                entries,
                passed,
                keep,
                kept: None,
            });
        }
        out
    }

    /// Walks one part of a split folder (see [`Walker::walk_dir`]).
    fn walk_part(&self, path: &Path, folder: &fsmeta::Folder, mut w: PartWork) {
        let metas = lstat_all(folder, w.entries.iter().map(|(n, _)| n.as_os_str()));
        if let Some(kept) = w.kept.take() {
            let names = w.entries.iter().map(|(n, _)| n.as_os_str());
            if let Some((nodes, subdirs)) = self.walk_kept(path, names, &metas, &kept.record) {
                self.trees.listed_kept(&w.dir, nodes, kept.part);
                self.walk_subdirs(&w.dir, subdirs);
                self.trees.walked(w.dir);
                return;
            }
            // something differs: the parent's part (of the same names) is read and paired after all
            match self.repo.load_part(&kept.tree, &kept.part) {
                Ok(nodes) if nodes.len() == w.entries.len() => {
                    for ((name, pnode), n) in w.entries.iter_mut().zip(nodes) {
                        if *name.as_bytes() == *n.name_cow() {
                            *pnode = Some(n);
                        } else {
                            w.passed = true;
                        }
                    }
                }
                Ok(_) => w.passed = true,
                Err(e) => {
                    tracing::warn!(
                        "the parent snapshot's tree cannot be read (its files are read again): {e}"
                    );
                    w.passed = true;
                }
            }
            if w.passed {
                w.keep = None;
            }
        }
        let (nodes, subdirs, d) = self.walk_entries(&w.dir, path, w.entries, metas);
        self.trees.listed(&w.dir, nodes, d | w.passed, w.keep);
        self.walk_subdirs(&w.dir, subdirs);
        self.trees.walked(w.dir);
    }

    /// The nodes of a folder's sorted `names` (with their lstat `metas`) and its subdirectories to walk, if
    /// they are those of its tree in the parent snapshot by that tree's walk `record`: the same nodes in
    /// the same order but for the files' content (see [`walk_digest`]). Then every file is unchanged and
    /// every subfolder's parent tree is known without reading the tree. None (the walk then pairs the
    /// entries with the parent tree's nodes) when anything differs, an entry cannot be read, or on a cancel.
    fn walk_kept<'n>(
        &self,
        path: &Path,
        names: impl ExactSizeIterator<Item = &'n std::ffi::OsStr>,
        metas: &[std::io::Result<fsmeta::Stat>],
        record: &WalkRecord,
    ) -> Option<(Vec<Node>, Vec<PendingDir>)> {
        if self.cancel.load(Ordering::Relaxed) || names.len() != metas.len() {
            return None;
        }
        let mut nodes = Vec::with_capacity(names.len());
        let mut dirs = vec![];
        for (name, m) in names.zip(metas) {
            let m = m.as_ref().ok()?;
            let p = path.join(name);
            if self.exclude.is_some_and(|x| x.excludes(&p, m)) {
                continue;
            }
            let node = fsmeta::node_from(name, &p, m, &self.names, !m.is_file()).ok()?;
            if node.kind == NodeKind::Dir {
                dirs.push((nodes.len(), p));
            }
            nodes.push(node);
        }
        if dirs.len() != record.subtrees.len() || walk_digest(&nodes) != record.digest {
            return None;
        }
        let (mut files, mut bytes, mut other) = (0, 0, 0);
        for n in &nodes {
            match n.kind {
                NodeKind::File => {
                    files += 1;
                    bytes += n.size;
                }
                NodeKind::Dir => {}
                _ => other += 1,
            }
        }
        {
            let mut st = self.stats.lock().expect("lock");
            st.files += files;
            st.files_unchanged += files;
            st.bytes += bytes;
            st.dirs += dirs.len() as u64;
            st.other += other;
        }
        self.counters.files.fetch_add(files, Ordering::Relaxed);
        let subdirs = dirs
            .into_iter()
            .zip(&record.subtrees)
            .map(|((node, path), id)| PendingDir {
                node,
                path,
                parent: Some(*id),
            })
            .collect();
        Some((nodes, subdirs))
    }

    /// Adds the nodes of `entries` (in name order, each with its parent node) to directory `dir` (a folder or
    /// a part of one); returns the nodes, the subdirectories to walk, and whether any entry differs from its
    /// parent node. `metas` is each entry's lstat ([`lstat_all`], or listed ahead), in the same order.
    fn walk_entries(
        &self,
        dir: &Arc<Dir>,
        path: &Path,
        entries: Vec<Paired>,
        metas: Vec<std::io::Result<fsmeta::Stat>>,
    ) -> (Vec<Node>, Vec<PendingDir>, bool) {
        let mut differs = false;
        let mut nodes = Vec::with_capacity(entries.len());
        let mut subdirs = vec![];
        let mut metas = metas.into_iter();
        for (name, pnode) in entries {
            if self.cancel.load(Ordering::Relaxed) {
                differs = true;
                break;
            }
            let p = path.join(&name);
            let same = match metas.next().expect("one lstat an entry") {
                // an excluded entry is not recorded: if the parent tree had it, the tree differs
                Ok(m) if self.exclude.is_some_and(|x| x.excludes(&p, &m)) => pnode.is_none(),
                Ok(m) => self.add_entry(dir, &mut nodes, &mut subdirs, &name, &p, &m, pnode),
                Err(e) => {
                    self.problem(format!("{}: {e}", p.display()));
                    false
                }
            };
            differs |= !same;
        }
        (nodes, subdirs, differs)
    }

    /// Adds the node of one entry of directory `dir` to `nodes`; returns whether it equals its node in the
    /// parent tree (for a directory: apart from its subtree, which is compared when its tree is stored).
    #[allow(clippy::too_many_arguments)]
    fn add_entry(
        &self,
        dir: &Arc<Dir>,
        nodes: &mut Vec<Node>,
        subdirs: &mut Vec<PendingDir>,
        name: &std::ffi::OsStr,
        p: &Path,
        m: &fsmeta::Stat,
        pnode: Option<Node>,
    ) -> bool {
        let mut node = match fsmeta::node_from(name, p, m, &self.names, !m.is_file()) {
            Ok(n) => n,
            Err(e) => {
                self.problem(format!("{}: {e}", p.display()));
                return false;
            }
        };
        let ni = nodes.len();
        let mut same = false;
        match node.kind {
            NodeKind::Dir => {
                self.stats.lock().expect("lock").dirs += 1;
                // the fresh node has no subtree yet: compare the rest, keep the parent's subtree id
                let parent = pnode.filter(|n| n.kind == NodeKind::Dir).and_then(|mut prev| {
                    let sub = prev.subtree.take();
                    same = prev == node;
                    sub.as_deref().and_then(parse_id)
                });
                subdirs.push(PendingDir {
                    node: ni,
                    path: p.to_path_buf(),
                    parent,
                });
            }
            NodeKind::File => {
                {
                    let mut st = self.stats.lock().expect("lock");
                    st.files += 1;
                    st.bytes += node.size;
                }
                self.counters.files.fetch_add(1, Ordering::Relaxed);
                if let Some(mut prev) = pnode.filter(|n| unchanged(n, &node)) {
                    // the content and attributes are taken over (moved): every other field must match
                    // for the node to be the parent's (the fresh node has no content and no attributes)
                    let content = std::mem::take(&mut prev.content);
                    let xattrs = std::mem::take(&mut prev.xattrs);
                    same = prev == node;
                    node.content = content;
                    node.xattrs = xattrs;
                    self.stats.lock().expect("lock").files_unchanged += 1;
                } else if node.size == 0 {
                    node.xattrs = fsmeta::read_xattrs(p).ok().flatten().unwrap_or_default();
                } else {
                    // the node waits for a file job's result: it differs from the parent's
                    let link = (node.nlink > 1).then_some(((node.dev, node.ino), node.nlink));
                    if let Some((key, _)) = link {
                        // hard links share one job: the first of them met sends it
                        let mut links = self.trees.links.lock().expect("lock");
                        match links.get_mut(&key) {
                            Some(Link::Waiting(waiters)) => {
                                dir.pending.fetch_add(1, Ordering::AcqRel);
                                waiters.push((dir.clone(), ni));
                                nodes.push(node);
                                return false;
                            }
                            Some(Link::Done(r, left)) => {
                                let r = r.clone();
                                *left -= 1;
                                if *left == 0 {
                                    links.remove(&key);
                                }
                                // a file that could not be read is left out (its problem is reported once)
                                if let Ok((content, xattrs, _)) = r {
                                    node.content = content;
                                    node.xattrs = xattrs;
                                    nodes.push(node);
                                }
                                return false;
                            }
                            None => {
                                links.insert(key, Link::Waiting(vec![]));
                            }
                        }
                    }
                    dir.pending.fetch_add(1, Ordering::AcqRel);
                    let fj = FileJob {
                        path: p.to_path_buf(),
                        node_size: node.size,
                        mtime: (node.mtime, node.mtime_nsec),
                        dir: dir.clone(),
                        node: ni,
                        link,
                    };
                    if self.jobs.send(fj).is_err() {
                        // the readers are gone (one panicked): the run fails when they are joined
                        dir.pending.fetch_sub(1, Ordering::AcqRel);
                        return false;
                    }
                }
            }
            _ => {
                self.stats.lock().expect("lock").other += 1;
                same = pnode.is_some_and(|prev| prev == node);
            }
        }
        nodes.push(node);
        same
    }
}

/// The lstat of each of `names` (in order) relative to the open folder; in a large folder (or a part of one)
/// on every core.
fn lstat_all<'n>(
    folder: &fsmeta::Folder,
    names: impl ExactSizeIterator<Item = &'n std::ffi::OsStr>,
) -> Vec<std::io::Result<fsmeta::Stat>> {
    if names.len() >= PARALLEL_LSTAT {
        let names: Vec<_> = names.collect();
        names.par_iter().map(|name| folder.lstat(name)).collect()
    } else {
        names.map(|name| folder.lstat(name)).collect()
    }
}

/// Entries from which on a listing's `lstat` calls run on every core.
const PARALLEL_LSTAT: usize = 1024;

/// Parts of a split folder cut (and walked) at a time.
const PARTS_AT_ONCE: usize = 2;

/// A listed entry's name and its node in the parent tree, if it had one.
type Paired = (std::ffi::OsString, Option<Node>);

/// A part of a split folder, cut and paired, to be walked.
struct PartWork {
    dir: Arc<Dir>,
    entries: Vec<Paired>,
    /// Whether parent nodes among the part's entries are gone.
    passed: bool,
    /// The parent's part that held exactly the same names.
    keep: Option<ChunkId>,
    /// That part, passed unread by its walk record (the entries are not paired with its nodes).
    kept: Option<KeptPart>,
}

/// A part of a split folder in the parent snapshot, of the same names as a part cut now, passed unread.
struct KeptPart {
    /// The split folder's tree, and the part's.
    tree: ChunkId,
    part: ChunkId,
    record: WalkRecord,
}

/// A subdirectory found while listing its parent, walked after the listing.
struct PendingDir {
    node: usize,
    path: PathBuf,
    /// Its tree in the parent snapshot.
    parent: Option<ChunkId>,
}

/// A folder's tree in the parent snapshot, read in name order alongside the folder's sorted entries: one
/// part of a split tree in memory at a time, each node moved out to the entry of the same name.
struct ParentCursor<'r> {
    /// The folder's tree in the parent snapshot.
    tree: Option<ChunkId>,
    listing: Option<Listing<'r>>,
    /// Whether the parent tree is split.
    split: bool,
    /// Whether a part of it could not be read (the entries after it are read again).
    failed: bool,
    /// The part being read: its id (none when the tree is not split), and where it starts and ends in
    /// the count of parent nodes passed.
    part: Option<(Option<ChunkId>, usize, usize)>,
    nodes: std::iter::Peekable<std::vec::IntoIter<Node>>,
    /// Parent nodes passed so far (taken by an entry, or gone).
    passed: usize,
}

impl<'r> ParentCursor<'r> {
    /// The cursor over tree `id` (none: no parent tree, or one that cannot be read).
    fn open(repo: &'r Repository, id: Option<ChunkId>) -> Self {
        let mut c = ParentCursor {
            tree: id,
            listing: None,
            split: false,
            failed: false,
            part: None,
            nodes: Vec::new().into_iter().peekable(),
            passed: 0,
        };
        match id.map(|id| repo.listing(&id)) {
            Some(Ok(l)) => {
                c.split = l.is_split();
                c.listing = Some(l);
            }
            Some(Err(e)) => c.unreadable(e),
            None => {}
        }
        c
    }

    /// The parent tree (or a part of it) cannot be read: the entries from here on are read again.
    fn unreadable(&mut self, e: seedship_shared::repo::RepoError) {
        tracing::warn!("the parent snapshot's tree cannot be read (its files are read again): {e}");
        self.failed = true;
        self.listing = None;
    }

    /// Makes the next parent node ready, reading the next part when this one is passed; false at the end.
    fn fill(&mut self) -> bool {
        loop {
            if self.nodes.peek().is_some() {
                return true;
            }
            let Some(listing) = self.listing.as_mut() else {
                return false;
            };
            match listing.next_part() {
                None => self.listing = None,
                Some(Ok((id, nodes))) => {
                    self.part = Some((id, self.passed, self.passed + nodes.len()));
                    self.nodes = nodes.into_iter().peekable();
                }
                Some(Err(e)) => self.unreadable(e),
            }
        }
    }

    /// The parent node named `name`, if there is one; and whether parent nodes before it were passed
    /// (entries that are gone).
    fn take(&mut self, name: &[u8]) -> (Option<Node>, bool) {
        let mut passed = false;
        while self.fill() {
            let next = self.nodes.peek().expect("filled").name_cow();
            match next.as_ref().cmp(name) {
                std::cmp::Ordering::Less => passed = true,
                std::cmp::Ordering::Equal => {
                    self.passed += 1;
                    return (self.nodes.next(), passed);
                }
                std::cmp::Ordering::Greater => break,
            }
            self.nodes.next();
            self.passed += 1;
        }
        (None, passed)
    }

    /// Pairs sorted `entries` with their parent nodes; and whether parent nodes among them are gone.
    fn pair(&mut self, entries: impl IntoIterator<Item = std::ffi::OsString>) -> (Vec<Paired>, bool) {
        let mut gone = false;
        let paired = entries
            .into_iter()
            .map(|name| {
                let (pnode, passed) = self.take(name.as_bytes());
                gone |= passed;
                (name, pnode)
            })
            .collect();
        (paired, gone)
    }

    /// The parent's next part (with its folder's tree) when the cursor stands at its start, unread.
    fn unread_part(&mut self) -> Option<(ChunkId, ChunkId)> {
        if self.nodes.peek().is_some() || !self.split {
            return None;
        }
        let listing = self.listing.as_ref()?;
        Some((self.tree?, listing.peek_part()?))
    }

    /// Passes the part [`ParentCursor::unread_part`] named, of `count` nodes, unread.
    fn skip_part(&mut self, count: usize) {
        if let Some(l) = self.listing.as_mut() {
            l.skip_part();
        }
        self.part = None;
        self.passed += count;
    }

    /// Where a part of a split folder starts: the parent's part that starts here too, and where it ends.
    fn part_start(&mut self) -> Option<(ChunkId, usize)> {
        self.fill();
        match self.part {
            Some((Some(id), start, end)) if start == self.passed => Some((id, end)),
            _ => None,
        }
    }

    /// The parent's part that the entries since [`ParentCursor::part_start`] passed exactly: a part whose
    /// entries all equal its nodes is that part again.
    fn whole_part(&self, start: Option<(ChunkId, usize)>) -> Option<ChunkId> {
        start.filter(|&(_, end)| end == self.passed).map(|(id, _)| id)
    }

    /// Whether parent nodes are left (entries that are gone), or a part could not be read.
    fn rest(&mut self) -> bool {
        self.fill() || self.failed
    }
}

/// Fills the content and attributes of the file nodes of a folder kept by its walk record from its tree
/// `id` in the parent snapshot, which holds the same nodes in the same order.
fn fill_content(repo: &Repository, id: &ChunkId, nodes: &mut [Node]) -> anyhow::Result<()> {
    let filled = repo.load_tree(id).map_err(anyhow::Error::from).and_then(|prev| {
        if prev.nodes.len() != nodes.len() {
            anyhow::bail!("it holds {} nodes, not {}", prev.nodes.len(), nodes.len());
        }
        for (n, p) in nodes.iter_mut().zip(prev.nodes) {
            if (&n.name, n.kind) != (&p.name, p.kind) {
                anyhow::bail!("it holds {:?} where the folder holds {:?}", p.name, n.name);
            }
            if n.kind == NodeKind::File {
                n.content = p.content;
                n.xattrs = p.xattrs;
            }
        }
        Ok(())
    });
    filled.map_err(|e| {
        // the next run reads the tree (or the files) instead of trusting the record again
        repo.forget_walk_record(id);
        e.context(format!(
            "tree {} of the parent snapshot, which holds the content of an unchanged folder's files, \
             cannot be used; run the backup again (it reads that folder's files if the tree stays unreadable)",
            id_hex(id)
        ))
    })
}

fn unchanged(prev: &Node, now: &Node) -> bool {
    prev.kind == NodeKind::File
        && prev.size == now.size
        && (prev.mtime, prev.mtime_nsec) == (now.mtime, now.mtime_nsec)
        && (prev.ctime, prev.ctime_nsec) == (now.ctime, now.ctime_nsec)
        && prev.ino == now.ino
        && (prev.size == 0 || !prev.content.is_empty())
}
fn worker(
    repo: &Repository,
    jobs: Receiver<FileJob>,
    mut blobs: BlobOut,
    trees: &Trees<'_>,
    counters: &Counters,
    cancel: &AtomicBool,
) {
    let chunker = repo.chunker();
    // room for the largest chunk plus a refill, so that the unconsumed tail is moved rarely
    let mut buf = Vec::with_capacity(chunker.params().max + 2 * chunker.params().avg);
    for job in jobs {
        // once cancelled, queued files are not read: no snapshot will be written anyway
        let r = if cancel.load(Ordering::Relaxed) {
            Err(format!("{}: not read (interrupted)", job.path.display()))
        } else {
            read_file(repo, &chunker, &job, &mut buf, &mut blobs, counters, cancel)
        };
        trees.file_done(job, r);
    }
    // a failure here shows as the pack writer's own error
    let _ = blobs.flush();
}

/// Reads up to `want` bytes at `offset` into `buf`'s spare capacity (which must hold `want` bytes), without
/// zero-filling it first; returns the count read and appends exactly those bytes to `buf`.
fn read_uninit(f: &std::fs::File, buf: &mut Vec<u8>, want: usize, offset: u64) -> std::io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    assert!(spare.len() >= want, "read_uninit: spare capacity too small");
    loop {
        // SAFETY: pread writes at most `want` bytes into the spare capacity, which holds at least `want`.
        let n = unsafe {
            libc::pread(
                f.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                want,
                offset as libc::off_t,
            )
        };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The data extents of a file: all of it unless it has holes.
fn extents(f: &std::fs::File, m: &std::fs::Metadata) -> Vec<(u64, u64)> {
    let size = m.size();
    if m.blocks() * 512 >= size {
        return vec![(0, size)];
    }
    let fd = f.as_raw_fd();
    let mut out = vec![];
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return vec![(0, size)];
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { (hole as u64).min(size) };
        out.push((data as u64, end));
        pos = end as i64;
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn read_file(
    repo: &Repository,
    chunker: &seedship_shared::chunker::Chunker,
    job: &FileJob,
    buf: &mut Vec<u8>,
    blobs: &mut BlobOut,
    counters: &Counters,
    cancel: &AtomicBool,
) -> FileResult {
    let show = job.path.display();
    let f = std::fs::File::open(&job.path).map_err(|e| format!("{show}: cannot read: {e}"))?;
    let m0 = f.metadata().map_err(|e| format!("{show}: {e}"))?;
    let (max, avg) = (chunker.params().max, chunker.params().avg);
    let level = repo.config().compression_level;
    let mut content = vec![];
    let mut short = false;
    for (start, end) in extents(&f, &m0) {
        let mut pos = start; // file offset of buf[head]
        buf.clear();
        // unconsumed data is buf[head..]: chunks are cut from its front without moving the rest, which is
        // moved to the front only when the buffer's capacity would otherwise be exceeded
        let mut head = 0;
        let mut read_to = start;
        let mut target = 2 * avg;
        loop {
            while buf.len() - head < target && read_to < end {
                let want = ((end - read_to) as usize).min(target - (buf.len() - head));
                if buf.len() + want > buf.capacity() {
                    buf.copy_within(head.., 0);
                    buf.truncate(buf.len() - head);
                    head = 0;
                    buf.reserve(want);
                }
                let n =
                    read_uninit(&f, buf, want, read_to).map_err(|e| format!("{show}: read error: {e}"))?;
                counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 {
                    short = true;
                    break;
                }
                read_to += n as u64;
            }
            if buf.len() == head {
                break;
            }
            let eof = read_to >= end || short;
            let Some(cut) = chunker.cut(&buf[head..], eof) else {
                target = max;
                continue;
            };
            let chunk = &buf[head..head + cut];
            if cancel.load(Ordering::Relaxed) {
                return Err(format!("{show}: interrupted"));
            }
            let id = repo.key().chunk_id(chunk);
            if repo.claim(&id) {
                let reuse = blobs.pool.try_recv().unwrap_or_default();
                let blob = encode_blob_into(repo.key(), level, BLOB_DATA, id, chunk, reuse)
                    .map_err(|e| format!("{show}: {e}"))?;
                blobs
                    .send(blob)
                    .map_err(|_| format!("{show}: the pack writer stopped"))?;
            }
            content.push(ChunkRef {
                off: pos,
                len: cut as u64,
                id: id_hex(&id),
            });
            pos += cut as u64;
            head += cut;
            target = 2 * avg;
        }
        if short {
            break;
        }
    }
    let m1 = f.metadata().map_err(|e| format!("{show}: {e}"))?;
    let changed = short || m1.size() != job.node_size || (m1.mtime(), m1.mtime_nsec() as u32) != job.mtime;
    let xattrs = fsmeta::read_xattrs(&job.path).ok().flatten().unwrap_or_default();
    Ok((
        content,
        xattrs,
        changed.then(|| format!("{show}: changed while being read (backed up as read)")),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use seedship_shared::blob::{BlobStore, MemoryStore};
    use seedship_shared::crypto::KdfParams;
    use seedship_shared::repo::RepoOptions;

    static NOT_CANCELLED: AtomicBool = AtomicBool::new(false);

    /// `fanout` folders of `fanout` folders of `fanout` folders, each leaf holding `fanout` small files.
    fn many_folders(root: &Path, fanout: usize) -> usize {
        let mut files = 0;
        for a in 0..fanout {
            for b in 0..fanout {
                for c in 0..fanout {
                    let d = root.join(format!("a{a}/b{b}/c{c}"));
                    std::fs::create_dir_all(&d).unwrap();
                    for f in 0..fanout {
                        std::fs::write(d.join(format!("f{f}")), format!("{a} {b} {c} {f}")).unwrap();
                        files += 1;
                    }
                }
            }
        }
        files
    }

    fn backup(repo: &Arc<Repository>, src: &Path, parent: Option<(String, Snapshot)>) -> BackupOutcome {
        backup_split(repo, src, parent, SplitRule::default(), None)
    }

    fn backup_split(
        repo: &Arc<Repository>,
        src: &Path,
        parent: Option<(String, Snapshot)>,
        split: SplitRule,
        ahead: Option<&Listings>,
    ) -> BackupOutcome {
        let sources = [src.to_path_buf()];
        let sel = Selection {
            sources: &sources,
            exclude: None,
            ahead,
        };
        let wopts = WriterOptions {
            pack_size: 1 << 20,
            index: IndexPolicy::every_packs(16),
            digests: false,
            dirs_in_flight: 4,
            readers: crate::config::Tuning::from_env().readers,
            known_leaves: Default::default(),
            split,
        };
        // two walk threads whatever the machine, so that the bound below does not depend on it
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            run(
                repo.clone(),
                sel,
                parent,
                "test",
                &NOT_CANCELLED,
                &Counters::default(),
                wopts,
            )
        })
        .unwrap()
    }

    /// A new repository (passphrase "sixteen+ characters") with a tree cache in `cache`, and its store.
    fn cached_repo(cache: &Path) -> (Arc<dyn BlobStore>, Arc<Repository>) {
        let (store, repo) = memory_repo();
        (store, Arc::new(repo.with_tree_cache(cache)))
    }

    /// Trees read so far (from the tree cache or the store).
    fn reads(repo: &Repository) -> u64 {
        let s = repo.tree_cache_stats();
        s.hits + s.misses
    }

    /// A folder of `files` files `f<i>` and 3 subfolders `d<i>` of one file each, and a split rule that cuts
    /// it into parts of about 16 nodes, at most 32.
    fn wide_folder(src: &Path, files: usize) -> SplitRule {
        std::fs::create_dir_all(src).unwrap();
        for i in 0..files {
            std::fs::write(src.join(format!("f{i:04}")), format!("file {i}")).unwrap();
        }
        for d in 0..3 {
            std::fs::create_dir(src.join(format!("d{d}"))).unwrap();
            std::fs::write(src.join(format!("d{d}/inner")), format!("inner {d}")).unwrap();
        }
        SplitRule {
            above: 100,
            bits: 4,
            max: 32,
        }
    }

    #[test]
    fn a_split_folder_keeps_its_unchanged_parts_by_their_walk_records() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let rule = wide_folder(&src, 600);
        let (store, repo) = cached_repo(&tmp.path().join("cache"));
        let run = |repo: &Arc<Repository>, parent: Option<&BackupOutcome>| {
            let parent = parent.map(|o| {
                let id = o.snapshot.clone().unwrap();
                (id.clone(), repo.find_snapshot(&id).unwrap().1)
            });
            let out = backup_split(repo, &src, parent, rule, None);
            assert_eq!(out.stats.errors, 0, "{:?}", out.problems);
            out
        };
        let tree = |o: &BackupOutcome| repo.find_snapshot(o.snapshot.as_ref().unwrap()).unwrap().1.tree;
        let first = run(&repo, None);
        let parts = folder_tree(
            &repo,
            &repo.find_snapshot(first.snapshot.as_ref().unwrap()).unwrap().1,
        )
        .1
        .parts
        .len();
        assert!(parts >= 10, "{parts} parts");
        // unchanged: the snapshot root and the split folder's list of parts are read, no part, no subfolder
        let before = reads(&repo);
        let second = run(&repo, Some(&first));
        assert_eq!(reads(&repo) - before, 2);
        assert_eq!(tree(&second), tree(&first));
        assert_eq!(second.stats.files_unchanged, 603);
        // a changed file (its part is read to pair its entries), a new one (the parts around it are cut and
        // paired as before), a changed subfolder: the other parts are kept unread
        std::fs::write(src.join("f0100"), "file 100, changed").unwrap();
        std::fs::write(src.join("f0400b"), "new").unwrap();
        std::fs::write(src.join("d1/inner"), "inner 1, changed").unwrap();
        let before = reads(&repo);
        let third = run(&repo, Some(&second));
        let read = reads(&repo) - before;
        assert!(read < parts as u64 / 2, "{read} trees read for {parts} parts");
        assert_eq!((third.stats.files, third.stats.files_unchanged), (604, 601));
        // the same as a walk without records
        let plain = Arc::new(Repository::open(store.clone(), "sixteen+ characters").unwrap());
        let alone = run(&plain, Some(&second));
        assert_eq!(tree(&third), tree(&alone));
        let before = reads(&repo);
        let fourth = run(&repo, Some(&third));
        assert_eq!(reads(&repo) - before, 2);
        assert_eq!(tree(&fourth), tree(&third));
    }

    #[test]
    fn unchanged_folders_are_kept_by_their_walk_records_and_a_change_below_rewrites_them_whole() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        // files at every level, so that the folders above a change hold files whose content must be kept
        for (f, text) in [
            ("f1", "one"),
            ("d/f2", "two"),
            ("d/e/f3", "three"),
            ("d/e/g/f4", "four"),
        ] {
            std::fs::create_dir_all(src.join(f).parent().unwrap()).unwrap();
            std::fs::write(src.join(f), text).unwrap();
        }
        std::os::unix::fs::symlink("f1", src.join("d/link")).unwrap();
        let (store, repo) = cached_repo(&dir.path().join("cache"));
        let pass = "sixteen+ characters";
        let snap = |o: &BackupOutcome| {
            let id = o.snapshot.clone().unwrap();
            let s = repo.find_snapshot(&id).unwrap();
            Some(s)
        };
        let first = backup(&repo, &src, None);
        // every folder has its record now: the next run reads the root's tree and no other
        let before = reads(&repo);
        let second = backup(&repo, &src, snap(&first));
        assert_eq!(reads(&repo) - before, 1, "only the snapshot root's tree is read");
        assert_eq!((second.stats.files, second.stats.files_unchanged), (4, 4));
        assert_eq!((second.stats.dirs, second.stats.other), (4, 1));
        assert_eq!(snap(&second).unwrap().1.tree, snap(&first).unwrap().1.tree);
        // a change three folders down: those above it are written again with their files' content, read
        // from their trees in the parent snapshot
        std::fs::write(src.join("d/e/g/f4"), "four, changed").unwrap();
        let third = backup(&repo, &src, snap(&second));
        assert_eq!((third.stats.files, third.stats.files_unchanged), (4, 3));
        // the same backup by a repository without a tree cache (no records: every tree read and paired)
        let plain = Arc::new(Repository::open(store.clone(), pass).unwrap());
        let alone = backup(&plain, &src, snap(&second));
        let tree = |o: &BackupOutcome| plain.find_snapshot(o.snapshot.as_ref().unwrap()).unwrap().1.tree;
        assert_eq!(tree(&third), tree(&alone));
        assert_ne!(tree(&third), snap(&second).unwrap().1.tree);
        let (_, top) = folder_tree(
            &plain,
            &plain.find_snapshot(third.snapshot.as_ref().unwrap()).unwrap().1,
        );
        let f1 = top.nodes.iter().find(|n| n.name == "f1").unwrap();
        assert_eq!(f1.content.len(), 1, "the unchanged file keeps its content");
        // and the run after it keeps everything by the records of the trees it wrote
        let before = reads(&repo);
        let fourth = backup(&repo, &src, snap(&third));
        assert_eq!(reads(&repo) - before, 1);
        assert_eq!(snap(&fourth).unwrap().1.tree, tree(&third));
    }

    #[test]
    fn folders_listed_ahead_give_the_trees_a_walk_alone_gives() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let files = many_folders(&src, 3);
        let repo = test_repo();
        let first = backup(&repo, &src, None);
        let parent = || {
            let id = first.snapshot.clone().unwrap();
            Some((id.clone(), repo.find_snapshot(&id).unwrap().1))
        };
        // a changed file, a new one and a new folder
        std::fs::write(src.join("a1/b2/c0/f1"), "changed, and longer").unwrap();
        std::fs::write(src.join("a2/b0/c1/new"), "new").unwrap();
        std::fs::create_dir(src.join("a0/new")).unwrap();
        let alone = backup(&repo, &src, parent());
        // every folder listed ahead, then a budget that covers a part of them
        for budget in [usize::MAX, 20] {
            let listed = crate::ahead::StatAhead::start(std::slice::from_ref(&src), None, budget, 1000)
                .unwrap()
                .join();
            let (folders, _) = listed.size();
            assert!(folders > 1, "{folders} folders listed ahead");
            let out = backup_split(&repo, &src, parent(), SplitRule::default(), Some(&listed));
            let tree = |o: &BackupOutcome| repo.find_snapshot(o.snapshot.as_ref().unwrap()).unwrap().1.tree;
            assert_eq!(tree(&out), tree(&alone), "budget {budget}");
            assert_eq!(out.stats.files, files as u64 + 1);
            assert_eq!(out.stats.files_unchanged, files as u64 - 1);
            assert_eq!(
                listed.size().0,
                0,
                "every folder listed ahead was taken by the walk"
            );
        }
    }

    #[test]
    fn trees_are_stored_as_directories_complete_not_held_to_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let fanout = 8;
        let files = many_folders(&src, fanout);
        let dirs = 1 + fanout + fanout * fanout + fanout * fanout * fanout;
        let repo = test_repo();

        let first = backup(&repo, &src, None);
        assert_eq!(first.stats.files as usize, files);
        assert_eq!(first.stats.errors, 0, "{:?}", first.problems);
        // held at most: the walk's paths (2 threads, depth 5 counting the snapshot's root, a few frames each)
        // plus the 4 walked directories allowed to wait, each with at most `fanout` nodes; holding the whole
        // tree would be every node (files + dirs, about 4,700)
        let depth = 5;
        let bound_dirs = 4 + 2 * 2 * depth;
        let bound_nodes = bound_dirs * fanout;
        assert!(
            bound_nodes * 4 < files + dirs,
            "the bound must be far below the whole tree"
        );
        assert!(
            first.in_flight.peak_nodes <= bound_nodes && first.in_flight.peak_dirs <= bound_dirs,
            "held {:?} (bound {bound_dirs} dirs, {bound_nodes} nodes; the tree has {dirs} dirs and {} nodes)",
            first.in_flight,
            files + dirs
        );
        let id = first.snapshot.unwrap();
        let (_, snap) = repo.find_snapshot(&id).unwrap();

        // every file is in the stored trees, with its content
        let mut seen_files = 0;
        let mut stack = vec![parse_id(&snap.tree).unwrap()];
        while let Some(t) = stack.pop() {
            for n in repo.load_tree(&t).unwrap().nodes {
                match n.kind {
                    NodeKind::Dir => stack.push(parse_id(n.subtree.as_deref().unwrap()).unwrap()),
                    NodeKind::File => {
                        assert_eq!(n.content.len(), 1, "{}", n.name);
                        seen_files += 1;
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(seen_files, files);

        // the unchanged run reads the parent's trees directory by directory and keeps every tree id
        let second = backup(&repo, &src, Some((id.clone(), snap.clone())));
        assert_eq!(second.stats.files_unchanged as usize, files);
        let (_, snap2) = repo.find_snapshot(&second.snapshot.unwrap()).unwrap();
        assert_eq!(snap2.tree, snap.tree);
        assert!(
            second.in_flight.peak_nodes <= bound_nodes,
            "{:?}",
            second.in_flight
        );

        // a changed file in one folder: only its path's trees are new
        std::fs::write(src.join("a3/b4/c5/f6"), "changed, and longer than before").unwrap();
        let third = backup(&repo, &src, Some((id, snap.clone())));
        assert_eq!(third.stats.files_unchanged as usize, files - 1);
        let (_, snap3) = repo.find_snapshot(&third.snapshot.unwrap()).unwrap();
        assert_ne!(snap3.tree, snap.tree);
        // data blob, and the trees of c5, b4, a3, src and the snapshot's root
        assert_eq!(third.stats.blobs_new, 6);
    }

    /// A repository in memory with a fast key derivation (passphrase "sixteen+ characters"), and its store.
    fn memory_repo() -> (Arc<dyn BlobStore>, Repository) {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let opts = RepoOptions {
            kdf: KdfParams {
                m_cost: 64,
                t_cost: 1,
                p_cost: 1,
            },
            ..Default::default()
        };
        let repo = Repository::init(store.clone(), "sixteen+ characters", &opts).unwrap();
        (store, repo)
    }

    /// A repository in memory with a fast key derivation.
    pub(crate) fn test_repo() -> Arc<Repository> {
        Arc::new(memory_repo().1)
    }

    /// The tree object of `src` (the snapshot root's only folder).
    fn folder_tree(repo: &Repository, snap: &Snapshot) -> (ChunkId, Tree) {
        let root = repo.load_tree(&parse_id(&snap.tree).unwrap()).unwrap();
        let id = parse_id(root.nodes[0].subtree.as_deref().unwrap()).unwrap();
        (id, repo.load_tree_object(&id).unwrap())
    }

    #[test]
    fn a_wide_folder_is_stored_in_parts_that_unchanged_runs_keep_and_readers_join() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let files = 600;
        let rule = wide_folder(&src, files);
        let repo = test_repo();
        let first = backup_split(&repo, &src, None, rule, None);
        assert_eq!(first.stats.errors, 0, "{:?}", first.problems);
        let id1 = first.snapshot.unwrap();
        let (_, snap1) = repo.find_snapshot(&id1).unwrap();
        assert_eq!(snap1.version, 2, "a snapshot with a split folder is version 2");
        let (tid1, t1) = folder_tree(&repo, &snap1);
        assert!(
            t1.nodes.is_empty() && t1.parts.len() >= 10,
            "{} parts",
            t1.parts.len()
        );
        let json = serde_json::to_string(&t1).unwrap();
        assert!(
            json.starts_with("{\"parts\":[") && !json.contains("nodes"),
            "{json}"
        );
        let mut sizes = vec![];
        for p in &t1.parts {
            let part = repo.load_tree_object(&parse_id(p).unwrap()).unwrap();
            assert!(part.parts.is_empty());
            sizes.push(part.nodes.len());
        }
        assert!(sizes.iter().all(|&n| (1..=32).contains(&n)), "{sizes:?}");
        // the walk held a few parts, never the whole folder
        assert!(first.in_flight.peak_nodes < files / 2, "{:?}", first.in_flight);
        // readers see one folder in name order
        let joined = repo.load_tree(&tid1).unwrap().nodes;
        assert_eq!(joined.len(), files + 3);
        assert!(joined.windows(2).all(|w| w[0].name_bytes() < w[1].name_bytes()));
        assert_eq!(repo.listing(&tid1).unwrap().count(), files + 3);
        let out = tmp.path().join("out");
        crate::restore::restore(&repo, &snap1.tree, &out, &[], None, true).unwrap();
        let restored = out.join(src.strip_prefix("/").unwrap());
        for i in [0, 17, files - 1] {
            let got = std::fs::read_to_string(restored.join(format!("f{i:04}"))).unwrap();
            assert_eq!(got, format!("file {i}"));
        }
        assert_eq!(
            std::fs::read_to_string(restored.join("d2/inner")).unwrap(),
            "inner 2"
        );
        assert_eq!(std::fs::read_dir(&restored).unwrap().count(), files + 3);

        // an unchanged run keeps every part and the folder's tree, reading the parent's parts one at a time
        let second = backup_split(&repo, &src, Some((id1.clone(), snap1.clone())), rule, None);
        assert_eq!(second.stats.files_unchanged as usize, files + 3);
        assert_eq!(second.stats.blobs_new, 0);
        let (_, snap2) = repo.find_snapshot(&second.snapshot.unwrap()).unwrap();
        assert_eq!(snap2.tree, snap1.tree);
        assert!(second.in_flight.peak_nodes < files / 2, "{:?}", second.in_flight);

        // one file changed and one added: the other parts keep their ids
        std::fs::write(src.join("f0300"), "changed, and longer than before").unwrap();
        std::fs::write(src.join("f0300a"), "new").unwrap();
        let third = backup_split(&repo, &src, Some((id1, snap1.clone())), rule, None);
        assert_eq!(third.stats.files_unchanged as usize, files + 3 - 1);
        let (_, snap3) = repo.find_snapshot(&third.snapshot.unwrap()).unwrap();
        let (_, t3) = folder_tree(&repo, &snap3);
        let kept = t3.parts.iter().filter(|p| t1.parts.contains(p)).count();
        assert!(
            kept + 2 >= t1.parts.len(),
            "{kept} of {} parts kept",
            t1.parts.len()
        );
        assert_eq!(
            repo.load_tree(&folder_tree(&repo, &snap3).0).unwrap().nodes.len(),
            files + 4
        );

        // the same folder below the split size is one tree again, and its parent's parts are still read
        let big = SplitRule {
            above: 10_000,
            ..rule
        };
        let (_, s3) = repo.find_snapshot("latest").unwrap();
        let latest = repo.snapshots().unwrap().pop().unwrap().0;
        let fourth = backup_split(&repo, &src, Some((latest, s3)), big, None);
        assert_eq!(fourth.stats.files_unchanged as usize, files + 4);
        let (_, snap4) = repo.find_snapshot(&fourth.snapshot.unwrap()).unwrap();
        assert_eq!(snap4.version, 1);
        let (_, t4) = folder_tree(&repo, &snap4);
        assert!(t4.parts.is_empty() && t4.nodes.len() == files + 4);
        // and split again from an unsplit parent
        let latest = repo.snapshots().unwrap().pop().unwrap();
        let fifth = backup_split(&repo, &src, Some(latest), rule, None);
        assert_eq!(fifth.stats.files_unchanged as usize, files + 4);
        let (_, snap5) = repo.find_snapshot(&fifth.snapshot.unwrap()).unwrap();
        assert_eq!(snap5.tree, snap3.tree);

        // check walks the parts
        let report = crate::check::check(&repo, false, None);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let parts: HashSet<_> = t1.parts.iter().chain(&t3.parts).collect();
        assert!(
            report.trees > parts.len(),
            "{} trees, {} parts",
            report.trees,
            parts.len()
        );
    }

    #[test]
    fn hard_links_in_many_folders_share_one_read_and_keep_their_content() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        for d in 0..20 {
            std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        }
        std::fs::write(src.join("d0/orig"), "linked content").unwrap();
        for d in 1..20 {
            std::fs::hard_link(src.join("d0/orig"), src.join(format!("d{d}/link"))).unwrap();
        }
        let repo = test_repo();
        let out = backup(&repo, &src, None);
        assert_eq!(out.stats.files, 20);
        assert_eq!(out.stats.errors, 0, "{:?}", out.problems);
        let (_, snap) = repo.find_snapshot(&out.snapshot.unwrap()).unwrap();
        let root = repo.load_tree(&parse_id(&snap.tree).unwrap()).unwrap();
        let mut t = repo
            .load_tree(&parse_id(root.nodes[0].subtree.as_deref().unwrap()).unwrap())
            .unwrap();
        assert_eq!(t.nodes.len(), 20);
        let mut contents = HashSet::new();
        for n in std::mem::take(&mut t.nodes) {
            let sub = repo
                .load_tree(&parse_id(n.subtree.as_deref().unwrap()).unwrap())
                .unwrap();
            assert_eq!(sub.nodes.len(), 1);
            assert_eq!(sub.nodes[0].content.len(), 1);
            contents.insert(sub.nodes[0].content[0].id.clone());
        }
        assert_eq!(contents.len(), 1, "every link names the same chunk");
        // one data blob; trees: d0's, one for d1..d19 (equal: the same inode under the same name), the
        // source's and the root
        assert_eq!(out.stats.blobs_new, 1 + 2 + 1 + 1);
    }
}
