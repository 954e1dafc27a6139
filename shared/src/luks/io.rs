//! Streaming adapters over an unlocked drive's payload: `Read + Seek` and `Write`.
//!
//! Both move whole sectors in chunks of [`CHUNK`] bytes (so encryption runs on every core) and hold at
//! most one chunk in memory. The writer keeps a partial last sector until [`PayloadWriter::finish`] pads
//! it with zeros; dropping a writer without `finish` loses what was not yet written (a tar stream always
//! ends on a 512-byte boundary, so the padding is past its end-of-archive blocks).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::{LuksError, LuksVolume};

/// Bytes moved per read or write of the device.
pub const CHUNK: usize = 4 << 20;

/// Reads the decrypted payload; created by [`LuksVolume::reader`].
pub struct PayloadReader<'a> {
    volume: &'a LuksVolume,
    file: &'a File,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> PayloadReader<'a> {
    pub(crate) fn new(volume: &'a LuksVolume, file: &'a File) -> Self {
        Self {
            volume,
            file,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    fn fill(&mut self) -> Result<(), LuksError> {
        let ss = u64::from(self.volume.sector_size());
        let start = self.pos - self.pos % ss;
        let len = (self.volume.payload_len() - start).min(CHUNK as u64) as usize;
        self.buf.resize(len, 0);
        self.buf_start = start;
        let res = self.volume.read_sectors(self.file, start, &mut self.buf);
        if res.is_err() {
            self.buf.clear();
        }
        res
    }
}

impl Read for PayloadReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.volume.payload_len() || out.is_empty() {
            return Ok(0);
        }
        let end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos >= end {
            self.fill().map_err(io::Error::other)?;
        }
        let from = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - from);
        out[..n].copy_from_slice(&self.buf[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PayloadReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.volume.payload_len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the payload start"))?;
        Ok(self.pos)
    }
}

/// Writes the payload from a sector-aligned offset; created by [`LuksVolume::writer`].
pub struct PayloadWriter<'a> {
    volume: &'a LuksVolume,
    file: &'a File,
    /// Payload offset where `buf[0]` goes.
    next: u64,
    buf: Vec<u8>,
}

impl<'a> PayloadWriter<'a> {
    pub(crate) fn new(
        volume: &'a LuksVolume,
        file: &'a File,
        payload_offset: u64,
    ) -> Result<Self, LuksError> {
        // Validate the start offset the same way sector I/O does.
        volume.encrypt_sectors(payload_offset, &mut [])?;
        Ok(Self {
            volume,
            file,
            next: payload_offset,
            buf: Vec::with_capacity(CHUNK),
        })
    }

    /// Payload offset of the next byte written.
    pub fn position(&self) -> u64 {
        self.next + self.buf.len() as u64
    }

    fn write_out(&mut self, whole: usize) -> Result<(), LuksError> {
        if whole == 0 {
            return Ok(());
        }
        let mut chunk: Vec<u8> = self.buf.drain(..whole).collect();
        self.volume.write_sectors(self.file, self.next, &mut chunk)?;
        self.next += whole as u64;
        Ok(())
    }

    /// Writes everything, padding the last sector with zeros; returns the payload offset after it.
    pub fn finish(mut self) -> Result<u64, LuksError> {
        let ss = self.volume.sector_size() as usize;
        let padded = self.buf.len().div_ceil(ss) * ss;
        self.buf.resize(padded, 0);
        self.write_out(padded)?;
        Ok(self.next)
    }
}

impl Write for PayloadWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.volume.payload_len().saturating_sub(self.position());
        if room == 0 && !data.is_empty() {
            let e = LuksError::OutOfRange {
                drive: self.volume.header().drive(),
                offset: self.position(),
                len: data.len() as u64,
                payload_len: self.volume.payload_len(),
            };
            return Err(io::Error::new(io::ErrorKind::StorageFull, e));
        }
        let n = data.len().min(CHUNK - self.buf.len()).min(room as usize);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.write_out(CHUNK).map_err(io::Error::other)?;
        }
        Ok(n)
    }

    /// Writes the whole sectors buffered so far (a partial last sector stays buffered).
    fn flush(&mut self) -> io::Result<()> {
        let ss = self.volume.sector_size() as usize;
        let whole = self.buf.len() - self.buf.len() % ss;
        self.write_out(whole).map_err(io::Error::other)
    }
}
