//! The per-viewer mailbox: coalescing, bounded size and snapshot chunking.

use polis_protocol::*;

fn sensor(handle: u32) -> SensorInfo {
    SensorInfo {
        handle,
        id: format!("sensor-{handle}"),
        domain: Domain::Energy,
        quantity: "active_power".into(),
        unit: "kW".into(),
        position_enu_m: [0.0, 0.0, 0.0],
        asset: None,
        personal: false,
        latest: None,
    }
}

fn value(sensor: u32, device_time_ms: i64, value: f64) -> ValueUpdate {
    ValueUpdate {
        sensor,
        device_time_ms,
        value,
    }
}

fn updates(frames: Vec<ServerToViewer>) -> Vec<Update> {
    frames
        .into_iter()
        .map(|frame| match frame {
            ServerToViewer::Update(update) => update,
            other => panic!("expected an update, got {other:?}"),
        })
        .collect()
}

#[test]
fn latest_value_wins_and_memory_stays_bounded() {
    let mut mailbox = ViewerMailbox::default();
    for round in 0..10_000i64 {
        for handle in 0..10u32 {
            mailbox.value(value(handle, round, round as f64));
        }
    }
    assert_eq!(mailbox.pending_entries(), 10, "one entry per sensor");
    let frames = updates(mailbox.drain_frames(64 * 1024));
    assert_eq!(frames.len(), 1);
    let values = &frames[0].values;
    assert_eq!(values.len(), 10);
    assert!(values.iter().all(|v| v.device_time_ms == 9_999));
    assert!(mailbox.is_empty());
    assert!(mailbox.drain_frames(64 * 1024).is_empty(), "nothing left");
}

#[test]
fn snapshot_replaces_pending_changes_and_carries_values() {
    let mut mailbox = ViewerMailbox::default();
    mailbox.value(value(1, 5, 1.0));
    mailbox.leave_sensor(9);
    mailbox.begin_snapshot(3);
    mailbox.enter_sensor(sensor(2));
    mailbox.value(value(2, 7, 4.5));
    mailbox.leave_sensor(8);
    let frames = mailbox.drain_frames(64 * 1024);
    assert_eq!(frames.len(), 1);
    let ServerToViewer::Snapshot(snapshot) = &frames[0] else {
        panic!("expected a snapshot, got {frames:?}");
    };
    assert_eq!(snapshot.subscription, 3);
    assert!(snapshot.complete);
    assert_eq!(snapshot.sensors.len(), 1);
    assert_eq!(snapshot.sensors[0].latest, Some(value(2, 7, 4.5)));
    // After the snapshot, changes come as updates again.
    mailbox.value(value(2, 8, 5.0));
    assert_eq!(
        updates(mailbox.drain_frames(64 * 1024))[0].values,
        [value(2, 8, 5.0)]
    );
}

#[test]
fn empty_area_still_gets_a_complete_snapshot() {
    let mut mailbox = ViewerMailbox::default();
    mailbox.begin_snapshot(1);
    let frames = mailbox.drain_frames(1024);
    assert!(matches!(
        frames.as_slice(),
        [ServerToViewer::Snapshot(Snapshot {
            complete: true,
            part: 0,
            ..
        })]
    ));
}

#[test]
fn entering_then_leaving_cancels_out() {
    let mut mailbox = ViewerMailbox::default();
    mailbox.enter_sensor(sensor(4));
    mailbox.value(value(4, 1, 1.0));
    mailbox.leave_sensor(4);
    let frames = updates(mailbox.drain_frames(1024));
    assert_eq!(frames.len(), 1);
    assert!(frames[0].entered_sensors.is_empty());
    assert!(frames[0].values.is_empty());
    assert_eq!(frames[0].left_sensors, [4]);
}

#[test]
fn large_snapshots_are_split_into_frames_within_budget() {
    let mut mailbox = ViewerMailbox::default();
    mailbox.begin_snapshot(1);
    for handle in 0..5_000 {
        mailbox.enter_sensor(sensor(handle));
    }
    let budget = 16 * 1024;
    let frames = mailbox.drain_frames(budget);
    assert!(frames.len() > 5, "split into {} parts", frames.len());
    let mut total = 0;
    for (index, frame) in frames.iter().enumerate() {
        let mut bytes = Vec::new();
        encode_frame(frame, &mut bytes).expect("encodes");
        assert!(
            bytes.len() <= budget,
            "part {index} is {} bytes",
            bytes.len()
        );
        let ServerToViewer::Snapshot(part) = frame else {
            panic!("expected snapshot parts");
        };
        assert_eq!(part.part as usize, index);
        assert_eq!(part.complete, index + 1 == frames.len());
        total += part.sensors.len();
    }
    assert_eq!(total, 5_000);
}

#[test]
fn shared_mailbox_wakes_the_drain_side_only_when_something_is_pending() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&wakes);
    let shared = SharedMailbox::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    shared.update(|_| ());
    assert_eq!(wakes.load(Ordering::SeqCst), 0);
    shared.update(|m| m.value(value(1, 1, 1.0)));
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    assert_eq!(shared.pending_entries(), 1);
    assert_eq!(shared.drain_frames(1024).len(), 1);
    assert_eq!(shared.pending_entries(), 0);
}

#[test]
fn only_value_updates_may_be_held_back() {
    let mut mailbox = ViewerMailbox::default();
    assert!(
        !mailbox.holds_only_values(),
        "an empty mailbox holds nothing"
    );
    mailbox.value(value(1, 10, 1.0));
    assert!(mailbox.holds_only_values());

    mailbox.enter_sensor(sensor(2));
    assert!(
        !mailbox.holds_only_values(),
        "a sensor entering the area must not wait for the publishing interval"
    );
    mailbox.drain_frames(4096);

    mailbox.value(value(1, 20, 2.0));
    mailbox.leave_sensor(3);
    assert!(!mailbox.holds_only_values(), "nor one leaving it");
    mailbox.drain_frames(4096);

    mailbox.begin_snapshot(9);
    assert!(!mailbox.holds_only_values(), "nor a snapshot");
}
