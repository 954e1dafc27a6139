//! Where the copy reads the staged blobs from, and the check of each blob against the BLAKE3 its job
//! descriptor records.
//!
//! [`StagingFiles`] reads a job's blob files with `O_DIRECT` into aligned buffers: the bytes go from the
//! disk to the buffer the copy encrypts from, without a page-cache copy (which was a third of diskprep's
//! CPU). Where the file system refuses direct I/O, it reads through the page cache. [`StoreSource`] reads
//! any [`BlobStore`] (the tests' in-memory store).
//!
//! [`BlobDigest`] checks a blob while its part is copied, so each staged byte is read once: the bytes of the
//! blob outside the part (before a resume point, or in a part on another drive) are read for the hash only.

use crate::prep::error::CopyError;
use seedship_shared::aligned::{AlignedBuf, ALIGN};
use seedship_shared::blob::BlobStore;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

/// The staged blobs the copy reads.
pub trait StagedSource: Sync {
    /// Reads blob bytes `range` into `buf` (whose capacity is at least `range` plus 2 x [`ALIGN`]); returns
    /// the index in `buf` where `range.start` sits. Gaps between data extents read as zeros.
    fn read(&self, blob: &str, range: Range<u64>, buf: &mut AlignedBuf) -> Result<usize, CopyError>;
    /// The BLAKE3 (hex) the job descriptor records for `blob`, if any.
    fn digest(&self, blob: &str) -> Option<&str>;
    /// Where `blob` lives, for messages (its file).
    fn location(&self, blob: &str) -> String;
}

/// A job's blob files (`<job>/blobs/<name>`), read with `O_DIRECT` where the file system allows it.
#[derive(Debug)]
pub struct StagingFiles {
    dir: PathBuf,
    digests: HashMap<String, String>,
    /// Files named one by one (`prepimport`'s sources), instead of `dir/<name>`.
    files: HashMap<String, PathBuf>,
}

impl StagingFiles {
    /// The blobs under `dir` with their recorded BLAKE3 digests (blob name, hex).
    pub fn new(dir: PathBuf, digests: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            dir,
            digests: digests.into_iter().collect(),
            files: HashMap::new(),
        }
    }

    /// Blobs read from files named one by one: `(blob name, file, BLAKE3 hex if known)`.
    pub fn from_files(files: impl IntoIterator<Item = (String, PathBuf, Option<String>)>) -> Self {
        let mut s = Self::new(PathBuf::new(), std::iter::empty());
        for (name, path, digest) in files {
            if let Some(d) = digest {
                s.digests.insert(name.clone(), d);
            }
            s.files.insert(name, path);
        }
        s
    }

    fn path_of(&self, blob: &str) -> PathBuf {
        self.files
            .get(blob)
            .cloned()
            .unwrap_or_else(|| self.dir.join(blob))
    }

    fn read_file(
        &self,
        path: &std::path::Path,
        range: &Range<u64>,
        buf: &mut AlignedBuf,
    ) -> io::Result<usize> {
        let align = ALIGN as u64;
        let from = range.start / align * align;
        let to = range.end.div_ceil(align) * align;
        let len = (to - from) as usize;
        if len > buf.capacity() {
            *buf = AlignedBuf::new(len);
        }
        buf.set_len(len);
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let got = match direct {
            Ok(f) => match read_full_at(&f, buf.as_mut_slice(), from) {
                Ok(n) => Some(n),
                // Opened with O_DIRECT, but the reads are refused (EINVAL): read through the page cache.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
                Err(e) => return Err(e),
            },
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
            Err(e) => return Err(e),
        };
        let n = match got {
            Some(n) => n,
            None => read_full_at(&File::open(path)?, buf.as_mut_slice(), from)?,
        };
        let want = (range.end - from) as usize;
        if n < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ends at {} bytes, before {}", from + n as u64, range.end),
            ));
        }
        Ok((range.start - from) as usize)
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl StagedSource for StagingFiles {
    fn read(&self, blob: &str, range: Range<u64>, buf: &mut AlignedBuf) -> Result<usize, CopyError> {
        let path = self.path_of(blob);
        self.read_file(&path, &range, buf).map_err(|e| CopyError::Staged {
            blob: blob.to_owned(),
            path: path.display().to_string(),
            offset: range.start,
            source: e,
        })
    }
    fn digest(&self, blob: &str) -> Option<&str> {
        self.digests.get(blob).map(String::as_str)
    }
    fn location(&self, blob: &str) -> String {
        self.path_of(blob).display().to_string()
    }
}

/// Any blob store as a staged source: reads its data extents, zeros between them.
pub struct StoreSource<'a> {
    pub store: &'a dyn BlobStore,
    /// Recorded BLAKE3 digests by blob name (none: nothing is checked).
    pub digests: HashMap<String, String>,
}

