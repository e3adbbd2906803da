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

/// Parses readings from `input`; each comes with its line number. `origin`
/// names the input in errors (a file name).
pub fn parse_readings_csv<R: Read>(
    input: R,
    origin: &str,
) -> Result<Vec<(u64, Reading)>, ReadingsCsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let row_error = |line: u64, message: String| ReadingsCsvError::Row {
        origin: origin.to_owned(),
        line,
        message,
    };
    let headers = reader
        .headers()
        .map_err(|err| row_error(1, err.to_string()))?
        .clone();
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
    let mut readings = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|err| {
            let line = err.position().map_or(0, csv::Position::line);
            row_error(line, err.to_string())
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let field = |index: usize| record.get(index).unwrap_or("");
        let sensor = field(0);
        if sensor.is_empty() {
            return Err(row_error(line, "empty sensor id".into()));
        }
        let time =
            time::OffsetDateTime::parse(field(1), &time::format_description::well_known::Rfc3339)
                .map_err(|err| {
                row_error(line, format!("time `{}` is not RFC 3339: {err}", field(1)))
            })?;
        let device_time_ms = i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| row_error(line, "time out of range".into()))?;
        let value: f64 = field(2)
            .parse()
            .map_err(|_| row_error(line, format!("value `{}` is not a number", field(2))))?;
        let quality = if has_quality {
            match field(3) {
                "" => None,
                "good" => Some(Quality::Good),
                "uncertain" => Some(Quality::Uncertain),
                "bad" => Some(Quality::Bad),
                other => {
                    return Err(row_error(
                        line,
                        format!("quality `{other}` is not one of good, uncertain, bad"),
                    ));
                }
            }
        } else {
            None
        };
        readings.push((
            line,
            Reading {
                sensor: sensor.to_owned(),
                device_time_ms,
                value,
                quality,
            },
        ));
    }
    Ok(readings)
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
}
