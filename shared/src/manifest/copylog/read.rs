//! `DriveLog` reader. Lenient where the documented samples are (hash values with surrounding spaces, `utf-8`
//! declarations, empty lists), strict on everything else.

use std::io::BufRead;

use super::{DriveLog, LogBlob, LogDisposition, LogFileStatus, LogRange, LogRanges};
use crate::manifest::read::parse_u64;
use crate::manifest::xml::{attr, Ev, XmlPull};
use crate::manifest::{FileRef, ManifestError, Md5Hash, DOC_LOG};

impl DriveLog {
    /// Parses a copy log from its bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        Self::read_from(bytes)
    }

    /// Parses a copy log from a reader.
    pub fn read_from<R: BufRead>(input: R) -> Result<Self, ManifestError> {
        let mut p = XmlPull::new(input, DOC_LOG);
        let attrs = p.root("DriveLog")?;
        let version = attr(&attrs, "Version")
            .ok_or_else(|| p.structure("<DriveLog> has no Version attribute"))?
            .to_string();
        let (mut drive_id, mut status, mut blobs) = (None, None, Vec::new());
        loop {
            let (name, attrs) = match p.next_structural()? {
                Ev::Start { name, attrs } => (name, attrs),
                Ev::End => break,
                _ => return Err(p.structure("unexpected text in <DriveLog>")),
            };
            match name.as_str() {
                "DriveId" if drive_id.is_none() => drive_id = Some(p.text_of(&name)?),
                "Blob" if status.is_none() => blobs.push(read_blob(&mut p, &attrs)?),
                "Status" if status.is_none() => {
                    let v = p.text_of(&name)?;
                    status = Some(
                        v.trim()
                            .parse()
                            .map_err(|r: String| p.value("DriveLog Status", &v, r))?,
                    );
                }
                other => return Err(p.structure(format!("unexpected or repeated <{other}> in <DriveLog>"))),
            }
        }
        p.end_of_document()?;
        let drive_id = drive_id
            .filter(|d| !d.is_empty())
            .ok_or_else(|| p.structure("<DriveId> is missing or empty"))?;
        let status = status.ok_or_else(|| p.structure("the drive <Status> is missing"))?;
        Ok(DriveLog {
            version,
            drive_id,
            blobs,
            status,
        })
    }
}

fn status_attr<R: BufRead, T: std::str::FromStr<Err = String>>(
    p: &XmlPull<R>,
    element: &str,
    attrs: &[(String, String)],
) -> Result<T, ManifestError> {
    let v =
        attr(attrs, "Status").ok_or_else(|| p.structure(format!("<{element}> has no Status attribute")))?;
    v.trim()
        .parse()
        .map_err(|r| p.value(&format!("{element}@Status"), v, r))
}

fn hash<R: BufRead>(p: &XmlPull<R>, field: &str, v: &str) -> Result<Md5Hash, ManifestError> {
    v.trim().parse().map_err(|r: &str| p.value(field, v, r))
}

