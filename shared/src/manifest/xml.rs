//! Small XML helpers shared by the manifest and copy-log formats: escaping for the writers and a pull reader
//! over quick-xml that bounds every token, skips comments and declarations, and reports byte offsets.

use std::borrow::Cow;
use std::io::{self, BufRead};

use quick_xml::events::Event;

use super::ManifestError;

/// Longest run of bytes between `<`/`>` delimiters (one text node or one tag) the readers accept.
pub const MAX_TOKEN_LEN: usize = 1 << 20;
/// Deepest element nesting the readers accept.
const MAX_DEPTH: usize = 16;

/// Escapes text for element content or attribute values; refuses characters XML 1.0 cannot carry.
pub(crate) fn escape(s: &str) -> Result<Cow<'_, str>, char> {
    if let Some(c) = s.chars().find(|&c| !is_xml_char(c)) {
        return Err(c);
    }
    if !s.contains(['&', '<', '>', '"', '\'', '\r', '\n', '\t']) {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    Ok(Cow::Owned(out))
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// A `BufRead` that fails once more than [`MAX_TOKEN_LEN`] bytes pass within one event, so quick-xml never
/// buffers an unbounded token. [`XmlPull`] restarts the count at each event: counting from the last `<` or
/// `>` instead would let a comment, CDATA section or quoted attribute full of `>` grow without end, because
/// quick-xml returns each of those as one token.
pub(crate) struct Bounded<R> {
    inner: R,
    run: usize,
}

impl<R: BufRead> io::Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Bounded<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.run > MAX_TOKEN_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a text, tag, comment or CDATA section is longer than {MAX_TOKEN_LEN} bytes"),
            ));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.run = self.run.saturating_add(amt);
        self.inner.consume(amt);
    }
}

/// A pull event with owned, unescaped strings.
#[derive(Debug)]
pub(crate) enum Ev {
    Start {
        name: String,
        attrs: Vec<(String, String)>,
    },
    End,
    Text(String),
    Eof,
}

/// The pull reader.
pub(crate) struct XmlPull<R: BufRead> {
    reader: quick_xml::Reader<Bounded<R>>,
    buf: Vec<u8>,
    depth: usize,
    pub(crate) doc: &'static str,
    /// Byte offset of the start of the last event returned.
    pub(crate) at: u64,
}

impl<R: BufRead> XmlPull<R> {
    pub(crate) fn new(input: R, doc: &'static str) -> Self {
        let mut reader = quick_xml::Reader::from_reader(Bounded { inner: input, run: 0 });
        let cfg = reader.config_mut();
        cfg.expand_empty_elements = true;
        cfg.check_end_names = true;
        cfg.trim_text(false);
        Self {
            reader,
            buf: Vec::new(),
            depth: 0,
            doc,
            at: 0,
        }
    }

    fn xml_err(&self, detail: impl Into<String>) -> ManifestError {
        ManifestError::Xml {
            doc: self.doc,
            at: self.at,
            detail: detail.into(),
        }
    }

    pub(crate) fn structure(&self, detail: impl Into<String>) -> ManifestError {
        ManifestError::Structure {
            doc: self.doc,
            at: self.at,
            detail: detail.into(),
        }
    }

    pub(crate) fn value(&self, field: &str, value: &str, reason: impl Into<String>) -> ManifestError {
        let shown: String = value.chars().take(80).collect();
        ManifestError::Value {
            doc: self.doc,
            at: self.at,
            field: field.into(),
            value: shown,
            reason: reason.into(),
        }
    }

    /// The next start, end, non-blank text or end of file: blank text between elements is layout.
    pub(crate) fn next_structural(&mut self) -> Result<Ev, ManifestError> {
        loop {
            match self.next()? {
                Ev::Text(t) if t.trim().is_empty() => {}
                ev => return Ok(ev),
            }
        }
    }

