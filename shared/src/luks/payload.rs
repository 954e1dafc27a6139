//! The drive's payload: the byte stream (a tar archive) that lives, encrypted, in the LUKS2 data segment.
//! The one reader and writer of it: diskprep writes and reads drives back with it, `diskprep verify` and
//! the data centre's import read them with it.
//!
//! [`PayloadWriter`] is a `Write` that gathers the stream into large buffers, encrypts whole 4096-byte
//! sectors (on every core, through the [`SectorCipher`]) and writes them at the data segment's offset on the
//! device, starting their writeback at once so the disk streams while the next bytes are prepared (instead
//! of taking everything at the next sync while the writer waits). [`PayloadWriter::sync`] makes everything written so far durable, including a last partial sector
//! padded with zeros, so a journal record written after it may name any byte offset. After a crash,
//! [`PayloadWriter::resume`] continues at such an offset: it reads the partial sector back, decrypts it and
//! carries on from there, so nothing before the offset is written again.

pub use super::device::Device;
use super::direct::{DirectReader, DirectWriter};
use super::LuksVolume;
use crate::aligned::AlignedBuf;
use std::io::{self, Seek, SeekFrom, Write};

/// The sector size of the data segment.
pub const SECTOR: u64 = 4096;

/// How much the writer gathers before encrypting and writing.
const CHUNK: usize = 8 << 20;

/// Encryption of whole sectors of the payload, addressed by their byte offset in the payload.
pub trait SectorCipher: Send + Sync {
    /// Encrypts `buf` (a whole number of sectors) that sits at `offset` (sector-aligned) in the payload.
    fn encrypt(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Decrypts likewise.
    fn decrypt(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Encrypts `src` (whole sectors at `offset`) into `dst`, of the same length. By default a copy, then
    /// [`SectorCipher::encrypt`]; a cipher that can read one buffer and write another saves the copy.
    fn encrypt_into(&self, offset: u64, src: &[u8], dst: &mut [u8]) -> io::Result<()> {
        dst.copy_from_slice(src);
        self.encrypt(offset, dst)
    }
}

/// An unlocked LUKS2 drive encrypts its payload.
impl SectorCipher for LuksVolume {
    fn encrypt(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.encrypt_sectors(offset, buf).map_err(io::Error::other)
    }
    fn decrypt(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.decrypt_sectors(offset, buf).map_err(io::Error::other)
    }
    fn encrypt_into(&self, offset: u64, src: &[u8], dst: &mut [u8]) -> io::Result<()> {
        self.encrypt_sectors_into(offset, src, dst)
            .map_err(io::Error::other)
    }
}

/// An opened drive: where its encrypted payload lives and how it is encrypted.
#[derive(Clone, Copy)]
pub struct DriveTarget<'a> {
    pub device: &'a dyn Device,
    pub cipher: &'a dyn SectorCipher,
    /// Byte offset of the data segment on the device.
    pub data_offset: u64,
    /// Bytes the payload may hold.
    pub capacity: u64,
}

impl std::fmt::Debug for DriveTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveTarget")
            .field("data_offset", &self.data_offset)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<'a> DriveTarget<'a> {
    /// A payload writer positioned at payload offset `at` (reading back a partial sector there).
    pub fn writer_at(&self, at: u64) -> io::Result<PayloadWriter<'a>> {
        PayloadWriter::resume(self.device, self.cipher, self.data_offset, self.capacity, at)
    }
}

/// A `Write` of the plaintext payload onto the encrypted drive.
pub struct PayloadWriter<'a> {
    device: &'a dyn Device,
    cipher: &'a dyn SectorCipher,
    /// Byte offset of the data segment on the device.
    data_offset: u64,
    /// Bytes the payload may hold.
    capacity: u64,
    /// Payload offset of `buf[0]`, sector-aligned.
    buf_start: u64,
    /// Aligned in memory, so that its whole sectors can be written with direct I/O.
    buf: AlignedBuf,
    /// The thread writing full buffers with direct I/O, when the device has a direct descriptor.
    direct: Option<DirectWriter>,
}

