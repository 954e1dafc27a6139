//! What a PrepImport session copies: `/srcdir:` + `/dstdir:`, `/srcfile:` + `/dstblob:`, or the rows of a
//! v2 `/DataSet:` CSV file, resolved into blobs (name, file, data extents) of one container; and v2's
//! `/InitialDriveSet:` CSV file, resolved into the drive options.

use crate::prep::plan::BlobExtents;
use anyhow::{bail, Context};
use seedship_shared::blob::{BlobStore, LocalStore};
use seedship_shared::manifest::{BlobPart, ImportDisposition};
use std::path::{Path, PathBuf};

/// One source as given: a folder copied recursively under a virtual directory, or one file as one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub path: PathBuf,
    /// `container/vdir/` for a folder, `container/blob` for a file.
    pub dst: String,
    pub dir: bool,
    pub disposition: ImportDisposition,
    pub blob_type: BlobType,
}

/// What a source file becomes (/BlobType:, the data set's BlobType column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlobType {
    /// A page blob: the length a multiple of 512, the manifest lists the pages holding data (seedship's
    /// default, what the Azure Backup offline workflow needs).
    #[default]
    Page,
    /// A block blob: any length, the manifest lists every 4 MiB block (the last one shorter); the file is
    /// never cut across drives.
    Block,
}

impl BlobType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Page => "PageBlob",
            Self::Block => "BlockBlob",
        }
    }
}

/// The most blocks a block blob may have (the manifest's limit), 4 MiB each.
pub const MAX_BLOCKS: u64 = 50_000;

/// One file to copy.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub extents: BlobExtents,
    pub path: PathBuf,
    pub mtime_ns: i128,
    pub disposition: ImportDisposition,
    pub blob_type: BlobType,
    /// A piece of a session recorded earlier (its rest, or a part to copy again): its part number and bytes.
    pub offered: Option<BlobPart>,
}

/// Splits `container/rest` and checks the container name (3 to 63 lowercase letters, digits and hyphens, or
/// `$root`).
pub fn split_container(dst: &str) -> anyhow::Result<(String, String)> {
    let (container, rest) = dst.split_once('/').unwrap_or((dst, ""));
    let valid = container == "$root"
        || ((3..=63).contains(&container.len())
            && container
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !container.starts_with('-'));
    if !valid {
        bail!(
            "{dst:?} does not start with a valid container name (3 to 63 lowercase letters, digits and \
             hyphens, e.g. backup/): container names must be lowercase"
        );
    }
    Ok((container.to_owned(), rest.to_owned()))
}

/// Resolves the sources into files of one container, sorted by blob name.
pub fn resolve(specs: &[SourceSpec]) -> anyhow::Result<(String, Vec<SourceFile>)> {
    let mut container: Option<String> = None;
    let mut files = Vec::new();
    for spec in specs {
        let (c, rest) = split_container(&spec.dst)?;
        match &container {
            Some(prev) if *prev != c => bail!(
                "the sources go to containers {prev} and {c}: one session writes one container (run a \
                 session per container)"
            ),
            _ => container = Some(c),
        }
        if !spec.path.is_absolute() {
            bail!(
                "{}: give the source with a full path (WAImportExport's rule), e.g. {}",
                spec.path.display(),
                std::path::absolute(&spec.path)
                    .unwrap_or_else(|_| spec.path.clone())
                    .display()
            );
        }
        if spec.dir {
            if !rest.is_empty() && !rest.ends_with('/') {
                bail!("/dstdir:{} must end with / (a virtual directory)", spec.dst);
            }
            let mut found = Vec::new();
            walk(&spec.path, &spec.path, &mut found)?;
            if found.is_empty() {
                bail!("{}: no file to copy in this folder", spec.path.display());
            }
            for (rel, path) in found {
                files.push(file(&format!("{rest}{rel}"), &path, spec)?);
            }
        } else {
            if rest.is_empty() || rest.ends_with('/') {
                bail!("/dstblob:{} must name the blob: container/name", spec.dst);
            }
            files.push(file(&rest, &spec.path, spec)?);
        }
    }
    let container = container
        .context("nothing to copy: give /srcdir: and /dstdir:, /srcfile: and /dstblob:, or /DataSet:")?;
    files.sort_by(|a, b| a.extents.name.cmp(&b.extents.name));
    if let Some(w) = files.windows(2).find(|w| w[0].extents.name == w[1].extents.name) {
        bail!(
            "{} and {} would both be blob {container}/{}",
            w[0].path.display(),
            w[1].path.display(),
            w[0].extents.name
        );
    }
    Ok((container, files))
}

