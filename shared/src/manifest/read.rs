//! Streaming manifest reader with validation.

use std::io::BufRead;

use super::model::{
    BlobPart, Block, Credential, DriveHeader, FileRef, ManifestBlob, Md5Hash, PageRange, RangeList,
};
use super::xml::{attr, Ev, XmlPull};
use super::{BlobList, BlobListHeader, DriveManifest, ManifestError, DOC_MANIFEST};

/// One piece of a manifest, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestItem {
    /// The drive-level fields; always the first item.
    Drive(DriveHeader),
    /// A `BlobList` begins.
    BlobList(BlobListHeader),
    /// A blob of the current list, validated.
    Blob(ManifestBlob),
    /// The current `BlobList` ends.
    EndBlobList,
}

/// Reads a manifest from `input`, handing each item to `visit` as soon as it is complete: memory stays bounded
/// by the largest single blob entry whatever the manifest size.
pub fn read_manifest<R: BufRead>(
    input: R,
    mut visit: impl FnMut(ManifestItem) -> Result<(), ManifestError>,
) -> Result<(), ManifestError> {
    let mut p = XmlPull::new(input, DOC_MANIFEST);
    let attrs = p.root("DriveManifest")?;
    let version =
        attr(&attrs, "Version").ok_or_else(|| p.structure("<DriveManifest> has no Version attribute"))?;
    if version.is_empty() || version.len() > 64 {
        return Err(p.value(
            "DriveManifest@Version",
            version,
            "must be a non-empty version string",
        ));
    }
    let mut header = DriveHeader {
        version: version.to_string(),
        drive_id: String::new(),
        credential: None,
        client_creator: None,
    };
    match p.next_structural()? {
        Ev::Start { name, .. } if name == "Drive" => {}
        _ => return Err(p.structure("<DriveManifest> must contain a <Drive> element")),
    }
    let mut header_sent = false;
    loop {
        match p.next_structural()? {
            Ev::Start { name, attrs } => match name.as_str() {
                "BlobList" => {
                    send_header(&p, &mut header, &mut header_sent, &mut visit)?;
                    read_blob_list(&mut p, &attrs, &mut visit)?;
                }
                _ if header_sent => return Err(p.structure(format!("<{name}> after the first <BlobList>"))),
                "DriveId" => set_once(&mut p, &mut header.drive_id, "DriveId")?,
                "StorageAccountKey" | "ContainerSas" => {
                    if header.credential.is_some() {
                        return Err(p.structure("more than one of StorageAccountKey / ContainerSas"));
                    }
                    let v = p.text_of(&name)?;
                    header.credential = Some(if name == "ContainerSas" {
                        Credential::ContainerSas(v)
                    } else {
                        Credential::StorageAccountKey(v)
                    });
                }
                "ClientCreator" => {
                    if header.client_creator.is_some() {
                        return Err(p.structure("duplicate <ClientCreator>"));
                    }
                    header.client_creator = Some(p.text_of(&name)?);
                }
                other => return Err(p.structure(format!("unexpected <{other}> in <Drive>"))),
            },
            Ev::End => break,
            Ev::Text(_) => return Err(p.structure("unexpected text in <Drive>")),
            Ev::Eof => return Err(p.structure("document ends inside <Drive>")),
        }
    }
    send_header(&p, &mut header, &mut header_sent, &mut visit)?;
    match p.next_structural()? {
        Ev::End => {}
        _ => return Err(p.structure("only one <Drive> is allowed in <DriveManifest>")),
    }
    p.end_of_document()
}

fn send_header<R: BufRead>(
    p: &XmlPull<R>,
    header: &mut DriveHeader,
    sent: &mut bool,
    visit: &mut impl FnMut(ManifestItem) -> Result<(), ManifestError>,
) -> Result<(), ManifestError> {
    if *sent {
        return Ok(());
    }
    if header.drive_id.trim().is_empty() {
        return Err(p.structure("<DriveId> is missing or empty (it must precede every <BlobList>)"));
    }
    *sent = true;
    visit(ManifestItem::Drive(header.clone()))
}

fn set_once<R: BufRead>(p: &mut XmlPull<R>, slot: &mut String, name: &str) -> Result<(), ManifestError> {
    if !slot.is_empty() {
        return Err(p.structure(format!("duplicate <{name}>")));
    }
    *slot = p.text_of(name)?;
    if slot.is_empty() {
        return Err(p.structure(format!("<{name}> is empty")));
    }
    Ok(())
}

