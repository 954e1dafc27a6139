//! Target drives: what a path is (a whole block device or an image file), what the operator is shown before
//! formatting (model, serial, size) and the refusals that protect everything that is not a shipping drive.
//!
//! A block device is described from sysfs (`/sys/dev/block/MAJ:MIN`): size, model, serial; it is refused when
//! it is a partition, the disk holding the root filesystem (directly, through a partition, or under
//! device-mapper or md), mounted, used as swap, or held by another kernel device. An image file stands for a
//! drive in tests and in the demo; it gets a drive id derived from the job and its path,
//! since it has no hardware serial.
//! Everything the checks read is behind [`SystemView`] so the refusals can be tested on fake trees.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What kind of target a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveKind {
    /// A whole disk such as /dev/sdb.
    BlockDevice,
    /// A regular file standing for a drive.
    ImageFile,
}

/// What the operator is shown before formatting, and what the checks found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveInfo {
    pub path: PathBuf,
    pub kind: DriveKind,
    /// Capacity in bytes.
    pub size: u64,
    pub model: Option<String>,
    /// The hardware serial without spaces (the Import/Export drive id); `None` for image files.
    pub serial: Option<String>,
    /// Why the drive must not be formatted; empty when it may be.
    pub refusals: Vec<String>,
}

impl DriveInfo {
    /// Refuses the drive when a check found a reason, or when it cannot hold `min_size` bytes.
    pub fn check_usable(&self, min_size: u64) -> Result<(), DriveError> {
        if let Some(reason) = self.refusals.first() {
            return Err(DriveError::Refused {
                path: self.path.clone(),
                reason: reason.clone(),
            });
        }
        if self.size < min_size {
            return Err(DriveError::TooSmall {
                path: self.path.clone(),
                size: self.size,
                min_size,
            });
        }
        Ok(())
    }
}

/// Errors about target drives.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither a block device nor a regular image file (use --create-image SIZE to make an image)")]
    NotADrive { path: PathBuf },
    #[error("refusing {path}: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error(
        "{path} holds {}, too small: a drive needs at least {} for its header and data (--create-image {})",
        seedship_shared::units::human(*size),
        seedship_shared::units::human(*min_size),
        min_size.div_ceil(1 << 20).to_string() + "M"
    )]
    TooSmall { path: PathBuf, size: u64, min_size: u64 },
    #[error(transparent)]
    BadSize(#[from] seedship_shared::units::SizeError),
    #[error(
        "{path} already exists; --create-image does not overwrite files (remove it, or pass it with --drive)"
    )]
    ImageExists { path: PathBuf },
}

/// The parts of the running system the checks read: sysfs, the mount table and the swap table.
#[derive(Debug, Clone)]
pub struct SystemView {
    pub sys_root: PathBuf,
    pub mountinfo: String,
    pub swaps: String,
}

