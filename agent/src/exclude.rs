//! Exclusions: what the backup walk leaves out, stored in the policy and recorded in every snapshot.
//!
//! [`Exclusions`] is what the admin gave (`--exclude`, `--iexclude`, `--exclude-file`, `--exclude-if-present`,
//! `--exclude-caches`, `--one-file-system`, `--exclude-larger-than`); [`Exclusions::compile`] turns it into an
//! [`Excluder`] that the walk asks once per directory entry. Patterns are gitignore-style globs matched
//! against the entry's absolute path: a pattern without a `/` matches a name at any depth (`*.tmp`,
//! `node_modules`), one starting with `/` matches from the root (`/srv/data/scratch`, `/home/*/.cache`),
//! other patterns with a `/` match at any depth (`build/out`); `*` and `?` stay within one name, `**` spans
//! any number of folders, and a trailing `/` matches folders only. An excluded folder is not entered.
//! Exclude files hold one pattern a line; blank lines and lines starting with `#` are skipped; they are
//! read again at every backup.

use anyhow::{bail, Context};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The signature that starts a `CACHEDIR.TAG` file (<https://bford.info/cachedir/>).
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// The exclusion settings as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
    /// Patterns matched case-insensitively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipatterns: Vec<String>,
    /// Files of patterns (absolute paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
    /// A folder holding a file of one of these names is excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub if_present: Vec<String>,
    /// Folders holding a `CACHEDIR.TAG` with its signature are excluded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caches: bool,
    /// Mount points below a source (other file systems) are excluded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_file_system: bool,
    /// Files larger than this many bytes are excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub larger_than: Option<u64>,
}

impl Exclusions {
    /// Whether nothing is excluded.
    pub fn is_empty(&self) -> bool {
        *self == Exclusions::default()
    }

    /// One line per setting, as the options are written (`--exclude *.tmp`); recorded in snapshots and
    /// shown by `status` and `policy show`.
    pub fn describe(&self) -> Vec<String> {
        let mut v = vec![];
        v.extend(self.patterns.iter().map(|p| format!("--exclude {p}")));
        v.extend(self.ipatterns.iter().map(|p| format!("--iexclude {p}")));
        v.extend(
            self.files
                .iter()
                .map(|p| format!("--exclude-file {}", p.display())),
        );
        v.extend(
            self.if_present
                .iter()
                .map(|p| format!("--exclude-if-present {p}")),
        );
        if self.caches {
            v.push("--exclude-caches".into());
        }
        if self.one_file_system {
            v.push("--one-file-system".into());
        }
        if let Some(n) = self.larger_than {
            v.push(format!("--exclude-larger-than {n}"));
        }
        v
    }

    /// Checks every pattern and exclude file (so a bad one is refused when given, not at the next backup).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.compile(&[]).map(|_| ())
    }

    /// Builds the matcher for a walk of `sources` (their devices are read for `--one-file-system`).
    pub fn compile(&self, sources: &[PathBuf]) -> anyhow::Result<Excluder> {
        let mut cs = GlobSetBuilder::new();
        let mut ci = GlobSetBuilder::new();
        let mut dir_only = vec![];
        let mut n = 0usize;
        let mut add = |pat: &str, fold: bool, origin: &str| -> anyhow::Result<()> {
            let (glob, only_dirs) = glob_of(pat, origin)?;
            let g = GlobBuilder::new(&glob)
                .literal_separator(true)
                .case_insensitive(fold)
                .build()
                .with_context(|| {
                    format!(
                        "invalid exclude pattern {pat:?}{origin} (a gitignore-style glob: `*`, `**`, `?`, `[...]`; \
                         write a literal `[` as `[[]`)"
                    )
                })?;
            if fold {
                ci.add(g);
                dir_only.push((true, only_dirs));
            } else {
                cs.add(g);
                dir_only.push((false, only_dirs));
            }
            n += 1;
            Ok(())
        };
        for p in &self.patterns {
            add(p, false, "")?;
        }
        for p in &self.ipatterns {
            add(p, true, "")?;
        }
        for f in &self.files {
            let text = std::fs::read_to_string(f).with_context(|| {
                format!(
                    "cannot read exclude file {} (fix it, or remove it with `seedship-agent policy set --no-exclude-file {}`)",
                    f.display(),
                    f.display()
                )
            })?;
            for line in text
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            {
                add(line, false, &format!(" in {}", f.display()))?;
            }
        }
        for name in &self.if_present {
            if name.is_empty() || name.contains('/') {
                bail!("invalid --exclude-if-present {name:?}: give a file name without '/'");
            }
        }
        let (cs, ci) = (cs.build()?, ci.build()?);
        // which patterns are folder-only, per set, in the order added
        let (mut cs_dirs, mut ci_dirs) = (vec![], vec![]);
        for (fold, only) in dir_only {
            if fold {
                ci_dirs.push(only)
            } else {
                cs_dirs.push(only)
            }
        }
        let mut devices = vec![];
        if self.one_file_system {
            for s in sources {
                let m = std::fs::metadata(s).with_context(|| format!("source {}", s.display()))?;
                devices.push((s.clone(), m.dev()));
            }
        }
        Ok(Excluder {
            cs,
            ci,
            cs_dirs,
            ci_dirs,
            any_pattern: n > 0,
            if_present: self.if_present.clone(),
            caches: self.caches,
            devices,
            larger_than: self.larger_than,
        })
    }
}

