//! The bundled real data: SimBench load and PV profiles for 2016 and an
//! hourly water-flow series, parsed once and sampled at any simulated time.

use time::PrimitiveDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::{datetime, format_description};

use crate::calendar::{MS_PER_HOUR, profile_position};
use crate::error::ReplayError;

/// Name of the profile file in error messages, relative to `assets/`.
const PROFILE_FILE: &str = "energy/simbench-profiles-2016.csv";
/// Name of the water-flow file in error messages, relative to `assets/`.
const FLOW_FILE: &str = "water/water-flow.csv";

/// The SimBench profiles, embedded at build time.
const PROFILE_CSV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/energy/simbench-profiles-2016.csv"
));
/// The water-flow series, embedded at build time.
const FLOW_CSV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/water/water-flow.csv"
));

/// Rows of the profile file: every quarter hour of the leap year 2016.
pub const PROFILE_ROWS: usize = 366 * 96;
/// Time between two profile rows, milliseconds (15 minutes).
pub const PROFILE_STEP_MS: i64 = 15 * 60 * 1000;
/// Time between two water-flow rows, milliseconds (one hour).
pub const FLOW_STEP_MS: i64 = MS_PER_HOUR;

/// One column of the SimBench profile file: a dimensionless scaling factor
/// of a rated power, 0..=1 (each column peaks at exactly 1.0; PV columns at
/// about 0.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileColumn {
    /// `H0-A`: households, variant A.
    H0a,
    /// `H0-B`: households, variant B.
    H0b,
    /// `H0-C`: households, variant C.
    H0c,
    /// `G0-A`: commercial, general.
    G0a,
    /// `G1-A`: commercial, weekday business hours (offices).
    G1a,
    /// `G4-A`: shops and retail.
    G4a,
    /// `L0-A`: agriculture (bundled, not used by any feed rule).
    L0a,
    /// `PV1`: photovoltaic plant, variant 1.
    Pv1,
    /// `PV3`: photovoltaic plant, variant 3.
    Pv3,
    /// `PV5`: photovoltaic plant, variant 5.
    Pv5,
}

impl ProfileColumn {
    /// Every column, in file order.
    pub const ALL: [ProfileColumn; 10] = [
        ProfileColumn::H0a,
        ProfileColumn::H0b,
        ProfileColumn::H0c,
        ProfileColumn::G0a,
        ProfileColumn::G1a,
        ProfileColumn::G4a,
        ProfileColumn::L0a,
        ProfileColumn::Pv1,
        ProfileColumn::Pv3,
        ProfileColumn::Pv5,
    ];

