//! The BLAKE3 of a whole object, read through any [`BlobStore`]: how the agent compares a staged object with
//! its copy in a store (`check`, `backup` before the import, and the completion after it).

use super::{BlobError, BlobStore};

/// Length and BLAKE3 (hex) of the whole object `name`, read in pieces of `piece` bytes (a large piece lets a
/// remote store keep several requests in flight); `done` is told the length of every piece read.
pub fn blake3_of(
    store: &dyn BlobStore,
    name: &str,
    piece: usize,
    mut done: impl FnMut(u64),
) -> Result<(u64, String), BlobError> {
    let len = store.properties(name)?.len;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; piece.min(len as usize)];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        store.read_at(name, pos, &mut buf[..n])?;
        h.update(&buf[..n]);
        pos += n as u64;
        done(n as u64);
    }
    Ok((len, h.finalize().to_hex().to_string()))
}
