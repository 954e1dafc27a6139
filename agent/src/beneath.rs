//! Directory handles that never leave the restore target. A snapshot is untrusted input: its entries name
//! paths, and one of them may be a symlink (`x -> /etc`) that a later entry (`x/cron.d/evil`) would otherwise
//! write through. Every path is therefore resolved one component at a time from an open directory, each
//! component opened with `O_NOFOLLOW | O_DIRECTORY`, and every entry is created with the `*at` calls relative to
//! its parent's handle: a symlink or a non-directory on the way is refused, never followed.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An open directory below (or at) the restore target, with its path for messages.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// `name` as a C string for the `*at` calls, refused unless it is one path component.
pub(crate) fn cname(name: &OsStr) -> io::Result<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a single path component", name),
        ));
    }
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// The last OS error when a libc call returned a negative value.
pub(crate) fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Dir {
    /// Opens the restore target itself (the operator named it, so a symlink there is followed).
    pub fn open_target(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: valid C string; the returned descriptor is owned below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        check(fd)?;
        Ok(Dir {
            // SAFETY: `fd` is a freshly opened descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// The path of this directory (for messages only; never used to reach it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory (for messages only).
    pub fn show(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// Opens the subdirectory `name`; a symlink or anything but a directory there is refused.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let c = cname(name)?;
        // SAFETY: valid descriptor and C string; the returned descriptor is owned below.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symlink or not a directory; refusing to go through it",
                        self.show(name).display()
                    ),
                ),
                _ => e,
            });
        }
        Ok(Dir {
            // SAFETY: `fd` is a freshly opened descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: self.show(name),
        })
    }

    /// Creates the subdirectory `name` (an existing directory is fine) and opens it.
    pub fn make_dir(&self, name: &OsStr, mode: u32) -> io::Result<Dir> {
        let c = cname(name)?;
        // SAFETY: valid descriptor and C string.
        if let Err(e) = check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })
        {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        self.open_dir(name)
    }

    /// Opens the directory at `parts` below this one, one component at a time, creating missing ones when
    /// `create`.
    pub fn walk(&self, parts: &[&OsStr], create: bool) -> io::Result<Dir> {
        let mut dir = self.open_dir_again()?;
        for p in parts {
            dir = if create {
                dir.make_dir(p, 0o777)?
            } else {
                dir.open_dir(p)?
            };
        }
        Ok(dir)
    }

    fn open_dir_again(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Creates (or truncates) the regular file `name` for writing; a symlink there is refused.
    pub fn create_file(&self, name: &OsStr) -> io::Result<File> {
        let c = cname(name)?;
        // SAFETY: valid descriptor and C string; the returned descriptor is owned below.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        check(fd)?;
        // SAFETY: `fd` is a freshly opened descriptor nobody else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Makes `name` here a hard link to `from_name` in `from` (never following a symlink there).
    pub fn hard_link(&self, name: &OsStr, from: &Dir, from_name: &OsStr) -> io::Result<()> {
        let (c, f) = (cname(name)?, cname(from_name)?);
        // SAFETY: valid descriptors and C strings.
        check(unsafe {
            libc::linkat(
                from.fd.as_raw_fd(),
                f.as_ptr(),
                self.fd.as_raw_fd(),
                c.as_ptr(),
                0,
            )
        })
    }

    /// Creates the symlink `name` pointing at `target` (the target is not resolved).
    pub fn symlink(&self, name: &OsStr, target: &OsStr) -> io::Result<()> {
        let c = cname(name)?;
        let t = CString::new(target.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "symlink target contains NUL"))?;
        // SAFETY: valid descriptor and C strings.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.fd.as_raw_fd(), c.as_ptr()) })
    }

    /// Creates the fifo, device or socket node `name` with the full `st_mode` and device number.
    pub fn mknod(&self, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: valid descriptor and C string.
        check(unsafe {
            libc::mknodat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                mode as libc::mode_t,
                rdev as libc::dev_t,
            )
        })
    }

    /// The C name of `name` for the `*at` calls of [`crate::fsmeta`].
    pub fn entry(&self, name: &OsStr) -> io::Result<CString> {
        cname(name)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
