//! Formatting a shipping drive: seedship's fixed LUKS2 layout (two 16 KiB header copies, one keyslot
//! area of 258048 bytes at 32 KiB, data from 16 MiB by default, 4096-byte sectors) and the volume key.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::hash::LuksHash;
use super::header::{self, BinHeader, HeaderCopy, BIN_LEN, HDR_SIZE, MAX_LABEL_LEN};
use super::kdf::{self, KeyslotKdf, Pbkdf};
use super::key::{random, VolumeKey};
use super::metadata::{self, Layout, Metadata, KEY_SIZE, SALT_LEN};
use super::volume::{LuksHeader, LuksVolume};
use super::{af, device_size, keyslot, LuksError};

/// Default data offset: 16 MiB, as cryptsetup.
pub const DEFAULT_DATA_OFFSET: u64 = 16 * 1024 * 1024;
/// Sector size of the data segment seedship writes.
pub const SECTOR_SIZE: u32 = 4096;
/// Where the single keyslot's area starts: right after the two header copies.
pub const KEYSLOT_AREA_OFFSET: u64 = 2 * HDR_SIZE;
/// Size of the keyslot area: the key material rounded up to 4 KiB (258048 bytes), as cryptsetup.
pub const KEYSLOT_AREA_SIZE: u64 = (af::split_len(KEY_SIZE, af::STRIPES) as u64).div_ceil(4096) * 4096;

/// Options for [`format()`]: what a new drive's header says.
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
    if !off.is_multiple_of(u64::from(SECTOR_SIZE)) || off < min || off > max {
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
            hash: LuksHash::Sha256,
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

/// [`format()`] with a given volume key (for tests that compare with `cryptsetup luksDump --dump-volume-key`).
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
        LuksHash::Sha256,
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
    if size < device_len {
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            let reason = format!("the device has {size} bytes, less than the {device_len} requested");
            return Err(LuksError::Layout { reason });
        }
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
    let header = LuksHeader::new(bin, meta, HeaderCopy::Primary, device_len.max(size));
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
