#![no_main]
//! The readings CSV of `polis push`: any input gives readings or a typed
//! error naming a line, never a panic; line numbers increase.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match polis_import::parse_readings_csv(data, "fuzz.csv") {
        Ok(readings) => {
            let mut last_line = 0;
            for (line, reading) in &readings {
                assert!(*line > last_line, "line numbers increase");
                assert!(!reading.sensor.is_empty(), "sensor ids are never empty");
                last_line = *line;
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