/// Regular files under `dir`, recursively, with their paths relative to `root` (`/`-separated), sorted.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the source folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the source folder {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let meta = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).expect("under the root");
            let rel = rel
                .to_str()
                .with_context(|| format!("{}: the name is not UTF-8", path.display()))?;
            out.push((rel.to_owned(), path));
        }
    }
    Ok(())
}

/// One file as a blob of the spec's type: a page blob's length (a multiple of 512) and data extents, or a
/// block blob's length and all of its bytes (a block list covers the whole file, zeros included).
fn file(blob: &str, path: &Path, spec: &SourceSpec) -> anyhow::Result<SourceFile> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).with_context(|| format!("source file {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let len = meta.len();
    let max_block_blob = MAX_BLOCKS * crate::prep::plan::SEGMENT_SIZE;
    if spec.blob_type == BlobType::Block && len > max_block_blob {
        bail!(
            "{} is {}, more than a block blob of the manifest format holds ({MAX_BLOCKS} blocks of 4 MiB, {}): \
             give it as a page blob (/BlobType:PageBlob) or split it",
            path.display(),
            seedship_shared::units::human(len),
            seedship_shared::units::human(max_block_blob)
        );
    }
    if spec.blob_type == BlobType::Page && len % 512 != 0 {
        bail!(
            "{} is {len} bytes, not a multiple of 512: a page blob (/BlobType:PageBlob) must be; give \
             /BlobType:BlockBlob for files of any length, or for a seedship staging location the job's \
             blobs folder, /srcdir:<staging>/<job>/blobs/",
            path.display()
        );
    }
    let (dir, name) = (
        path.parent().unwrap_or(Path::new("/")),
        path.file_name().and_then(|n| n.to_str()).context("a file name")?,
    );
    let data = match spec.blob_type {
        BlobType::Page => LocalStore::new(dir.to_owned())
            .page_ranges(name)
            .with_context(|| format!("finding the data in {}", path.display()))?,
        BlobType::Block if len == 0 => Vec::new(),
        BlobType::Block => std::iter::once(0..len).collect(),
    };
    Ok(SourceFile {
        extents: BlobExtents {
            name: blob.to_owned(),
            len,
            data,
        },
        path: path.to_owned(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        disposition: spec.disposition,
        blob_type: spec.blob_type,
        offered: None,
    })
}

/// A file's modification time now, to tell whether it changed since its session was recorded.
pub fn mtime_ns(path: &Path) -> Option<(u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.len(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    ))
}

/// Splits one CSV line (fields optionally in double quotes, `""` for a quote inside).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_owned()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_owned());
    out
}

/// The data rows of a CSV file whose header must be `header` (names compared without case).
fn csv_rows(path: &Path, header: &[&str]) -> anyhow::Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = csv_fields(lines.next().unwrap_or(""));
    let same =
        first.len() == header.len() && first.iter().zip(header).all(|(a, b)| a.eq_ignore_ascii_case(b));
    if !same {
        bail!(
            "{}: the first line must be the header {}",
            path.display(),
            header.join(",")
        );
    }
    lines
        .enumerate()
        .map(|(i, l)| {
            let f = csv_fields(l);
            if f.len() != header.len() {
                bail!(
                    "{} line {}: {} fields, the header has {}",
                    path.display(),
                    i + 2,
                    f.len(),
                    header.len()
                );
            }
            Ok(f)
        })
        .collect()
}