impl SystemView {
    /// The live system.
    pub fn live() -> Result<Self, DriveError> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|source| DriveError::Io {
                path: p.into(),
                source,
            })
        };
        Ok(SystemView {
            sys_root: PathBuf::from("/sys"),
            mountinfo: read("/proc/self/mountinfo")?,
            swaps: std::fs::read_to_string("/proc/swaps").unwrap_or_default(),
        })
    }

    /// Describes `path` and runs every check.
    pub fn probe(&self, path: &Path) -> Result<DriveInfo, DriveError> {
        let io = |source| DriveError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.file_type().is_block_device() {
            let rdev = meta.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            self.probe_block(path, major, minor)
        } else if meta.file_type().is_file() {
            let mut info = DriveInfo {
                path: path.to_owned(),
                kind: DriveKind::ImageFile,
                size: meta.len(),
                model: Some("image file".to_owned()),
                serial: None,
                refusals: Vec::new(),
            };
            let dev = format!("{}:{}", libc::major(meta.dev()), libc::minor(meta.dev()));
            if self.mount_points(&[dev]).iter().any(|m| Path::new(m) == path) {
                info.refusals.push("it is mounted".to_owned());
            }
            Ok(info)
        } else {
            Err(DriveError::NotADrive {
                path: path.to_owned(),
            })
        }
    }

    /// Describes the block device `major:minor` found at `path`.
    pub fn probe_block(&self, path: &Path, major: u32, minor: u32) -> Result<DriveInfo, DriveError> {
        let dev = format!("{major}:{minor}");
        let link = self.sys_root.join("dev/block").join(&dev);
        let dir = std::fs::canonicalize(&link).map_err(|source| DriveError::Io {
            path: link.clone(),
            source,
        })?;
        let attr = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let size = attr("size").and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) * 512;
        let model = match (attr("device/vendor"), attr("device/model")) {
            (Some(v), Some(m)) => Some(format!("{v} {m}")),
            (v, m) => m.or(v),
        };
        let serial = attr("serial")
            .or_else(|| attr("device/serial"))
            .map(|s| s.chars().filter(|c| !c.is_whitespace()).collect::<String>());
        let mut info = DriveInfo {
            path: path.to_owned(),
            kind: DriveKind::BlockDevice,
            size,
            model,
            serial,
            refusals: Vec::new(),
        };
        if dir.join("partition").exists() {
            info.refusals
                .push("it is a partition; give the whole disk (for example /dev/sdb, not /dev/sdb1)".into());
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut devs = vec![dev];
        let mut holders = list_dir(&dir.join("holders"));
        for part in partitions(&dir) {
            if let Ok(d) = std::fs::read_to_string(part.join("dev")) {
                devs.push(d.trim().to_owned());
            }
            holders.extend(list_dir(&part.join("holders")));
        }
        if self.disks_under_root().contains(&dir) {
            info.refusals
                .push("it holds the running system's root filesystem".into());
        }
        let mounts = self.mount_points(&devs);
        if !mounts.is_empty() {
            info.refusals.push(format!(
                "it is mounted at {}; unmount it first",
                mounts.join(", ")
            ));
        }
        if self.swaps.lines().skip(1).any(|l| {
            l.split_whitespace().next().is_some_and(|s| {
                Path::new(s)
                    .file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(&name))
            })
        }) {
            info.refusals.push("it is in use as swap".into());
        }
        if !holders.is_empty() {
            info.refusals.push(format!(
                "it is in use by {} (device-mapper, md or LVM)",
                holders.join(", ")
            ));
        }
        Ok(info)
    }

    /// Mount points of filesystems on any of `devs` (`major:minor` strings).
    fn mount_points(&self, devs: &[String]) -> Vec<String> {
        self.mountinfo
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 4 && devs.iter().any(|d| d == f[2])).then(|| f[4].to_owned())
            })
            .collect()
    }

    /// The whole disks (sysfs directories) under the root filesystem, through partitions and stacked devices.
    fn disks_under_root(&self) -> Vec<PathBuf> {
        let root_dev = self.mountinfo.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 4 && f[4] == "/").then(|| f[2].to_owned())
        });
        let Some(dev) = root_dev else { return Vec::new() };
        let Ok(start) = std::fs::canonicalize(self.sys_root.join("dev/block").join(dev)) else {
            return Vec::new();
        };
        let mut disks = Vec::new();
        let mut todo = vec![start];
        while let Some(d) = todo.pop() {
            if disks.len() > 64 {
                break; // a cycle in a corrupt tree; what was found is enough
            }
            let whole = if d.join("partition").exists() {
                d.parent().map(Path::to_path_buf)
            } else {
                Some(d.clone())
            };
            let slaves = list_dir(&d.join("slaves"));
            if slaves.is_empty() {
                disks.extend(whole);
            }
            for s in slaves {
                if let Ok(p) = std::fs::canonicalize(d.join("slaves").join(s)) {
                    todo.push(p);
                }
            }
        }
        disks
    }
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn partitions(disk: &Path) -> Vec<PathBuf> {
    list_dir(disk)
        .into_iter()
        .map(|n| disk.join(n))
        .filter(|p| p.join("partition").exists())
        .collect()
}

/// Parses a size such as `4G`, `4GiB`, `500MB`, `2T` or a plain byte count (`seedship_shared::units`).
pub fn parse_size(text: &str) -> Result<u64, DriveError> {
    Ok(seedship_shared::units::parse_size(text)?)
}

