//! A session's drives: the journals a `/DataSet:` session continued in (`/AdditionalDriveSet:`), followed from
//! any of them, and what its journal still has to place.

use super::journal::{self, SessionRecord, SourceRecord};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// The blob bytes the pieces of a rest still hold (from where each continues).
pub fn rest_bytes(rest: &[SourceRecord]) -> u64 {
    rest.iter()
        .map(|r| r.len - r.part.map_or(0, |p| p.start.min(r.len)))
        .sum()
}

/// The latest record of session `id` in journal `path` that was not aborted; `None` when the journal does
/// not exist or has no such session (a continuation that was rolled back, or never started).
pub fn session_in(path: &Path, id: &str) -> anyhow::Result<Option<SessionRecord>> {
    if !path.exists() {
        return Ok(None);
    }
    let state = journal::read(path).with_context(|| format!("reading journal {}", path.display()))?;
    Ok(state
        .sessions
        .iter()
        .rev()
        .find(|s| s.session_id == id && !s.aborted)
        .cloned())
}

/// The drives of session `id` from journal `first` on, following its continuations: each journal with the
/// session's record there. Stops at a continuation that was rolled back or never started.
pub fn chain(first: &Path, id: &str) -> anyhow::Result<Vec<(PathBuf, SessionRecord)>> {
    let mut out: Vec<(PathBuf, SessionRecord)> = Vec::new();
    let mut at = first.to_owned();
    while let Some(s) = session_in(&at, id)? {
        let next = s.continued_in.clone();
        out.push((at, s));
        match next {
            Some(n) if out.iter().all(|(p, _)| *p != n) && out.len() < 1000 => at = n,
            _ => break,
        }
    }
    Ok(out)
}

/// The journals of session `id`'s drives, in drive order, from any of them: back to where it started, then
/// forward along its continuations.
pub fn session_journals(journal: &Path, id: &str) -> anyhow::Result<Vec<String>> {
    let mut root = journal.to_owned();
    let mut steps = 0;
    while let Some(from) = session_in(&root, id)?.and_then(|s| s.continues_from) {
        steps += 1;
        if from == root || steps > 1000 {
            break;
        }
        root = from;
    }
    Ok(chain(&root, id)?
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .collect())
}
