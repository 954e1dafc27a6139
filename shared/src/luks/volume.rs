//! Formatting a drive, reading its header without a key, and the unlocked volume's sector crypto.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::crypt::XtsCipher;
use super::header::{self, BinHeader, HeaderCopy, BIN_LEN, HDR_SIZE, MAX_LABEL_LEN};
use super::io::{PayloadReader, PayloadWriter};
use super::kdf::{self, KeyslotKdf, Pbkdf, PbkdfHash};
use super::metadata::{self, Layout, Metadata, KEY_SIZE, SALT_LEN};
use super::{af, device_size, keyslot, LuksError, Source};

/// Default data offset: 16 MiB, as cryptsetup.
pub const DEFAULT_DATA_OFFSET: u64 = 16 * 1024 * 1024;
/// Sector size of the data segment seedship writes.
pub const SECTOR_SIZE: u32 = 4096;
/// Where the single keyslot's area starts: right after the two header copies.
pub const KEYSLOT_AREA_OFFSET: u64 = 2 * HDR_SIZE;
/// Size of the keyslot area: the key material rounded up to 4 KiB (258048 bytes), as cryptsetup.
pub const KEYSLOT_AREA_SIZE: u64 = (af::split_len(KEY_SIZE, af::STRIPES) as u64).div_ceil(4096) * 4096;

/// A 512-bit volume key. A secret: `Debug` is redacted and the bytes are zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct VolumeKey([u8; KEY_SIZE]);

impl VolumeKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, LuksError> {
        let mut k = [0u8; KEY_SIZE];
        random(&mut k)?;
        Ok(Self(k))
    }

    pub fn from_bytes(bytes: [u8; KEY_SIZE]) -> Self {
        Self(bytes)
    }

    /// The raw key: for handing to an independent implementation in tests or a recovery tool only.
    pub fn as_bytes(&self) -> &[u8; KEY_SIZE] {
        &self.0
    }
}

impl fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VolumeKey(<redacted>)")
    }
}

impl Drop for VolumeKey {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

fn random(buf: &mut [u8]) -> Result<(), LuksError> {
    getrandom::fill(buf).map_err(|e| LuksError::Random {
        reason: e.to_string(),
    })
}

/// Options for [`format`]: what a new drive's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksFormat {
    /// The drive id, stored as the LUKS2 label (at most 47 bytes, no NUL).
    pub label: String,
    /// The keyslot KDF.
    pub pbkdf: Pbkdf,
    /// Start of the encrypted data; a multiple of 4096 from 290816 up to 128 MiB + 32 KiB.
    pub data_offset: u64,
    /// PBKDF2-SHA256 iterations of the volume-key digest (cryptsetup's minimum is 1000).
    pub digest_iterations: u32,
}

impl LuksFormat {
    /// The defaults: Argon2id ([`Pbkdf::DEFAULT`]), 16 MiB data offset, 100000 digest iterations.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            pbkdf: Pbkdf::DEFAULT,
            data_offset: DEFAULT_DATA_OFFSET,
            digest_iterations: 100_000,
        }
    }
}

/// Formats `file` (an image file or block device of `device_len` bytes) as a LUKS2 drive with a new
/// random volume key sealed under `passphrase`. A regular file shorter than `device_len` is extended
/// (sparse). Everything before the data offset is overwritten; the data area is left as it is.
pub fn format(
    file: &File,
    device_len: u64,
    passphrase: &[u8],
    opts: &LuksFormat,
) -> Result<LuksVolume, LuksError> {
    format_with_key(file, device_len, passphrase, opts, VolumeKey::generate()?)
}

fn check_format(device_len: u64, opts: &LuksFormat) -> Result<KeyslotKdf, LuksError> {
    let label = &opts.label;
    if label.len() > MAX_LABEL_LEN {
        return Err(LuksError::Label {
            label: label.clone(),
            reason: "longer than 47 bytes",
        });
    }
    if label.contains('\0') {
        return Err(LuksError::Label {
            label: label.clone(),
            reason: "contains a NUL character",
        });
    }
    let min = KEYSLOT_AREA_OFFSET + KEYSLOT_AREA_SIZE;
    let max = KEYSLOT_AREA_OFFSET + metadata::MAX_KEYSLOTS_SIZE;
    let off = opts.data_offset;
    if off % u64::from(SECTOR_SIZE) != 0 || off < min || off > max {
        let reason = format!("data offset {off} must be a multiple of 4096 between {min} and {max}");
        return Err(LuksError::Layout { reason });
    }
    if device_len < off + u64::from(SECTOR_SIZE) {
        let reason =
            format!("the device has {device_len} bytes, less than the data offset {off} + one sector");
        return Err(LuksError::Layout { reason });
    }
    if opts.digest_iterations < 1000 {
        return Err(LuksError::Layout {
            reason: "the digest needs at least 1000 PBKDF2 iterations".into(),
        });
    }
    let mut salt = vec![0u8; SALT_LEN];
    random(&mut salt)?;
    match opts.pbkdf {
        Pbkdf::Pbkdf2 { iterations } if iterations < 1000 => Err(LuksError::Kdf {
            reason: format!("{iterations} PBKDF2 iterations; cryptsetup needs at least 1000"),
        }),
        Pbkdf::Pbkdf2 { iterations } => Ok(KeyslotKdf::Pbkdf2 {
            hash: PbkdfHash::Sha256,
            iterations,
            salt,
        }),
        Pbkdf::Argon2id {
            time,
            memory_kib,
            parallel,
        } => {
            kdf::check_argon2(time, memory_kib, parallel)?;
            Ok(KeyslotKdf::Argon2 {
                id: true,
                time,
                memory_kib,
                lanes: parallel,
                salt,
            })
        }
    }
}