/// Creates a sparse image file of `size` bytes (rounded down to whole 4096-byte sectors). Refuses to
/// overwrite an existing file.
pub fn create_image(path: &Path, size: u64) -> Result<(), DriveError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => DriveError::ImageExists {
                path: path.to_owned(),
            },
            _ => DriveError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    file.set_len(size / 4096 * 4096)
        .and_then(|_| file.sync_all())
        .map_err(|source| DriveError::Io {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake sysfs with disk sda (8:0, partition sda1 8:1) and disk sdb (8:16), dm-0 (253:0) on sda1.
    fn fake(mount_line: &str) -> (tempfile::TempDir, SystemView) {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        for (name, dev, size, serial) in [
            ("sda", "8:0", "2000", "SYS DISK 1"),
            ("sdb", "8:16", "7814037168", "WD-WCC4E1234567"),
        ] {
            let d = sys.join("block").join(name);
            fs::create_dir_all(d.join("holders")).unwrap();
            fs::create_dir_all(d.join("device")).unwrap();
            fs::write(d.join("size"), format!("{size}\n")).unwrap();
            fs::write(d.join("dev"), dev).unwrap();
            fs::write(d.join("device/model"), "Test Model 4TB\n").unwrap();
            fs::write(d.join("device/vendor"), "ATA\n").unwrap();
            fs::write(d.join("serial"), serial).unwrap();
            fs::create_dir_all(sys.join("dev/block")).unwrap();
            std::os::unix::fs::symlink(&d, sys.join("dev/block").join(dev)).unwrap();
        }
        let p = sys.join("block/sda/sda1");
        fs::create_dir_all(p.join("holders")).unwrap();
        fs::write(p.join("partition"), "1").unwrap();
        fs::write(p.join("dev"), "8:1").unwrap();
        std::os::unix::fs::symlink(&p, sys.join("dev/block/8:1")).unwrap();
        let dm = sys.join("block/dm-0");
        fs::create_dir_all(dm.join("slaves")).unwrap();
        std::os::unix::fs::symlink(&p, dm.join("slaves/sda1")).unwrap();
        std::os::unix::fs::symlink(&dm, sys.join("dev/block/253:0")).unwrap();
        let view = SystemView {
            sys_root: sys,
            mountinfo: mount_line.to_owned(),
            swaps: "Filename Type Size Used Priority\n".to_owned(),
        };
        (t, view)
    }

    #[test]
    fn a_free_disk_is_described_and_accepted() {
        let (_t, view) = fake("27 1 253:0 / / rw - ext4 /dev/mapper/root rw\n");
        let info = view.probe_block(Path::new("/dev/sdb"), 8, 16).unwrap();
        assert_eq!(info.size, 7814037168 * 512);
        assert_eq!(info.serial.as_deref(), Some("WD-WCC4E1234567"));
        assert_eq!(info.model.as_deref(), Some("ATA Test Model 4TB"));
        assert!(info.refusals.is_empty(), "{:?}", info.refusals);
        info.check_usable(1 << 30).unwrap();
    }

    #[test]
    fn the_system_disk_is_refused_through_device_mapper() {
        let (_t, view) = fake("27 1 253:0 / / rw - ext4 /dev/mapper/root rw\n");
        let info = view.probe_block(Path::new("/dev/sda"), 8, 0).unwrap();
        let e = info.check_usable(0).unwrap_err().to_string();
        assert!(e.contains("root filesystem"), "{e}");
    }

    #[test]
    fn mounted_partitions_and_partitions_themselves_are_refused() {
        let (_t, view) =
            fake("27 1 0:20 / / rw - overlay o rw\n40 27 8:1 / /mnt/data rw - ext4 /dev/sda1 rw\n");
        let info = view.probe_block(Path::new("/dev/sda"), 8, 0).unwrap();
        assert!(
            info.refusals.iter().any(|r| r.contains("mounted at /mnt/data")),
            "{:?}",
            info.refusals
        );
        let part = view.probe_block(Path::new("/dev/sda1"), 8, 1).unwrap();
        assert!(
            part.refusals.iter().any(|r| r.contains("partition")),
            "{:?}",
            part.refusals
        );
    }

    #[test]
    fn held_and_swap_devices_are_refused() {
        let (t, mut view) = fake("27 1 0:20 / / rw - overlay o rw\n");
        fs::create_dir_all(t.path().join("sys/block/sdb/holders/md0")).unwrap();
        let info = view.probe_block(Path::new("/dev/sdb"), 8, 16).unwrap();
        assert!(
            info.refusals.iter().any(|r| r.contains("md0")),
            "{:?}",
            info.refusals
        );
        view.swaps.push_str("/dev/sda1 partition 1024 0 -2\n");
        let info = view.probe_block(Path::new("/dev/sda"), 8, 0).unwrap();
        assert!(
            info.refusals.iter().any(|r| r.contains("swap")),
            "{:?}",
            info.refusals
        );
    }

    #[test]
    fn the_live_root_disk_is_refused() {
        // Read-only: probes whatever holds / on this machine and expects it to be refused.
        let view = SystemView::live().unwrap();
        let root_dev = view.mountinfo.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(4) == Some(&"/")).then(|| f[2].to_owned())
        });
        let Some((major, minor)) = root_dev.and_then(|d| {
            let (a, b) = d.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }) else {
            panic!("no root filesystem in /proc/self/mountinfo");
        };
        if major == 0 {
            return; // an overlay or tmpfs root has no disk to refuse; nothing to check here
        }
        let info = view.probe_block(Path::new("/dev/root"), major, minor).unwrap();
        assert!(
            !info.refusals.is_empty(),
            "the root disk was not refused: {info:?}"
        );
    }

    #[test]
    fn images_are_created_sparse_and_never_overwritten() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("drive1.img");
        create_image(&p, parse_size("64M").unwrap() + 100).unwrap();
        let info = SystemView::live().unwrap().probe(&p).unwrap();
        assert_eq!((info.kind, info.size), (DriveKind::ImageFile, 64 << 20));
        assert!(fs::metadata(&p).unwrap().blocks() < 64, "the image is sparse");
        assert!(matches!(
            create_image(&p, 1 << 20),
            Err(DriveError::ImageExists { .. })
        ));
        let e = info.check_usable(1 << 30).unwrap_err().to_string();
        assert!(e.contains("too small"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("500MiB").unwrap(), 500 << 20);
        assert_eq!(parse_size("2TB").unwrap(), 2 << 40);
        assert_eq!(parse_size("1073741824").unwrap(), 1 << 30);
        for bad in ["", "G", "4X", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