/// The sources of a v2 data set file: `BasePath,DstBlobPathOrPrefix,BlobType,Disposition,MetadataFile,
/// PropertiesFile`. A base path ending in `/` (or `\`) is a folder.
pub fn dataset(path: &Path) -> anyhow::Result<Vec<SourceSpec>> {
    let header = [
        "BasePath",
        "DstBlobPathOrPrefix",
        "BlobType",
        "Disposition",
        "MetadataFile",
        "PropertiesFile",
    ];
    let mut specs = Vec::new();
    for (i, f) in csv_rows(path, &header)?.into_iter().enumerate() {
        let row = || format!("{} row {}", path.display(), i + 1);
        let blob_type = parse_blob_type(&f[2]).with_context(row)?;
        for (n, v) in [("MetadataFile", &f[4]), ("PropertiesFile", &f[5])] {
            if !v.eq_ignore_ascii_case("none") && !v.is_empty() {
                bail!(
                    "{}: {n} {v:?}: metadata and properties files are not supported (give None)",
                    row()
                );
            }
        }
        let disposition = parse_disposition(&f[3]).with_context(row)?;
        let base = f[0].replace('\\', "/");
        specs.push(SourceSpec {
            dir: base.ends_with('/'),
            path: PathBuf::from(base),
            dst: f[1].clone(),
            disposition,
            blob_type,
        });
    }
    if specs.is_empty() {
        bail!("{}: no data rows", path.display());
    }
    Ok(specs)
}

/// `PageBlob` or `BlockBlob` (case-sensitive, as WAImportExport).
pub fn parse_blob_type(v: &str) -> anyhow::Result<BlobType> {
    match v {
        "PageBlob" => Ok(BlobType::Page),
        "BlockBlob" => Ok(BlobType::Block),
        other => bail!("BlobType {other:?}: give PageBlob or BlockBlob (case-sensitive, as WAImportExport)"),
    }
}

/// `rename`, `no-overwrite` or `overwrite` (case-sensitive, as WAImportExport).
pub fn parse_disposition(v: &str) -> anyhow::Result<ImportDisposition> {
    match v {
        "rename" => Ok(ImportDisposition::Rename),
        "no-overwrite" => Ok(ImportDisposition::NoOverwrite),
        "overwrite" => Ok(ImportDisposition::Overwrite),
        other => bail!("Disposition {other:?}: give rename, no-overwrite or overwrite"),
    }
}

/// The drive of a v2 drive set file (one row: seedship keeps one journal per drive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveSetRow {
    pub target: PathBuf,
    pub format: bool,
    pub silent: bool,
    pub encrypt: bool,
    /// The recovery key of an already encrypted drive (`AlreadyEncrypted`).
    pub key: Option<String>,
}

/// The columns of a v2 drive set file (initial and additional alike).
const DRIVE_SET_HEADER: [&str; 5] = [
    "DriveLetter",
    "FormatOption",
    "SilentOrPromptOnFormat",
    "Encryption",
    "ExistingBitLockerKey",
];

/// Reads a v2 drive set file: `DriveLetter,FormatOption,SilentOrPromptOnFormat,Encryption,
/// ExistingBitLockerKey`, with a device or image path for the drive letter.
pub fn drive_set(path: &Path) -> anyhow::Result<DriveSetRow> {
    let rows = csv_rows(path, &DRIVE_SET_HEADER)?;
    let [f] = &rows[..] else {
        bail!(
            "{}: {} drives; the initial drive set takes one (seedship keeps one journal per drive): give the \
             others to /AdditionalDriveSet: when the first is full, or prepare each with its own journal (/j:)",
            path.display(),
            rows.len()
        );
    };
    drive_row(path, f)
}