impl std::fmt::Debug for PayloadWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadWriter")
            .field("data_offset", &self.data_offset)
            .field("capacity", &self.capacity)
            .field("position", &self.position())
            .finish()
    }
}

impl<'a> PayloadWriter<'a> {
    /// A writer at the start of the payload.
    pub fn new(
        device: &'a dyn Device,
        cipher: &'a dyn SectorCipher,
        data_offset: u64,
        capacity: u64,
    ) -> Self {
        PayloadWriter {
            device,
            cipher,
            data_offset,
            capacity: capacity / SECTOR * SECTOR,
            buf_start: 0,
            buf: AlignedBuf::new(CHUNK + SECTOR as usize),
            direct: device
                .direct_handle()
                .map(|f| DirectWriter::start(f, CHUNK + SECTOR as usize)),
        }
    }

    /// A writer that continues at payload offset `at`, reading back the sector that holds it.
    pub fn resume(
        device: &'a dyn Device,
        cipher: &'a dyn SectorCipher,
        data_offset: u64,
        capacity: u64,
        at: u64,
    ) -> io::Result<Self> {
        let mut w = Self::new(device, cipher, data_offset, capacity);
        if at > w.capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "resume offset {at} lies past the payload's end ({} bytes)",
                    w.capacity
                ),
            ));
        }
        w.buf_start = at / SECTOR * SECTOR;
        let head = (at - w.buf_start) as usize;
        if head > 0 {
            let mut sector = vec![0u8; SECTOR as usize];
            device.read_at(&mut sector, data_offset + w.buf_start)?;
            cipher.decrypt(w.buf_start, &mut sector)?;
            w.buf.push(&sector[..head]);
        }
        Ok(w)
    }

    /// The payload offset of the next byte.
    pub fn position(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    /// Writes every whole sector gathered (they are encrypted as they come in, see [`PayloadWriter::write`]);
    /// keeps a partial last sector (plaintext) in the buffer.
    fn write_whole_sectors(&mut self) -> io::Result<()> {
        let whole = self.buf.len() / SECTOR as usize * SECTOR as usize;
        if whole == 0 {
            return Ok(());
        }
        let at = self.data_offset + self.buf_start;
        if let Some(direct) = &mut self.direct {
            // The full buffer goes to the writer thread; the partial last sector moves to the next one.
            let mut next = direct.take_buffer()?;
            next.push(&self.buf.as_slice()[whole..]);
            let mut full = std::mem::replace(&mut self.buf, next);
            full.truncate(whole);
            direct.submit(full, at)?;
        } else {
            self.device.write_at(&self.buf.as_slice()[..whole], at)?;
            self.device.start_writeback(at, whole as u64);
            self.buf.consume(whole);
        }
        self.buf_start += whole as u64;
        Ok(())
    }

    /// Makes everything written so far durable; a partial last sector is written padded with zeros (and
    /// written again, complete, later).
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if !self.buf.is_empty() {
            let mut sector = vec![0u8; SECTOR as usize];
            sector[..self.buf.len()].copy_from_slice(self.buf.as_slice());
            self.cipher.encrypt(self.buf_start, &mut sector)?;
            self.device.write_at(&sector, self.data_offset + self.buf_start)?;
        }
        self.device.sync()
    }
}

impl Write for PayloadWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.capacity - self.position();
        if room == 0 && !data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("the drive's payload is full ({} bytes)", self.capacity),
            ));
        }
        let n = data.len().min(room.min(usize::MAX as u64) as usize);
        // The buffer holds whole sectors, already encrypted, then at most one partial sector of plaintext
        // (less than CHUNK bytes in all between calls). Whole sectors of `data` are encrypted straight into
        // the buffer (no copy of the plaintext first); bytes that complete or start a partial sector are
        // copied, and a sector they complete is encrypted where it lies.
        let sector = SECTOR as usize;
        let mut rest = &data[..n];
        while !rest.is_empty() {
            let len = self.buf.len();
            let partial = len % sector;
            if partial > 0 || rest.len() < sector {
                let take = rest.len().min(sector - partial);
                self.buf.push(&rest[..take]);
                rest = &rest[take..];
                if self.buf.len().is_multiple_of(sector) {
                    let at = self.buf.len() - sector;
                    self.cipher
                        .encrypt(self.buf_start + at as u64, &mut self.buf.as_mut_slice()[at..])?;
                }
            } else {
                let fit = (CHUNK - len) / sector * sector;
                let k = (rest.len() / sector * sector).min(fit);
                self.buf.set_len(len + k);
                self.cipher.encrypt_into(
                    self.buf_start + len as u64,
                    &rest[..k],
                    &mut self.buf.as_mut_slice()[len..],
                )?;
                rest = &rest[k..];
            }
            if self.buf.len() >= CHUNK {
                self.write_whole_sectors()?;
            }
        }
        Ok(n)
    }

    /// Writes whole sectors out; use [`PayloadWriter::sync`] for durability.
    fn flush(&mut self) -> io::Result<()> {
        self.write_whole_sectors()?;
        match &mut self.direct {
            Some(direct) => direct.drain(),
            None => Ok(()),
        }
    }
}

