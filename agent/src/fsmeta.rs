//! File-system metadata: reading a node's metadata (lstat, owner names, extended attributes) at backup time
//! and applying it (owner, mode, extended attributes, times) at restore time.

use crate::beneath::Dir;
use seedship_shared::repo::{Node, NodeKind};
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::Metadata;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

/// What a backup uses of an entry's lstat: from `fstatat` relative to its open folder ([`Folder::lstat`]),
/// or from a [`Metadata`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `st_mode`: the file type bits and the permissions.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ctime: i64,
    pub ctime_nsec: i64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
}

impl Stat {
    /// The kind of node.
    pub fn kind(&self) -> NodeKind {
        match self.mode & libc::S_IFMT {
            libc::S_IFDIR => NodeKind::Dir,
            libc::S_IFREG => NodeKind::File,
            libc::S_IFLNK => NodeKind::Symlink,
            libc::S_IFIFO => NodeKind::Fifo,
            libc::S_IFCHR => NodeKind::Char,
            libc::S_IFBLK => NodeKind::Block,
            _ => NodeKind::Socket,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

impl From<&Metadata> for Stat {
    fn from(m: &Metadata) -> Stat {
        Stat {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            rdev: m.rdev(),
        }
    }
}

/// An open folder: its entries' names, and their lstat relative to it (which spares the kernel a walk of
/// the whole path per entry).
pub struct Folder {
    dir: std::fs::File,
}

impl Folder {
    /// Opens the folder at `path` (not following a symlink there).
    pub fn open(path: &Path) -> std::io::Result<Folder> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Folder { dir })
    }

    /// The names of its entries (without `.` and `..`), read from this open folder, packed and sorted by
    /// bytes: about 13 bytes an entry beside the name, instead of a string and a directory entry for each.
    /// `problem` is told of an entry that cannot be read.
    pub fn names(&self, mut problem: impl FnMut(std::io::Error)) -> std::io::Result<SortedNames> {
        // the listing reads a duplicate of the descriptor, so that it is this folder's, whatever the path
        // now names
        let dup = self.dir.try_clone()?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(dup);
        // SAFETY: `fd` is an open descriptor we own; fdopendir takes it over (closedir closes it)
        let d = unsafe { libc::fdopendir(fd) };
        if d.is_null() {
            let e = std::io::Error::last_os_error();
            // SAFETY: fdopendir failed, so the descriptor is still ours to close
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let mut names = SortedNames::default();
        loop {
            // SAFETY: errno is thread-local; readdir64 sets it only on an error
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `d` is an open directory stream used by this thread only
            let ent = unsafe { libc::readdir64(d) };
            if ent.is_null() {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error().unwrap_or(0) != 0 {
                    problem(e);
                }
                break;
            }
            // SAFETY: readdir64 returned an entry whose d_name is NUL-terminated and valid until the next call
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        // SAFETY: `d` is open and not used after this
        unsafe { libc::closedir(d) };
        names.sort();
        Ok(names)
    }

    /// The lstat of entry `name` (one path component).
    pub fn lstat(&self, name: &OsStr) -> std::io::Result<Stat> {
        let c = crate::beneath::cname(name)?;
        // SAFETY: an all-zero stat is a valid value for the out parameter
        let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
        // SAFETY: the folder's descriptor is open, `c` is NUL-terminated, `st` is writable
        crate::beneath::check(unsafe {
            libc::fstatat64(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        Ok(Stat {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            ctime: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            rdev: st.st_rdev,
        })
    }
}

/// A folder's entry names in one buffer, sorted by bytes ([`Folder::names`]).
#[derive(Debug, Default)]
pub struct SortedNames {
    bytes: Vec<u8>,
    /// Where each name ends in `bytes`, in listing order.
    ends: Vec<usize>,
    /// Listing indexes in name order.
    order: Vec<u32>,
}

impl SortedNames {
    fn push(&mut self, name: &[u8]) {
        self.bytes.extend_from_slice(name);
        self.ends.push(self.bytes.len());
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn sort(&mut self) {
        let mut order: Vec<u32> = (0..self.ends.len() as u32).collect();
        // names are unique: an unstable sort needs no buffer beside the order
        order.sort_unstable_by(|&a, &b| self.get(a as usize).cmp(self.get(b as usize)));
        self.order = order;
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The names in order, borrowed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &OsStr> {
        self.order
            .iter()
            .map(|&i| OsStr::from_bytes(self.get(i as usize)))
    }
}

impl IntoIterator for SortedNames {
    type Item = std::ffi::OsString;
    type IntoIter = SortedNamesIter;

    fn into_iter(self) -> SortedNamesIter {
        SortedNamesIter { names: self, at: 0 }
    }
}

/// The names in order, each made a string as it is reached.
pub struct SortedNamesIter {
    names: SortedNames,
    at: usize,
}

impl Iterator for SortedNamesIter {
    type Item = std::ffi::OsString;

    fn next(&mut self) -> Option<std::ffi::OsString> {
        let i = *self.names.order.get(self.at)? as usize;
        self.at += 1;
        Some(OsStr::from_bytes(self.names.get(i)).to_os_string())
    }
}

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
    m: &Stat,
    names: &Names,
    with_xattrs: bool,
) -> std::io::Result<Node> {
    let kind = m.kind();
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
        mode: m.mode & 0o7777,
        uid: m.uid,
        gid: m.gid,
        user: names.user(m.uid),
        group: names.group(m.gid),
        mtime: m.mtime,
        mtime_nsec: m.mtime_nsec as u32,
        ctime: m.ctime,
        ctime_nsec: m.ctime_nsec as u32,
        dev: m.dev,
        ino: m.ino,
        nlink: m.nlink,
        size: if kind == NodeKind::File { m.size } else { 0 },
        rdev: if matches!(kind, NodeKind::Char | NodeKind::Block) {
            m.rdev
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
            mode: 0o644,
            uid,
            gid,
            user: user.map(str::to_owned),
            group: group.map(str::to_owned),
            ..Node::new("f", NodeKind::File)
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

    #[test]
    fn a_folder_lists_sorted_raw_names_and_stats_them_relative_to_itself() {
        use std::os::unix::ffi::OsStringExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for n in [&b"b"[..], b"a", b"a b", b"\xff\xfe", b"B"] {
            std::fs::write(root.join(OsStr::from_bytes(n)), n).unwrap();
        }
        std::fs::create_dir(root.join("sub")).unwrap();
        std::os::unix::fs::symlink("sub", root.join("link")).unwrap();
        let f = Folder::open(root).unwrap();
        let names = f.names(|e| panic!("{e}")).unwrap();
        assert_eq!(names.len(), 7);
        let got: Vec<Vec<u8>> = names.into_iter().map(|n| n.into_vec()).collect();
        let want: Vec<&[u8]> = vec![b"B", b"a", b"a b", b"b", b"link", b"sub", b"\xff\xfe"];
        assert_eq!(got, want);
        let st = f.lstat(OsStr::from_bytes(b"\xff\xfe")).unwrap();
        assert_eq!((st.kind(), st.size), (NodeKind::File, 2));
        assert_eq!(
            st,
            Stat::from(&std::fs::symlink_metadata(root.join(OsStr::from_bytes(b"\xff\xfe"))).unwrap())
        );
        // a symlink is not followed, by lstat or by open
        assert_eq!(f.lstat(OsStr::new("link")).unwrap().kind(), NodeKind::Symlink);
        assert!(f.lstat(OsStr::new("sub")).unwrap().is_dir());
        assert!(Folder::open(&root.join("link")).is_err());
        let e = f.lstat(OsStr::new("gone")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        // the listing is the open folder's, whatever its path names later
        let sub = Folder::open(&root.join("sub")).unwrap();
        std::fs::rename(root.join("sub"), root.join("sub2")).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/new"), "").unwrap();
        assert!(sub.names(|e| panic!("{e}")).unwrap().is_empty());
    }
}
