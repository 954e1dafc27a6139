//! Streaming manifest writer: the drive header first, then blob lists and blobs one at a time.

use std::io::Write;

use super::model::{Credential, DriveHeader, FileRef, ManifestBlob, RangeList};
use super::xml::escape;
use super::{BlobListHeader, DriveManifest, ManifestError, DOC_MANIFEST};

/// Writes a `DriveManifest` document. Call [`begin_blob_list`](Self::begin_blob_list), then
/// [`write_blob`](Self::write_blob) for each blob, then [`finish`](Self::finish); a blob list left open is
/// closed by `finish`. Every blob is validated before it is written.
pub struct ManifestWriter<W: Write> {
    out: W,
    in_list: bool,
}

impl<W: Write> ManifestWriter<W> {
    /// Writes the XML declaration, `<DriveManifest Version>`, `<Drive>` and the drive-level elements.
    pub fn new(out: W, header: &DriveHeader) -> Result<Self, ManifestError> {
        let mut w = Self { out, in_list: false };
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        s += &format!(
            "<DriveManifest Version=\"{}\">\n  <Drive>\n",
            esc("Version", &header.version)?
        );
        if header.drive_id.trim().is_empty() {
            return Err(invalid("DriveId", "", "the drive id is empty"));
        }
        s += &format!("    <DriveId>{}</DriveId>\n", esc("DriveId", &header.drive_id)?);
        match &header.credential {
            Some(Credential::StorageAccountKey(k)) => {
                s += &format!(
                    "    <StorageAccountKey>{}</StorageAccountKey>\n",
                    esc("StorageAccountKey", k)?
                );
            }
            Some(Credential::ContainerSas(k)) => {
                s += &format!("    <ContainerSas>{}</ContainerSas>\n", esc("ContainerSas", k)?);
            }
            None => {}
        }
        if let Some(c) = &header.client_creator {
            s += &format!(
                "    <ClientCreator>{}</ClientCreator>\n",
                esc("ClientCreator", c)?
            );
        }
        w.put(&s)?;
        Ok(w)
    }

    /// Opens a `BlobList` (closing the previous one).
    pub fn begin_blob_list(&mut self, header: &BlobListHeader) -> Result<(), ManifestError> {
        self.end_blob_list()?;
        let mut s = match &header.id {
            Some(id) => format!("    <BlobList Id=\"{}\">\n", esc("BlobList@Id", id)?),
            None => "    <BlobList>\n".to_string(),
        };
        file_ref(&mut s, "      ", "MetadataPath", header.metadata.as_ref())?;
        file_ref(&mut s, "      ", "PropertiesPath", header.properties.as_ref())?;
        self.in_list = true;
        self.put(&s)
    }