/// [`format`] with a given volume key (for tests that compare with `cryptsetup luksDump --dump-volume-key`).
pub fn format_with_key(
    file: &File,
    device_len: u64,
    passphrase: &[u8],
    opts: &LuksFormat,
    key: VolumeKey,
) -> Result<LuksVolume, LuksError> {
    let kdf = check_format(device_len, opts)?;
    let mut digest_salt = [0u8; SALT_LEN];
    random(&mut digest_salt)?;
    let mut digest = [0u8; 32];
    kdf::pbkdf2(
        PbkdfHash::Sha256,
        key.as_bytes(),
        &digest_salt,
        opts.digest_iterations,
        &mut digest,
    );
    let json_size = HDR_SIZE - BIN_LEN as u64;
    let json = metadata::build_json(&Layout {
        json_size,
        keyslots_size: opts.data_offset - KEYSLOT_AREA_OFFSET,
        area_offset: KEYSLOT_AREA_OFFSET,
        area_size: KEYSLOT_AREA_SIZE,
        data_offset: opts.data_offset,
        sector_size: SECTOR_SIZE,
        kdf: &kdf,
        digest_iterations: opts.digest_iterations,
        digest_salt: &digest_salt,
        digest: &digest,
    });
    let json = serde_json::to_vec(&json).map_err(|e| LuksError::Layout {
        reason: format!("JSON: {e}"),
    })?;
    if json.len() >= json_size as usize {
        return Err(LuksError::Layout {
            reason: format!("{}-byte JSON does not fit the JSON area", json.len()),
        });
    }
    let material = keyslot::seal(key.as_bytes(), passphrase, &kdf)?;
    let bin = BinHeader {
        hdr_size: HDR_SIZE,
        seqid: 1,
        label: opts.label.clone(),
        uuid: new_uuid()?,
        subsystem: String::new(),
    };
    let (mut salt1, mut salt2) = ([0u8; 64], [0u8; 64]);
    random(&mut salt1)?;
    random(&mut salt2)?;
    let primary = header::encode_copy(&bin, HeaderCopy::Primary, &salt1, &json);
    let secondary = header::encode_copy(&bin, HeaderCopy::Secondary, &salt2, &json);

    let size = device_size(file).map_err(|e| LuksError::io("reading the device size", e))?;
    if size < device_len && file.metadata().is_ok_and(|m| m.is_file()) {
        file.set_len(device_len)
            .map_err(|e| LuksError::io(format!("extending the image to {device_len} bytes"), e))?;
    }
    let write = |buf: &[u8], at: u64, what: &str| {
        file.write_all_at(buf, at)
            .map_err(|e| LuksError::io(format!("writing the {what} at offset {at}"), e))
    };
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < opts.data_offset {
        let n = (opts.data_offset - at).min(zeros.len() as u64) as usize;
        write(&zeros[..n], at, "wiped metadata area")?;
        at += n as u64;
    }
    write(&material, KEYSLOT_AREA_OFFSET, "keyslot")?;
    write(&secondary, HDR_SIZE, "secondary header")?;
    write(&primary, 0, "primary header")?;
    file.sync_data()
        .map_err(|e| LuksError::io("syncing the new header", e))?;
    let meta = Metadata::parse(&json, json_size).map_err(|reason| LuksError::Layout { reason })?;
    let header = LuksHeader {
        bin,
        meta,
        copy: HeaderCopy::Primary,
        device_len: device_len.max(size),
    };
    Ok(LuksVolume::new(header, key))
}

fn new_uuid() -> Result<String, LuksError> {
    let mut b = [0u8; 16];
    random(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// A drive's LUKS2 header, read without the key: label (drive id), UUID, data segment.
#[derive(Debug, Clone)]
pub struct LuksHeader {
    bin: BinHeader,
    meta: Metadata,
    copy: HeaderCopy,
    device_len: u64,
}

impl LuksHeader {
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
    fn new(header: LuksHeader, key: VolumeKey) -> Self {
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
            tried = true;
            let candidate = VolumeKey(keyslot::unseal(src, slot, passphrase)?);
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
        if offset % u64::from(ss) != 0 || len % u64::from(ss) != 0 {
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

    /// A streaming, seekable reader of the decrypted payload.
    pub fn reader<'a>(&'a self, file: &'a File) -> PayloadReader<'a> {
        PayloadReader::new(self, file)
    }

    /// A streaming writer of the payload from `payload_offset` (a sector multiple).
    pub fn writer<'a>(&'a self, file: &'a File, payload_offset: u64) -> Result<PayloadWriter<'a>, LuksError> {
        PayloadWriter::new(self, file, payload_offset)
    }
}
