//! Record encoding and the replay parser.

use std::io::BufRead;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::JournalError;

/// Longest journal line the parser accepts (a multi-line value may have many such lines).
pub const MAX_LINE_LEN: usize = 1 << 20;
/// Most fields in one record, and most lines in one multi-line value.
const MAX_FIELDS: usize = 4096;
const MAX_VALUE_LINES: usize = 65_536;

const BEGIN: &str = "[BeginUpdateRecord]";
const END: &str = "[EndUpdateRecord]";
const BEGIN_VALUE: &str = "[BeginValue]";
const END_VALUE: &str = "[EndValue]";

/// One journal record: a type and ordered key/value fields, stamped with a UTC time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// `yyyy/MM/dd HH:mm:ss.fff`, UTC.
    pub time: String,
    pub kind: String,
    pub fields: Vec<(String, String)>,
}

impl JournalRecord {
    /// A record of type `kind` stamped now.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            time: format_time(SystemTime::now()),
            kind: kind.into(),
            fields: Vec::new(),
        }
    }

    /// Adds a field (builder style).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The record's bytes, or an error naming what cannot be framed.
    pub fn encode(&self) -> Result<Vec<u8>, JournalError> {
        let bad = |reason: String| JournalError::InvalidRecord {
            kind: self.kind.clone(),
            reason,
        };
        if !valid_time(&self.time) {
            return Err(bad(format!(
                "time {:?} is not yyyy/MM/dd HH:mm:ss.fff",
                self.time
            )));
        }
        if self.kind.is_empty() || self.kind.contains(['[', ']', '\n', '\r']) {
            return Err(bad(
                "the type must be non-empty without brackets or line breaks".into()
            ));
        }
        let mut out = format!("{BEGIN}[{}][Type:{}]\n", self.time, self.kind);
        for (k, v) in &self.fields {
            if k.is_empty() || k.starts_with('[') || k.contains([':', '\n', '\r']) || k.trim() != k {
                return Err(bad(format!("field name {k:?} must be non-empty, trimmed, without ':' or line breaks, not starting with '['")));
            }
            if v.contains('\r') {
                return Err(bad(format!("value of {k} contains a carriage return")));
            }
            if v.contains('\n') || v.starts_with(BEGIN_VALUE) {
                if v.split('\n').any(|l| l == END_VALUE) {
                    return Err(bad(format!("value of {k} contains a line {END_VALUE}")));
                }
                out += &format!("{k}: {BEGIN_VALUE}\n{v}\n{END_VALUE}\n");
            } else {
                out += &format!("{k}: {v}\n");
            }
        }
        out += END;
        out += "\n";
        Ok(out.into_bytes())
    }
}

/// The result of reading a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Every complete record, in order.
    pub records: Vec<JournalRecord>,
    /// Bytes up to the end of the last complete record.
    pub valid_len: u64,
    /// Bytes of a torn last record after `valid_len` (0 when the journal ends cleanly).
    pub torn_len: u64,
}

/// Parses a journal; `path` only names it in errors.
pub fn parse_journal(mut input: impl BufRead, path: &Path) -> Result<Replay, JournalError> {
    let mut lines = Lines { offset: 0, line: 0 };
    let mut records = Vec::new();
    let mut valid_len = 0;
    loop {
        let start = lines.offset;
        match read_record(&mut input, &mut lines, path)? {
            Parsed::Record(r) => {
                records.push(r);
                valid_len = lines.offset;
            }
            Parsed::End => {
                return Ok(Replay {
                    records,
                    valid_len,
                    torn_len: 0,
                })
            }
            Parsed::Torn => {
                return Ok(Replay {
                    records,
                    valid_len,
                    torn_len: lines.offset - start,
                })
            }
        }
    }
}

enum Parsed {
    Record(JournalRecord),
    End,
    Torn,
}

struct Lines {
    offset: u64,
    line: u64,
}