    /// Writes one blob entry (opening an unnamed `BlobList` if none is open).
    pub fn write_blob(&mut self, blob: &ManifestBlob) -> Result<(), ManifestError> {
        blob.validate()?;
        if !self.in_list {
            self.begin_blob_list(&BlobListHeader::default())?;
        }
        let mut s = String::with_capacity(256);
        s += "      <Blob>\n";
        s += &format!(
            "        <BlobPath>{}</BlobPath>\n",
            esc("BlobPath", &blob.blob_path)?
        );
        s += &format!(
            "        <FilePath>{}</FilePath>\n",
            esc("FilePath", &blob.file_path)?
        );
        let client_data = blob
            .part
            .map(|p| p.to_client_data())
            .or_else(|| blob.client_data.clone());
        if let Some(c) = client_data {
            s += &format!("        <ClientData>{}</ClientData>\n", esc("ClientData", &c)?);
        }
        if let Some(snap) = &blob.snapshot {
            s += &format!("        <Snapshot>{}</Snapshot>\n", esc("Snapshot", snap)?);
        }
        s += &format!("        <Length>{}</Length>\n", blob.length);
        if let Some(d) = blob.disposition {
            s += &format!("        <ImportDisposition>{}</ImportDisposition>\n", d.as_str());
        }
        self.put(&s)?;
        s.clear();
        match &blob.ranges {
            RangeList::Pages(ranges) => {
                self.put("        <PageRangeList>\n")?;
                for r in ranges {
                    s.clear();
                    s += &format!(
                        "          <PageRange Offset=\"{}\" Length=\"{}\" Hash=\"{}\"/>\n",
                        r.offset, r.length, r.hash
                    );
                    self.put(&s)?;
                }
                self.put("        </PageRangeList>\n")?;
            }
            RangeList::Blocks(blocks) => {
                self.put("        <BlockList>\n")?;
                for b in blocks {
                    s.clear();
                    s += &format!("          <Block Offset=\"{}\" Length=\"{}\"", b.offset, b.length);
                    if let Some(id) = &b.id {
                        s += &format!(" Id=\"{}\"", esc("Block@Id", id)?);
                    }
                    s += &format!(" Hash=\"{}\"/>\n", b.hash);
                    self.put(&s)?;
                }
                self.put("        </BlockList>\n")?;
            }
        }
        s.clear();
        file_ref(&mut s, "        ", "MetadataPath", blob.metadata.as_ref())?;
        file_ref(&mut s, "        ", "PropertiesPath", blob.properties.as_ref())?;
        s += "      </Blob>\n";
        self.put(&s)
    }

    fn end_blob_list(&mut self) -> Result<(), ManifestError> {
        if self.in_list {
            self.in_list = false;
            self.put("    </BlobList>\n")?;
        }
        Ok(())
    }

    /// Closes the open elements, flushes, and returns the sink.
    pub fn finish(mut self) -> Result<W, ManifestError> {
        self.end_blob_list()?;
        self.put("  </Drive>\n</DriveManifest>\n")?;
        self.out.flush().map_err(io_err)?;
        Ok(self.out)
    }

    fn put(&mut self, s: &str) -> Result<(), ManifestError> {
        self.out.write_all(s.as_bytes()).map_err(io_err)
    }
}

impl DriveManifest {
    /// Writes the whole manifest to `out`.
    pub fn write_to<W: Write>(&self, out: W) -> Result<W, ManifestError> {
        let mut w = ManifestWriter::new(out, &self.header)?;
        for list in &self.blob_lists {
            w.begin_blob_list(&list.header)?;
            for blob in &list.blobs {
                w.write_blob(blob)?;
            }
        }
        w.finish()
    }

    /// The manifest's exact bytes.
    pub fn to_xml(&self) -> Result<Vec<u8>, ManifestError> {
        self.write_to(Vec::new())
    }
}

fn file_ref(
    s: &mut String,
    indent: &str,
    element: &'static str,
    f: Option<&FileRef>,
) -> Result<(), ManifestError> {
    if let Some(f) = f {
        *s += &format!(
            "{indent}<{element} Hash=\"{}\">{}</{element}>\n",
            f.hash,
            esc(element, &f.path)?
        );
    }
    Ok(())
}

fn esc<'a>(field: &'static str, value: &'a str) -> Result<std::borrow::Cow<'a, str>, ManifestError> {
    escape(value).map_err(|c| {
        invalid(
            field,
            value,
            &format!("character U+{:04X} cannot be written in XML 1.0", c as u32),
        )
    })
}

fn invalid(field: &str, value: &str, reason: &str) -> ManifestError {
    // Never echo a credential back.
    let shown = if matches!(field, "StorageAccountKey" | "ContainerSas") {
        "<redacted>".to_string()
    } else {
        value.chars().take(80).collect()
    };
    ManifestError::Value {
        doc: DOC_MANIFEST,
        at: 0,
        field: field.into(),
        value: shown,
        reason: reason.into(),
    }
}

fn io_err(source: std::io::Error) -> ManifestError {
    ManifestError::Io {
        doc: DOC_MANIFEST,
        source,
    }
}