fn read_blob<R: BufRead>(p: &mut XmlPull<R>, attrs: &[(String, String)]) -> Result<LogBlob, ManifestError> {
    let status = status_attr(p, "Blob", attrs)?;
    // BlobPath FilePath Snapshot Length LastModified ImportedBlobPath
    let mut texts: [Option<String>; 6] = Default::default();
    let (mut disposition, mut ranges, mut metadata, mut properties) = (None, None, None, None);
    loop {
        let (name, attrs) = match p.next_structural()? {
            Ev::Start { name, attrs } => (name, attrs),
            Ev::End => break,
            _ => return Err(p.structure("unexpected text in <Blob>")),
        };
        let slot = [
            "BlobPath",
            "FilePath",
            "Snapshot",
            "Length",
            "LastModified",
            "ImportedBlobPath",
        ]
        .iter()
        .position(|n| *n == name);
        match (name.as_str(), slot) {
            (_, Some(i)) if texts[i].is_none() => texts[i] = Some(p.text_of(&name)?),
            ("ImportDisposition", _) if disposition.is_none() => {
                let status = status_attr(p, &name, &attrs)?;
                let v = p.text_of(&name)?;
                let requested = v
                    .trim()
                    .parse()
                    .map_err(|r: &str| p.value("ImportDisposition", &v, r))?;
                disposition = Some(LogDisposition { requested, status });
            }
            ("PageRangeList" | "BlockList", _) if ranges.is_none() => ranges = Some(read_ranges(p, &name)?),
            ("Metadata", _) if metadata.is_none() => metadata = Some(read_file_status(p, &name, &attrs)?),
            ("Properties", _) if properties.is_none() => {
                properties = Some(read_file_status(p, &name, &attrs)?)
            }
            (other, _) => return Err(p.structure(format!("unexpected or repeated <{other}> in <Blob>"))),
        }
    }
    let [blob_path, file_path, snapshot, length, last_modified, imported_blob_path] = texts;
    let blob_path = blob_path.ok_or_else(|| p.structure("<Blob> without <BlobPath>"))?;
    let missing = |what: &str| ManifestError::Blob {
        doc: DOC_LOG,
        blob: blob_path.clone(),
        reason: format!("missing <{what}>"),
    };
    let file_path = file_path.ok_or_else(|| missing("FilePath"))?;
    let length = parse_u64(
        p,
        &format!("Length of {blob_path}"),
        length.ok_or_else(|| missing("Length"))?.trim(),
    )?;
    Ok(LogBlob {
        status,
        blob_path,
        imported_blob_path,
        file_path,
        snapshot,
        length,
        last_modified,
        disposition,
        ranges,
        metadata,
        properties,
    })
}

fn read_ranges<R: BufRead>(p: &mut XmlPull<R>, list: &str) -> Result<LogRanges, ManifestError> {
    let item = if list == "PageRangeList" {
        "PageRange"
    } else {
        "Block"
    };
    let mut out = Vec::new();
    loop {
        let attrs = match p.next_structural()? {
            Ev::Start { name, attrs } if name == item => attrs,
            Ev::End => break,
            _ => return Err(p.structure(format!("only <{item}> elements may appear in <{list}>"))),
        };
        let get = |p: &XmlPull<R>, key: &str| {
            attr(&attrs, key)
                .map(str::to_string)
                .ok_or_else(|| p.structure(format!("<{item}> has no {key} attribute")))
        };
        let offset = parse_u64(p, &format!("{item}@Offset"), get(p, "Offset")?.trim())?;
        let length = parse_u64(p, &format!("{item}@Length"), get(p, "Length")?.trim())?;
        let hash = match attr(&attrs, "Hash") {
            Some(h) => Some(hash(p, &format!("{item}@Hash"), h)?),
            None => None,
        };
        let status = status_attr(p, item, &attrs)?;
        let id = attr(&attrs, "Id").map(str::to_string);
        if !p.text_of(item)?.trim().is_empty() {
            return Err(p.structure(format!("<{item}> must be empty")));
        }
        out.push(LogRange {
            offset,
            length,
            id,
            hash,
            status,
        });
    }
    Ok(if item == "PageRange" {
        LogRanges::Pages(out)
    } else {
        LogRanges::Blocks(out)
    })
}

fn read_file_status<R: BufRead>(
    p: &mut XmlPull<R>,
    element: &str,
    attrs: &[(String, String)],
) -> Result<LogFileStatus, ManifestError> {
    let status = status_attr(p, element, attrs)?;
    let (mut global_path, mut path) = (None, None);
    loop {
        let (name, attrs) = match p.next_structural()? {
            Ev::Start { name, attrs } => (name, attrs),
            Ev::End => break,
            _ => return Err(p.structure(format!("unexpected text in <{element}>"))),
        };
        let h = attr(&attrs, "Hash")
            .ok_or_else(|| p.structure(format!("<{name}> in <{element}> has no Hash attribute")))?;
        let h = hash(p, &format!("{element}/{name}@Hash"), h)?;
        let file = FileRef {
            path: p.text_of(&name)?,
            hash: h,
        };
        let slot = match name.as_str() {
            "GlobalPath" => &mut global_path,
            "Path" => &mut path,
            other => return Err(p.structure(format!("unexpected <{other}> in <{element}>"))),
        };
        if slot.replace(file).is_some() {
            return Err(p.structure(format!("repeated <{name}> in <{element}>")));
        }
    }
    Ok(LogFileStatus {
        status,
        global_path,
        path,
    })
}
