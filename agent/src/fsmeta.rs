//! File-system metadata: reading a node's metadata (lstat, owner names, extended attributes) at backup time
//! and applying it (owner, mode, extended attributes, times) at restore time.

use crate::beneath::Dir;
use seedship_shared::repo::{Node, NodeKind};
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::Metadata;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

/// Caches uid/gid -> name lookups.
#[derive(Debug, Default)]
pub struct Names {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
}

impl Names {
    pub fn user(&self, uid: u32) -> Option<String> {
        self.users
            .lock()
            .expect("lock")
            .entry(uid)
            .or_insert_with(|| lookup_user(uid))
            .clone()
    }
    pub fn group(&self, gid: u32) -> Option<String> {
        self.groups
            .lock()
            .expect("lock")
            .entry(gid)
            .or_insert_with(|| lookup_group(gid))
            .clone()
    }
}

/// Maps the owner names recorded at backup time to this machine's ids at restore time (as tar does): a name
/// that exists here wins over the recorded id; without a name, or with `numeric`, the recorded id is used.
#[derive(Debug, Default)]
pub struct Owners {
    numeric: bool,
    users: Mutex<HashMap<String, Option<u32>>>,
    groups: Mutex<HashMap<String, Option<u32>>>,
}

impl Owners {
    /// `numeric`: use the recorded ids only (`restore --numeric-owner`).
    pub fn new(numeric: bool) -> Owners {
        Owners {
            numeric,
            ..Default::default()
        }
    }

    /// The uid and gid a restored node gets.
    pub fn ids(&self, node: &Node) -> (u32, u32) {
        if self.numeric {
            return (node.uid, node.gid);
        }
        let uid = node
            .user
            .as_ref()
            .and_then(|n| {
                let mut m = self.users.lock().expect("lock");
                *m.entry(n.clone()).or_insert_with(|| uid_of(n))
            })
            .unwrap_or(node.uid);
        let gid = node
            .group
            .as_ref()
            .and_then(|n| {
                let mut m = self.groups.lock().expect("lock");
                *m.entry(n.clone()).or_insert_with(|| gid_of(n))
            })
            .unwrap_or(node.gid);
        (uid, gid)
    }
}

fn uid_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: all-zero passwd is a valid out parameter; buffers outlive the call.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut res = std::ptr::null_mut();
    // SAFETY: arguments point at live, correctly sized buffers and a NUL-terminated name.
    let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
    (rc == 0 && !res.is_null()).then_some(pw.pw_uid)
}

fn gid_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: as in uid_of.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut res = std::ptr::null_mut();
    // SAFETY: as in uid_of.
    let rc = unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut res) };
    (rc == 0 && !res.is_null()).then_some(gr.gr_gid)
}

fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: all-zero passwd is a valid out parameter; buffers outlive the call.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut res = std::ptr::null_mut();
    // SAFETY: arguments point at live, correctly sized buffers.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
    if rc != 0 || res.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points at a NUL-terminated string inside buf.
    Some(
        unsafe { CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn lookup_group(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: as in lookup_user.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut res = std::ptr::null_mut();
    // SAFETY: as in lookup_user.
    let rc = unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut res) };
    if rc != 0 || res.is_null() {
        return None;
    }
    // SAFETY: as in lookup_user.
    Some(
        unsafe { CStr::from_ptr(gr.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn cpath(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("path contains a NUL byte"))
}

/// Reads the extended attributes of `path` (not following symlinks). `Ok(None)` when the file system does
/// not support them.
pub fn read_xattrs(path: &Path) -> std::io::Result<Option<Vec<(String, String)>>> {
    let c = cpath(path)?;
    let mut names = vec![0u8; 4096];
    let n = loop {
        // SAFETY: buffer pointer and length are valid.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if names.len() < 1 << 20 => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(None),
            _ => return Err(e),
        }
    };
    let mut out = vec![];
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let cname = CString::new(name).expect("no NUL inside");
        let mut val = vec![0u8; 4096];
        let len = loop {
            // SAFETY: valid buffers.
            let r =
                unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
            if r >= 0 {
                break r as usize;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) if val.len() < 1 << 20 => val.resize(val.len() * 4, 0),
                _ => return Err(e),
            }
        };
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            hex::encode(&val[..len]),
        ));
    }
    Ok(Some(out))
}

/// Builds the node of `path` from its lstat metadata (content and subtree are filled in later).
/// Extended attributes are read only when `with_xattrs` (the backup reads those of changed files in its
/// reader threads and reuses those of unchanged ones: an xattr change updates ctime).
pub fn node_from(
    name: &OsStr,
    path: &Path,
    m: &Metadata,
    names: &Names,
    with_xattrs: bool,
) -> std::io::Result<Node> {
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() {
        NodeKind::File
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::Char
    } else if ft.is_block_device() {
        NodeKind::Block
    } else {
        NodeKind::Socket
    };
    let (name_s, name_raw) = split_bytes(name.as_bytes());
    let (target, target_raw) = if kind == NodeKind::Symlink {
        let t = std::fs::read_link(path)?;
        let (s, r) = split_bytes(t.as_os_str().as_bytes());
        (Some(s), r)
    } else {
        (None, None)
    };
    let xattrs = if kind == NodeKind::Symlink || !with_xattrs {
        Vec::new()
    } else {
        read_xattrs(path).ok().flatten().unwrap_or_default()
    };
    Ok(Node {
        name: name_s,
        name_raw,
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        user: names.user(m.uid()),
        group: names.group(m.gid()),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec() as u32,
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec() as u32,
        dev: m.dev(),
        ino: m.ino(),
        nlink: m.nlink(),
        size: if kind == NodeKind::File { m.size() } else { 0 },
        rdev: if matches!(kind, NodeKind::Char | NodeKind::Block) {
            m.rdev()
        } else {
            0
        },
        target,
        target_raw,
        xattrs,
        content: vec![],
        subtree: None,
    })
}

