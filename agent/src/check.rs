//! Check: verifies the repository's structure (config, keys, index, snapshots, every tree, every chunk
//! referenced) and with `--read-data` every blob, every volume byte outside blobs, and the job descriptor's
//! lengths and digests. Problems are collected and reported together, each naming its object. Reading the
//! data runs on every core (windows of a volume in parallel; the descriptor's volumes in parallel).

use rayon::prelude::*;
use seedship_shared::blob::BlobStore;
use seedship_shared::repo::prune::PendingPrune;
use seedship_shared::repo::{
    parse_id, volume_name, ChunkId, IndexEntry, Node, NodeKind, Repository, VOLUME_HEADER_LEN, VOLUME_MAGIC,
};
use seedship_shared::staging::JobDescriptor;
use std::collections::HashSet;
use std::path::Path;

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    pub blobs_read: usize,
    pub problems: Vec<String>,
}

/// Checks `repo`; `job_dir` (if any) holds the job descriptor to compare the blobs with.
pub fn check(repo: &Repository, read_data: bool, job_dir: Option<&Path>) -> CheckReport {
    let mut rep = CheckReport::default();
    match repo.snapshots() {
        Ok(snaps) => {
            rep.snapshots = snaps.len();
            let mut seen = HashSet::new();
            for (id, s) in snaps {
                match parse_id(&s.tree) {
                    Some(t) => walk(repo, &t, &format!("snapshot {id}"), &mut seen, &mut rep),
                    None => rep.problems.push(format!("snapshots/{id}: invalid root tree id")),
                }
            }
        }
        Err(e) => rep.problems.push(e.to_string()),
    }
    if read_data {
        // an interrupted prune recorded ranges it had not cleared yet: their old bytes are no damage
        let pending = match seedship_shared::repo::prune::pending(repo) {
            Ok((_, p)) => p,
            Err(e) => {
                rep.problems.push(e.to_string());
                Default::default()
            }
        };
        read_all(repo, &pending, &mut rep);
        if let Some(dir) = job_dir {
            descriptor(&**repo.store(), dir, &mut rep);
        }
    }
    rep
}

fn walk(repo: &Repository, id: &ChunkId, at: &str, seen: &mut HashSet<ChunkId>, rep: &mut CheckReport) {
    if !seen.insert(*id) {
        return;
    }
    // a split folder is read one part at a time; each part is a tree (checked once, like any tree)
    let mut listing = match repo.listing(id) {
        Ok(l) => l,
        Err(e) => return rep.problems.push(format!("{at}: {e}")),
    };
    rep.trees += 1;
    while let Some(part) = listing.next_part() {
        let nodes = match part {
            Ok((Some(part), _)) if !seen.insert(part) => continue,
            Ok((part, nodes)) => {
                rep.trees += usize::from(part.is_some());
                nodes
            }
            Err(e) => return rep.problems.push(format!("{at}: {e}")),
        };
        walk_nodes(repo, nodes, at, seen, rep);
    }
}

/// Checks the nodes of one tree (or part of a split folder's tree) at `at`.
fn walk_nodes(
    repo: &Repository,
    nodes: Vec<Node>,
    at: &str,
    seen: &mut HashSet<ChunkId>,
    rep: &mut CheckReport,
) {
    for n in nodes {
        let here = format!("{at}/{}", n.name);
        for c in &n.content {
            match parse_id(&c.id) {
                Some(cid) if repo.contains(&cid) => {}
                _ => rep
                    .problems
                    .push(format!("{here}: chunk {} is missing from the index", c.id)),
            }
        }
        if n.kind == NodeKind::Dir {
            match n.subtree.as_deref().and_then(parse_id) {
                Some(sub) => walk(repo, &sub, &here, seen, rep),
                None => rep
                    .problems
                    .push(format!("{here}: directory without a valid tree id")),
            }
        }
    }
}

/// Volumes are read in windows of about this many bytes (whole blobs), so that a volume in the vault is read
/// with few large requests instead of one per blob.
const WINDOW: u64 = 16 << 20;