    /// The column's header in the CSV file (`H0-A`, `PV3`, ...).
    pub fn header(self) -> &'static str {
        match self {
            ProfileColumn::H0a => "H0-A",
            ProfileColumn::H0b => "H0-B",
            ProfileColumn::H0c => "H0-C",
            ProfileColumn::G0a => "G0-A",
            ProfileColumn::G1a => "G1-A",
            ProfileColumn::G4a => "G4-A",
            ProfileColumn::L0a => "L0-A",
            ProfileColumn::Pv1 => "PV1",
            ProfileColumn::Pv3 => "PV3",
            ProfileColumn::Pv5 => "PV5",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The parsed real data every feed samples from.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedData {
    /// One vector of [`PROFILE_ROWS`] factors per [`ProfileColumn`], in
    /// [`ProfileColumn::ALL`] order.
    profiles: Vec<Vec<f64>>,
    /// The water-flow series, l/s, one value per hour.
    flow_l_s: Vec<f64>,
    /// Mean of `flow_l_s`.
    flow_mean_l_s: f64,
    /// Instant of the first water-flow row, ms since the Unix epoch.
    flow_start_ms: i64,
}

impl FeedData {
    /// Parses the data embedded in the binary. An error means a committed
    /// file is broken; it never panics.
    pub fn bundled() -> Result<FeedData, ReplayError> {
        FeedData::parse(PROFILE_CSV, FLOW_CSV)
    }

    /// Parses profile and water-flow CSV text in the bundled files' formats.
    pub(crate) fn parse(profile_csv: &str, flow_csv: &str) -> Result<FeedData, ReplayError> {
        let profiles = parse_profiles(profile_csv)?;
        let (flow_start_ms, flow_l_s) = parse_flow(flow_csv)?;
        // Cannot be empty: `parse_flow` requires two rows.
        let flow_mean_l_s = flow_l_s.iter().sum::<f64>() / flow_l_s.len() as f64;
        if !(flow_mean_l_s.is_finite() && flow_mean_l_s > 0.0) {
            return Err(ReplayError::Data {
                file: FLOW_FILE,
                line: 1,
                message: format!("mean flow must be positive, is {flow_mean_l_s}"),
            });
        }
        Ok(FeedData {
            profiles,
            flow_l_s,
            flow_mean_l_s,
            flow_start_ms,
        })
    }

    /// Number of profile rows (quarter hours).
    pub fn profile_rows(&self) -> usize {
        self.profiles.first().map_or(0, Vec::len)
    }

    /// Number of water-flow rows (hours).
    pub fn flow_rows(&self) -> usize {
        self.flow_l_s.len()
    }

    /// Mean of the water-flow series, l/s.
    pub fn flow_mean_l_s(&self) -> f64 {
        self.flow_mean_l_s
    }

    /// Instant of the first water-flow row, ms since the Unix epoch, UTC.
    pub fn flow_start_ms(&self) -> i64 {
        self.flow_start_ms
    }

    /// The profile factor of `column` at a simulated time: the same calendar
    /// date and UTC time of day in 2016, interpolated linearly between
    /// quarter hours (31 December 23:45 interpolates towards 1 January
    /// 00:00).
    pub fn profile(&self, column: ProfileColumn, sim_time_ms: i64) -> f64 {
        self.profiles.get(column.index()).map_or(0.0, |values| {
            interpolate_cyclic(values, profile_position(sim_time_ms))
        })
    }

    /// The water-flow shape at a simulated time: the real series divided by
    /// its mean (so it averages 1 and keeps its anomalies), at the hours
    /// elapsed since the series' first row modulo the series' length,
    /// interpolated linearly (the last row interpolates towards the first).
    ///
    /// Rows are taken as consecutive hours: the meter's few gaps are closed
    /// up rather than bridged.
    pub fn flow_shape(&self, sim_time_ms: i64) -> f64 {
        let rows = self.flow_l_s.len() as i128;
        let period_ms = rows * i128::from(FLOW_STEP_MS);
        if period_ms == 0 {
            return 1.0;
        }
        let since_start_ms =
            (i128::from(sim_time_ms) - i128::from(self.flow_start_ms)).rem_euclid(period_ms);
        let position = since_start_ms as f64 / FLOW_STEP_MS as f64;
        interpolate_cyclic(&self.flow_l_s, position) / self.flow_mean_l_s
    }
}

/// Linear interpolation in a cyclic series at a fractional index; index `n`
/// is index 0 again. An empty series gives 0.
pub(crate) fn interpolate_cyclic(values: &[f64], position: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let position = if position.is_finite() {
        position.rem_euclid(n as f64)
    } else {
        0.0
    };
    let index = (position.floor() as usize).min(n - 1);
    let fraction = (position - index as f64).clamp(0.0, 1.0);
    let a = values.get(index).copied().unwrap_or(0.0);
    let b = values.get((index + 1) % n).copied().unwrap_or(a);
    a + (b - a) * fraction
}

fn data_error(file: &'static str, line: u64, message: impl Into<String>) -> ReplayError {
    ReplayError::Data {
        file,
        line,
        message: message.into(),
    }
}

fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes())
}

fn parse_number(file: &'static str, line: u64, field: Option<&str>) -> Result<f64, ReplayError> {
    let field = field.unwrap_or("");
    match field.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(data_error(
            file,
            line,
            format!("`{field}` is not a finite number"),
        )),
    }
}

