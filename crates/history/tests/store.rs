//! The history store: idempotent writes, queries, aggregates, retention,
//! restart.

use polis_history::*;

fn open(dir: &std::path::Path) -> History {
    History::open(
        &dir.join("history.sqlite"),
        &[("meter-1", true), ("flow-1", false)],
        HistoryOptions::default(),
    )
    .expect("opens")
}

fn row(history: &History, id: &str, device_time_ms: i64, value: f64) -> Row {
    Row {
        sensor: history.key(id).expect("registered"),
        device_time_ms,
        value,
        quality: None,
    }
}

#[test]
fn rows_are_stored_once_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = open(dir.path());
    let rows: Vec<_> = (0..1_000)
        .map(|i| row(&history, "meter-1", i * 1_000, i as f64))
        .collect();
    history
        .writer()
        .append_blocking(rows.clone())
        .expect("committed");
    // A resend of the same rows (after a reconnect) stores nothing twice.
    history.writer().append_blocking(rows).expect("committed");
    history
        .writer()
        .append_blocking(vec![row(&history, "flow-1", 5_000, 40.0)])
        .expect("committed");
    assert_eq!(
        history
            .reader()
            .expect("reader")
            .count("meter-1")
            .expect("count"),
        1_000
    );
    history.close().expect("closes");

    let history = open(dir.path());
    let reader = history.reader().expect("reader");
    assert_eq!(reader.count("meter-1").expect("count"), 1_000);
    let mut latest = reader.latest_all().expect("latest");
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0].0, "flow-1");
    assert_eq!(latest[1].0, "meter-1");
    assert_eq!(latest[1].1.device_time_ms, 999_000);
    assert_eq!(latest[1].1.value, 999.0);
}

#[test]
fn series_aggregates_and_time_travel_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = open(dir.path());
    // One reading a minute for an hour: value = minute.
    let rows: Vec<_> = (0..60)
        .map(|minute| row(&history, "meter-1", minute * 60_000, minute as f64))
        .collect();
    history.writer().append_blocking(rows).expect("committed");
    let reader = history.reader().expect("reader");

    let series = reader
        .readings("meter-1", 10 * 60_000, 20 * 60_000)
        .expect("series");
    assert_eq!(series.len(), 10);
    assert_eq!(series[0].value, 10.0);

    let every = 15 * 60_000;
    let mean = reader
        .aggregate("meter-1", 0, 3_600_000, every, Aggregate::Mean)
        .expect("mean");
    assert_eq!(
        mean.iter()
            .map(|b| (b.start_ms, b.value, b.count))
            .collect::<Vec<_>>(),
        [
            (0, 7.0, 15),
            (every, 22.0, 15),
            (2 * every, 37.0, 15),
            (3 * every, 52.0, 15)
        ]
    );
    let last = reader
        .aggregate("meter-1", 0, 3_600_000, every, Aggregate::Last)
        .expect("last");
    assert_eq!(
        last.iter().map(|b| b.value).collect::<Vec<_>>(),
        [14.0, 29.0, 44.0, 59.0]
    );
    let min = reader
        .aggregate("meter-1", 0, 3_600_000, every, Aggregate::Min)
        .expect("min");
    let max = reader
        .aggregate("meter-1", 0, 3_600_000, every, Aggregate::Max)
        .expect("max");
    assert_eq!(min[1].value, 15.0);
    assert_eq!(max[1].value, 29.0);

    let key = history.key("meter-1").expect("key");
    let state = reader
        .state_at(&[key], 30 * 60_000 + 59_999)
        .expect("state");
    assert_eq!(
        state,
        [(
            key,
            RecordedValue {
                device_time_ms: 30 * 60_000,
                value: 30.0,
                quality: None
            }
        )]
    );
    let changes = reader
        .changes(&[key], 30 * 60_000, 33 * 60_000)
        .expect("changes");
    assert_eq!(
        changes.iter().map(|(_, v)| v.value).collect::<Vec<_>>(),
        [31.0, 32.0, 33.0]
    );
    assert!(matches!(
        reader.readings("nope", 0, 1),
        Err(HistoryError::UnknownSensor(_))
    ));
}

#[test]
fn retention_deletes_exactly_the_old_personal_readings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = open(dir.path());
    let mut rows = Vec::new();
    for i in 0..100 {
        rows.push(row(&history, "meter-1", i * 1_000, 1.0));
        rows.push(row(&history, "flow-1", i * 1_000, 2.0));
    }
    history.writer().append_blocking(rows).expect("committed");
    let deleted = history
        .writer()
        .delete_personal_before(40_000)
        .expect("deleted");
    assert_eq!(deleted, 40, "meter-1 readings at 0..39 s");
    let reader = history.reader().expect("reader");
    assert_eq!(reader.count("meter-1").expect("count"), 60);
    assert_eq!(
        reader.count("flow-1").expect("count"),
        100,
        "not personal: kept"
    );
    let kept = reader.readings("meter-1", 0, i64::MAX).expect("series");
    assert_eq!(kept[0].device_time_ms, 40_000);
}

#[test]
fn a_full_queue_gives_the_rows_back_instead_of_blocking() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = History::open(
        &dir.path().join("h.sqlite"),
        &[("meter-1", false)],
        HistoryOptions {
            queue_capacity: 1,
            ..HistoryOptions::default()
        },
    )
    .expect("opens");
    let key = history.key("meter-1").expect("key");
    let mut given_back = 0;
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..200 {
        let rows = vec![Row {
            sensor: key,
            device_time_ms: i,
            value: 0.0,
            quality: None,
        }];
        let tx = tx.clone();
        match history.writer().try_append(rows, move |ok| {
            let _ = tx.send(ok);
        }) {
            Ok(()) => {}
            Err(Some(_)) => given_back += 1,
            Err(None) => panic!("writer stopped"),
        }
    }
    drop(tx);
    let committed: Vec<bool> = rx.iter().collect();
    assert!(committed.iter().all(|ok| *ok));
    assert_eq!(committed.len() + given_back, 200);
}
