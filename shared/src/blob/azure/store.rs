//! [`BlobStore`] for [`AzureStore`]: one method per operation, each a request or a few.

use super::client::Request;
use super::{crc64_header, range_header, xml, AzureStore};
use crate::blob::{
    check_blob_len, check_name, merge_ranges, BlobError, BlobInfo, BlobStore, Metadata, MAX_PUT_PAGE,
};
use reqwest::Method;
use std::ops::Range;

/// The largest XML answer accepted (a listing page of 5000 names with metadata fits easily).
const MAX_XML: usize = 32 << 20;

impl BlobStore for AzureStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn create_container(&self) -> Result<(), BlobError> {
        let req = Request::new("Create Container", Method::PUT, None).query("restype", "container");
        match self.send(req) {
            Ok(_) | Err(BlobError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn delete_container(&self) -> Result<(), BlobError> {
        let req = Request::new("Delete Container", Method::DELETE, None).query("restype", "container");
        self.send(req).map(drop)
    }

    fn create(&self, name: &str, len: u64, metadata: &Metadata) -> Result<(), BlobError> {
        check_name(name)?;
        check_blob_len(len)?;
        let req = Request::new("Create Page Blob", Method::PUT, Some(name))
            .header("x-ms-blob-type", "PageBlob")
            .header("x-ms-blob-content-length", len.to_string());
        self.send(Self::metadata_headers(req, metadata)?).map(drop)
    }

    fn write_pages(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        self.check_write(name, offset, data.len() as u64, ["write offset", "write length"])?;
        if data.is_empty() {
            return self.properties(name).map(drop);
        }
        let jobs = data.chunks(MAX_PUT_PAGE as usize).enumerate().map(|(i, chunk)| {
            let at = offset + i as u64 * MAX_PUT_PAGE;
            (
                Self::put_page_request(name, at, chunk.to_vec(), crc64_header(chunk)),
                (),
            )
        });
        match self.send_many(jobs, |(), _| Ok(())) {
            // Azure refuses a range past the blob's end with 416 (Azurite does not check).
            Err(BlobError::Http { status: 416, .. }) => {
                let len = self.properties(name)?.len;
                let end = offset + data.len() as u64;
                Err(self.out_of_range(name, offset, end, len))
            }
            other => other,
        }
    }

    fn clear_pages(&self, name: &str, offset: u64, len: u64) -> Result<(), BlobError> {
        self.check_write(name, offset, len, ["clear offset", "clear length"])?;
        if len == 0 {
            return self.properties(name).map(drop);
        }
        let req = Request::new("Clear Pages", Method::PUT, Some(name))
            .query("comp", "page")
            .header("x-ms-page-write", "clear")
            .header("x-ms-range", range_header(offset, len));
        self.send(req).map(drop)
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), BlobError> {
        check_name(name)?;
        let end = offset.saturating_add(buf.len() as u64);
        if buf.is_empty() {
            let len = self.properties(name)?.len;
            return if end > len {
                Err(self.out_of_range(name, offset, end, len))
            } else {
                Ok(())
            };
        }
        match self.read_chunks(name, offset, buf) {
            Err(BlobError::Http { status: 416, .. }) => {
                let len = self.properties(name)?.len;
                Err(self.out_of_range(name, offset, end, len))
            }
            other => other,
        }
    }

    fn page_ranges(&self, name: &str) -> Result<Vec<Range<u64>>, BlobError> {
        check_name(name)?;
        let mut ranges = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = Request::new("Get Page Ranges", Method::GET, Some(name)).query("comp", "pagelist");
            if let Some(m) = &marker {
                req = req.query("marker", m.clone());
            }
            req.max_body = MAX_XML;
            let resp = self.send(req)?;
            let page = xml::parse_page_list(&resp.body).map_err(|m| {
                self.inner
                    .bad_response(&Request::new("Get Page Ranges", Method::GET, Some(name)), m)
            })?;
            ranges.extend(page.ranges);
            match page.next_marker {
                Some(m) if Some(&m) != marker.as_ref() => marker = Some(m),
                _ => break,
            }
        }
        Ok(merge_ranges(ranges))
    }

    fn resize(&self, name: &str, len: u64) -> Result<(), BlobError> {
        check_name(name)?;
        check_blob_len(len)?;
        let req = Request::new("Resize Blob", Method::PUT, Some(name))
            .query("comp", "properties")
            .header("x-ms-blob-content-length", len.to_string());
        self.send(req).map(drop)
    }

    fn properties(&self, name: &str) -> Result<BlobInfo, BlobError> {
        check_name(name)?;
        let resp = self.send(Request::new("Get Blob Properties", Method::HEAD, Some(name)))?;
        let len = resp
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                self.inner.bad_response(
                    &Request::new("Get Blob Properties", Method::HEAD, Some(name)),
                    "no Content-Length",
                )
            })?;
        let metadata = resp
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let key = k.as_str().strip_prefix("x-ms-meta-")?;
                Some((key.to_owned(), v.to_str().ok()?.to_owned()))
            })
            .collect();
        Ok(BlobInfo {
            name: name.to_owned(),
            len,
            metadata,
        })
    }

    fn set_metadata(&self, name: &str, metadata: &Metadata) -> Result<(), BlobError> {
        check_name(name)?;
        let req = Request::new("Set Blob Metadata", Method::PUT, Some(name)).query("comp", "metadata");
        self.send(Self::metadata_headers(req, metadata)?).map(drop)
    }

    fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = Request::new("List Blobs", Method::GET, None)
                .query("restype", "container")
                .query("comp", "list")
                .query("include", "metadata")
                .query("maxresults", self.list_page_size.to_string());
            if !prefix.is_empty() {
                req = req.query("prefix", prefix);
            }
            if let Some(m) = &marker {
                req = req.query("marker", m.clone());
            }
            req.max_body = MAX_XML;
            let resp = self.send(req)?;
            let page = xml::parse_list(&resp.body).map_err(|m| {
                self.inner
                    .bad_response(&Request::new("List Blobs", Method::GET, None), m)
            })?;
            out.extend(page.blobs.into_iter().map(|b| BlobInfo {
                name: b.name,
                len: b.len,
                metadata: b.metadata,
            }));
            match page.next_marker {
                Some(m) if Some(&m) != marker.as_ref() => marker = Some(m),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<(), BlobError> {
        check_name(name)?;
        self.send(Request::new("Delete Blob", Method::DELETE, Some(name)))
            .map(drop)
    }

    fn put_block(&self, name: &str, id: &str, data: &[u8]) -> Result<(), BlobError> {
        use base64::Engine;
        check_name(name)?;
        check_block_id(id)?;
        if data.len() as u64 > MAX_PUT_PAGE {
            return Err(BlobError::OverLimit {
                what: "block length",
                value: data.len() as u64,
                limit: MAX_PUT_PAGE,
                limit_name: "4 MiB, the largest block of a WAImportExport manifest",
            });
        }
        let md5 = crate::manifest::Md5Hash::of(data);
        let mut req = Request::new("Put Block", Method::PUT, Some(name))
            .query("comp", "block")
            .query("blockid", id)
            .header(
                "content-md5",
                base64::engine::general_purpose::STANDARD.encode(md5.0),
            );
        req.body = data.to_vec();
        self.send(req).map(drop)
    }

    fn put_block_list(&self, name: &str, ids: &[String]) -> Result<(), BlobError> {
        check_name(name)?;
        let mut body = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in ids {
            check_block_id(id)?;
            body.push_str(&format!("<Latest>{id}</Latest>"));
        }
        body.push_str("</BlockList>");
        let mut req = Request::new("Put Block List", Method::PUT, Some(name)).query("comp", "blocklist");
        req.body = body.into_bytes();
        self.send(req).map(drop)
    }
}

/// A block id is non-empty Base64 (so it needs no escaping in the block list).
fn check_block_id(id: &str) -> Result<(), BlobError> {
    let base64 = |c: char| c.is_ascii_alphanumeric() || "+/=".contains(c);
    if id.is_empty() || id.len() > 88 || !id.chars().all(base64) {
        return Err(BlobError::InvalidName {
            name: id.to_owned(),
            reason: "a block id is Base64 of at most 64 bytes",
        });
    }
    Ok(())
}

impl AzureStore {
    /// The blob's type as Get Blob Properties gives it (`x-ms-blob-type`: `PageBlob`, `BlockBlob`,
    /// `AppendBlob`).
    pub fn blob_type(&self, name: &str) -> Result<String, BlobError> {
        check_name(name)?;
        let req = || Request::new("Get Blob Properties", Method::HEAD, Some(name));
        let resp = self.send(req())?;
        resp.header("x-ms-blob-type")
            .map(str::to_owned)
            .ok_or_else(|| self.inner.bad_response(&req(), "no x-ms-blob-type"))
    }
}