/// Parses the SimBench file: header `time,<columns>`, then one row per
/// quarter hour of 2016 in order, times `dd.mm.yyyy HH:MM`.
fn parse_profiles(text: &str) -> Result<Vec<Vec<f64>>, ReplayError> {
    let file = PROFILE_FILE;
    let mut reader = csv_reader(text);
    let headers = reader
        .headers()
        .map_err(|err| data_error(file, 1, err.to_string()))?
        .clone();
    if headers.get(0) != Some("time") {
        return Err(data_error(file, 1, "first column must be `time`"));
    }
    let mut field_of = Vec::with_capacity(ProfileColumn::ALL.len());
    for column in ProfileColumn::ALL {
        let Some(field) = headers.iter().position(|h| h == column.header()) else {
            return Err(data_error(
                file,
                1,
                format!("missing column `{}`", column.header()),
            ));
        };
        field_of.push(field);
    }
    let time_format = format_description!("[day].[month].[year] [hour]:[minute]");
    let year_start = datetime!(2016-01-01 00:00);
    let mut profiles = vec![Vec::with_capacity(PROFILE_ROWS); ProfileColumn::ALL.len()];
    let mut rows: i64 = 0;
    for record in reader.records() {
        let record = record.map_err(|err| {
            let line = err.position().map_or(0, csv::Position::line);
            data_error(file, line, err.to_string())
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let time_text = record.get(0).unwrap_or("");
        let time = PrimitiveDateTime::parse(time_text, &time_format)
            .map_err(|err| data_error(file, line, format!("time `{time_text}`: {err}")))?;
        // Labels are local wall-clock time: one hour ahead during summer
        // time, so 4 labels are skipped in March and 4 repeated in October.
        let expected_minutes = rows * (PROFILE_STEP_MS / 60_000);
        let label_ahead_minutes = (time - year_start).whole_minutes() - expected_minutes;
        if label_ahead_minutes != 0 && label_ahead_minutes != 60 {
            return Err(data_error(
                file,
                line,
                format!(
                    "time `{time_text}` out of sequence: rows must be consecutive quarter hours from 01.01.2016 00:00 (local time)"
                ),
            ));
        }
        for (values, &field) in profiles.iter_mut().zip(&field_of) {
            values.push(parse_number(file, line, record.get(field))?);
        }
        rows += 1;
    }
    if rows as usize != PROFILE_ROWS {
        return Err(data_error(
            file,
            rows as u64 + 1,
            format!("expected {PROFILE_ROWS} rows (every quarter hour of 2016), found {rows}"),
        ));
    }
    Ok(profiles)
}

/// Parses the water-flow file: header `Time,Water flow [l/s]`, then rows
/// with RFC 3339 times in increasing order. Returns the first row's instant
/// (ms since the Unix epoch) and the values.
fn parse_flow(text: &str) -> Result<(i64, Vec<f64>), ReplayError> {
    let file = FLOW_FILE;
    let mut reader = csv_reader(text);
    let headers = reader
        .headers()
        .map_err(|err| data_error(file, 1, err.to_string()))?
        .clone();
    let names: Vec<&str> = headers.iter().collect();
    if names != ["Time", "Water flow [l/s]"] {
        return Err(data_error(
            file,
            1,
            format!(
                "header must be `Time,Water flow [l/s]`, found `{}`",
                names.join(",")
            ),
        ));
    }
    let mut start_ms = None;
    let mut previous_ms = i64::MIN;
    let mut values = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|err| {
            let line = err.position().map_or(0, csv::Position::line);
            data_error(file, line, err.to_string())
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let time_text = record.get(0).unwrap_or("");
        let time = time::OffsetDateTime::parse(time_text, &Rfc3339)
            .map_err(|err| data_error(file, line, format!("time `{time_text}`: {err}")))?;
        let time_ms = i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| data_error(file, line, "time out of range"))?;
        if time_ms <= previous_ms {
            return Err(data_error(
                file,
                line,
                format!("time `{time_text}` is not after the previous row"),
            ));
        }
        previous_ms = time_ms;
        start_ms.get_or_insert(time_ms);
        let value = parse_number(file, line, record.get(1))?;
        if value < 0.0 {
            return Err(data_error(
                file,
                line,
                format!("flow {value} l/s is negative"),
            ));
        }
        values.push(value);
    }
    match start_ms {
        Some(start_ms) if values.len() >= 2 => Ok((start_ms, values)),
        _ => Err(data_error(file, 1, "at least two rows are needed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_data_has_every_row() {
        let data = FeedData::bundled().expect("bundled data parses");
        assert_eq!(data.profile_rows(), 35_136);
        assert_eq!(data.flow_rows(), 1_268);
        assert!((data.flow_mean_l_s() - 100.05).abs() < 0.1);
        // 2022-03-20T11:00:00+01:00
        assert_eq!(data.flow_start_ms(), 1_647_770_400_000);
    }

    #[test]
    fn profile_sample_hits_the_rows_and_interpolates() {
        let data = FeedData::bundled().expect("bundled data parses");
        // 2024-01-01T00:00Z maps to the first row: H0-A 0.276685.
        let t = 1_704_067_200_000;
        assert!((data.profile(ProfileColumn::H0a, t) - 0.276685).abs() < 1e-9);
        // Half way to 00:15 (0.066011).
        let mid = data.profile(ProfileColumn::H0a, t + PROFILE_STEP_MS / 2);
        assert!((mid - (0.276685 + 0.066011) / 2.0).abs() < 1e-9);
        // 31 December 23:52:30 interpolates from the last row to the first.
        let last = 1_704_067_200_000 - PROFILE_STEP_MS / 2;
        let wrap = data.profile(ProfileColumn::H0a, last);
        assert!((wrap - (0.110955 + 0.276685) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn flow_shape_averages_one_and_wraps() {
        let data = FeedData::bundled().expect("bundled data parses");
        let start = data.flow_start_ms();
        let n = data.flow_rows() as i64;
        let mean: f64 = (0..n)
            .map(|h| data.flow_shape(start + h * FLOW_STEP_MS))
            .sum::<f64>()
            / n as f64;
        assert!((mean - 1.0).abs() < 1e-9, "mean shape {mean}");
        let period = n * FLOW_STEP_MS;
        for t in [start - 7 * FLOW_STEP_MS, start + 12_345_678] {
            assert!((data.flow_shape(t) - data.flow_shape(t + period)).abs() < 1e-12);
        }
        assert!((data.flow_shape(start) - 100.59 / data.flow_mean_l_s()).abs() < 1e-12);
    }

    #[test]
    fn interpolation_is_cyclic_and_total() {
        let values = [0.0, 10.0, 20.0];
        assert_eq!(interpolate_cyclic(&values, 0.5), 5.0);
        assert_eq!(interpolate_cyclic(&values, 2.5), 10.0);
        assert_eq!(interpolate_cyclic(&values, -0.5), 10.0);
        assert_eq!(interpolate_cyclic(&values, 3.0), 0.0);
        assert_eq!(interpolate_cyclic(&values, f64::NAN), 0.0);
        assert_eq!(interpolate_cyclic(&[], 1.0), 0.0);
    }

    #[test]
    fn broken_files_are_typed_errors() {
        let flow =
            "Time,Water flow [l/s]\n2022-03-20T11:00:00+01:00,1\n2022-03-20T12:00:00+01:00,2\n";
        let header_only = "time,H0-A,H0-B,H0-C,G0-A,G1-A,G4-A,L0-A,PV1,PV3,PV5\n";
        let short = FeedData::parse(header_only, flow);
        assert!(
            matches!(short, Err(ReplayError::Data { file, .. }) if file == PROFILE_FILE),
            "{short:?}"
        );
        let missing_column = "time,H0-A\n01.01.2016 00:00,1\n";
        assert!(FeedData::parse(missing_column, flow).is_err());
        let out_of_order = format!("{header_only}01.01.2016 00:15,1,1,1,1,1,1,1,1,1,1\n");
        let err = FeedData::parse(&out_of_order, flow).expect_err("out of sequence");
        assert!(err.to_string().contains("line 2"), "{err}");
        let bad_flow = "Time,Water flow [l/s]\n2022-03-20T11:00:00+01:00,x\n";
        assert!(parse_flow(bad_flow).is_err());
        let backwards =
            "Time,Water flow [l/s]\n2022-03-20T11:00:00+01:00,1\n2022-03-20T10:00:00+01:00,1\n";
        assert!(parse_flow(backwards).is_err());
        assert!(parse_flow("Time,Flow\n").is_err());
    }
}
