//! LUKS2 shipping-drive volumes: a writer and reader compatible with cryptsetup 2.6, in pure Rust.
//!
//! A shipping drive (block device or image file) is one LUKS2 volume (DESIGN.md, "Drive layout"):
//! two header copies of 16 KiB ([`header`]), one `luks2` keyslot whose passphrase is the drive's
//! [`crate::recovery::RecoveryKey`] ([`keyslot`]), a PBKDF2-SHA256 digest of the 512-bit volume key bound
//! to the keyslot and the segment, and one `crypt` segment from the data offset (16 MiB by default) to
//! the end of the device, `aes-xts-plain64` with 4096-byte sectors. The LUKS2 label is the drive id, so
//! [`LuksHeader::read`] shows it without the key. docs/drive-format-luks2.md lists every on-disk choice.
//!
//! API: [`format()`] / [`format_with_key`] write a new volume and return the unlocked [`LuksVolume`];
//! [`LuksVolume::open`] unlocks an existing one (primary header, else the secondary, as cryptsetup);
//! [`LuksVolume::encrypt_sectors`] / [`LuksVolume::decrypt_sectors`] work in place on whole sectors
//! addressed relative to the payload (the decrypted data area). [`payload`] holds the one streaming reader
//! (`Read + Seek`) and writer (`Write`, resumable at any synced offset) of a drive's payload, over any
//! [`Device`] (an image or block device through [`DriveFile`], with `O_DIRECT` and its fallback, [`direct`];
//! an in-memory device that fails on demand for tests, [`payload::testing`]); [`LuksVolume::reader`] and
//! [`LuksVolume::writer`] are shortcuts over an open file.
//!
//! **The IV rule.** dm-crypt's `plain64` IV is the little-endian 64-bit sector number, and that number
//! counts 512-byte sectors unless the table sets `iv_large_sectors`. In the kernel
//! (`drivers/md/dm-crypt.c`, `crypt_convert_block_skcipher`) `dmreq->iv_sector = ctx->cc_sector` and
//! only `if (test_bit(CRYPT_IV_LARGE_SECTORS, ...)) dmreq->iv_sector >>= cc->sector_shift`; `cc_sector`
//! is the 512-byte sector within the dm device plus the table's `iv_offset`. cryptsetup sets
//! `CRYPT_ACTIVATE_IV_LARGE_SECTORS` only from the `--iv-large-sectors` option, documented "Only for
//! plain" (`src/utils_luks.c`), and LUKS2 activation passes the segment's `iv_tweak` as `iv_offset`.
//! cryptsetup's own userspace path agrees: `crypt_storage_wrapper` passes `iv_start + (offset >> 9)`
//! and `lib/crypto_backend/crypto_storage.c` shifts it only when `large_iv` is set. So the 4096-byte
//! sector at payload byte offset `o` is encrypted with XTS tweak `iv_tweak + o / 512` (IVs step by 8).
//! The integration tests check this against an independent AES-XTS (Python `cryptography`).
//!
//! Hostile input: every size read from a header is bounded before use (header copy ≤ 4 MiB, keyslots
//! area ≤ 128 MiB and inside the device, key material = 64 × 4000 bytes, Argon2 memory ≤ 4 GiB), and no
//! input panics; problems come back as a [`LuksError`] naming the drive (label, else UUID).

pub mod af;
pub mod crypt;
mod device;
pub mod direct;
mod format;
pub mod hash;
pub mod header;
pub mod kdf;
mod key;
pub mod keyslot;
pub mod metadata;
pub mod payload;
mod volume;
#[cfg(target_arch = "x86_64")]
mod xts_vaes;

use std::fs::File;
use std::os::unix::fs::FileExt;

pub use direct::DriveFile;
pub use format::{
    format, format_with_key, LuksFormat, DEFAULT_DATA_OFFSET, KEYSLOT_AREA_OFFSET, KEYSLOT_AREA_SIZE,
    SECTOR_SIZE,
};
pub use header::HeaderCopy;
pub use kdf::Pbkdf;
pub use key::VolumeKey;
pub use payload::{Device, DriveTarget, PayloadReader, PayloadWriter, SectorCipher};
pub use volume::{LuksHeader, LuksVolume};

/// Everything that can go wrong reading or writing a LUKS2 drive.
#[derive(Debug, thiserror::Error)]
pub enum LuksError {
    #[error("I/O error while {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the drive image is {len} bytes, shorter than {what} ({needed} bytes): it was cut short or is not \
         a complete seedship drive"
    )]
    Truncated {
        len: u64,
        needed: u64,
        what: &'static str,
    },
    #[error("no LUKS2 header found (neither header copy has the LUKS2 magic): this is not a seedship drive")]
    NotLuks,
    #[error(
        "both LUKS2 header copies are damaged (primary: {primary}; secondary: {secondary}); the drive \
         cannot be unlocked without a header backup"
    )]
    HeaderDamaged { primary: String, secondary: String },
    #[error("drive {drive} uses {what}, which seedship does not support (it uses aes-xts-plain64 with a 512-bit key and pbkdf2/argon2 keyslots)")]
    Unsupported { drive: String, what: String },
    #[error(
        "the key does not unlock drive {drive}: give that drive's 48-digit recovery key (its line in the job's \
         keys.tsv, e.g. with --key-file)"
    )]
    WrongKey { drive: String },
    #[error("drive id {label:?} cannot be a LUKS2 label: {reason}")]
    Label { label: String, reason: &'static str },
    #[error("cannot format the drive: {reason}")]
    Layout { reason: String },
    #[error("key derivation failed: {reason}")]
    Kdf { reason: String },
    #[error("the operating system's random source failed: {reason}")]
    Random { reason: String },
    #[error(
        "payload range {offset}+{len} of drive {drive} is not whole {sector_size}-byte sectors: callers must \
         read and write the payload in whole sectors"
    )]
    Misaligned {
        drive: String,
        offset: u64,
        len: u64,
        sector_size: u32,
    },
    #[error(
        "payload range {offset}+{len} lies beyond the end of drive {drive}'s {payload_len}-byte payload"
    )]
    OutOfRange {
        drive: String,
        offset: u64,
        len: u64,
        payload_len: u64,
    },
}

impl LuksError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        LuksError::Io {
            action: action.into(),
            source,
        }
    }
}

/// Something a header can be read from: a file or device, or (for tests) bytes in memory.
pub(crate) trait Source {
    fn size(&self) -> std::io::Result<u64>;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

/// The size of a regular file or block device.
pub(crate) fn device_size(file: &File) -> std::io::Result<u64> {
    let meta = file.metadata()?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    use std::io::Seek;
    let mut f = file;
    let end = f.seek(std::io::SeekFrom::End(0))?;
    f.seek(std::io::SeekFrom::Start(0))?;
    Ok(end)
}

impl Source for File {
    fn size(&self) -> std::io::Result<u64> {
        device_size(self)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

/// A drive image held in memory.
pub(crate) struct MemImage<'a>(pub &'a [u8]);

impl Source for MemImage<'_> {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.0.len() as u64)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| std::io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Multiplication by x in GF(2^128) with the XTS (little-endian) convention.
fn gf_double(t: u128) -> u128 {
    let carry = (t >> 127) as u8;
    (t << 1) ^ if carry == 1 { 0x87 } else { 0 }
}
