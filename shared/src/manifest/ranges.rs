//! Building page-range lists: splitting a blob region into ranges of at most 4 MiB aligned to 4 MiB blob
//! offsets, skipping all-zero ranges, and MD5-hashing ranges side by side (MD5 is sequential within a range,
//! so ranges are the unit of parallelism: eight per core at once with [`crate::md5batch`]).

use std::io::{self, Read, Write};
use std::num::NonZeroUsize;

use super::model::{Md5Hash, PageRange, MAX_RANGE_LEN, PAGE_SIZE};
use crate::md5batch::{md5_many_threads, LANES};

/// Uppercase-hex MD5 of a manifest file's exact bytes: the `ManifestHash` sent to Put Job.
pub fn manifest_hash(bytes: &[u8]) -> String {
    Md5Hash::of(bytes).to_string()
}

/// MD5 of everything `input` yields, streamed.
pub fn md5_of_reader(mut input: impl Read) -> io::Result<Md5Hash> {
    use md5::Digest;
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
    }
    Ok(Md5Hash(h.finalize().into()))
}

/// The range windows covering blob bytes `[start, end)`: boundaries at multiples of 4 MiB of the blob offset,
/// so a window never exceeds 4 MiB and a blob split across drives at a 4 MiB boundary keeps the same ranges.
/// `start` must be a multiple of 512; so must `end` for page ranges (then every window is), while a block
/// blob's windows (its 4 MiB blocks) end at the blob's length, whatever it is.
pub fn range_windows(start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> {
    debug_assert!(start.is_multiple_of(PAGE_SIZE));
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let next = ((at / MAX_RANGE_LEN) + 1) * MAX_RANGE_LEN;
        let w = (at, next.min(end) - at);
        at = next.min(end);
        Some(w)
    })
}

/// Whether every byte is zero (word-at-a-time so it vectorises).
pub fn is_all_zero(data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(64);
    let words_zero = chunks.all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0);
    words_zero && chunks.remainder().iter().all(|&b| b == 0)
}

/// Number of hashing threads: the machine's available parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Hashes each `(blob offset, bytes)` window, [`LANES`] windows at a time on each of up to `threads` threads
/// (see [`md5_many_threads`]); `None` for an all-zero window (it is left out of the manifest: unwritten
/// page-blob pages read as zeros).
pub fn hash_windows(windows: &[(u64, &[u8])], threads: usize) -> Vec<Option<PageRange>> {
    let data: Vec<usize> = (0..windows.len())
        .filter(|&i| !is_all_zero(windows[i].1))
        .collect();
    let messages: Vec<&[u8]> = data.iter().map(|&i| windows[i].1).collect();
    let mut results: Vec<Option<PageRange>> = vec![None; windows.len()];
    for (&i, digest) in data.iter().zip(md5_many_threads(&messages, threads)) {
        let (offset, bytes) = windows[i];
        results[i] = Some(PageRange {
            offset,
            length: bytes.len() as u64,
            hash: Md5Hash(digest),
        });
    }
    results
}

