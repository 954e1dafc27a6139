//! The one check of a drive file against its manifest entry: every listed page range (or block of a block
//! blob) is read, MD5-hashed
//! (in parallel batches) and compared, giving the per-range statuses of the copy log. The data centre's
//! import uses it ([`verify_blob_file`]); `diskprep verify` uses it too, also requiring the bytes between
//! ranges to be zero ([`verify_member`]).

use std::io::{self, Read};

use super::{LogRange, RangeStatus};
use crate::manifest::ranges::hash_windows;
use crate::manifest::{ManifestBlob, PageRange, RangeList};

/// Reads the drive file of `blob` from `input` (positioned at its first byte) and checks each page range (or
/// block) of the entry: `Completed` when the MD5 matches, `Corrupted` when it does not, `FileUnexpectedEnd` (and
/// `Cancelled` for the ranges after it) when the file is too short. For a part file, file offset 0 is blob
/// offset `part.start`. `accept(range, bytes)` is called in order with each range whose hash matched, so the
/// caller can write the verified bytes into the blob as it goes (a block is passed as the range of its bytes;
/// its log entry carries its Id). Memory: `2 * threads` ranges.
pub fn verify_blob_file(
    input: impl Read,
    blob: &ManifestBlob,
    threads: usize,
    accept: impl FnMut(&PageRange, &[u8]) -> io::Result<()>,
) -> io::Result<Vec<LogRange>> {
    verify_member(input, blob, threads, false, accept).map(|c| c.ranges)
}

/// What [`verify_member`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberCheck {
    /// Each page range's status, as [`verify_blob_file`] gives them.
    pub ranges: Vec<LogRange>,
    /// With `zero_gaps`: the blob offset of the first non-zero byte outside the ranges, if any.
    pub nonzero_gap: Option<u64>,
}

/// [`verify_blob_file`], and with `zero_gaps` the bytes between the ranges and after the last one (up to
/// the part's or blob's end) are read and must be zero (a drive that diskprep wrote holds zeros there).
pub fn verify_member(
    mut input: impl Read,
    blob: &ManifestBlob,
    threads: usize,
    zero_gaps: bool,
    mut accept: impl FnMut(&PageRange, &[u8]) -> io::Result<()>,
) -> io::Result<MemberCheck> {
    // Validation bounds every range to 4 MiB, so a damaged entry cannot make us allocate more.
    blob.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    // A block list is checked like a page-range list without gaps; each log entry keeps the block's Id.
    let block_ranges: Vec<PageRange>;
    let (ranges, ids): (&[PageRange], Vec<Option<String>>) = match &blob.ranges {
        RangeList::Pages(ranges) => (ranges, vec![None; ranges.len()]),
        RangeList::Blocks(blocks) => {
            block_ranges = blocks
                .iter()
                .map(|b| PageRange {
                    offset: b.offset,
                    length: b.length,
                    hash: b.hash,
                })
                .collect();
            (&block_ranges, blocks.iter().map(|b| b.id.clone()).collect())
        }
    };
    let mut ids = ids.into_iter();
    let base = blob.part.map_or(0, |p| p.start);
    let mut at = base; // blob offset of the next unread file byte
    let mut out = Vec::with_capacity(ranges.len());
    let batch = 2 * threads.max(1);
    let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| Vec::new()).collect();
    let mut truncated = false;
    let mut end_reported = false;
    let mut nonzero_gap = None;
    for chunk in ranges.chunks(batch) {
        let mut filled = 0;
        for (r, buf) in chunk.iter().zip(bufs.iter_mut()) {
            if truncated {
                break;
            }
            let skip = r.offset.checked_sub(at).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("blob {}: ranges out of order at {}", blob.blob_path, r.offset),
                )
            })?;
            let skipped = if zero_gaps {
                let (n, bad) = read_zeros(&mut input, at, skip)?;
                nonzero_gap = nonzero_gap.or(bad);
                n
            } else {
                io::copy(&mut (&mut input).take(skip), &mut io::sink())?
            };
            buf.resize(r.length as usize, 0);
            if skipped < skip || !read_full(&mut input, buf)? {
                truncated = true;
                break;
            }
            at = r.offset + r.length;
            filled += 1;
        }
        let windows: Vec<(u64, &[u8])> = chunk[..filled]
            .iter()
            .zip(&bufs)
            .map(|(r, b)| (r.offset, &b[..]))
            .collect();
        let hashes = hash_windows(&windows, threads);
        for ((r, (_, data)), got) in chunk.iter().zip(&windows).zip(hashes) {
            // An all-zero range hashes to None here; its MD5 is still compared.
            let actual = got.map_or_else(|| crate::manifest::Md5Hash::of(data), |g| g.hash);
            let status = if actual == r.hash {
                RangeStatus::Completed
            } else {
                RangeStatus::Corrupted
            };
            if status == RangeStatus::Completed {
                accept(r, data)?;
            }
            out.push(LogRange {
                offset: r.offset,
                length: r.length,
                id: ids.next().flatten(),
                hash: Some(r.hash),
                status,
            });
        }
        for r in &chunk[filled..] {
            let status = if end_reported {
                RangeStatus::Cancelled
            } else {
                RangeStatus::FileUnexpectedEnd
            };
            end_reported = true;
            out.push(LogRange {
                offset: r.offset,
                length: r.length,
                id: ids.next().flatten(),
                hash: Some(r.hash),
                status,
            });
        }
    }
    if zero_gaps && !truncated {
        let end = blob.part.map_or(blob.length, |p| p.end);
        let (_, bad) = read_zeros(&mut input, at, end.saturating_sub(at))?;
        nonzero_gap = nonzero_gap.or(bad);
    }
    Ok(MemberCheck {
        ranges: out,
        nonzero_gap,
    })
}

