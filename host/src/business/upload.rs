//! Reading a campaign's recipient upload (CSV or JSON) within fixed bounds, before any of
//! it is checked against the template.
//!
//! An upload is untrusted bytes that become one value map per recipient, so its memory
//! must stay a small multiple of its size whatever its shape:
//! - the size is checked first ([`MAX_UPLOAD_BYTES`], 413);
//! - a CSV header has at most [`MAX_COLUMNS`] names of at most [`MAX_COLUMN_NAME`] bytes
//!   (400), and every row shares the header's names (`Arc<str>`) instead of a copy each;
//!   rows stay compact CSV records until [`Recipients::into_rows`] expands them one at a
//!   time, while the template check consumes them;
//! - the row count is checked while reading, so the reader stops at the first row past
//!   [`MAX_RECIPIENTS`] (413) instead of reading them all first; JSON arrays too.
//!
//! Callers run this off the async threads (`spawn_blocking`): parsing 32 MiB takes a while.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserializer;
use serde::de::{SeqAccess, Visitor};

use super::campaigns::Upload;

/// Most recipients one campaign takes.
pub const MAX_RECIPIENTS: usize = 1_000_000;
/// Largest upload body, checked before parsing.
pub const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;
/// Most columns of a CSV upload (`to` and the template's values).
pub const MAX_COLUMNS: usize = 128;
/// Longest column name of a CSV upload, in bytes.
pub const MAX_COLUMN_NAME: usize = 64;

/// Why an upload is refused before its rows are looked at one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadError {
    /// Over a size or count limit: 413.
    TooLarge(String),
    /// Not a readable upload: 400.
    Invalid(String),
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadError::TooLarge(m) | UploadError::Invalid(m) => f.write_str(m),
        }
    }
}

/// The message of the row cap (also how a JSON parse error is recognised as it).
fn too_many(max: usize) -> String {
    format!("at most {max} recipients per campaign")
}