fn read_all(repo: &Repository, pending: &PendingPrune, rep: &mut CheckReport) {
    let mut entries = match repo.index_entries() {
        Ok(e) => e,
        Err(e) => return rep.problems.push(format!("cannot read the index: {e}")),
    };
    entries.sort_by_key(|e| (e.volume, e.offset));
    let ends = repo.volume_ends();
    let store = repo.store();
    for (&v, &end) in &ends {
        let name = volume_name(v);
        let mut header = vec![0u8; VOLUME_HEADER_LEN as usize];
        match store.read_at(&name, 0, &mut header) {
            Ok(()) if &header[..8] == VOLUME_MAGIC && header[8..12] == v.to_le_bytes() => {}
            Ok(()) => rep.problems.push(format!("{name}: damaged volume header")),
            Err(e) => rep.problems.push(e.to_string()),
        }
        if header[28..].iter().any(|&b| b != 0) {
            rep.problems.push(format!(
                "{name}: non-zero bytes in the volume header's reserved area"
            ));
        }
        let padded_end = end.div_ceil(512) * 512;
        match store.properties(&name) {
            Ok(p) if p.len != padded_end => rep.problems.push(format!(
                "{name}: length {} differs from the logical end {end} recorded in the index",
                p.len
            )),
            Err(e) => rep.problems.push(e.to_string()),
            _ => {}
        }
        let first = entries.partition_point(|e| e.volume < v);
        let last = entries.partition_point(|e| e.volume <= v);
        let tolerated = pending.ranges_of(v);
        read_volume(repo, &name, &entries[first..last], padded_end, &tolerated, rep);
    }
    // blobs in a volume no index object gives an end for (written by an older agent): one by one
    for e in entries.iter().filter(|e| !ends.contains_key(&e.volume)) {
        match repo.read_entry(e) {
            Ok(_) => rep.blobs_read += 1,
            Err(err) => rep.problems.push(err.to_string()),
        }
    }
    if let Ok(objs) = store.list("data/") {
        for o in objs {
            let known = ends
                .keys()
                .chain(&pending.delete)
                .any(|&v| volume_name(v) == o.name);
            if !known {
                rep.problems
                    .push(format!("{}: volume not referenced by any index object", o.name));
            }
        }
    }
}

/// A stretch of a volume read with one request: the blobs `entries` (indices into the volume's sorted
/// entries) lie in `start..stop`; `pos` is where the bytes checked by the windows before it end.
struct Window {
    start: u64,
    stop: u64,
    entries: std::ops::Range<usize>,
    pos: u64,
}

/// Cuts a volume's blobs (`entries`, sorted by offset) into windows of about [`WINDOW`] bytes.
fn windows(entries: &[IndexEntry]) -> Vec<Window> {
    let end_of = |e: &IndexEntry| e.offset + e.len as u64;
    let mut out = vec![];
    let mut pos = VOLUME_HEADER_LEN;
    let mut i = 0;
    while i < entries.len() {
        let start = pos.min(entries[i].offset);
        let mut stop = end_of(&entries[i]);
        let mut j = i + 1;
        while j < entries.len() && end_of(&entries[j]).max(stop) - start <= WINDOW {
            stop = stop.max(end_of(&entries[j]));
            j += 1;
        }
        out.push(Window {
            start,
            stop,
            entries: i..j,
            pos,
        });
        pos = entries[i..j].iter().map(end_of).fold(pos, u64::max);
        i = j;
    }
    out
}

