//! Writing the payload past the page cache: a drive opened a second time with `O_DIRECT`, used for the
//! aligned writes of whole chunks, and a buffer whose first byte sits on a 4096-byte boundary (what direct
//! I/O needs from memory).
//!
//! Writing through the page cache costs a kernel copy of every byte (a third of diskprep's CPU when the cache
//! is full and every new page must be reclaimed first) and leaves the read-back reading the cache instead of
//! the drive. With `O_DIRECT` the chunk goes from the buffer to the device, and the payload reader reads whole
//! chunks back the same way ([`DirectReader`]), so the read-back after writing and the standalone `verify`
//! command ([`DriveFile::for_reading`]) check what the drive holds. Writes that are not aligned (a partial
//! last sector padded at a checkpoint) and small reads go through the ordinary descriptor; the kernel keeps
//! the two coherent (a direct write first writes out and drops cached pages of its range). Where the file
//! system refuses `O_DIRECT` at open (tmpfs before Linux 6.6), everything goes through the page cache; where
//! a direct read fails after the open succeeded, the payload reader reads on through the ordinary descriptor.

use super::device::Device;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;

pub use crate::aligned::{AlignedBuf, ALIGN};

/// A drive (device or image file) with, where possible, a second descriptor opened with `O_DIRECT`.
#[derive(Debug)]
pub struct DriveFile<'f> {
    file: &'f File,
    direct: Option<File>,
}

impl<'f> DriveFile<'f> {
    /// Wraps `file` (opened read-write at `path`), opening `path` again with `O_DIRECT` when the file
    /// system allows it.
    pub fn new(file: &'f File, path: &Path) -> Self {
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok();
        Self { file, direct }
    }

    /// Wraps `file` (opened read-only at `path`) for reading a drive as it is on the medium: `path` is
    /// opened again read-only with `O_DIRECT` when the file system allows it, so that the payload reader
    /// reads the drive rather than the page cache. Where it is refused (tmpfs on older kernels), reads go
    /// through `file`.
    pub fn for_reading(file: &'f File, path: &Path) -> Self {
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok();
        Self { file, direct }
    }

    /// Whether aligned writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }
}

impl Device for DriveFile<'_> {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let aligned = buf.as_ptr().addr().is_multiple_of(ALIGN)
            && buf.len().is_multiple_of(ALIGN)
            && offset.is_multiple_of(ALIGN as u64);
        match &self.direct {
            Some(direct) if aligned => direct.write_all_at(buf, offset),
            _ => self.file.write_all_at(buf, offset),
        }
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        // The same inode: this also flushes the device's cache after direct writes.
        self.file.sync_data()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        self.file.start_writeback(offset, len);
    }
    fn prefetch(&self, offset: u64, len: u64) {
        self.file.prefetch(offset, len);
    }
    fn direct_handle(&self) -> Option<File> {
        self.direct.as_ref().and_then(|f| f.try_clone().ok())
    }
}

/// Buffers queued for a direct write besides the one being filled.
const DEPTH: usize = 2;

/// Direct writes on a thread of their own, so the drive keeps writing while the next buffer is filled and
/// encrypted. At most `DEPTH` (2) buffers are queued; they come back empty for reuse.
#[derive(Debug)]
pub struct DirectWriter {
    jobs: Option<mpsc::Sender<(AlignedBuf, u64)>>,
    done: mpsc::Receiver<io::Result<AlignedBuf>>,
    thread: Option<std::thread::JoinHandle<()>>,
    in_flight: usize,
    spare: Vec<AlignedBuf>,
    allocated: usize,
    cap: usize,
}

impl DirectWriter {
    /// Starts the thread that writes through `file` (opened with `O_DIRECT`); buffers hold `cap` bytes.
    pub fn start(file: File, cap: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<(AlignedBuf, u64)>();
        let (back, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for (buf, offset) in queue {
                let written = file
                    .write_all_at(buf.as_slice(), offset)
                    .map_err(|e| io::Error::new(e.kind(), format!("writing at device offset {offset}: {e}")));
                if back.send(written.map(|()| buf)).is_err() {
                    break;
                }
            }
        });
        Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            in_flight: 0,
            spare: Vec::new(),
            allocated: 0,
            cap,
        }
    }

    /// An empty buffer to fill next: a returned one, a new one, or the next to come back.
    pub fn take_buffer(&mut self) -> io::Result<AlignedBuf> {
        if let Some(b) = self.spare.pop() {
            return Ok(b);
        }
        if self.allocated <= DEPTH {
            self.allocated += 1;
            return Ok(AlignedBuf::new(self.cap));
        }
        self.wait_one()?;
        Ok(self.spare.pop().expect("a buffer came back"))
    }

    /// Queues `buf` (aligned, whole sectors) for writing at device offset `offset`.
    pub fn submit(&mut self, buf: AlignedBuf, offset: u64) -> io::Result<()> {
        let jobs = self.jobs.as_ref().expect("open until dropped");
        jobs.send((buf, offset))
            .map_err(|_| io::Error::other("the drive writer thread stopped"))?;
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for every queued write; the first error if one failed.
    pub fn drain(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        Ok(())
    }

    fn wait_one(&mut self) -> io::Result<()> {
        let back = self
            .done
            .recv()
            .map_err(|_| io::Error::other("the drive writer thread stopped"))?;
        self.in_flight -= 1;
        let mut buf = back?;
        buf.truncate(0);
        self.spare.push(buf);
        Ok(())
    }
}

