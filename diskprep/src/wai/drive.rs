//! The drive of a `prepimport` journal: a new target probed (its drive id: the LUKS2 label of an already
//! encrypted drive, a block device's serial, or one derived from the journal and the image path), formatted
//! with LUKS2 and a new recovery key or unlocked with the one given (`/bk:`), and the manifest slot it gets.

use super::journal::{DriveJournal, DriveRecord, Encryption, Replayed};
use super::request::Request;
use crate::prep::console::ConsoleUi;
use crate::prep::drive::{DriveInfo, DriveKind, SystemView};
use crate::prep::prepare::{PrepUi, DATA_OFFSET, MIN_DRIVE};
use anyhow::{bail, Context};
use seedship_shared::luks::{self, LuksError, LuksFormat, LuksHeader, LuksVolume, Pbkdf};
use seedship_shared::recovery::RecoveryKey;
use std::path::Path;
use zeroize::Zeroizing;

/// Describes a new target and finds its drive id: the LUKS2 label of an already encrypted drive, the serial
/// of a block device, or one derived from the journal and the image's path.
pub(super) fn probe_new(req: &Request, journal: &Path) -> anyhow::Result<(DriveInfo, String)> {
    let target = req
        .target
        .clone()
        .context("the first session of a drive needs the drive: /t:<device or image path> (or --target)")?;
    match (req.key.is_some(), req.format, req.encrypt) {
        (true, true, _) | (true, _, true) => bail!(
            "/bk: is for a drive that is already encrypted (written without formatting): leave out /format \
             and /encrypt, or leave out /bk: to format and encrypt the drive anew"
        ),
        (false, true, false) => bail!("/format needs /encrypt: seedship drives are always encrypted"),
        (false, false, _) => bail!(
            "the first session of a drive needs /format /encrypt (format and encrypt it) or /bk:@FILE (a drive \
             seedship encrypted earlier)"
        ),
        _ => {}
    }
    let info = SystemView::live()?.probe(&target)?;
    info.check_usable(MIN_DRIVE)?;
    let drive_id = if req.key.is_some() {
        let file = std::fs::File::open(&target).with_context(|| format!("opening {}", target.display()))?;
        match LuksHeader::read(&file) {
            Ok(h) => h.label().to_owned(),
            Err(e) => bail!(
                "{} is not a LUKS2 drive seedship formatted ({e}); to format and encrypt it, use /format \
                 /encrypt instead of /bk:",
                target.display()
            ),
        }
    } else {
        match (&info.serial, info.kind) {
            (Some(serial), DriveKind::BlockDevice) => serial.clone(),
            _ => derived_drive_id(journal, &target),
        }
    };
    Ok((info, drive_id))
}

/// [`probe_new`], and for an already encrypted drive the check that the key unlocks it.
pub(super) fn check_new(req: &Request, journal: &Path) -> anyhow::Result<(DriveInfo, String)> {
    let (info, drive_id) = probe_new(req, journal)?;
    if let Some(text) = &req.key {
        let key = RecoveryKey::parse(text).context("the recovery key given with /bk:")?;
        let file =
            std::fs::File::open(&info.path).with_context(|| format!("opening {}", info.path.display()))?;
        unlock(&file, &drive_id, &info.path, &key)?;
    }
    Ok((info, drive_id))
}