/// Copies blob bytes `[start, end)` from `input` (positioned at `start`) to `out` (e.g. a tar
/// [`EntryWriter`](crate::tar::EntryWriter)) and returns the page ranges of the non-zero windows, hashed
/// ([`hash_windows`] on `threads` threads) while the same batch is being written. After each batch is
/// written, `progress(blob_offset, new_ranges)` is called with the blob offset reached and the ranges
/// finished in that batch (journal them there). Memory: `LANES * threads` 4 MiB buffers.
pub fn copy_and_hash(
    mut input: impl Read,
    out: &mut impl Write,
    start: u64,
    end: u64,
    threads: usize,
    mut progress: impl FnMut(u64, &[PageRange]) -> io::Result<()>,
) -> io::Result<Vec<PageRange>> {
    if !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) || start > end {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range [{start}, {end}) is not 512-aligned"),
        ));
    }
    let batch = LANES * threads.max(1);
    let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| Vec::new()).collect();
    let mut windows = range_windows(start, end).peekable();
    let mut all = Vec::new();
    while windows.peek().is_some() {
        let mut offsets = Vec::with_capacity(batch);
        for buf in bufs.iter_mut() {
            let Some((offset, len)) = windows.next() else {
                break;
            };
            buf.resize(len as usize, 0);
            input.read_exact(buf).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("reading blob bytes at offset {offset} ({len} bytes): {e}"),
                )
            })?;
            offsets.push(offset);
        }
        let filled: Vec<(u64, &[u8])> = offsets.iter().zip(&bufs).map(|(&o, b)| (o, &b[..])).collect();
        // Hash on worker threads while this thread writes the same (immutable) buffers, so the write's I/O
        // wait or encryption overlaps the hashing.
        let new: Vec<PageRange> = std::thread::scope(|s| {
            let hashing = s.spawn(|| hash_windows(&filled, threads));
            let written = filled.iter().try_for_each(|(_, data)| out.write_all(data));
            let hashed = hashing
                .join()
                .map_err(|_| io::Error::other("a range hashing thread panicked"))?;
            written.map(|()| hashed.into_iter().flatten().collect())
        })?;
        let reached = filled.last().map_or(start, |(o, d)| o + d.len() as u64);
        progress(reached, &new)?;
        all.extend(new);
    }
    Ok(all)
}

/// Reads blob bytes `[start, end)` from `input` (positioned at `start`) and returns the page ranges of the
/// non-zero windows (see [`copy_and_hash`], writing nowhere).
pub fn page_ranges_of(input: impl Read, start: u64, end: u64, threads: usize) -> io::Result<Vec<PageRange>> {
    copy_and_hash(input, &mut io::sink(), start, end, threads, |_, _| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_4mib_blob_offsets() {
        let m = MAX_RANGE_LEN;
        let w: Vec<_> = range_windows(m - 1024, 2 * m + 512).collect();
        assert_eq!(w, vec![(m - 1024, 1024), (m, m), (2 * m, 512)]);
        assert_eq!(range_windows(0, 0).count(), 0);
        assert_eq!(range_windows(0, 3 * m).count(), 3);
    }

    #[test]
    fn zero_windows_are_skipped_and_parallel_equals_sequential() {
        let mut data = vec![0u8; 3 * MAX_RANGE_LEN as usize + 4096];
        data[MAX_RANGE_LEN as usize + 7] = 1;
        data[3 * MAX_RANGE_LEN as usize + 100] = 9;
        let seq = page_ranges_of(&data[..], 0, data.len() as u64, 1).unwrap();
        let par = page_ranges_of(&data[..], 0, data.len() as u64, 3).unwrap();
        assert_eq!(seq, par);
        assert_eq!(
            seq.iter().map(|r| (r.offset, r.length)).collect::<Vec<_>>(),
            vec![(MAX_RANGE_LEN, MAX_RANGE_LEN), (3 * MAX_RANGE_LEN, 4096)]
        );
        assert_eq!(seq[1].hash, Md5Hash::of(&data[3 * MAX_RANGE_LEN as usize..]));
        assert!(page_ranges_of(&data[..10], 0, 512, 1).is_err());
        let mut copy = Vec::new();
        let mut reached = Vec::new();
        let copied = copy_and_hash(&data[..], &mut copy, 0, data.len() as u64, 1, |at, new| {
            reached.push((at, new.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!((copied, copy), (seq, data.clone()));
        // One batch of up to LANES windows per thread: all four windows at once.
        assert_eq!(reached, vec![(3 * MAX_RANGE_LEN + 4096, 2)]);
    }

    #[test]
    fn md5_known_answers() {
        assert_eq!(manifest_hash(b""), "D41D8CD98F00B204E9800998ECF8427E");
        assert_eq!(manifest_hash(b"abc"), "900150983CD24FB0D6963F7D28E17F72");
        assert_eq!(
            md5_of_reader(&b"abc"[..]).unwrap().to_string(),
            "900150983CD24FB0D6963F7D28E17F72"
        );
    }
}