/// Reads `len` bytes that must be zeros, starting at blob offset `at`; returns how many were read (fewer
/// when the input ends) and the offset of the first non-zero byte.
fn read_zeros(input: &mut impl Read, at: u64, len: u64) -> io::Result<(u64, Option<u64>)> {
    let mut buf = vec![0u8; (len.min(1 << 20)) as usize];
    let mut done = 0;
    let mut bad = None;
    while done < len {
        let n = buf.len().min((len - done) as usize);
        let got = input.read(&mut buf[..n]);
        let got = match got {
            Ok(0) => break,
            Ok(g) => g,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if bad.is_none() {
            bad = buf[..got]
                .iter()
                .position(|&b| b != 0)
                .map(|i| at + done + i as u64);
        }
        done += got as u64;
    }
    Ok((done, bad))
}

/// Fills `buf` completely; `false` when the input ends first.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ranges::page_ranges_of;
    use crate::manifest::{BlobPart, Md5Hash, MAX_RANGE_LEN};

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn a_good_part_file_verifies_and_a_flipped_byte_is_corrupted() {
        let m = MAX_RANGE_LEN as usize;
        let blob_bytes = data(3 * m);
        // the drive holds blob bytes [4 MiB, 12 MiB) as a part file
        let file = &blob_bytes[m..];
        let ranges = page_ranges_of(file, 0, 2 * m as u64, 2).unwrap();
        let ranges: Vec<PageRange> = ranges
            .into_iter()
            .map(|r| PageRange {
                offset: r.offset + m as u64,
                ..r
            })
            .collect();
        let mut blob = ManifestBlob::page_blob("c/b", "\\s\\c\\b", 3 * m as u64, ranges);
        blob.part = Some(BlobPart {
            index: 2,
            start: m as u64,
            end: 3 * m as u64,
        });
        let mut accepted = Vec::new();
        let log = verify_blob_file(file, &blob, 2, |r, bytes| {
            accepted.push((r.offset, Md5Hash::of(bytes) == r.hash));
            Ok(())
        })
        .unwrap();
        assert!(log.iter().all(|r| r.status == RangeStatus::Completed));
        assert_eq!(accepted, vec![(m as u64, true), (2 * m as u64, true)]);

        let mut bad = file.to_vec();
        bad[m + 5] ^= 1;
        let log = verify_blob_file(&bad[..], &blob, 2, |_, _| Ok(())).unwrap();
        assert_eq!(
            log.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![RangeStatus::Completed, RangeStatus::Corrupted]
        );

        let log = verify_blob_file(&file[..m + 100], &blob, 1, |_, _| Ok(())).unwrap();
        assert_eq!(
            log.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![RangeStatus::Completed, RangeStatus::FileUnexpectedEnd]
        );
        let log = verify_blob_file(&file[..100], &blob, 1, |_, _| Ok(())).unwrap();
        assert_eq!(
            log.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![RangeStatus::FileUnexpectedEnd, RangeStatus::Cancelled]
        );
    }

    #[test]
    fn with_zero_gaps_a_byte_between_or_after_the_ranges_is_found() {
        let mut file = vec![0u8; 64 << 10];
        file[4096..8192].fill(3);
        file[20_480..24_000].fill(5);
        let ranges: Vec<PageRange> = [(4096u64, 4096u64), (20_480, 4096)]
            .iter()
            .map(|&(offset, length)| PageRange {
                offset,
                length,
                hash: Md5Hash::of(&file[offset as usize..(offset + length) as usize]),
            })
            .collect();
        let blob = ManifestBlob::page_blob("c/b", "\\s\\c\\b", file.len() as u64, ranges);
        let check = verify_member(&file[..], &blob, 2, true, |_, _| Ok(())).unwrap();
        assert!(check.ranges.iter().all(|r| r.status == RangeStatus::Completed));
        assert_eq!(check.nonzero_gap, None);
        for at in [100usize, 10_000, 60_000] {
            let mut bad = file.clone();
            bad[at] = 1;
            let check = verify_member(&bad[..], &blob, 2, true, |_, _| Ok(())).unwrap();
            assert_eq!(check.nonzero_gap, Some(at as u64), "at {at}");
            // The data centre's check reads past gaps without looking.
            let log = verify_blob_file(&bad[..], &blob, 2, |_, _| Ok(())).unwrap();
            assert!(log.iter().all(|r| r.status == RangeStatus::Completed));
        }
    }

    #[test]
    fn a_block_list_is_checked_block_by_block_with_its_ids() {
        use crate::manifest::Block;
        let m = MAX_RANGE_LEN as usize;
        // 4 MiB of zeros (a block list keeps it) and one more byte.
        let mut file = vec![0u8; m + 1];
        file[m] = 7;
        let blocks: Vec<Block> = [(0usize, m), (m, 1)]
            .iter()
            .enumerate()
            .map(|(i, &(at, len))| Block {
                offset: at as u64,
                length: len as u64,
                id: Some(format!("id{i}")),
                hash: Md5Hash::of(&file[at..at + len]),
            })
            .collect();
        let mut blob = ManifestBlob::page_blob("c/b", "\\s\\c\\b", file.len() as u64, Vec::new());
        blob.ranges = RangeList::Blocks(blocks);
        let mut accepted = Vec::new();
        let check = verify_member(&file[..], &blob, 2, true, |r, bytes| {
            accepted.push((r.offset, bytes.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(accepted, vec![(0, m), (m as u64, 1)]);
        assert_eq!(check.nonzero_gap, None);
        let ids: Vec<_> = check.ranges.iter().map(|r| r.id.as_deref()).collect();
        assert_eq!(ids, vec![Some("id0"), Some("id1")]);
        let mut bad = file.clone();
        bad[m] = 8;
        let log = verify_blob_file(&bad[..], &blob, 2, |_, _| Ok(())).unwrap();
        assert_eq!(
            log.iter()
                .map(|r| (r.status, r.id.as_deref()))
                .collect::<Vec<_>>(),
            vec![
                (RangeStatus::Completed, Some("id0")),
                (RangeStatus::Corrupted, Some("id1"))
            ]
        );
        let log = verify_blob_file(&file[..m], &blob, 2, |_, _| Ok(())).unwrap();
        assert_eq!(log[1].status, RangeStatus::FileUnexpectedEnd);
    }
}