enum Line {
    Complete(String),
    /// The input ended before a newline (a torn write).
    Partial,
    Eof,
}

fn corrupt(path: &Path, lines: &Lines, reason: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        path: path.to_path_buf(),
        offset: lines.offset,
        line: lines.line,
        reason: reason.into(),
    }
}

/// Reads one line (without its `\n` or `\r\n`), never buffering more than [`MAX_LINE_LEN`] bytes.
fn next_line(input: &mut impl BufRead, lines: &mut Lines, path: &Path) -> Result<Line, JournalError> {
    let mut buf = Vec::new();
    loop {
        let avail = input.fill_buf().map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            action: "read",
            source,
        })?;
        if avail.is_empty() {
            lines.offset += buf.len() as u64;
            return Ok(if buf.is_empty() { Line::Eof } else { Line::Partial });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(p) => (p + 1, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > MAX_LINE_LEN + 1 {
            return Err(corrupt(
                path,
                lines,
                format!("a line is longer than {MAX_LINE_LEN} bytes"),
            ));
        }
        buf.extend_from_slice(&avail[..take]);
        input.consume(take);
        if done {
            lines.offset += buf.len() as u64;
            lines.line += 1;
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return String::from_utf8(buf)
                .map(Line::Complete)
                .map_err(|_| corrupt(path, lines, "a line is not UTF-8"));
        }
    }
}

/// Reads one record. Anything that is cut off by the end of input is `Torn`; a malformed complete record is
/// an error, except that a malformed piece which is followed only by the end of input (no complete
/// `[EndUpdateRecord]` line) is still a torn write (e.g. zero-filled blocks after a power loss).
fn read_record(input: &mut impl BufRead, lines: &mut Lines, path: &Path) -> Result<Parsed, JournalError> {
    let mut pending: Option<JournalError> = None;
    let mut record: Option<JournalRecord> = None;
    let mut value: Option<(String, Vec<String>)> = None;
    loop {
        let line = match next_line(input, lines, path) {
            Ok(Line::Complete(l)) => l,
            Ok(Line::Partial) => return Ok(Parsed::Torn),
            Ok(Line::Eof) if record.is_none() && pending.is_none() => return Ok(Parsed::End),
            Ok(Line::Eof) => return Ok(Parsed::Torn),
            Err(e) => {
                // Invalid bytes or an over-long line may be torn garbage: decided at the next end line.
                pending.get_or_insert(e);
                skip_to_newline(input, lines, path)?;
                continue;
            }
        };
        if line == END && value.is_none() {
            if let Some(e) = pending {
                return Err(e);
            }
            return match record {
                Some(r) => Ok(Parsed::Record(r)),
                None => Err(corrupt(path, lines, format!("{END} without {BEGIN}"))),
            };
        }
        if pending.is_some() {
            continue;
        }
        let result = match (&mut record, &mut value) {
            (None, _) => parse_begin(&line).map(|r| record = Some(r)),
            (Some(_), Some((_, vlines))) if line != END_VALUE => {
                vlines.push(line);
                (vlines.len() <= MAX_VALUE_LINES)
                    .then_some(())
                    .ok_or("a multi-line value is too long")
            }
            (Some(r), v @ Some(_)) => {
                let (k, vl) = v.take().unwrap_or_default();
                r.fields.push((k, vl.join("\n")));
                Ok(())
            }
            (Some(r), None) => parse_field(&line).map(|(k, v)| match v {
                None => value = Some((k, Vec::new())),
                Some(v) => r.fields.push((k, v)),
            }),
        };
        if let Err(reason) = result {
            pending = Some(corrupt(path, lines, reason));
        } else if record.as_ref().is_some_and(|r| r.fields.len() > MAX_FIELDS) {
            pending = Some(corrupt(path, lines, "a record has too many fields"));
        }
    }
}

