//! Parsers for the Blob service's XML answers: List Blobs, Get Page Ranges and error bodies.
//!
//! They walk quick-xml events with a path stack, take only the elements they know and ignore the rest, so
//! new elements from newer service versions do no harm. They never panic; malformed input is an `Err` with
//! a short description. Input size is bounded by the caller (the response body is read with a cap).

use crate::blob::{Metadata, MAX_NAME_LEN, PAGE_SIZE};
use quick_xml::events::Event;
use quick_xml::Reader;
use std::ops::Range;

/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 32;

/// One object in a List Blobs answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ListedBlob {
    pub name: String,
    pub len: u64,
    pub blob_type: String,
    pub metadata: Metadata,
}

/// A List Blobs result page.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ListPage {
    pub blobs: Vec<ListedBlob>,
    pub next_marker: Option<String>,
}

/// A Get Page Ranges result page: written ranges (end exclusive) and the continuation marker.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PageList {
    pub ranges: Vec<Range<u64>>,
    pub next_marker: Option<String>,
}

/// Events of interest, with the element path (names of the open elements, outermost first).
enum Ev<'a> {
    Start,
    Text(&'a str),
    End,
}

fn walk(xml: &[u8], mut f: impl FnMut(&[String], Ev<'_>) -> Result<(), String>) -> Result<(), String> {
    let mut reader = Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("XML error at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => {
                if path.len() >= MAX_DEPTH {
                    return Err("XML nested too deeply".to_owned());
                }
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                f(&path, Ev::Start)?;
            }
            Event::Empty(e) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                f(&path, Ev::Start)?;
                f(&path, Ev::End)?;
                path.pop();
            }
            Event::End(_) => {
                f(&path, Ev::End)?;
                path.pop();
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| format!("bad XML text: {e}"))?;
                f(&path, Ev::Text(&text))?;
            }
            Event::CData(c) => {
                let text = String::from_utf8_lossy(&c);
                f(&path, Ev::Text(&text))?;
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
        buf.clear();
    }
}

fn is(path: &[String], tail: &[&str]) -> bool {
    path.len() >= tail.len()
        && path[path.len() - tail.len()..]
            .iter()
            .zip(tail)
            .all(|(a, b)| a == b)
}

fn number(text: &str, what: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what} {text:?} is not a number"))
}

/// Whether the path is a key element of a listed blob's metadata: `.../Blob/Metadata/<key>`.
fn is_metadata_key(path: &[String]) -> bool {
    let n = path.len();
    n >= 3 && path[n - 2] == "Metadata" && path[n - 3] == "Blob"
}

