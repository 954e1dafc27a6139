//! Check: verifies the repository's structure (config, keys, index, snapshots, every tree, every chunk
//! referenced) and with `--read-data` every blob, every volume byte outside blobs, and the job descriptor's
//! lengths and digests. Problems are collected and reported together, each naming its object.

use seedship_shared::blob::BlobStore;
use seedship_shared::repo::{
    parse_id, volume_name, ChunkId, NodeKind, Repository, VOLUME_HEADER_LEN, VOLUME_MAGIC,
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
        read_all(repo, &mut rep);
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
    let tree = match repo.load_tree(id) {
        Ok(t) => t,
        Err(e) => return rep.problems.push(format!("{at}: {e}")),
    };
    rep.trees += 1;
    for n in &tree.nodes {
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

fn read_all(repo: &Repository, rep: &mut CheckReport) {
    let mut entries = repo.index_entries();
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
        match store.properties(&name) {
            Ok(p) if p.len != end.div_ceil(512) * 512 => rep.problems.push(format!(
                "{name}: length {} differs from the logical end {end} recorded in the index",
                p.len
            )),
            Err(e) => rep.problems.push(e.to_string()),
            _ => {}
        }
        // bytes between blobs (pack padding) must be zero
        let mut pos = VOLUME_HEADER_LEN;
        let check_gap = |from: u64, to: u64, rep: &mut CheckReport| {
            if to <= from {
                return;
            }
            let mut buf = vec![0u8; (to - from) as usize];
            if store.read_at(&name, from, &mut buf).is_ok() {
                if let Some(i) = buf.iter().position(|&b| b != 0) {
                    rep.problems.push(format!(
                        "{name}: non-zero byte at offset {} outside any blob",
                        from + i as u64
                    ));
                }
            }
        };
        for e in entries.iter().filter(|e| e.volume == v) {
            check_gap(pos, e.offset, rep);
            pos = pos.max(e.offset + e.len as u64);
        }
        check_gap(pos, end.div_ceil(512) * 512, rep);
    }
    for e in &entries {
        match repo.read_entry(e) {
            Ok(_) => rep.blobs_read += 1,
            Err(err) => rep.problems.push(err.to_string()),
        }
    }
    if let Ok(objs) = store.list("data/") {
        for o in objs {
            let known = ends.keys().any(|&v| volume_name(v) == o.name);
            if !known {
                rep.problems
                    .push(format!("{}: volume not referenced by any index object", o.name));
            }
        }
    }
}

fn descriptor(store: &dyn BlobStore, dir: &Path, rep: &mut CheckReport) {
    let d = match JobDescriptor::load(dir) {
        Ok(d) => d,
        Err(e) => return rep.problems.push(e.to_string()),
    };
    for b in &d.blobs {
        match blob_digest(store, &b.name) {
            Ok((len, h)) if len == b.len && h == b.blake3 => {}
            Ok((len, h)) => rep.problems.push(format!(
                "{}: length {len} / BLAKE3 {h} differ from the job descriptor's {} / {}",
                b.name, b.len, b.blake3
            )),
            Err(e) => rep.problems.push(e.to_string()),
        }
    }
}

/// Length and BLAKE3 of a whole blob.
pub fn blob_digest(
    store: &dyn BlobStore,
    name: &str,
) -> Result<(u64, String), seedship_shared::blob::BlobError> {
    let len = store.properties(name)?.len;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        store.read_at(name, pos, &mut buf[..n])?;
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok((len, h.finalize().to_hex().to_string()))
}
