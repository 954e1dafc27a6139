//! Reading a drive's header without a key ([`LuksHeader`]) and the unlocked volume ([`LuksVolume`]):
//! keyslot trial, sector encryption with the IV rule of the [`crate::luks`] module docs, sector I/O.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::crypt::XtsCipher;
use super::header::{self, BinHeader, HeaderCopy};
use super::key::VolumeKey;
use super::metadata::Metadata;
use super::payload::{Device, DriveTarget, PayloadReader, PayloadWriter};
use super::{keyslot, LuksError, Source};

/// A drive's LUKS2 header, read without the key: label (drive id), UUID, data segment.
#[derive(Debug, Clone)]
pub struct LuksHeader {
    bin: BinHeader,
    meta: Metadata,
    copy: HeaderCopy,
    device_len: u64,
}

impl LuksHeader {
    pub(crate) fn new(bin: BinHeader, meta: Metadata, copy: HeaderCopy, device_len: u64) -> Self {
        Self {
            bin,
            meta,
            copy,
            device_len,
        }
    }

    /// Reads and checks the header of `file` (see [`super::header`] for how a copy is chosen).
    pub fn read(file: &File) -> Result<Self, LuksError> {
        Self::read_from(file)
    }

    /// Reads the header from a drive image held in memory.
    pub fn from_bytes(image: &[u8]) -> Result<Self, LuksError> {
        Self::read_from(&super::MemImage(image))
    }

    pub(crate) fn read_from(src: &dyn Source) -> Result<Self, LuksError> {
        let good = header::read_best(src)?;
        let device_len = src
            .size()
            .map_err(|e| LuksError::io("reading the device size", e))?;
        let header = LuksHeader {
            bin: good.bin,
            meta: good.meta,
            copy: good.copy,
            device_len,
        };
        let seg = &header.meta.segment;
        let areas_end = 2 * header.bin.hdr_size + header.meta.keyslots_size;
        if device_len < areas_end {
            return Err(LuksError::Truncated {
                len: device_len,
                needed: areas_end,
                what: "the LUKS2 keyslots area",
            });
        }
        let data_end = seg
            .offset
            .saturating_add(seg.size.unwrap_or(u64::from(seg.sector_size)));
        if device_len < data_end {
            return Err(LuksError::Truncated {
                len: device_len,
                needed: data_end,
                what: "the data segment",
            });
        }
        Ok(header)
    }

    /// The drive id (LUKS2 label).
    pub fn label(&self) -> &str {
        &self.bin.label
    }

    pub fn uuid(&self) -> &str {
        &self.bin.uuid
    }

    /// Which header copy was used (secondary means the primary is damaged).
    pub fn copy(&self) -> HeaderCopy {
        self.copy
    }

    pub fn seqid(&self) -> u64 {
        self.bin.seqid
    }

    /// Byte offset of the encrypted payload on the device.
    pub fn data_offset(&self) -> u64 {
        self.meta.segment.offset
    }

    /// Encryption sector size of the payload.
    pub fn sector_size(&self) -> u32 {
        self.meta.segment.sector_size
    }

    /// Bytes of payload: the segment size, or for a dynamic segment the rest of the device in whole sectors.
    pub fn payload_len(&self) -> u64 {
        let seg = &self.meta.segment;
        seg.size.unwrap_or_else(|| {
            let rest = self.device_len.saturating_sub(seg.offset);
            rest - rest % u64::from(seg.sector_size)
        })
    }

    /// The name errors use: the label, or the UUID when the label is empty.
    pub fn drive(&self) -> String {
        if self.bin.label.is_empty() {
            format!("UUID={}", self.bin.uuid)
        } else {
            self.bin.label.clone()
        }
    }

    fn check_usable(&self) -> Result<(), LuksError> {
        let what = if let Some(req) = self.meta.requirements.first() {
            Some(format!("the mandatory requirement {req}"))
        } else {
            self.meta.segment.unsupported.clone()
        };
        match what {
            Some(what) => Err(LuksError::Unsupported {
                drive: self.drive(),
                what,
            }),
            None => Ok(()),
        }
    }
}

/// An unlocked drive: its header and the data key. Offsets are relative to the payload start.
pub struct LuksVolume {
    header: LuksHeader,
    key: VolumeKey,
    cipher: XtsCipher,
}

impl fmt::Debug for LuksVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuksVolume")
            .field("header", &self.header)
            .field("key", &self.key)
            .finish()
    }
}

impl LuksVolume {
    pub(crate) fn new(header: LuksHeader, key: VolumeKey) -> Self {
        let cipher = XtsCipher::new(key.as_bytes());
        Self { header, key, cipher }
    }

    /// Unlocks the drive in `file` with `passphrase` (the recovery key text).
    pub fn open(file: &File, passphrase: &[u8]) -> Result<Self, LuksError> {
        Self::open_from(file, passphrase)
    }