fn split_bytes(b: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (String::from_utf8_lossy(b).into_owned(), Some(hex::encode(b))),
    }
}

/// How [`apply`] reaches the restored node: through its own open descriptor (regular files and directories),
/// or by name in its parent directory without following a symlink there (symlinks and special files).
pub enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(&'a Dir, &'a OsStr),
}

/// Applies owner (with `owners`, i.e. when running as root), mode, extended attributes and times to a
/// restored node; `show` is its path for messages. Returns the things that could not be applied, as messages.
pub fn apply(
    target: Target<'_>,
    show: &Path,
    node: &Node,
    owners: Option<&Owners>,
) -> std::io::Result<Vec<String>> {
    let mut warnings = vec![];
    let last = std::io::Error::last_os_error;
    let at = match target {
        Target::At(dir, name) => Some((dir.as_fd().as_raw_fd(), dir.entry(name)?)),
        Target::Fd(_) => None,
    };
    if let Some(owners) = owners {
        let (uid, gid) = owners.ids(node);
        // SAFETY: valid descriptors and C strings.
        let rc = match (&target, &at) {
            (Target::Fd(fd), _) => unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) },
            (_, Some((dir, c))) => unsafe {
                libc::fchownat(*dir, c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
            },
            _ => 0,
        };
        if rc != 0 {
            warnings.push(format!("{}: chown: {}", show.display(), last()));
        }
    }
    if node.kind != NodeKind::Symlink {
        let mode = node.mode as libc::mode_t;
        // SAFETY: valid descriptors and C strings; the named entry was created by the restore and is not a
        // symlink (symlinks are created last and never over an existing entry).
        let rc = match (&target, &at) {
            (Target::Fd(fd), _) => unsafe { libc::fchmod(fd.as_raw_fd(), mode) },
            (_, Some((dir, c))) => unsafe { libc::fchmodat(*dir, c.as_ptr(), mode, 0) },
            _ => 0,
        };
        if rc != 0 {
            return Err(last());
        }
        for (k, v) in &node.xattrs {
            let Ok(val) = hex::decode(v) else { continue };
            let ck = CString::new(k.as_bytes()).map_err(|_| std::io::Error::other("xattr name has NUL"))?;
            let rc = match (&target, &at) {
                // SAFETY: valid descriptor and buffers.
                (Target::Fd(fd), _) => unsafe {
                    libc::fsetxattr(fd.as_raw_fd(), ck.as_ptr(), val.as_ptr().cast(), val.len(), 0)
                },
                (_, Some((dir, c))) => {
                    // a special file has no descriptor to set attributes through: name it through the
                    // parent's descriptor, so only the last component is looked up (and not followed)
                    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
                    p.extend_from_slice(c.as_bytes());
                    let p = CString::new(p).map_err(|_| std::io::Error::other("path has NUL"))?;
                    // SAFETY: valid C strings and buffers.
                    unsafe { libc::lsetxattr(p.as_ptr(), ck.as_ptr(), val.as_ptr().cast(), val.len(), 0) }
                }
                _ => 0,
            };
            if rc != 0 {
                warnings.push(format!("{}: xattr {k}: {}", show.display(), last()));
            }
        }
    }
    let ts = libc::timespec {
        tv_sec: node.mtime as libc::time_t,
        tv_nsec: node.mtime_nsec as libc::c_long,
    };
    let times = [ts, ts];
    // SAFETY: valid descriptors, C strings and a two-element timespec array.
    let rc = match (&target, &at) {
        (Target::Fd(fd), _) => unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) },
        (_, Some((dir, c))) => unsafe {
            libc::utimensat(*dir, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
        },
        _ => 0,
    };
    if rc != 0 {
        return Err(last());
    }
    Ok(warnings)
}

/// The `st_mode` (type and permission bits) of a fifo, device or socket node.
pub fn special_mode(node: &Node) -> std::io::Result<u32> {
    let fmt = match node.kind {
        NodeKind::Fifo => libc::S_IFIFO,
        NodeKind::Char => libc::S_IFCHR,
        NodeKind::Block => libc::S_IFBLK,
        NodeKind::Socket => libc::S_IFSOCK,
        _ => return Err(std::io::Error::other("not a special file")),
    };
    Ok(fmt | (node.mode & 0o7777))
}

/// Whether the process runs as root (may set owners and create devices).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(user: Option<&str>, uid: u32, group: Option<&str>, gid: u32) -> Node {
        Node {
            name: "f".into(),
            name_raw: None,
            kind: NodeKind::File,
            mode: 0o644,
            uid,
            gid,
            user: user.map(str::to_owned),
            group: group.map(str::to_owned),
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            size: 0,
            rdev: 0,
            target: None,
            target_raw: None,
            xattrs: vec![],
            content: vec![],
            subtree: None,
        }
    }

    #[test]
    fn owner_names_win_over_recorded_ids() {
        let o = Owners::new(false);
        // "root" is uid 0 and gid 0 on every Linux machine, whatever id the backup machine had
        assert_eq!(o.ids(&node(Some("root"), 4321, Some("root"), 8765)), (0, 0));
        // an unknown name, or none, keeps the recorded id
        assert_eq!(
            o.ids(&node(Some("no-such-user-xq7"), 4321, None, 8765)),
            (4321, 8765)
        );
        // --numeric-owner keeps the ids
        assert_eq!(
            Owners::new(true).ids(&node(Some("root"), 4321, Some("root"), 8765)),
            (4321, 8765)
        );
    }
}