/// The glob for a pattern, and whether it matches folders only.
fn glob_of(pat: &str, origin: &str) -> anyhow::Result<(String, bool)> {
    let p = pat.trim();
    if p.is_empty() {
        bail!("empty exclude pattern{origin}");
    }
    if p.starts_with('!') {
        bail!("exclude pattern {pat:?}{origin}: negated patterns ('!') are not supported; narrow the pattern instead");
    }
    let (p, only_dirs) = match p.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => (rest, true),
        _ => (p, false),
    };
    let glob = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("**/{p}")
    };
    Ok((glob, only_dirs))
}

/// The compiled exclusions the walk asks.
#[derive(Debug)]
pub struct Excluder {
    cs: GlobSet,
    ci: GlobSet,
    cs_dirs: Vec<bool>,
    ci_dirs: Vec<bool>,
    any_pattern: bool,
    if_present: Vec<String>,
    caches: bool,
    /// Each source and its device (`--one-file-system`).
    devices: Vec<(PathBuf, u64)>,
    larger_than: Option<u64>,
}

impl Excluder {
    /// Whether the entry at `path` (with its lstat `m`) is left out.
    pub fn excludes(&self, path: &Path, m: &crate::fsmeta::Stat) -> bool {
        let is_dir = m.is_dir();
        if let Some(limit) = self.larger_than {
            if m.is_file() && m.size > limit {
                return true;
            }
        }
        if self.any_pattern && self.matches(path, is_dir) {
            return true;
        }
        if is_dir {
            if !self.devices.is_empty() && self.other_file_system(path, m.dev) {
                return true;
            }
            if self
                .if_present
                .iter()
                .any(|n| std::fs::symlink_metadata(path.join(n)).is_ok())
            {
                return true;
            }
            if self.caches && is_cache_dir(path) {
                return true;
            }
        }
        false
    }

    /// Whether a path matches one of the patterns (`restore --exclude`, `find`), a folder when `is_dir`.
    pub fn matches_path(&self, path: &Path, is_dir: bool) -> bool {
        self.any_pattern && self.matches(path, is_dir)
    }

    fn matches(&self, path: &Path, is_dir: bool) -> bool {
        let c = globset::Candidate::new(path);
        let hit =
            |set: &GlobSet, dirs: &[bool]| set.matches_candidate(&c).into_iter().any(|i| is_dir || !dirs[i]);
        (!self.cs.is_empty() && hit(&self.cs, &self.cs_dirs))
            || (!self.ci.is_empty() && hit(&self.ci, &self.ci_dirs))
    }

    /// Whether a folder is on another device than the source it is under (a mount point).
    fn other_file_system(&self, path: &Path, dev: u64) -> bool {
        self.devices
            .iter()
            .filter(|(s, _)| path.starts_with(s))
            .max_by_key(|(s, _)| s.as_os_str().len())
            .is_some_and(|(_, d)| *d != dev)
    }
}