    pub(crate) fn open_from(src: &dyn Source, passphrase: &[u8]) -> Result<Self, LuksError> {
        let header = LuksHeader::read_from(src)?;
        header.check_usable()?;
        let mut unsupported = Vec::new();
        let mut tried = false;
        for slot in &header.meta.keyslots {
            let slot = match slot {
                Ok(s) => s,
                Err(reason) => {
                    unsupported.push(reason.clone());
                    continue;
                }
            };
            let Some(digest) = header.meta.digest_for(slot.id) else {
                unsupported.push(format!(
                    "keyslot {} without a digest for the data segment",
                    slot.id
                ));
                continue;
            };
            let candidate = match keyslot::unseal(src, slot, passphrase) {
                Ok(key) => VolumeKey::from_bytes(key),
                // KDF costs out of bounds: note it and try the next keyslot.
                Err(LuksError::Kdf { reason }) => {
                    unsupported.push(format!("keyslot {}: {reason}", slot.id));
                    continue;
                }
                Err(e) => return Err(e),
            };
            tried = true;
            if keyslot::digest_matches(digest, candidate.as_bytes()) {
                return Ok(Self::new(header, candidate));
            }
        }
        if tried {
            Err(LuksError::WrongKey {
                drive: header.drive(),
            })
        } else {
            let what = if unsupported.is_empty() {
                "no keyslot".to_owned()
            } else {
                unsupported.join("; ")
            };
            Err(LuksError::Unsupported {
                drive: header.drive(),
                what,
            })
        }
    }

    pub fn header(&self) -> &LuksHeader {
        &self.header
    }

    /// The drive id (LUKS2 label).
    pub fn label(&self) -> &str {
        self.header.label()
    }

    pub fn data_offset(&self) -> u64 {
        self.header.data_offset()
    }

    pub fn payload_len(&self) -> u64 {
        self.header.payload_len()
    }

    pub fn sector_size(&self) -> u32 {
        self.header.sector_size()
    }

    /// The volume key (a secret; for tests and recovery tools).
    pub fn volume_key(&self) -> &VolumeKey {
        &self.key
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<(u64, u64), LuksError> {
        let ss = self.sector_size();
        let len = len as u64;
        let drive = || self.header.drive();
        if !offset.is_multiple_of(u64::from(ss)) || !len.is_multiple_of(u64::from(ss)) {
            return Err(LuksError::Misaligned {
                drive: drive(),
                offset,
                len,
                sector_size: ss,
            });
        }
        let payload_len = self.payload_len();
        if offset.checked_add(len).is_none_or(|end| end > payload_len) {
            return Err(LuksError::OutOfRange {
                drive: drive(),
                offset,
                len,
                payload_len,
            });
        }
        let first_iv = self.header.meta.segment.iv_tweak.wrapping_add(offset / 512);
        Ok((first_iv, u64::from(ss) / 512))
    }

    /// Encrypts whole sectors in place; `payload_offset` is where `buf` goes in the payload.
    pub fn encrypt_sectors(&self, payload_offset: u64, buf: &mut [u8]) -> Result<(), LuksError> {
        let (iv, step) = self.check_range(payload_offset, buf.len())?;
        self.cipher.encrypt(buf, self.sector_size() as usize, iv, step);
        Ok(())
    }

    /// Encrypts whole sectors from `src` into `dst`, which sit at `payload_offset`.
    ///
    /// # Panics
    /// If `dst` is not as long as `src`.
    pub fn encrypt_sectors_into(
        &self,
        payload_offset: u64,
        src: &[u8],
        dst: &mut [u8],
    ) -> Result<(), LuksError> {
        let (iv, step) = self.check_range(payload_offset, src.len())?;
        self.cipher
            .encrypt_into(src, dst, self.sector_size() as usize, iv, step);
        Ok(())
    }

    /// Decrypts whole sectors in place; the inverse of [`LuksVolume::encrypt_sectors`].
    pub fn decrypt_sectors(&self, payload_offset: u64, buf: &mut [u8]) -> Result<(), LuksError> {
        let (iv, step) = self.check_range(payload_offset, buf.len())?;
        self.cipher.decrypt(buf, self.sector_size() as usize, iv, step);
        Ok(())
    }

    /// Encrypts `buf` in place and writes it to the payload at `payload_offset`.
    pub fn write_sectors(&self, file: &File, payload_offset: u64, buf: &mut [u8]) -> Result<(), LuksError> {
        self.encrypt_sectors(payload_offset, buf)?;
        let at = self.data_offset() + payload_offset;
        file.write_all_at(buf, at)
            .map_err(|e| LuksError::io(format!("writing drive {} at offset {at}", self.header.drive()), e))
    }

    /// Reads the payload at `payload_offset` into `buf` and decrypts it.
    pub fn read_sectors(&self, file: &File, payload_offset: u64, buf: &mut [u8]) -> Result<(), LuksError> {
        self.check_range(payload_offset, buf.len())?;
        let at = self.data_offset() + payload_offset;
        file.read_exact_at(buf, at)
            .map_err(|e| LuksError::io(format!("reading drive {} at offset {at}", self.header.drive()), e))?;
        self.decrypt_sectors(payload_offset, buf)
    }

    /// The drive as a payload target: `device` holding this volume, decrypted by it.
    pub fn target<'a>(&'a self, device: &'a dyn Device) -> DriveTarget<'a> {
        DriveTarget {
            device,
            cipher: self,
            data_offset: self.data_offset(),
            capacity: self.payload_len(),
        }
    }

    /// A streaming, seekable reader of the decrypted payload in `file` (through the page cache; for reads
    /// of the medium itself, use [`DriveTarget`] over a [`super::DriveFile`]).
    pub fn reader<'a>(&'a self, file: &'a File) -> PayloadReader<'a> {
        PayloadReader::new(self.target(file))
    }

    /// A streaming writer of the payload in `file` from `payload_offset` (any offset written and synced
    /// before: a partial sector there is read back).
    pub fn writer<'a>(&'a self, file: &'a File, payload_offset: u64) -> Result<PayloadWriter<'a>, LuksError> {
        self.target(file).writer_at(payload_offset).map_err(|e| {
            LuksError::io(
                format!(
                    "starting to write drive {} at payload offset {payload_offset}",
                    self.header.drive()
                ),
                e,
            )
        })
    }
}
