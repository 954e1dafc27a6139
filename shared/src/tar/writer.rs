//! Streaming tar writer: headers, content passed through unbuffered, padding, end-of-archive marker.

use std::io::{self, Read, Write};

use super::header::{encode_header, padded, BLOCK, END_OF_ARCHIVE_LEN};
use super::{EntryHeader, TarError};

const ZEROS: [u8; BLOCK as usize * 2] = [0; BLOCK as usize * 2];

/// Writes a pax tar stream into `W`. Content bytes go straight to `W` (no copy besides the caller's buffer),
/// so wrapping `W` in a `BufWriter` is the caller's choice.
#[derive(Debug)]
pub struct TarWriter<W: Write> {
    inner: W,
    offset: u64,
}

impl<W: Write> TarWriter<W> {
    /// Starts a new archive at offset 0.
    pub fn new(inner: W) -> Self {
        Self { inner, offset: 0 }
    }

    /// Continues an archive whose first `offset` bytes (a whole number of entries) are already written, as
    /// after a resumed copy; `offset` is only used for accounting and error messages.
    pub fn resume_at(inner: W, offset: u64) -> Self {
        Self { inner, offset }
    }

    /// Bytes written so far (headers, content, padding).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Writes one entry whose content is exactly `header.size` bytes read from `content`. Fails with
    /// [`TarError::SizeMismatch`] if `content` ends early; extra bytes in `content` are not read.
    pub fn append(&mut self, header: &EntryHeader, content: impl Read) -> Result<(), TarError> {
        let mut entry = self.begin_entry(header)?;
        let mut limited = content.take(header.size);
        let path = header.path.clone();
        io::copy(&mut limited, &mut entry).map_err(|source| TarError::Io {
            entry: path,
            offset: entry.offset(),
            source,
        })?;
        entry.finish()
    }

    /// Writes the headers of `header` and returns a `Write` handle that accepts exactly `header.size` content
    /// bytes; call [`EntryWriter::finish`] to check the length and write the padding.
    pub fn begin_entry(&mut self, header: &EntryHeader) -> Result<EntryWriter<'_, W>, TarError> {
        let bytes = encode_header(header)?;
        self.write_raw(&header.path, &bytes)?;
        Ok(EntryWriter {
            tar: self,
            path: header.path.clone(),
            declared: header.size,
            written: 0,
        })
    }

    /// Writes the end-of-archive marker, flushes, and returns the sink.
    pub fn finish(mut self) -> Result<W, TarError> {
        self.write_raw("end of archive", &ZEROS[..END_OF_ARCHIVE_LEN as usize])?;
        let offset = self.offset;
        self.inner.flush().map_err(|source| TarError::Io {
            entry: "end of archive".into(),
            offset,
            source,
        })?;
        Ok(self.inner)
    }

    /// The sink, without writing the end-of-archive marker (for a copy that will be resumed).
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn write_raw(&mut self, entry: &str, bytes: &[u8]) -> Result<(), TarError> {
        self.inner.write_all(bytes).map_err(|source| TarError::Io {
            entry: entry.to_string(),
            offset: self.offset,
            source,
        })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

/// The content of one entry being written; refuses bytes beyond the declared size.
#[derive(Debug)]
pub struct EntryWriter<'a, W: Write> {
    tar: &'a mut TarWriter<W>,
    path: String,
    declared: u64,
    written: u64,
}

impl<W: Write> EntryWriter<'_, W> {
    /// Content bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.declared - self.written
    }

    /// Archive offset of the next content byte.
    pub fn offset(&self) -> u64 {
        self.tar.offset
    }

    /// Checks that all declared bytes were written and pads the entry to a whole block.
    pub fn finish(self) -> Result<(), TarError> {
        if self.written != self.declared {
            return Err(TarError::SizeMismatch {
                path: self.path,
                declared: self.declared,
                written: self.written,
            });
        }
        let pad = (padded(self.declared) - self.declared) as usize;
        self.tar.write_raw(&self.path, &ZEROS[..pad])
    }
}

impl<W: Write> Write for EntryWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.remaining() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tar entry {:?}: writing {} bytes would exceed the declared size {} ({} written)",
                    self.path,
                    buf.len(),
                    self.declared,
                    self.written
                ),
            ));
        }
        let n = self.tar.inner.write(buf)?;
        self.written += n as u64;
        self.tar.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tar.inner.flush()
    }
}