    /// The next start, end, text (blank included) or end of file.
    pub(crate) fn next(&mut self) -> Result<Ev, ManifestError> {
        loop {
            self.buf.clear();
            self.reader.get_mut().run = 0;
            self.at = self.reader.buffer_position();
            let (doc, at) = (self.doc, self.at);
            let xml_err = move |detail: String| ManifestError::Xml { doc, at, detail };
            let ev = match self.reader.read_event_into(&mut self.buf) {
                Ok(ev) => ev,
                Err(quick_xml::Error::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(self.xml_err(e.to_string()));
                }
                Err(quick_xml::Error::Io(e)) => {
                    let source = io::Error::new(e.kind(), e.to_string());
                    return Err(ManifestError::Io {
                        doc: self.doc,
                        source,
                    });
                }
                Err(e) => return Err(self.xml_err(e.to_string())),
            };
            match ev {
                Event::Start(e) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let mut attrs = Vec::new();
                    for a in e.attributes() {
                        let a = a.map_err(|err| xml_err(err.to_string()))?;
                        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                        let v = a.unescape_value().map_err(|err| xml_err(err.to_string()))?;
                        if let Some(c) = v.chars().find(|&c| !is_xml_char(c)) {
                            return Err(xml_err(format!(
                                "attribute {key} holds U+{:04X}, not allowed in XML 1.0",
                                c as u32
                            )));
                        }
                        attrs.push((key, v.into_owned()));
                    }
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(self.structure(format!("elements nested deeper than {MAX_DEPTH}")));
                    }
                    return Ok(Ev::Start { name, attrs });
                }
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Ev::End);
                }
                Event::Text(t) => {
                    let s = t.unescape().map_err(|err| xml_err(err.to_string()))?;
                    if let Some(c) = s.chars().find(|&c| !is_xml_char(c)) {
                        return Err(xml_err(format!(
                            "text holds U+{:04X}, not allowed in XML 1.0",
                            c as u32
                        )));
                    }
                    return Ok(Ev::Text(s.into_owned()));
                }
                Event::CData(c) => {
                    let s = String::from_utf8(c.into_inner().into_owned())
                        .map_err(|_| xml_err("CDATA is not UTF-8".into()))?;
                    return Ok(Ev::Text(s));
                }
                Event::Eof => {
                    if self.depth != 0 {
                        return Err(self.xml_err("document ends inside an element"));
                    }
                    return Ok(Ev::Eof);
                }
                Event::Empty(_) => return Err(self.xml_err("unexpanded empty element")),
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    /// After a `Start`: the element's text (empty if none) up to its end tag; child elements are an error.
    pub(crate) fn text_of(&mut self, element: &str) -> Result<String, ManifestError> {
        let mut text = String::new();
        loop {
            match self.next()? {
                Ev::Text(t) => {
                    if text.len() + t.len() > MAX_TOKEN_LEN {
                        return Err(
                            self.structure(format!("<{element}> text is longer than {MAX_TOKEN_LEN} bytes"))
                        );
                    }
                    text.push_str(&t);
                }
                Ev::End => return Ok(text),
                Ev::Start { name, .. } => {
                    return Err(self.structure(format!("unexpected <{name}> inside <{element}>")))
                }
                Ev::Eof => return Err(self.xml_err(format!("document ends inside <{element}>"))),
            }
        }
    }

    /// Expects the root element `name`, skipping the prolog; returns its attributes.
    pub(crate) fn root(&mut self, name: &str) -> Result<Vec<(String, String)>, ManifestError> {
        match self.next_structural()? {
            Ev::Start { name: n, attrs } if n == name => Ok(attrs),
            Ev::Start { name: n, .. } => {
                Err(self.structure(format!("root element is <{n}>, expected <{name}>")))
            }
            _ => Err(self.structure(format!("no <{name}> root element"))),
        }
    }

    /// Expects only end of file after the root element.
    pub(crate) fn end_of_document(&mut self) -> Result<(), ManifestError> {
        match self.next_structural()? {
            Ev::Eof => Ok(()),
            _ => Err(self.structure("content after the root element")),
        }
    }
}

/// The value of attribute `key`, if present.
pub(crate) fn attr<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_handles_markup_and_refuses_control_characters() {
        assert_eq!(
            escape("a&b<c>\"d'\r\n").unwrap(),
            "a&amp;b&lt;c&gt;&quot;d&apos;&#13;&#10;"
        );
        assert_eq!(escape("plain").unwrap(), "plain");
        assert_eq!(escape("bad\u{1}"), Err('\u{1}'));
        assert_eq!(escape("bad\u{FFFE}"), Err('\u{FFFE}'));
    }

    #[test]
    fn long_tokens_are_refused() {
        let mut doc = b"<a>".to_vec();
        doc.extend(std::iter::repeat_n(b'x', 2 * MAX_TOKEN_LEN));
        doc.extend_from_slice(b"</a>");
        // streamed: the bounded reader stops quick-xml before it buffers the whole token
        let mut p = XmlPull::new(std::io::BufReader::with_capacity(4096, &doc[..]), "test");
        p.root("a").unwrap();
        let err = p.text_of("a").unwrap_err();
        assert!(matches!(err, ManifestError::Xml { .. }), "{err}");
        // in memory: the text limit of text_of applies
        let mut p = XmlPull::new(&doc[..], "test");
        p.root("a").unwrap();
        let err = p.text_of("a").unwrap_err();
        assert!(matches!(err, ManifestError::Structure { .. }), "{err}");
    }

    #[test]
    fn long_comments_cdata_and_attributes_are_refused_whatever_they_hold() {
        // quick-xml returns each of these as one token; a `>` inside must not restart the count
        let filler = "x>".repeat(MAX_TOKEN_LEN);
        for (doc, what) in [
            (format!("<a><!--{filler}--></a>"), "comment"),
            (format!("<a><![CDATA[{filler}]]></a>"), "CDATA"),
            (format!("<a><b c=\"{filler}\"></b></a>"), "attribute"),
        ] {
            let mut p = XmlPull::new(std::io::BufReader::with_capacity(4096, doc.as_bytes()), "test");
            p.root("a").unwrap();
            let err = loop {
                match p.next() {
                    Ok(Ev::Eof) => panic!("{what}: a {} byte token was accepted", filler.len()),
                    Ok(_) => {}
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, ManifestError::Xml { .. }), "{what}: {err}");
            assert!(err.to_string().contains("longer than"), "{what}: {err}");
        }
    }
}