fn skip_to_newline(input: &mut impl BufRead, lines: &mut Lines, path: &Path) -> Result<(), JournalError> {
    loop {
        let avail = input.fill_buf().map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            action: "read",
            source,
        })?;
        if avail.is_empty() {
            return Ok(());
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(p) => {
                input.consume(p + 1);
                lines.offset += p as u64 + 1;
                lines.line += 1;
                return Ok(());
            }
            None => {
                let n = avail.len();
                input.consume(n);
                lines.offset += n as u64;
            }
        }
    }
}

fn parse_begin(line: &str) -> Result<JournalRecord, &'static str> {
    let rest = line.strip_prefix(BEGIN).ok_or("expected [BeginUpdateRecord]")?;
    let rest = rest
        .strip_prefix('[')
        .ok_or("expected [time] after [BeginUpdateRecord]")?;
    let (time, rest) = rest.split_once(']').ok_or("unterminated [time]")?;
    if !valid_time(time) {
        return Err("time is not yyyy/MM/dd HH:mm:ss.fff");
    }
    let kind = rest
        .strip_prefix("[Type:")
        .and_then(|r| r.strip_suffix(']'))
        .ok_or("expected [Type:...]")?;
    if kind.is_empty() || kind.contains(['[', ']']) {
        return Err("empty or bracketed record type");
    }
    Ok(JournalRecord {
        time: time.to_string(),
        kind: kind.to_string(),
        fields: Vec::new(),
    })
}

/// `Key: Value` → (key, Some(value)); `Key: [BeginValue]` → (key, None).
fn parse_field(line: &str) -> Result<(String, Option<String>), &'static str> {
    let (k, v) = line
        .split_once(": ")
        .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
        .ok_or("expected Key: Value")?;
    if k.is_empty() || k.starts_with('[') || k.trim() != k {
        return Err("bad field name");
    }
    Ok((k.to_string(), (v != BEGIN_VALUE).then(|| v.to_string())))
}

fn valid_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 23
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'/',
            10 => c == b' ',
            13 | 16 => c == b':',
            19 => c == b'.',
            _ => c.is_ascii_digit(),
        })
}

/// `yyyy/MM/dd HH:mm:ss.fff` in UTC.
pub(crate) fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = crate::time::civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}/{m:02}/{day:02} {:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn time_format_known_answers() {
        assert_eq!(format_time(UNIX_EPOCH), "1970/01/01 00:00:00.000");
        let t = UNIX_EPOCH + Duration::from_millis(1_478_111_054_735);
        assert_eq!(format_time(t), "2016/11/02 18:24:14.735");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_time(leap), "2000/02/29 00:00:00.000");
    }

    #[test]
    fn reference_sample_parses() {
        let sample = "[BeginUpdateRecord][2016/11/02 18:24:14.735][Type:NewJournalFile]\r\nVocabularyVersion: 2013-02-01\r\n[EndUpdateRecord]\r\n[BeginUpdateRecord][2016/11/01 21:22:25.379][Type:ActivityRecord]\nActivityId: DriveInfo\nDriveState: [BeginValue]\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Drive><DriveId>drive-id</DriveId><BitLockerKey>*******</BitLockerKey>\n<ManifestFile>\\DriveManifest.xml</ManifestFile><ManifestHash>D863FE44F861AE0DA4DCEAEEFFCCCE68</ManifestHash></Drive>\n[EndValue]\nSaveCommandOutput: Completed\n[EndUpdateRecord]\n";
        let r = parse_journal(sample.as_bytes(), Path::new("sample.jrn")).unwrap();
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.torn_len, 0);
        assert_eq!(r.records[0].get("VocabularyVersion"), Some("2013-02-01"));
        assert!(r.records[1]
            .get("DriveState")
            .unwrap()
            .ends_with("</ManifestHash></Drive>"));
        assert_eq!(r.records[1].get("SaveCommandOutput"), Some("Completed"));
    }
}
