//! The copy log the data centre writes for each drive (`DriveLog`, reference section 2.5): the drive id,
//! one `Blob` per file of the manifest with its status, disposition and page ranges (each with a status),
//! and the drive's status. [`DriveLog::to_xml`] writes it; [`DriveLog::parse`] reads it back (for tests and
//! for tools that repair an import), refusing anything malformed with the byte offset.
//!
//! One addition to the documented grammar: a blob written under another name (disposition `rename`) carries
//! `<ImportedBlobPath>` with the name it was written to.

use quick_xml::escape::escape;
use quick_xml::events::Event;
use std::fmt::Write as _;

/// The `Version` attribute written.
pub const DRIVE_LOG_VERSION: &str = "2014-11-01";
/// The largest copy log [`DriveLog::parse`] reads.
pub const MAX_LOG_LEN: usize = 256 << 20;

/// A copy log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriveLog {
    pub version: String,
    pub drive_id: String,
    pub blobs: Vec<LogBlob>,
    /// The drive status code (`Completed`, `CompletedWithErrors`, `BitLockerUnlockVolumeFailed`, ...).
    pub status: String,
}

/// One blob of a copy log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogBlob {
    /// Blob status code (`Completed`, `CompletedWithErrors`, `FileNotFound`, `RenameFailed`, ...).
    pub status: String,
    pub blob_path: String,
    /// The blob written to, when the disposition renamed it.
    pub imported_as: Option<String>,
    pub file_path: String,
    pub length: u64,
    /// (`Status` attribute: Created, Renamed, Skipped, Overwritten; value: the disposition asked for).
    pub disposition: Option<(String, String)>,
    pub ranges: Vec<LogRange>,
}

/// One page range of a blob in a copy log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogRange {
    pub offset: u64,
    pub length: u64,
    pub hash: String,
    /// Range status code (`Completed`, `Corrupted`, `FileUnexpectedEnd`, `BlobRequestFailed`, `Cancelled`, ...).
    pub status: String,
}

/// Why a copy log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DriveLogError {
    #[error("copy log is not well-formed XML at byte {at}: {detail}")]
    Xml { at: u64, detail: String },
    #[error("copy log structure is wrong at byte {at}: {detail}")]
    Structure { at: u64, detail: String },
    #[error("copy log is {len} bytes, more than the {max} bytes read")]
    TooLarge { len: usize, max: usize },
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s)
}

impl DriveLog {
    /// The log as XML text.
    pub fn to_xml(&self) -> String {
        let mut x = String::new();
        let _ = writeln!(x, "<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        let _ = writeln!(x, "<DriveLog Version=\"{}\">", esc(&self.version));
        let _ = writeln!(x, "  <DriveId>{}</DriveId>", esc(&self.drive_id));
        for b in &self.blobs {
            let _ = writeln!(x, "  <Blob Status=\"{}\">", esc(&b.status));
            let _ = writeln!(x, "    <BlobPath>{}</BlobPath>", esc(&b.blob_path));
            if let Some(to) = &b.imported_as {
                let _ = writeln!(x, "    <ImportedBlobPath>{}</ImportedBlobPath>", esc(to));
            }
            let _ = writeln!(x, "    <FilePath>{}</FilePath>", esc(&b.file_path));
            let _ = writeln!(x, "    <Length>{}</Length>", b.length);
            if let Some((status, value)) = &b.disposition {
                let _ = writeln!(
                    x,
                    "    <ImportDisposition Status=\"{}\">{}</ImportDisposition>",
                    esc(status),
                    esc(value)
                );
            }
            if !b.ranges.is_empty() {
                let _ = writeln!(x, "    <PageRangeList>");
                for r in &b.ranges {
                    let _ = writeln!(
                        x,
                        "      <PageRange Offset=\"{}\" Length=\"{}\" Hash=\"{}\" Status=\"{}\"/>",
                        r.offset,
                        r.length,
                        esc(&r.hash),
                        esc(&r.status)
                    );
                }
                let _ = writeln!(x, "    </PageRangeList>");
            }
            let _ = writeln!(x, "  </Blob>");
        }
        let _ = writeln!(x, "  <Status>{}</Status>", esc(&self.status));
        let _ = writeln!(x, "</DriveLog>");
        x
    }