/// Refuses a body over [`MAX_UPLOAD_BYTES`].
pub fn check_size(len: usize) -> Result<(), UploadError> {
    if len > MAX_UPLOAD_BYTES {
        return Err(UploadError::TooLarge(format!(
            "a campaign upload is at most {MAX_UPLOAD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// CSV rows as read: the shared header and one compact record per row.
#[derive(Debug, Clone)]
pub struct CsvRows {
    headers: Arc<[Arc<str>]>,
    to: usize,
    /// (line number, record).
    records: Vec<(usize, csv::StringRecord)>,
}

/// The recipients of an upload, not yet checked against the template.
#[derive(Debug, Clone)]
pub enum Recipients {
    Csv(CsvRows),
    Json(Vec<Upload>),
}

impl Recipients {
    pub fn len(&self) -> usize {
        match self {
            Recipients::Csv(rows) => rows.records.len(),
            Recipients::Json(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each recipient with its line (CSV) or position (JSON, from 1), expanded into an
    /// [`Upload`] only when the iterator reaches it.
    pub fn into_rows(self) -> Box<dyn Iterator<Item = (usize, Upload)> + Send> {
        match self {
            Recipients::Json(rows) => {
                Box::new(rows.into_iter().enumerate().map(|(i, r)| (i + 1, r)))
            }
            Recipients::Csv(CsvRows {
                headers,
                to,
                records,
            }) => Box::new(records.into_iter().map(move |(line, record)| {
                let mut values = BTreeMap::new();
                for (j, field) in record.iter().enumerate() {
                    if j != to
                        && let Some(key) = headers.get(j)
                    {
                        values.insert(key.clone(), field.to_string());
                    }
                }
                let to = record.get(to).unwrap_or_default().to_string();
                (line, Upload { to, values })
            })),
        }
    }
}

/// Reads a CSV upload: a header with a `to` column, then one row per recipient, at most
/// `max_rows` of them.
pub fn read_csv(bytes: &[u8], max_rows: usize) -> Result<CsvRows, UploadError> {
    check_size(bytes.len())?;
    let invalid = UploadError::Invalid;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| invalid(format!("CSV header: {e}")))?;
    if header.len() > MAX_COLUMNS {
        return Err(invalid(format!(
            "the CSV header has {} columns; at most {MAX_COLUMNS}",
            header.len()
        )));
    }
    if let Some(long) = header.iter().position(|h| h.len() > MAX_COLUMN_NAME) {
        return Err(invalid(format!(
            "CSV column {} has a name longer than {MAX_COLUMN_NAME} bytes",
            long + 1
        )));
    }
    let headers: Arc<[Arc<str>]> = header.iter().map(Arc::from).collect();
    let to = headers
        .iter()
        .position(|h| h.eq_ignore_ascii_case("to"))
        .ok_or_else(|| invalid("the CSV header has no `to` column".to_string()))?;
    let mut records = Vec::new();
    let mut record = csv::StringRecord::new();
    // Line 1 is the header.
    let mut line = 1;
    loop {
        line += 1;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(invalid(format!("line {line}: {e}"))),
        }
        if records.len() == max_rows {
            return Err(UploadError::TooLarge(too_many(max_rows)));
        }
        records.push((line, record.clone()));
    }
    Ok(CsvRows {
        headers,
        to,
        records,
    })
}

/// `deserialize_with` for a JSON upload's `recipients`: stops at the first recipient past
/// [`MAX_RECIPIENTS`] instead of reading them all.
pub fn capped_recipients<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Upload>, D::Error> {
    struct Capped;
    impl<'de> Visitor<'de> for Capped {
        type Value = Vec<Upload>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of at most {MAX_RECIPIENTS} recipients")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Upload>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(upload) = seq.next_element::<Upload>()? {
                if out.len() == MAX_RECIPIENTS {
                    return Err(serde::de::Error::custom(too_many(MAX_RECIPIENTS)));
                }
                out.push(upload);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Capped)
}

/// A JSON upload's parse error: the row cap (413) or anything else (400).
pub fn json_error(e: &serde_json::Error) -> UploadError {
    let message = e.to_string();
    if message.contains(&too_many(MAX_RECIPIENTS)) {
        UploadError::TooLarge(too_many(MAX_RECIPIENTS))
    } else {
        UploadError::Invalid(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_their_line_numbers_and_share_the_header() {
        let rows = read_csv(b"to,1,button.0\n+15550100,Ada,x\n15550101,Bob,y\n", 10).unwrap();
        let rows: Vec<_> = Recipients::Csv(rows).into_rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].0, 3);
        assert_eq!(rows[0].1.to, "+15550100");
        assert_eq!(rows[0].1.values["1"], "Ada");
        // One allocation per header name, shared by every row.
        let a = rows[0].1.values.keys().next().unwrap();
        let b = rows[1].1.values.keys().next().unwrap();
        assert!(Arc::ptr_eq(a, b));
        let err = |bytes: &[u8]| read_csv(bytes, 10).unwrap_err().to_string();
        assert!(err(b"phone,1\n1,2\n").contains("`to`"));
        assert!(err(b"to,1\n1,2,3\n").contains("line 2"));
    }

    #[test]
    fn a_csv_bomb_is_refused_by_its_header_or_its_row_count() {
        // A huge column name copied into every row was the bomb: refused at the header.
        let mut bomb = format!("to,{}\n", "x".repeat(1 << 20)).into_bytes();
        for _ in 0..100_000 {
            bomb.extend_from_slice(b"1,2\n");
        }
        assert!(
            matches!(read_csv(&bomb, MAX_RECIPIENTS), Err(UploadError::Invalid(m)) if m.contains("longer than"))
        );
        let wide = format!("to,{}\n", vec!["a"; MAX_COLUMNS].join(","));
        assert!(
            matches!(read_csv(wide.as_bytes(), 10), Err(UploadError::Invalid(m)) if m.contains("columns"))
        );
        // The row cap stops reading at the first row past it.
        let many = format!("to\n{}", "1\n".repeat(11));
        assert_eq!(
            read_csv(many.as_bytes(), 10).unwrap_err(),
            UploadError::TooLarge(too_many(10))
        );
        assert_eq!(
            read_csv(format!("to\n{}", "1\n".repeat(10)).as_bytes(), 10)
                .unwrap()
                .records
                .len(),
            10
        );
        assert!(matches!(
            check_size(MAX_UPLOAD_BYTES + 1),
            Err(UploadError::TooLarge(_))
        ));
    }
}
