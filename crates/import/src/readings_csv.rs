//! Readings as CSV (`sensor,time,value[,quality]`, RFC 3339 times): what
//! `polis push` sends, parsed without any I/O of its own.

use std::io::Read;

use polis_protocol::{Quality, Reading};

/// A CSV input that could not be turned into readings.
#[derive(Debug, thiserror::Error)]
pub enum ReadingsCsvError {
    /// The header is not `sensor,time,value[,quality]`.
    #[error(
        "{origin}:1: header must be `sensor,time,value` or `sensor,time,value,quality`, found `{found}`"
    )]
    Header {
        /// Where the input came from.
        origin: String,
        /// The header found.
        found: String,
    },
    /// A row is malformed.
    #[error("{origin}:{line}: {message}")]
    Row {
        /// Where the input came from.
        origin: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// Longest line accepted, bytes: a reading's line is a sensor id, a time,
/// a value and a quality; anything longer is not a readings file (e.g.
/// `/dev/zero`), and is refused before it is held in memory.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// Readings parsed one by one from a CSV input, each with its line number,
/// holding at most one line in memory.
pub struct ReadingsCsv<R: Read> {
    reader: csv::Reader<LineCapped<R>>,
    origin: String,
    has_quality: bool,
    record: csv::StringRecord,
}

impl<R: Read> std::fmt::Debug for ReadingsCsv<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadingsCsv")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Opens a readings CSV: reads and checks its header; the readings follow
/// from the iterator. `origin` names the input in errors (a file name).
pub fn readings_csv<R: Read>(input: R, origin: &str) -> Result<ReadingsCsv<R>, ReadingsCsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        // Reads ahead less than a line's cap, so the records before a line
        // that is too long are still returned before its error.
        .buffer_capacity(MAX_LINE_BYTES / 2)
        .from_reader(LineCapped::new(input));
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(err) => return Err(read_error(&reader, origin, &err, 1)),
    };
    let names: Vec<&str> = headers.iter().collect();
    let has_quality = match names.as_slice() {
        ["sensor", "time", "value"] => false,
        ["sensor", "time", "value", "quality"] => true,
        _ => {
            return Err(ReadingsCsvError::Header {
                origin: origin.to_owned(),
                found: names.join(","),
            });
        }
    };
    Ok(ReadingsCsv {
        reader,
        origin: origin.to_owned(),
        has_quality,
        record: csv::StringRecord::new(),
    })
}

/// Parses every reading of `input`; each comes with its line number.
/// `origin` names the input in errors (a file name).
pub fn parse_readings_csv<R: Read>(
    input: R,
    origin: &str,
) -> Result<Vec<(u64, Reading)>, ReadingsCsvError> {
    readings_csv(input, origin)?.collect()
}

/// The error for a failed read: the line that was too long, or the csv
/// reader's own error at its position.
fn read_error<R: Read>(
    reader: &csv::Reader<LineCapped<R>>,
    origin: &str,
    err: &csv::Error,
    fallback_line: u64,
) -> ReadingsCsvError {
    let capped = reader.get_ref();
    let (line, message) = if capped.too_long {
        (
            capped.line,
            format!("line is longer than {MAX_LINE_BYTES} bytes"),
        )
    } else {
        (
            err.position().map_or(fallback_line, csv::Position::line),
            err.to_string(),
        )
    };
    ReadingsCsvError::Row {
        origin: origin.to_owned(),
        line,
        message,
    }
}

impl<R: Read> Iterator for ReadingsCsv<R> {
    type Item = Result<(u64, Reading), ReadingsCsvError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => Some(self.parse_record()),
            Err(err) => {
                let line = self.reader.get_ref().line;
                Some(Err(read_error(&self.reader, &self.origin, &err, line)))
            }
        }
    }
}

impl<R: Read> ReadingsCsv<R> {
    fn row_error(&self, line: u64, message: String) -> ReadingsCsvError {
        ReadingsCsvError::Row {
            origin: self.origin.clone(),
            line,
            message,
        }
    }