    /// Reads a copy log (trailing whitespace after the root element, as a padded page blob has, is fine).
    pub fn parse(bytes: &[u8]) -> Result<DriveLog, DriveLogError> {
        if bytes.len() > MAX_LOG_LEN {
            return Err(DriveLogError::TooLarge {
                len: bytes.len(),
                max: MAX_LOG_LEN,
            });
        }
        let mut reader = quick_xml::Reader::from_reader(bytes);
        reader.config_mut().trim_text(true);
        let mut log = DriveLog::default();
        let mut stack: Vec<String> = Vec::new();
        let mut seen_root = false;
        loop {
            let at = reader.buffer_position();
            let xml = |detail: String| DriveLogError::Xml { at, detail };
            let structure = |detail: String| DriveLogError::Structure { at, detail };
            let event = reader.read_event().map_err(|e| xml(e.to_string()))?;
            match event {
                Event::Start(e) | Event::Empty(e) if stack.len() >= 4 => {
                    return Err(structure(format!(
                        "element {} nested too deep",
                        String::from_utf8_lossy(e.name().as_ref())
                    )))
                }
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(event, Event::Empty(_));
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let mut attrs = std::collections::BTreeMap::new();
                    for a in e.attributes() {
                        let a = a.map_err(|e| xml(e.to_string()))?;
                        let v = a.unescape_value().map_err(|e| xml(e.to_string()))?;
                        attrs.insert(
                            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                            v.into_owned(),
                        );
                    }
                    let attr = |k: &str| attrs.get(k).cloned().unwrap_or_default();
                    let num = |k: &str| {
                        attr(k)
                            .parse::<u64>()
                            .map_err(|_| structure(format!("{name} attribute {k} is not a number")))
                    };
                    let parent: Vec<&str> = stack.iter().map(String::as_str).collect();
                    match (parent.as_slice(), name.as_str()) {
                        ([], "DriveLog") if !seen_root => {
                            seen_root = true;
                            log.version = attr("Version");
                        }
                        (["DriveLog"], "Blob") => log.blobs.push(LogBlob {
                            status: attr("Status"),
                            ..LogBlob::default()
                        }),
                        (["DriveLog", "Blob"], "ImportDisposition") => {
                            if let Some(b) = log.blobs.last_mut() {
                                b.disposition = Some((attr("Status"), String::new()));
                            }
                        }
                        (["DriveLog", "Blob", "PageRangeList"], "PageRange") => {
                            let r = LogRange {
                                offset: num("Offset")?,
                                length: num("Length")?,
                                hash: attr("Hash"),
                                status: attr("Status"),
                            };
                            if let Some(b) = log.blobs.last_mut() {
                                b.ranges.push(r);
                            }
                        }
                        (["DriveLog"], "DriveId" | "Status")
                        | (["DriveLog", "Blob"], "BlobPath" | "ImportedBlobPath" | "FilePath" | "Length")
                        | (["DriveLog", "Blob"], "PageRangeList") => {}
                        _ => {
                            return Err(structure(format!(
                                "unexpected element {name} inside {}",
                                if parent.is_empty() {
                                    "the document".to_owned()
                                } else {
                                    parent.join("/")
                                }
                            )))
                        }
                    }
                    if !empty {
                        stack.push(name);
                    }
                }
                Event::End(_) => {
                    stack.pop();
                }
                Event::Text(t) => {
                    let text = t.unescape().map_err(|e| xml(e.to_string()))?.into_owned();
                    let path: Vec<&str> = stack.iter().map(String::as_str).collect();
                    match path.as_slice() {
                        ["DriveLog", "DriveId"] => log.drive_id = text,
                        ["DriveLog", "Status"] => log.status = text,
                        ["DriveLog", "Blob", field] => {
                            let Some(b) = log.blobs.last_mut() else { continue };
                            match *field {
                                "BlobPath" => b.blob_path = text,
                                "ImportedBlobPath" => b.imported_as = Some(text),
                                "FilePath" => b.file_path = text,
                                "Length" => {
                                    b.length = text
                                        .parse()
                                        .map_err(|_| structure(format!("Length {text:?} is not a number")))?
                                }
                                "ImportDisposition" => {
                                    if let Some(d) = &mut b.disposition {
                                        d.1 = text;
                                    }
                                }
                                _ => return Err(structure(format!("unexpected text in {field}"))),
                            }
                        }
                        _ => return Err(structure(format!("unexpected text {text:?}"))),
                    }
                }
                Event::Eof => break,
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
                Event::CData(_) | Event::DocType(_) => {
                    return Err(structure("CDATA and DOCTYPE are not allowed".into()))
                }
            }
        }
        if !seen_root || !stack.is_empty() {
            return Err(DriveLogError::Structure {
                at: reader.buffer_position(),
                detail: "the DriveLog element is missing or not closed".into(),
            });
        }
        if log.status.is_empty() {
            return Err(DriveLogError::Structure {
                at: reader.buffer_position(),
                detail: "the drive Status is missing".into(),
            });
        }
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DriveLog {
        DriveLog {
            version: DRIVE_LOG_VERSION.into(),
            drive_id: "SEED-1 <&>".into(),
            blobs: vec![LogBlob {
                status: "CompletedWithErrors".into(),
                blob_path: "seed/a b.img".into(),
                imported_as: Some("seed/a b (2).img".into()),
                file_path: "\\s\\seed\\a b.img".into(),
                length: 8192,
                disposition: Some(("Renamed".into(), "rename".into())),
                ranges: vec![
                    LogRange {
                        offset: 0,
                        length: 4096,
                        hash: "00".repeat(16),
                        status: "Completed".into(),
                    },
                    LogRange {
                        offset: 4096,
                        length: 512,
                        hash: "AB".repeat(16),
                        status: "Corrupted".into(),
                    },
                ],
            }],
            status: "CompletedWithErrors".into(),
        }
    }

    #[test]
    fn round_trip_with_padding() {
        let log = sample();
        let mut text = log.to_xml().into_bytes();
        text.resize(text.len().div_ceil(512) * 512, b' ');
        assert_eq!(DriveLog::parse(&text).unwrap(), log);
    }

    #[test]
    fn malformed_logs_are_refused_without_panicking() {
        let good = sample().to_xml();
        for bad in [
            "",
            "<DriveLog>",
            "<DriveLog><Status>x</Status><Other/></DriveLog>",
            "<DriveLog><Blob><Length>ten</Length></Blob><Status>x</Status></DriveLog>",
            "<DriveLog><DriveId>d</DriveId></DriveLog>",
        ] {
            assert!(DriveLog::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        for cut in (0..good.len()).step_by(37) {
            let _ = DriveLog::parse(&good.as_bytes()[..cut]);
        }
    }
}