/// Direct reads ahead on a thread of its own: the device bytes `start..end` in chunks of `chunk` bytes
/// (all aligned), `DEPTH` (2) chunks ahead of the one being consumed.
#[derive(Debug)]
pub struct DirectReader {
    chunks: Option<mpsc::Receiver<io::Result<AlignedBuf>>>,
    empty: Option<mpsc::Sender<AlignedBuf>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DirectReader {
    /// Starts reading through `file` (opened with `O_DIRECT`).
    pub fn start(file: File, start: u64, end: u64, chunk: usize) -> Self {
        let (full_tx, chunks) = mpsc::sync_channel(DEPTH);
        let (empty, empty_rx) = mpsc::channel::<AlignedBuf>();
        for _ in 0..=DEPTH {
            let _ = empty.send(AlignedBuf::new(chunk));
        }
        let thread = std::thread::spawn(move || {
            let mut at = start;
            while at < end {
                let Ok(mut buf) = empty_rx.recv() else { break };
                let n = (end - at).min(chunk as u64) as usize;
                buf.set_len(n);
                let read = file
                    .read_exact_at(buf.as_mut_slice(), at)
                    .map_err(|e| io::Error::new(e.kind(), format!("reading at device offset {at}: {e}")));
                let failed = read.is_err();
                if full_tx.send(read.map(|()| buf)).is_err() || failed {
                    break;
                }
                at += n as u64;
            }
        });
        Self {
            chunks: Some(chunks),
            empty: Some(empty),
            thread: Some(thread),
        }
    }

    /// The next chunk; `used`, the previous one, goes back for reuse.
    pub fn next(&mut self, used: Option<AlignedBuf>) -> io::Result<AlignedBuf> {
        if let (Some(b), Some(empty)) = (used, &self.empty) {
            let _ = empty.send(b);
        }
        let chunks = self.chunks.as_ref().expect("open until dropped");
        chunks
            .recv()
            .map_err(|_| io::Error::other("the drive reader thread stopped"))?
    }
}

impl Drop for DirectReader {
    fn drop(&mut self) {
        self.chunks.take();
        self.empty.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DirectWriter {
    /// Lets the queued writes finish (their errors are lost: a writer dropped without a sync was abandoned).
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new image file of `len` bytes at `path`, open for reading and writing.
    fn new_image(path: &Path, len: u64) -> File {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap();
        file.set_len(len).unwrap();
        file
    }

    #[test]
    fn direct_and_buffered_writes_read_back_alike() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("d.img");
        let file = new_image(&path, 64 * ALIGN as u64);
        let dev = DriveFile::new(&file, &path);
        let mut aligned = AlignedBuf::new(8 * ALIGN);
        let data: Vec<u8> = (0..8 * ALIGN).map(|i| (i * 7 % 253) as u8).collect();
        aligned.push(&data);
        dev.write_at(aligned.as_slice(), 4 * ALIGN as u64).unwrap();
        // Unaligned in memory and offset: the buffered descriptor, overlapping the direct write.
        dev.write_at(&data[1..100], 4 * ALIGN as u64 + 3).unwrap();
        dev.sync().unwrap();
        let mut back = vec![0u8; 8 * ALIGN];
        dev.read_at(&mut back, 4 * ALIGN as u64).unwrap();
        let mut want = data.clone();
        want[3..102].copy_from_slice(&data[1..100]);
        assert!(back == want);
        // A direct write over cached pages: the read sees the new bytes.
        dev.write_at(aligned.as_slice(), 4 * ALIGN as u64).unwrap();
        dev.read_at(&mut back, 4 * ALIGN as u64).unwrap();
        assert!(back == data);
    }

    #[test]
    fn the_payload_round_trips_through_direct_writes_sync_and_resume() {
        use crate::luks::payload::testing::XorCipher;
        use crate::luks::payload::{DriveTarget, PayloadReader, PayloadWriter};
        use std::io::{Read, Write};
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("d.img");
        let cap = 40u64 << 20;
        let file = new_image(&path, cap + 65536);
        let dev = DriveFile::new(&file, &path);
        let data: Vec<u8> = (0..30_000_123usize).map(|i| (i * 13 + i / 4096) as u8).collect();
        let cut = 17_000_001;
        let mut w = PayloadWriter::new(&dev, &XorCipher, 65536, cap);
        w.write_all(&data[..cut]).unwrap();
        w.sync().unwrap();
        drop(w);
        let mut w = PayloadWriter::resume(&dev, &XorCipher, 65536, cap, cut as u64).unwrap();
        w.write_all(&data[cut..]).unwrap();
        w.sync().unwrap();
        drop(w);
        let target = DriveTarget {
            device: &dev,
            cipher: &XorCipher,
            data_offset: 65536,
            capacity: cap,
        };
        let mut back = vec![0u8; data.len()];
        PayloadReader::new(target).read_exact(&mut back).unwrap();
        assert!(back == data);
    }

    /// A drive whose direct descriptor opens but refuses every read (like a file system that accepts
    /// `O_DIRECT` at open and returns EINVAL on reads): here a write-only descriptor, which fails with EBADF.
    struct RefusingDirect<'f> {
        inner: DriveFile<'f>,
        path: std::path::PathBuf,
    }