/// Whether `dir` holds a `CACHEDIR.TAG` that starts with the signature.
fn is_cache_dir(dir: &Path) -> bool {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(dir.join("CACHEDIR.TAG")) else {
        return false;
    };
    let mut buf = [0u8; CACHEDIR_SIGNATURE.len()];
    f.take(buf.len() as u64).read_exact(&mut buf).is_ok() && buf == CACHEDIR_SIGNATURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(f: impl FnOnce(&mut Exclusions)) -> Exclusions {
        let mut e = Exclusions::default();
        f(&mut e);
        e
    }

    #[test]
    fn patterns_follow_gitignore_style() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for dir in ["a/node_modules", "a/build/out", "b/build", "Cache"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for f in ["a/x.tmp", "a/x.txt", "a/X.TMP", "a/build/out/o", "b/build/out"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let r = root.display().to_string();
        let e = ex(|e| {
            e.patterns = vec![
                "*.tmp".into(),
                "node_modules".into(),
                "build/out".into(),
                format!("{r}/Cache/"),
            ];
            e.ipatterns = vec!["*.TMP".into()];
        })
        .compile(std::slice::from_ref(&root))
        .unwrap();
        let is = |p: &str| {
            e.excludes(
                &root.join(p),
                &(&std::fs::symlink_metadata(root.join(p)).unwrap()).into(),
            )
        };
        assert!(is("a/x.tmp") && is("a/X.TMP") && is("a/node_modules") && is("a/build/out") && is("Cache"));
        assert!(!is("a/x.txt") && !is("a/build") && !is("b/build"));
        // `build/out` matches the file b/build/out too; `*` does not cross folders
        assert!(is("b/build/out"));
        let e2 = ex(|e| e.patterns = vec!["a*".into(), "out/".into()])
            .compile(&[])
            .unwrap();
        let m = |p: &str| crate::fsmeta::Stat::from(&std::fs::symlink_metadata(root.join(p)).unwrap());
        assert!(
            !e2.excludes(&root.join("b/build/out"), &m("b/build/out")),
            "out/ is for folders only"
        );
        assert!(e2.excludes(&root.join("a/build/out"), &m("a/build/out")));
    }

    #[test]
    fn caches_if_present_and_sizes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for dir in ["c1", "c2", "p", "q"] {
            std::fs::create_dir(root.join(dir)).unwrap();
        }
        let mut tag = CACHEDIR_SIGNATURE.to_vec();
        tag.extend_from_slice(b"\n# a cache\n");
        std::fs::write(root.join("c1/CACHEDIR.TAG"), &tag).unwrap();
        std::fs::write(root.join("c2/CACHEDIR.TAG"), b"Signature: wrong").unwrap();
        std::fs::write(root.join("p/.nobackup"), b"").unwrap();
        std::fs::write(root.join("big"), vec![0u8; 2048]).unwrap();
        std::fs::write(root.join("small"), vec![0u8; 1024]).unwrap();
        let e = ex(|e| {
            e.caches = true;
            e.if_present = vec![".nobackup".into()];
            e.larger_than = Some(1024);
        })
        .compile(&[])
        .unwrap();
        let is = |p: &str| {
            e.excludes(
                &root.join(p),
                &(&std::fs::symlink_metadata(root.join(p)).unwrap()).into(),
            )
        };
        assert!(is("c1") && is("p") && is("big"));
        assert!(!is("c2") && !is("q") && !is("small"));
    }

    #[test]
    fn exclude_files_and_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ex.txt");
        std::fs::write(&f, "# comment\n\n*.iso\n/srv/[\n").unwrap();
        let err = format!("{:#}", ex(|e| e.files = vec![f.clone()]).validate().unwrap_err());
        assert!(err.contains("/srv/[") && err.contains("ex.txt"), "{err}");
        std::fs::write(&f, "# comment\n\n*.iso\n").unwrap();
        ex(|e| e.files = vec![f.clone()]).validate().unwrap();
        let missing = format!(
            "{:#}",
            ex(|e| e.files = vec![d.path().join("nope")])
                .validate()
                .unwrap_err()
        );
        assert!(missing.contains("cannot read exclude file"), "{missing}");
        assert!(ex(|e| e.patterns = vec!["!keep".into()]).validate().is_err());
        assert!(ex(|e| e.if_present = vec!["a/b".into()]).validate().is_err());
        let all = ex(|e| {
            e.patterns = vec!["*.tmp".into()];
            e.caches = true;
            e.larger_than = Some(10);
        });
        assert_eq!(
            all.describe(),
            ["--exclude *.tmp", "--exclude-caches", "--exclude-larger-than 10"]
        );
    }
}