/// Parses a List Blobs answer (`EnumerationResults`).
pub(crate) fn parse_list(xml: &[u8]) -> Result<ListPage, String> {
    let mut page = ListPage::default();
    let mut cur: Option<ListedBlob> = None;
    let mut seen_root = false;
    walk(xml, |path, ev| {
        if path.len() == 1 {
            seen_root |= path[0] == "EnumerationResults";
        }
        match ev {
            Ev::Start if is(path, &["Blobs", "Blob"]) => cur = Some(ListedBlob::default()),
            Ev::Start if is_metadata_key(path) => {
                if let Some(b) = cur.as_mut() {
                    b.metadata.entry(path[path.len() - 1].to_lowercase()).or_default();
                }
            }
            Ev::End if is(path, &["Blobs", "Blob"]) => {
                let b = cur.take().ok_or("unbalanced <Blob>")?;
                if b.name.is_empty() || b.name.len() > MAX_NAME_LEN {
                    return Err(format!("blob name {:?} is empty or too long", b.name));
                }
                page.blobs.push(b);
            }
            Ev::Text(t) => {
                if let Some(b) = cur.as_mut() {
                    if is(path, &["Blob", "Name"]) {
                        b.name.push_str(t);
                    } else if is(path, &["Blob", "Properties", "Content-Length"]) {
                        b.len = number(t, "Content-Length")?;
                    } else if is(path, &["Blob", "Properties", "BlobType"]) {
                        b.blob_type = t.trim().to_owned();
                    } else if is_metadata_key(path) {
                        b.metadata
                            .entry(path[path.len() - 1].to_lowercase())
                            .or_default()
                            .push_str(t);
                    }
                } else if is(path, &["EnumerationResults", "NextMarker"]) && !t.trim().is_empty() {
                    page.next_marker = Some(t.trim().to_owned());
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if !seen_root {
        return Err("no <EnumerationResults> element".to_owned());
    }
    Ok(page)
}

/// Parses a Get Page Ranges answer (`PageList`): `PageRange` entries become ranges (end exclusive),
/// `ClearRange` entries (diffs only) are skipped. Ranges must be 512-aligned.
pub(crate) fn parse_page_list(xml: &[u8]) -> Result<PageList, String> {
    let mut out = PageList::default();
    let (mut start, mut end): (Option<u64>, Option<u64>) = (None, None);
    let mut seen_root = false;
    walk(xml, |path, ev| {
        if path.len() == 1 {
            seen_root |= path[0] == "PageList";
        }
        match ev {
            Ev::Start if is(path, &["PageList", "PageRange"]) => (start, end) = (None, None),
            Ev::End if is(path, &["PageList", "PageRange"]) => {
                let (Some(s), Some(e)) = (start, end) else {
                    return Err("<PageRange> without <Start> and <End>".to_owned());
                };
                let e = e.checked_add(1).ok_or("page range end overflows")?;
                if s >= e || s % PAGE_SIZE != 0 || e % PAGE_SIZE != 0 {
                    return Err(format!("page range {s}..{e} is empty or not 512-aligned"));
                }
                out.ranges.push(s..e);
            }
            Ev::Text(t) if is(path, &["PageRange", "Start"]) => start = Some(number(t, "Start")?),
            Ev::Text(t) if is(path, &["PageRange", "End"]) => end = Some(number(t, "End")?),
            Ev::Text(t) if is(path, &["PageList", "NextMarker"]) && !t.trim().is_empty() => {
                out.next_marker = Some(t.trim().to_owned())
            }
            _ => {}
        }
        Ok(())
    })?;
    if !seen_root {
        return Err("no <PageList> element".to_owned());
    }
    Ok(out)
}

/// The `Code` and first line of the `Message` of an error body, if it is one.
pub(crate) fn parse_error(xml: &[u8]) -> (Option<String>, Option<String>) {
    let (mut code, mut message) = (None::<String>, None::<String>);
    let _ = walk(xml, |path, ev| {
        if let Ev::Text(t) = ev {
            if is(path, &["Error", "Code"]) {
                code = Some(t.trim().to_owned());
            } else if is(path, &["Error", "Message"]) {
                message = t.lines().next().map(|l| l.trim().to_owned());
            }
        }
        Ok(())
    });
    (code.filter(|c| !c.is_empty()), message.filter(|m| !m.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_with_metadata_and_marker() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="x" ContainerName="c"><Prefix>a</Prefix><MaxResults>2</MaxResults><Blobs><Blob><Name>a/1 &amp; b</Name><Properties><Content-Length>1024</Content-Length><BlobType>PageBlob</BlobType></Properties><Metadata><Kind>x</Kind><empty/></Metadata></Blob><Blob><Name>a/2</Name><Properties><Content-Length>0</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob></Blobs><NextMarker>m2</NextMarker></EnumerationResults>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(page.next_marker.as_deref(), Some("m2"));
        assert_eq!(page.blobs.len(), 2);
        assert_eq!(page.blobs[0].name, "a/1 & b");
        assert_eq!(page.blobs[0].len, 1024);
        assert_eq!(page.blobs[0].blob_type, "PageBlob");
        assert_eq!(
            page.blobs[0].metadata,
            Metadata::from([("kind".into(), "x".into()), ("empty".into(), "".into())])
        );
        let last = parse_list(b"<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>").unwrap();
        assert_eq!(last, ListPage::default());
    }

    #[test]
    fn page_list_accepts_clear_ranges_markers_and_disorder() {
        let xml = b"<?xml version=\"1.0\"?><PageList><PageRange><Start>1024</Start><End>2047</End></PageRange><ClearRange><Start>0</Start><End>511</End></ClearRange><PageRange><Start>0</Start><End>511</End></PageRange><PageRange><Start>512</Start><End>1023</End></PageRange><NextMarker>abc</NextMarker></PageList>";
        let pl = parse_page_list(xml).unwrap();
        assert_eq!(pl.ranges, vec![1024..2048, 0..512, 512..1024]);
        assert_eq!(pl.next_marker.as_deref(), Some("abc"));
        assert_eq!(parse_page_list(b"<PageList/>").unwrap(), PageList::default());
    }

    #[test]
    fn hostile_input_is_an_error() {
        for bad in [
            &b"<PageList><PageRange><Start>1</Start><End>511</End></PageRange></PageList>"[..],
            b"<PageList><PageRange><Start>0</Start></PageRange></PageList>",
            b"<PageList><PageRange><Start>0</Start><End>18446744073709551615</End></PageRange></PageList>",
            b"<PageList><PageRange><Start>x</Start><End>511</End></PageRange></PageList>",
            b"<Other/>",
            b"<PageList><a></b></PageList>",
        ] {
            assert!(parse_page_list(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = "<a>".repeat(100);
        assert!(parse_list(deep.as_bytes()).is_err());
        assert!(parse_list(b"").is_err());
    }

    #[test]
    fn error_bodies() {
        let xml = b"<?xml version=\"1.0\"?><Error><Code>BlobNotFound</Code><Message>The specified blob does not exist.\nRequestId:1</Message></Error>";
        assert_eq!(
            parse_error(xml),
            (
                Some("BlobNotFound".into()),
                Some("The specified blob does not exist.".into())
            )
        );
        assert_eq!(parse_error(b""), (None, None));
        assert_eq!(parse_error(b"garbage<"), (None, None));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_list(&data);
            let _ = parse_page_list(&data);
            let _ = parse_error(&data);
        }
    }
}