fn read_blob_list<R: BufRead>(
    p: &mut XmlPull<R>,
    attrs: &[(String, String)],
    visit: &mut impl FnMut(ManifestItem) -> Result<(), ManifestError>,
) -> Result<(), ManifestError> {
    let mut header = BlobListHeader {
        id: attr(attrs, "Id").map(str::to_string),
        metadata: None,
        properties: None,
    };
    let mut sent = false;
    loop {
        match p.next_structural()? {
            Ev::Start { name, attrs } => match name.as_str() {
                "Blob" => {
                    if !sent {
                        sent = true;
                        visit(ManifestItem::BlobList(header.clone()))?;
                    }
                    visit(ManifestItem::Blob(read_blob(p)?))?;
                }
                "MetadataPath" | "PropertiesPath" if !sent => {
                    let slot = if name == "MetadataPath" {
                        &mut header.metadata
                    } else {
                        &mut header.properties
                    };
                    if slot.is_some() {
                        return Err(p.structure(format!("duplicate <{name}> in <BlobList>")));
                    }
                    *slot = Some(read_file_ref(p, &name, &attrs)?);
                }
                other => return Err(p.structure(format!("unexpected <{other}> in <BlobList>"))),
            },
            Ev::End => break,
            _ => return Err(p.structure("unexpected text in <BlobList>")),
        }
    }
    if !sent {
        visit(ManifestItem::BlobList(header))?;
    }
    visit(ManifestItem::EndBlobList)
}

pub(crate) fn read_file_ref<R: BufRead>(
    p: &mut XmlPull<R>,
    name: &str,
    attrs: &[(String, String)],
) -> Result<FileRef, ManifestError> {
    let hash = attr(attrs, "Hash").ok_or_else(|| p.structure(format!("<{name}> has no Hash attribute")))?;
    let hash = parse_hash(p, &format!("{name}@Hash"), hash)?;
    let path = p.text_of(name)?;
    if path.is_empty() {
        return Err(p.structure(format!("<{name}> is empty")));
    }
    Ok(FileRef { path, hash })
}

pub(crate) fn parse_hash<R: BufRead>(p: &XmlPull<R>, field: &str, v: &str) -> Result<Md5Hash, ManifestError> {
    v.parse().map_err(|reason: &str| p.value(field, v, reason))
}

/// A decimal byte count or offset; at most `i64::MAX` (no blob or file is larger), so that an offset plus a
/// length never wraps.
pub(crate) fn parse_u64<R: BufRead>(p: &XmlPull<R>, field: &str, v: &str) -> Result<u64, ManifestError> {
    let ok = !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| v.parse::<u64>().ok())
        .flatten()
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| p.value(field, v, "expected a decimal byte count of at most 2^63-1"))
}