/// `SEED` and 12 hex digits of a BLAKE3 hash of the journal's and the image's absolute paths.
pub(super) fn derived_drive_id(journal: &Path, target: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let mut h = blake3::Hasher::new();
    h.update(b"seedship prepimport drive id v1\0");
    h.update(abs(journal).as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(abs(target).as_os_str().as_encoded_bytes());
    format!("SEED{}", h.finalize().to_hex()[..12].to_ascii_uppercase())
}

/// The manifest slot of a new drive: 1/2048 of its payload (WAImportExport reserves about 3 GB per 7 TB),
/// from 1 MiB to 128 MiB (the data centre reads manifests of up to 256 MiB; 128 MiB lists over a million
/// 4 MiB ranges), in whole sectors.
pub(super) fn manifest_slot(capacity: u64) -> u64 {
    (capacity / 2048).clamp(1 << 20, 128 << 20).div_ceil(4096) * 4096
}

pub(super) fn open_rw(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Unlocks the drive, naming a wrong key as such.
pub(super) fn unlock(
    file: &std::fs::File,
    drive: &str,
    target: &Path,
    key: &RecoveryKey,
) -> anyhow::Result<LuksVolume> {
    LuksVolume::open(file, key.passphrase()).map_err(|e| match e {
        LuksError::WrongKey { .. } => anyhow::anyhow!(
            "the recovery key does not unlock drive {drive} ({}); nothing was written",
            target.display()
        ),
        e => anyhow::anyhow!("drive {drive} ({}): {e}", target.display()),
    })
}

/// The first session's drive: formatted and encrypted with a new key, or an encrypted one unlocked with its
/// key. The journal records the drive (and key) before the header is written.
pub(super) fn set_up_drive(
    req: &Request,
    info: DriveInfo,
    drive_id: String,
    j: &mut DriveJournal,
) -> anyhow::Result<DriveRecord> {
    let target = info.path.clone();
    if let Some(text) = &req.key {
        let key = RecoveryKey::parse(text).context("the recovery key given with /bk:")?;
        let file = open_rw(&target)?;
        let volume = unlock(&file, &drive_id, &target, &key)?;
        let capacity = volume.payload_len() / 4096 * 4096;
        let d = DriveRecord {
            drive_id: drive_id.clone(),
            target,
            capacity,
            manifest_slot: manifest_slot(capacity),
            encryption: Encryption::AlreadyEncrypted,
            recovery_key: Zeroizing::new(key.as_str().to_owned()),
        };
        j.record_drive(&d)?;
        j.record_formatted(&drive_id)?;
        return Ok(d);
    }
    let mut ui = ConsoleUi::default();
    if !req.yes && !ui.confirm_format(&info, &drive_id)? {
        bail!(
            "formatting {} was not confirmed; nothing was written",
            target.display()
        );
    }
    let key = RecoveryKey::generate()?;
    let capacity = (info.size - DATA_OFFSET) / 4096 * 4096;
    let d = DriveRecord {
        drive_id: drive_id.clone(),
        target,
        capacity,
        manifest_slot: manifest_slot(capacity),
        encryption: Encryption::Encrypt,
        recovery_key: Zeroizing::new(key.as_str().to_owned()),
    };
    j.record_drive(&d)?;
    format_drive(&d, info.size, req.pbkdf)?;
    j.record_formatted(&drive_id)?;
    Ok(d)
}

pub(super) fn format_drive(d: &DriveRecord, size: u64, pbkdf: Pbkdf) -> anyhow::Result<()> {
    let key = RecoveryKey::parse(&d.recovery_key)?;
    let file = open_rw(&d.target)?;
    let mut format = LuksFormat::new(d.drive_id.clone());
    format.pbkdf = pbkdf;
    format.data_offset = DATA_OFFSET;
    luks::format(&file, size, key.passphrase(), &format)
        .with_context(|| format!("formatting drive {} ({})", d.drive_id, d.target.display()))?;
    Ok(())
}

/// A first session stopped between recording the drive and its header: formats it again with the recorded
/// key, or checks that the recorded key unlocks an already encrypted drive.
pub(super) fn finish_setup(req: &Request, state: &Replayed, j: &mut DriveJournal) -> anyhow::Result<()> {
    let d = state.drive.as_ref().expect("recorded");
    match d.encryption {
        Encryption::Encrypt => {
            let size = SystemView::live()?.probe(&d.target)?.size;
            format_drive(d, size, req.pbkdf)?;
        }
        Encryption::AlreadyEncrypted => {
            let key = RecoveryKey::parse(&d.recovery_key)?;
            unlock(&open_rw(&d.target)?, &d.drive_id, &d.target, &key)?;
        }
    }
    Ok(j.record_formatted(&d.drive_id)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_slot_is_a_small_share_in_whole_sectors() {
        assert_eq!(manifest_slot(64 << 20), 1 << 20);
        assert_eq!(manifest_slot(100 << 30), 50 << 20);
        assert_eq!(manifest_slot(4 << 40), 128 << 20);
    }

    #[test]
    fn derived_ids_differ_by_image() {
        let a = derived_drive_id(Path::new("/j/d1.jrn"), Path::new("/srv/d1.img"));
        assert!(a.starts_with("SEED") && a.len() == 16);
        assert_ne!(
            a,
            derived_drive_id(Path::new("/j/d1.jrn"), Path::new("/srv/d2.img"))
        );
    }
}