    fn parse_record(&self) -> Result<(u64, Reading), ReadingsCsvError> {
        let record = &self.record;
        let line = record.position().map_or(0, csv::Position::line);
        let field = |index: usize| record.get(index).unwrap_or("");
        let sensor = field(0);
        if sensor.is_empty() {
            return Err(self.row_error(line, "empty sensor id".into()));
        }
        let time =
            time::OffsetDateTime::parse(field(1), &time::format_description::well_known::Rfc3339)
                .map_err(|err| {
                self.row_error(line, format!("time `{}` is not RFC 3339: {err}", field(1)))
            })?;
        let device_time_ms = i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| self.row_error(line, "time out of range".into()))?;
        let value: f64 = field(2)
            .parse()
            .map_err(|_| self.row_error(line, format!("value `{}` is not a number", field(2))))?;
        let quality = if self.has_quality {
            match field(3) {
                "" => None,
                "good" => Some(Quality::Good),
                "uncertain" => Some(Quality::Uncertain),
                "bad" => Some(Quality::Bad),
                other => {
                    return Err(self.row_error(
                        line,
                        format!("quality `{other}` is not one of good, uncertain, bad"),
                    ));
                }
            }
        } else {
            None
        };
        Ok((
            line,
            Reading {
                sensor: sensor.to_owned(),
                device_time_ms,
                value,
                quality,
            },
        ))
    }
}

/// A reader that fails once a line grows past [`MAX_LINE_BYTES`], and
/// counts lines so the failure can name its line.
struct LineCapped<R> {
    inner: R,
    /// 1-based number of the line being read.
    line: u64,
    /// Bytes of that line read so far.
    line_bytes: usize,
    /// Set when a line was too long.
    too_long: bool,
}

impl<R> LineCapped<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            line: 1,
            line_bytes: 0,
            too_long: false,
        }
    }
}

impl<R: Read> Read for LineCapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.too_long {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
        let read = self.inner.read(buf)?;
        for &byte in &buf[..read] {
            if byte == b'\n' {
                self.line += 1;
                self.line_bytes = 0;
            } else {
                self.line_bytes += 1;
                if self.line_bytes > MAX_LINE_BYTES {
                    self.too_long = true;
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "line too long",
                    ));
                }
            }
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_parse_with_their_lines_and_errors_name_the_line() {
        let text = "sensor,time,value,quality\nm1,2026-01-01T00:00:00Z,1.5,good\nm2,2026-01-01T00:00:01+02:00,2,\n";
        let readings = parse_readings_csv(text.as_bytes(), "r.csv").expect("parses");
        assert_eq!(readings.len(), 2);
        assert_eq!(readings[0].0, 2);
        assert_eq!(readings[0].1.quality, Some(Quality::Good));
        assert_eq!(readings[1].1.device_time_ms, 1_767_218_401_000);
        let err = parse_readings_csv("sensor,time,value\nm1,soon,1\n".as_bytes(), "r.csv")
            .expect_err("bad time");
        assert!(err.to_string().starts_with("r.csv:2: time `soon`"), "{err}");
        let err = parse_readings_csv("a,b\n".as_bytes(), "r.csv").expect_err("bad header");
        assert!(err.to_string().contains("header must be"), "{err}");
    }

    #[test]
    fn an_endless_line_is_refused_with_its_number_before_it_fills_memory() {
        // Like `/dev/zero`: no newline ever.
        let zeros = std::io::repeat(0).take(100 * 1024 * 1024);
        let err = parse_readings_csv(zeros, "zero").expect_err("no header line");
        assert_eq!(
            err.to_string(),
            format!("zero:1: line is longer than {MAX_LINE_BYTES} bytes")
        );
        let mut text = String::from("sensor,time,value\nm1,2026-01-01T00:00:00Z,1\n");
        text.push_str(&"x".repeat(10 * 1024 * 1024));
        let mut readings = readings_csv(text.as_bytes(), "big.csv").expect("header");
        assert_eq!(
            readings.next().map(|r| r.map(|(line, _)| line).ok()),
            Some(Some(2))
        );
        let err = readings.next().expect("an error").expect_err("too long");
        assert_eq!(
            err.to_string(),
            format!("big.csv:3: line is longer than {MAX_LINE_BYTES} bytes")
        );
    }
}