/// A `Read` of the plaintext payload: reads large runs of sectors, decrypts them, serves the bytes.
pub struct PayloadReader<'a> {
    target: DriveTarget<'a>,
    /// Payload offset of `buf[0]`.
    buf_start: u64,
    buf: AlignedBuf,
    pos: usize,
    /// Direct reads ahead, when the device has a direct descriptor (started at the first read).
    ahead: Option<DirectReader>,
    /// A direct read failed: every read goes through the ordinary descriptor from then on.
    direct_refused: bool,
    /// Bytes of the next filled buffer to pass over (a seek into the middle of a sector).
    skip: usize,
}

impl std::fmt::Debug for PayloadReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadReader")
            .field("position", &self.position())
            .finish()
    }
}

impl<'a> PayloadReader<'a> {
    /// A reader from the start of the payload.
    pub fn new(target: DriveTarget<'a>) -> Self {
        PayloadReader {
            target,
            buf_start: 0,
            buf: AlignedBuf::new(0),
            pos: 0,
            ahead: None,
            direct_refused: false,
            skip: 0,
        }
    }

    /// Whether the reader fell back from direct reads to the ordinary descriptor after one failed.
    pub fn direct_refused(&self) -> bool {
        self.direct_refused
    }

    /// The payload offset of the next byte.
    pub fn position(&self) -> u64 {
        self.buf_start + self.pos as u64
    }

    /// Reads and decrypts the `n` bytes at payload offset `next` into `buf`.
    fn fill(&mut self, next: u64, n: usize) -> io::Result<()> {
        let cap = self.target.capacity / SECTOR * SECTOR;
        let device_at = self.target.data_offset + next;
        if self.ahead.is_none() && !self.direct_refused {
            self.ahead = self
                .target
                .device
                .direct_handle()
                .map(|f| DirectReader::start(f, device_at, self.target.data_offset + cap, CHUNK));
        }
        let mut direct_read = false;
        if let Some(ahead) = &mut self.ahead {
            let used = std::mem::replace(&mut self.buf, AlignedBuf::new(0));
            // The empty placeholder of the first read is not a buffer to read into.
            match ahead.next(Some(used).filter(|b| b.capacity() > 0)) {
                Ok(buf) => {
                    self.buf = buf;
                    debug_assert_eq!(self.buf.len(), n);
                    direct_read = true;
                }
                // A direct read refused (a file system or device that opens with O_DIRECT but will not
                // read that way, EINVAL) or failed: this chunk and the rest are read through the ordinary
                // descriptor, where a real read error shows again and is returned.
                Err(_) => {
                    self.ahead = None;
                    self.direct_refused = true;
                }
            }
        }
        if !direct_read {
            if self.buf.capacity() < n {
                self.buf = AlignedBuf::new(CHUNK);
            }
            self.buf.set_len(n);
            // The chunk after this one is read ahead while this one is decrypted and consumed.
            let after = next + n as u64;
            self.target
                .device
                .prefetch(self.target.data_offset + after, (cap - after).min(CHUNK as u64));
            self.target.device.read_at(self.buf.as_mut_slice(), device_at)?;
        }
        self.target.cipher.decrypt(next, self.buf.as_mut_slice())
    }
}