/// The drives of a v2 additional drive set file (same columns as the initial drive set), in order.
pub fn additional_drives(path: &Path) -> anyhow::Result<Vec<DriveSetRow>> {
    let rows = csv_rows(path, &DRIVE_SET_HEADER)?;
    if rows.is_empty() {
        bail!("{}: no drives", path.display());
    }
    rows.iter()
        .enumerate()
        .map(|(i, f)| drive_row(path, f).with_context(|| format!("{} row {}", path.display(), i + 1)))
        .collect()
}

fn drive_row(path: &Path, f: &[String]) -> anyhow::Result<DriveSetRow> {
    let format = match f[1].as_str() {
        "Format" => true,
        "AlreadyFormatted" => false,
        v => bail!(
            "{}: FormatOption {v:?}: Format or AlreadyFormatted",
            path.display()
        ),
    };
    let silent = match f[2].as_str() {
        "SilentMode" => true,
        "PromptOnFormat" => false,
        v => bail!(
            "{}: SilentOrPromptOnFormat {v:?}: SilentMode or PromptOnFormat",
            path.display()
        ),
    };
    let encrypt = match f[3].as_str() {
        "Encrypt" => true,
        "AlreadyEncrypted" => false,
        v => bail!(
            "{}: Encryption {v:?}: Encrypt or AlreadyEncrypted",
            path.display()
        ),
    };
    if format && !encrypt {
        bail!(
            "{}: When Format is specified, Encrypt must also be specified",
            path.display()
        );
    }
    let key = (!f[4].is_empty() && !f[4].eq_ignore_ascii_case("none")).then(|| f[4].clone());
    if encrypt && key.is_some() {
        bail!(
            "{}: BitLocker Key should not be specified with Encrypt",
            path.display()
        );
    }
    if !encrypt && key.is_none() {
        bail!(
            "{}: AlreadyEncrypted needs the drive's recovery key in ExistingBitLockerKey",
            path.display()
        );
    }
    Ok(DriveSetRow {
        target: PathBuf::from(&f[0]),
        format,
        silent,
        encrypt,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_quotes() {
        assert_eq!(
            csv_fields(r#""F:\50M_original\","containername/",BlockBlob,rename,"None",None"#),
            [
                "F:\\50M_original\\",
                "containername/",
                "BlockBlob",
                "rename",
                "None",
                "None"
            ]
        );
        assert_eq!(csv_fields(r#"a,"b ""c""",d"#), ["a", "b \"c\"", "d"]);
    }

    #[test]
    fn container_names() {
        assert_eq!(
            split_container("backup/vdir/").unwrap(),
            ("backup".into(), "vdir/".into())
        );
        assert!(split_container("Backup/").is_err());
        assert!(split_container("ab/").is_err());
    }

    #[test]
    fn drive_set_rules() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d.csv");
        let h = "DriveLetter,FormatOption,SilentOrPromptOnFormat,Encryption,ExistingBitLockerKey\n";
        std::fs::write(&p, format!("{h}/dev/sdb,Format,SilentMode,Encrypt,\n")).unwrap();
        let r = drive_set(&p).unwrap();
        assert!(r.format && r.silent && r.encrypt && r.key.is_none());
        std::fs::write(&p, format!("{h}/dev/sdb,Format,SilentMode,AlreadyEncrypted,1\n")).unwrap();
        assert!(drive_set(&p)
            .unwrap_err()
            .to_string()
            .contains("Encrypt must also"));
        std::fs::write(&p, format!("{h}/d.img,AlreadyFormatted,SilentMode,AlreadyEncrypted,060456-014509-132033-080300-252615-584177-672089-411631\n")).unwrap();
        assert_eq!(drive_set(&p).unwrap().key.unwrap().len(), 55);
        std::fs::write(
            &p,
            format!("{h}a,Format,SilentMode,Encrypt,\nb,Format,SilentMode,Encrypt,\n"),
        )
        .unwrap();
        assert!(drive_set(&p)
            .unwrap_err()
            .to_string()
            .contains("one journal per drive"));
    }
}