/// Reads one volume in windows, on every core: every blob (`entries`, sorted by offset) is verified and
/// every byte outside blobs up to `padded_end` must be zero. Problems are reported in volume order.
fn read_volume(
    repo: &Repository,
    name: &str,
    entries: &[IndexEntry],
    padded_end: u64,
    tolerated: &[std::ops::Range<u64>],
    rep: &mut CheckReport,
) {
    let store = repo.store();
    let zero_gap = |buf: &[u8], at: u64, problems: &mut Vec<String>| {
        let mut pos = at;
        let end = at + buf.len() as u64;
        // the parts of the gap outside the tolerated ranges must be zero
        let mut cuts: Vec<std::ops::Range<u64>> = tolerated
            .iter()
            .filter(|t| t.end > at && t.start < end)
            .cloned()
            .collect();
        cuts.push(end..end);
        for t in &cuts {
            let stop = t.start.max(pos).min(end);
            let part = &buf[(pos - at) as usize..(stop - at) as usize];
            if let Some(i) = part.iter().position(|&b| b != 0) {
                problems.push(format!(
                    "{name}: non-zero byte at offset {} outside any blob",
                    pos + i as u64
                ));
                return;
            }
            pos = t.end.max(pos).min(end);
        }
    };
    let end_of = |e: &IndexEntry| e.offset + e.len as u64;
    let wins = windows(entries);
    let results: Vec<(usize, Vec<String>)> = wins
        .par_iter()
        .map(|w| {
            let (mut read, mut problems) = (0, vec![]);
            let mut buf = vec![0u8; (w.stop - w.start) as usize];
            let mut pos = w.pos;
            if store.read_at(name, w.start, &mut buf).is_err() {
                // one by one, so each error names its blob
                for e in &entries[w.entries.clone()] {
                    match repo.read_entry(e) {
                        Ok(_) => read += 1,
                        Err(err) => problems.push(err.to_string()),
                    }
                }
                return (read, problems);
            }
            for e in &entries[w.entries.clone()] {
                if e.offset > pos {
                    zero_gap(
                        &buf[(pos - w.start) as usize..(e.offset - w.start) as usize],
                        pos,
                        &mut problems,
                    );
                }
                let at = (e.offset - w.start) as usize;
                match repo.open_entry(e, &buf[at..at + e.len as usize]) {
                    Ok(_) => read += 1,
                    Err(err) => problems.push(err.to_string()),
                }
                pos = pos.max(end_of(e));
            }
            (read, problems)
        })
        .collect();
    for (read, problems) in results {
        rep.blobs_read += read;
        rep.problems.extend(problems);
    }
    let mut pos = entries.iter().map(end_of).fold(VOLUME_HEADER_LEN, u64::max);
    let mut buf = Vec::new();
    while pos < padded_end {
        let n = (padded_end - pos).min(WINDOW);
        buf.resize(n as usize, 0);
        match store.read_at(name, pos, &mut buf) {
            Ok(()) => zero_gap(&buf, pos, &mut rep.problems),
            Err(e) => rep.problems.push(e.to_string()),
        }
        pos += n;
    }
}

fn descriptor(store: &dyn BlobStore, dir: &Path, rep: &mut CheckReport) {
    let d = match JobDescriptor::load(dir) {
        Ok(d) => d,
        Err(e) => return rep.problems.push(e.to_string()),
    };
    // the volumes are hashed in parallel, their findings reported in the descriptor's order
    let found: Vec<Option<String>> = d
        .blobs
        .par_iter()
        .map(|b| match blob_digest(store, &b.name) {
            Ok((len, h)) if len == b.len && h == b.blake3 => None,
            Ok((len, h)) => Some(format!(
                "{}: length {len} / BLAKE3 {h} differ from the job descriptor's {} / {}",
                b.name, b.len, b.blake3
            )),
            Err(e) => Some(e.to_string()),
        })
        .collect();
    rep.problems.extend(found.into_iter().flatten());
}

/// Length and BLAKE3 of a whole blob, read in 4 MiB pieces.
pub fn blob_digest(
    store: &dyn BlobStore,
    name: &str,
) -> Result<(u64, String), seedship_shared::blob::BlobError> {
    seedship_shared::blob::blake3_of(store, name, 4 << 20, |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64, len: u32) -> IndexEntry {
        IndexEntry {
            id: [0; 32],
            kind: 0,
            volume: 0,
            offset,
            len,
            raw_len: len,
        }
    }

    #[test]
    fn windows_cover_every_blob_once_and_carry_the_checked_end() {
        let mb = 1u64 << 20;
        let h = VOLUME_HEADER_LEN;
        // a gap after the header, blobs of 6 MiB, a gap, one blob larger than a window
        let entries = vec![
            entry(h + 512, (6 * mb) as u32),
            entry(h + 512 + 6 * mb, (6 * mb) as u32),
            entry(h + 512 + 12 * mb, (6 * mb) as u32),
            entry(h + 30 * mb, (20 * mb) as u32),
            entry(h + 50 * mb, 512),
        ];
        let w = windows(&entries);
        let covered: Vec<usize> = w.iter().flat_map(|w| w.entries.clone()).collect();
        assert_eq!(covered, (0..entries.len()).collect::<Vec<_>>());
        assert_eq!(w[0].start, h, "the first window checks the gap after the header");
        assert_eq!(w[0].pos, h);
        for (k, win) in w.iter().enumerate() {
            for e in &entries[win.entries.clone()] {
                assert!(win.start <= e.offset && e.offset + e.len as u64 <= win.stop);
            }
            if k > 0 {
                let prev_end = entries[..win.entries.start]
                    .iter()
                    .map(|e| e.offset + e.len as u64)
                    .max()
                    .unwrap();
                assert_eq!(win.pos, prev_end, "window {k}");
                assert_eq!(win.start, prev_end, "gaps between windows are read too");
            }
            assert!(win.stop - win.start <= WINDOW || win.entries.len() == 1);
        }
    }
}
