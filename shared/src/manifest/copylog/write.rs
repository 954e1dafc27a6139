//! Streaming `DriveLog` writer.

use std::io::Write;

use super::{DriveLog, DriveStatus, LogBlob, LogFileStatus, LogRanges};
use crate::manifest::xml::escape;
use crate::manifest::{ManifestError, DOC_LOG};

/// Writes a `DriveLog`: the drive id first, then blobs one at a time, then the drive status.
pub struct DriveLogWriter<W: Write> {
    out: W,
}

impl<W: Write> DriveLogWriter<W> {
    pub fn new(mut out: W, version: &str, drive_id: &str) -> Result<Self, ManifestError> {
        let s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DriveLog Version=\"{}\">\n  <DriveId>{}</DriveId>\n",
            esc("Version", version)?,
            esc("DriveId", drive_id)?
        );
        out.write_all(s.as_bytes()).map_err(io_err)?;
        Ok(Self { out })
    }

    pub fn write_blob(&mut self, b: &LogBlob) -> Result<(), ManifestError> {
        let mut s = format!("  <Blob Status=\"{}\">\n", b.status.as_str());
        s += &format!("    <BlobPath>{}</BlobPath>\n", esc("BlobPath", &b.blob_path)?);
        if let Some(v) = &b.imported_blob_path {
            s += &format!(
                "    <ImportedBlobPath>{}</ImportedBlobPath>\n",
                esc("ImportedBlobPath", v)?
            );
        }
        s += &format!("    <FilePath>{}</FilePath>\n", esc("FilePath", &b.file_path)?);
        if let Some(v) = &b.snapshot {
            s += &format!("    <Snapshot>{}</Snapshot>\n", esc("Snapshot", v)?);
        }
        s += &format!("    <Length>{}</Length>\n", b.length);
        if let Some(v) = &b.last_modified {
            s += &format!("    <LastModified>{}</LastModified>\n", esc("LastModified", v)?);
        }
        if let Some(d) = b.disposition {
            s += &format!(
                "    <ImportDisposition Status=\"{}\">{}</ImportDisposition>\n",
                d.status.as_str(),
                d.requested.as_str()
            );
        }
        self.put(&s)?;
        if let Some(ranges) = &b.ranges {
            let (list, item, ranges) = match ranges {
                LogRanges::Pages(r) => ("PageRangeList", "PageRange", r),
                LogRanges::Blocks(r) => ("BlockList", "Block", r),
            };
            self.put(&format!("    <{list}>\n"))?;
            for r in ranges {
                let mut line = format!("      <{item} Offset=\"{}\" Length=\"{}\"", r.offset, r.length);
                if let Some(id) = &r.id {
                    line += &format!(" Id=\"{}\"", esc("Id", id)?);
                }
                if let Some(h) = r.hash {
                    line += &format!(" Hash=\"{h}\"");
                }
                line += &format!(" Status=\"{}\"/>\n", r.status.as_str());
                self.put(&line)?;
            }
            self.put(&format!("    </{list}>\n"))?;
        }
        let mut s = String::new();
        file_status(&mut s, "Metadata", b.metadata.as_ref())?;
        file_status(&mut s, "Properties", b.properties.as_ref())?;
        s += "  </Blob>\n";
        self.put(&s)
    }

    /// Writes the drive status, closes the document and returns the sink.
    pub fn finish(mut self, status: DriveStatus) -> Result<W, ManifestError> {
        self.put(&format!("  <Status>{}</Status>\n</DriveLog>\n", status.as_str()))?;
        self.out.flush().map_err(io_err)?;
        Ok(self.out)
    }

    fn put(&mut self, s: &str) -> Result<(), ManifestError> {
        self.out.write_all(s.as_bytes()).map_err(io_err)
    }
}

impl DriveLog {
    /// The log's bytes.
    pub fn to_xml(&self) -> Result<Vec<u8>, ManifestError> {
        let mut w = DriveLogWriter::new(Vec::new(), &self.version, &self.drive_id)?;
        for b in &self.blobs {
            w.write_blob(b)?;
        }
        w.finish(self.status)
    }
}

fn file_status(s: &mut String, element: &str, f: Option<&LogFileStatus>) -> Result<(), ManifestError> {
    let Some(f) = f else { return Ok(()) };
    *s += &format!("    <{element} Status=\"{}\">\n", f.status.as_str());
    for (tag, r) in [("GlobalPath", &f.global_path), ("Path", &f.path)] {
        if let Some(r) = r {
            *s += &format!(
                "      <{tag} Hash=\"{}\">{}</{tag}>\n",
                r.hash,
                esc(tag, &r.path)?
            );
        }
    }
    *s += &format!("    </{element}>\n");
    Ok(())
}

fn esc<'a>(field: &str, v: &'a str) -> Result<std::borrow::Cow<'a, str>, ManifestError> {
    escape(v).map_err(|c| ManifestError::Value {
        doc: DOC_LOG,
        at: 0,
        field: field.into(),
        value: v.chars().take(80).collect(),
        reason: format!("character U+{:04X} cannot be written in XML 1.0", c as u32),
    })
}

fn io_err(source: std::io::Error) -> ManifestError {
    ManifestError::Io { doc: DOC_LOG, source }
}