impl std::io::Read for PayloadReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            let next = self.buf_start + self.buf.len() as u64;
            let cap = self.target.capacity / SECTOR * SECTOR;
            let n = cap.saturating_sub(next).min(CHUNK as u64) as usize;
            if n == 0 || self.skip >= n {
                return Ok(0);
            }
            self.fill(next, n)?;
            self.buf_start = next;
            self.pos = std::mem::take(&mut self.skip);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf.as_slice()[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Seeking within the buffered chunk moves in it; elsewhere the next read starts over at the sector that
/// holds the new position (read ahead from there with direct I/O where the device allows it).
impl Seek for PayloadReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let cap = self.target.capacity / SECTOR * SECTOR;
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => cap.checked_add_signed(d),
            SeekFrom::Current(d) => self.position().checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the payload start"))?;
        let end = self.buf_start + self.buf.len() as u64;
        if target >= self.buf_start && target < end {
            self.pos = (target - self.buf_start) as usize;
        } else {
            // The read-ahead ran from the old position: drop it (its thread ends) and the buffer.
            self.ahead = None;
            self.buf = AlignedBuf::new(0);
            self.buf_start = target / SECTOR * SECTOR;
            self.pos = 0;
            self.skip = (target - self.buf_start) as usize;
        }
        Ok(target)
    }
}

/// Stand-ins for tests of code that writes or reads payloads: a toy cipher and an in-memory device that can
/// be told to fail (the fault-injectable device). Not for real drives.
pub mod testing {
    use super::*;
    use std::sync::Mutex;

    /// A toy cipher for tests of the framing: XOR with a byte derived from the sector's offset.
    pub struct XorCipher;

    impl SectorCipher for XorCipher {
        fn encrypt(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            for (i, sector) in buf.chunks_mut(SECTOR as usize).enumerate() {
                let k = ((offset / SECTOR + i as u64) % 251) as u8 ^ 0x5a;
                sector.iter_mut().for_each(|b| *b ^= k);
            }
            Ok(())
        }
        fn decrypt(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.encrypt(offset, buf)
        }
    }

    /// A device in memory that can be told to fail writes past some offset.
    #[derive(Debug, Default)]
    pub struct MemDevice {
        pub bytes: Mutex<Vec<u8>>,
        /// Writes that reach past this device offset fail ("injected write error").
        pub fail_from: Option<u64>,
    }