impl StagedSource for StoreSource<'_> {
    fn read(&self, blob: &str, range: Range<u64>, buf: &mut AlignedBuf) -> Result<usize, CopyError> {
        let len = (range.end - range.start) as usize;
        if len > buf.capacity() {
            *buf = AlignedBuf::new(len);
        }
        buf.set_len(len);
        let bytes = buf.as_mut_slice();
        bytes.fill(0);
        let data = self.store.page_ranges(blob).map_err(|e| CopyError::Read {
            blob: blob.to_owned(),
            offset: range.start,
            source: Box::new(e),
        })?;
        for d in data {
            let (s, e) = (d.start.max(range.start), d.end.min(range.end));
            if s < e {
                let out = &mut bytes[(s - range.start) as usize..(e - range.start) as usize];
                self.store.read_at(blob, s, out).map_err(|e| CopyError::Read {
                    blob: blob.to_owned(),
                    offset: s,
                    source: Box::new(e),
                })?;
            }
        }
        Ok(0)
    }
    fn digest(&self, blob: &str) -> Option<&str> {
        self.digests.get(blob).map(String::as_str)
    }
    fn location(&self, blob: &str) -> String {
        format!("staging blob {blob}")
    }
}

/// The BLAKE3 of one blob, computed while its part is copied.
pub struct BlobDigest {
    hasher: blake3::Hasher,
    /// Blob bytes hashed so far.
    at: u64,
}

impl BlobDigest {
    /// Starts a blob's hash at blob offset `from` of its part: the bytes before it are read and hashed here.
    pub fn start(source: &dyn StagedSource, blob: &str, from: u64, step: usize) -> Result<Self, CopyError> {
        let mut d = BlobDigest {
            hasher: blake3::Hasher::new(),
            at: 0,
        };
        d.hash_from_source(source, blob, from, step)?;
        Ok(d)
    }

    /// Hashes the next bytes of the blob (those at [`BlobDigest::position`]).
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.at += bytes.len() as u64;
    }

    /// Blob bytes hashed so far.
    pub fn position(&self) -> u64 {
        self.at
    }

    /// Reads and hashes the blob's bytes from [`BlobDigest::position`] up to `to`.
    fn hash_from_source(
        &mut self,
        source: &dyn StagedSource,
        blob: &str,
        to: u64,
        step: usize,
    ) -> Result<(), CopyError> {
        let mut buf = AlignedBuf::new(0);
        while self.at < to {
            let end = (self.at + step as u64).min(to);
            if buf.capacity() < step + 2 * ALIGN {
                buf = AlignedBuf::new(step + 2 * ALIGN);
            }
            let head = source.read(blob, self.at..end, &mut buf)?;
            let n = (end - self.at) as usize;
            self.update(&buf.as_slice()[head..head + n]);
        }
        Ok(())
    }

    /// Hashes the rest of the blob (up to `blob_len`) and compares the whole with the recorded digest.
    pub fn finish(
        mut self,
        source: &dyn StagedSource,
        blob: &str,
        blob_len: u64,
        expected: &str,
        step: usize,
    ) -> Result<(), CopyError> {
        self.hash_from_source(source, blob, blob_len, step)?;
        if self.hasher.finalize().to_hex().eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(CopyError::StagedDigest {
                blob: blob.to_owned(),
                location: source.location(blob),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_read_alike_at_any_offset_and_the_digest_covers_the_whole_blob() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_017usize).map(|i| (i * 31 + i / 4093) as u8).collect();
        std::fs::create_dir_all(t.path().join("data")).unwrap();
        std::fs::write(t.path().join("data/0000"), &data).unwrap();
        let want = blake3::hash(&data).to_hex().to_string();
        let src = StagingFiles::new(t.path().to_owned(), [("data/0000".to_owned(), want.clone())]);
        let mut buf = AlignedBuf::new(0);
        for r in [0..4096u64, 5..70_000, 1_000_000..3_000_017, 2_999_000..3_000_017] {
            let head = src.read("data/0000", r.clone(), &mut buf).unwrap();
            let got = &buf.as_slice()[head..head + (r.end - r.start) as usize];
            assert!(got == &data[r.start as usize..r.end as usize], "{r:?}");
        }
        let e = src.read("data/0000", 10..3_000_018, &mut buf).unwrap_err();
        assert!(e.to_string().contains("data/0000"), "{e}");

        // Hashing from the middle (a resume), then the middle bytes passed in, then the rest read.
        let mut d = BlobDigest::start(&src, "data/0000", 1_234_567, 1 << 20).unwrap();
        d.update(&data[1_234_567..2_000_000]);
        d.finish(&src, "data/0000", data.len() as u64, &want, 1 << 20)
            .unwrap();
        let mut d = BlobDigest::start(&src, "data/0000", 0, 1 << 20).unwrap();
        d.update(&data[..5]);
        d.update(&[0u8; 3]);
        let e = d
            .finish(&src, "data/0000", data.len() as u64, &want, 1 << 20)
            .unwrap_err();
        assert!(
            matches!(&e, CopyError::StagedDigest { blob, .. } if blob == "data/0000"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&t.path().join("data/0000").display().to_string()),
            "{e}"
        );
    }
}