fn read_blob<R: BufRead>(p: &mut XmlPull<R>) -> Result<ManifestBlob, ManifestError> {
    let mut blob_path = None;
    let mut file_path = None;
    let mut client_data = None;
    let mut snapshot = None;
    let mut length = None;
    let mut disposition = None;
    let mut ranges = None;
    let mut metadata = None;
    let mut properties = None;
    loop {
        let (name, attrs) = match p.next_structural()? {
            Ev::Start { name, attrs } => (name, attrs),
            Ev::End => break,
            _ => return Err(p.structure("unexpected text in <Blob>")),
        };
        let dup = |p: &XmlPull<R>| p.structure(format!("duplicate <{name}> in <Blob>"));
        match name.as_str() {
            "BlobPath" | "FilePath" | "ClientData" | "Snapshot" | "Length" | "ImportDisposition" => {
                let text = p.text_of(&name)?;
                let slot = match name.as_str() {
                    "BlobPath" => &mut blob_path,
                    "FilePath" => &mut file_path,
                    "ClientData" => &mut client_data,
                    "Snapshot" => &mut snapshot,
                    "Length" => &mut length,
                    _ => &mut disposition,
                };
                if slot.replace(text).is_some() {
                    return Err(dup(p));
                }
            }
            "PageRangeList" | "BlockList" => {
                let list = read_ranges(p, &name, blob_path.as_deref().unwrap_or("?"))?;
                if ranges.replace(list).is_some() {
                    return Err(p.structure("more than one PageRangeList/BlockList in <Blob>"));
                }
            }
            "MetadataPath" | "PropertiesPath" => {
                let f = read_file_ref(p, &name, &attrs)?;
                let slot = if name == "MetadataPath" {
                    &mut metadata
                } else {
                    &mut properties
                };
                if slot.replace(f).is_some() {
                    return Err(dup(p));
                }
            }
            other => return Err(p.structure(format!("unexpected <{other}> in <Blob>"))),
        }
    }
    let blob_path = blob_path.ok_or_else(|| p.structure("<Blob> without <BlobPath>"))?;
    let missing = |what: &str| ManifestError::Blob {
        doc: DOC_MANIFEST,
        blob: blob_path.clone(),
        reason: format!("missing <{what}>"),
    };
    let file_path = file_path.ok_or_else(|| missing("FilePath"))?;
    let length = parse_u64(
        p,
        &format!("Length of {blob_path}"),
        &length.ok_or_else(|| missing("Length"))?,
    )?;
    let ranges = ranges.ok_or_else(|| missing("PageRangeList or BlockList"))?;
    let disposition = match disposition {
        Some(d) => Some(
            d.parse()
                .map_err(|reason: &str| p.value("ImportDisposition", &d, reason))?,
        ),
        None => None,
    };
    let (part, client_data) = match client_data.as_deref().and_then(BlobPart::from_client_data) {
        Some(Ok(part)) => (Some(part), None),
        Some(Err(reason)) => return Err(p.value("ClientData", client_data.as_deref().unwrap_or(""), reason)),
        None => (None, client_data),
    };
    let blob = ManifestBlob {
        blob_path,
        file_path,
        client_data,
        part,
        snapshot,
        length,
        disposition,
        ranges,
        metadata,
        properties,
    };
    blob.validate()?;
    Ok(blob)
}

fn read_ranges<R: BufRead>(p: &mut XmlPull<R>, list: &str, blob: &str) -> Result<RangeList, ManifestError> {
    let item = if list == "PageRangeList" {
        "PageRange"
    } else {
        "Block"
    };
    let mut pages = Vec::new();
    let mut blocks = Vec::new();
    loop {
        let attrs = match p.next_structural()? {
            Ev::Start { name, attrs } if name == item => attrs,
            Ev::End => break,
            _ => return Err(p.structure(format!("only <{item}> elements may appear in <{list}> of {blob}"))),
        };
        let get = |p: &XmlPull<R>, key: &str| {
            attr(&attrs, key)
                .map(str::to_string)
                .ok_or_else(|| p.structure(format!("<{item}> of {blob} has no {key} attribute")))
        };
        let offset = parse_u64(p, &format!("{item}@Offset of {blob}"), &get(p, "Offset")?)?;
        let length = parse_u64(p, &format!("{item}@Length of {blob}"), &get(p, "Length")?)?;
        let hash = parse_hash(p, &format!("{item}@Hash of {blob}"), &get(p, "Hash")?)?;
        if !p.text_of(item)?.is_empty() {
            return Err(p.structure(format!("<{item}> of {blob} must be empty")));
        }
        if item == "PageRange" {
            pages.push(PageRange { offset, length, hash });
        } else {
            blocks.push(Block {
                offset,
                length,
                id: attr(&attrs, "Id").map(str::to_string),
                hash,
            });
        }
    }
    Ok(if item == "PageRange" {
        RangeList::Pages(pages)
    } else {
        RangeList::Blocks(blocks)
    })
}

impl DriveManifest {
    /// Reads and validates a whole manifest into memory.
    pub fn read_from<R: BufRead>(input: R) -> Result<Self, ManifestError> {
        let mut header = None;
        let mut lists: Vec<BlobList> = Vec::new();
        read_manifest(input, |item| {
            match item {
                ManifestItem::Drive(h) => header = Some(h),
                ManifestItem::BlobList(h) => lists.push(BlobList {
                    header: h,
                    blobs: Vec::new(),
                }),
                ManifestItem::Blob(b) => {
                    if let Some(l) = lists.last_mut() {
                        l.blobs.push(b);
                    }
                }
                ManifestItem::EndBlobList => {}
            }
            Ok(())
        })?;
        let header = header.ok_or_else(|| ManifestError::Structure {
            doc: DOC_MANIFEST,
            at: 0,
            detail: "no <Drive>".into(),
        })?;
        Ok(DriveManifest {
            header,
            blob_lists: lists,
        })
    }

    /// Reads and validates a whole manifest from its bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        Self::read_from(bytes)
    }
}