    impl Device for MemDevice {
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            if self.fail_from.is_some_and(|f| offset + buf.len() as u64 > f) {
                return Err(io::Error::other("injected write error"));
            }
            let mut b = self.bytes.lock().expect("not poisoned");
            let end = offset as usize + buf.len();
            if b.len() < end {
                b.resize(end, 0);
            }
            b[offset as usize..end].copy_from_slice(buf);
            Ok(())
        }
        /// Reads zeros past what was written, like a sparse image file.
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let b = self.bytes.lock().expect("not poisoned");
            buf.fill(0);
            let from = (offset as usize).min(b.len());
            let to = (offset as usize + buf.len()).min(b.len());
            buf[..to - from].copy_from_slice(&b[from..to]);
            Ok(())
        }
        fn sync(&self) -> io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{MemDevice, XorCipher};
    use super::*;
    use std::sync::Mutex;

    fn plain(dev: &MemDevice, data_offset: usize, len: usize) -> Vec<u8> {
        let mut b = dev.bytes.lock().unwrap()[data_offset..].to_vec();
        b.resize(len.div_ceil(4096) * 4096, 0);
        XorCipher.decrypt(0, &mut b).unwrap();
        b.truncate(len);
        b
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn stream_round_trips_through_sync_and_resume() {
        let dev = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: None,
        };
        let data = pattern(20_000_000 + 123);
        let cut = 9_000_001;
        let mut w = PayloadWriter::new(&dev, &XorCipher, 65536, 1 << 30);
        w.write_all(&data[..cut]).unwrap();
        w.sync().unwrap();
        drop(w); // a crash right after the journal recorded `cut`
        let mut w = PayloadWriter::resume(&dev, &XorCipher, 65536, 1 << 30, cut as u64).unwrap();
        w.write_all(&data[cut..]).unwrap();
        w.sync().unwrap();
        assert_eq!(plain(&dev, 65536, data.len()), data);
        assert!(
            dev.bytes.lock().unwrap()[..65536].iter().all(|&b| b == 0),
            "nothing before the data offset"
        );
    }

    /// Writes of every size around a sector (each completing, starting or spanning partial sectors, some
    /// whole sectors encrypted straight into the buffer) store the same bytes as one write.
    #[test]
    fn writes_in_pieces_of_any_size_store_the_stream() {
        let dev = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: None,
        };
        let data = pattern(19_000_000);
        let mut w = PayloadWriter::new(&dev, &XorCipher, 8192, 1 << 30);
        let sizes = [
            1,
            511,
            4095,
            4096,
            4097,
            3 << 20,
            12_288,
            100,
            9 << 20,
            8191,
            8 << 20,
        ];
        let mut at = 0;
        for n in sizes.iter().cycle() {
            if at == data.len() {
                break;
            }
            let end = (at + n).min(data.len());
            w.write_all(&data[at..end]).unwrap();
            at = end;
        }
        w.sync().unwrap();
        assert!(plain(&dev, 8192, data.len()) == data);
    }

    #[test]
    fn the_reader_reads_what_the_writer_wrote() {
        use std::io::Read;
        let dev = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: None,
        };
        let data = pattern(10_000_000);
        let mut w = PayloadWriter::new(&dev, &XorCipher, 4096, data.len() as u64 + 8192);
        w.write_all(&data).unwrap();
        w.sync().unwrap();
        let target = DriveTarget {
            device: &dev,
            cipher: &XorCipher,
            data_offset: 4096,
            capacity: (data.len() as u64).div_ceil(4096) * 4096,
        };
        let mut got = vec![0u8; data.len()];
        PayloadReader::new(target).read_exact(&mut got).unwrap();
        assert!(got == data);
    }

    #[test]
    fn a_full_payload_and_a_failing_device_are_errors() {
        let dev = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: None,
        };
        let mut w = PayloadWriter::new(&dev, &XorCipher, 0, 10_000);
        let e = w.write_all(&pattern(9000)).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::StorageFull,
            "capacity rounds down to 8192"
        );
        let dev = MemDevice {
            bytes: Mutex::new(vec![]),
            fail_from: Some(1 << 20),
        };
        let mut w = PayloadWriter::new(&dev, &XorCipher, 0, 1 << 30);
        let r = w.write_all(&pattern(16 << 20)).and_then(|_| w.sync());
        assert!(r.unwrap_err().to_string().contains("injected"));
    }

    #[test]
    fn the_reader_seeks_anywhere_and_reads_on() {
        use std::io::Read;
        let dev = MemDevice::default();
        let data = pattern(20_000_000);
        let mut w = PayloadWriter::new(&dev, &XorCipher, 8192, 1 << 30);
        w.write_all(&data).unwrap();
        w.sync().unwrap();
        let target = DriveTarget {
            device: &dev,
            cipher: &XorCipher,
            data_offset: 8192,
            capacity: (data.len() as u64).div_ceil(4096) * 4096,
        };
        let mut r = PayloadReader::new(target);
        let mut got = vec![0u8; 5000];
        for at in [12_345_679u64, 100, 100 + 5000 + 7, 19_999_000, 0, 8_388_608 - 10] {
            let n = got.len().min(data.len() - at as usize);
            assert_eq!(r.seek(SeekFrom::Start(at)).unwrap(), at);
            r.read_exact(&mut got[..n]).unwrap();
            assert!(got[..n] == data[at as usize..at as usize + n], "at {at}");
        }
        r.seek(SeekFrom::Current(-5000)).unwrap();
        r.read_exact(&mut got).unwrap();
        assert!(got == data[8_388_608 - 10..8_388_608 + 4990]);
        assert!(r.seek(SeekFrom::Current(-(1i64 << 40))).is_err());
        r.seek(SeekFrom::End(1)).unwrap();
        assert_eq!(r.read(&mut got).unwrap(), 0, "past the end");
    }
}