    impl Device for RefusingDirect<'_> {
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.inner.write_at(buf, offset)
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.inner.read_at(buf, offset)
        }
        fn sync(&self) -> io::Result<()> {
            self.inner.sync()
        }
        fn direct_handle(&self) -> Option<File> {
            std::fs::OpenOptions::new().write(true).open(&self.path).ok()
        }
    }

    /// Writes `data` as the payload of a fresh image at `path` (data offset 65536) and returns the file.
    fn image_with(path: &Path, data: &[u8]) -> File {
        use crate::luks::payload::testing::XorCipher;
        use crate::luks::payload::PayloadWriter;
        use std::io::Write;
        let cap = (data.len() as u64).div_ceil(ALIGN as u64) * ALIGN as u64;
        let file = new_image(path, 65536 + cap);
        let dev = DriveFile::new(&file, path);
        let mut w = PayloadWriter::new(&dev, &XorCipher, 65536, cap);
        w.write_all(data).unwrap();
        w.sync().unwrap();
        file
    }

    fn read_payload(device: &dyn Device, len: usize) -> (Vec<u8>, bool) {
        use crate::luks::payload::testing::XorCipher;
        use crate::luks::payload::{DriveTarget, PayloadReader};
        use std::io::Read;
        let target = DriveTarget {
            device,
            cipher: &XorCipher,
            data_offset: 65536,
            capacity: (len as u64).div_ceil(ALIGN as u64) * ALIGN as u64,
        };
        let mut r = PayloadReader::new(target);
        let mut back = vec![0u8; len];
        r.read_exact(&mut back).unwrap();
        (back, r.direct_refused())
    }

    #[test]
    fn a_refused_direct_read_falls_back_to_the_ordinary_descriptor() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("d.img");
        let data: Vec<u8> = (0..9_000_017usize).map(|i| (i * 11 + i / 4096) as u8).collect();
        drop(image_with(&path, &data));
        let file = File::open(&path).unwrap();
        let dev = RefusingDirect {
            inner: DriveFile::for_reading(&file, &path),
            path: path.clone(),
        };
        let (back, refused) = read_payload(&dev, data.len());
        assert!(refused, "the direct read failed and the reader noticed");
        assert!(back == data);
    }

    #[test]
    fn a_drive_on_tmpfs_is_read_back_directly_or_through_the_cache() {
        // tmpfs: older kernels refuse O_DIRECT at open (EINVAL), newer ones accept it; either way the
        // payload reads back whole.
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            eprintln!("no /dev/shm here: the tmpfs case is not exercised");
            return;
        }
        let t = tempfile::tempdir_in(shm).unwrap();
        let path = t.path().join("d.img");
        let data: Vec<u8> = (0..5_000_003usize).map(|i| (i * 5 + i / 512) as u8).collect();
        drop(image_with(&path, &data));
        let file = File::open(&path).unwrap();
        let dev = DriveFile::for_reading(&file, &path);
        let (back, refused) = read_payload(&dev, data.len());
        eprintln!(
            "tmpfs: O_DIRECT opened {}, direct reads given up {refused}",
            dev.is_direct()
        );
        assert!(back == data);
    }
}
