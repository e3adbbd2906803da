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

fn snapshots(frames: &[ServerToViewer]) -> Vec<&Snapshot> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerToViewer::Snapshot(snapshot) => Some(snapshot),
            _ => None,
        })
        .collect()
}

#[test]
fn a_snapshot_filled_in_parts_is_complete_only_after_its_end() {
    let mut mailbox = ViewerMailbox::default();
    mailbox.begin_snapshot_in_parts(4);
    assert!(mailbox.is_empty(), "nothing to send before anything enters");
    assert!(mailbox.drain_frames(64 * 1024).is_empty());
    for handle in 0..3 {
        mailbox.enter_sensor(sensor(handle));
    }
    let first = mailbox.drain_frames(64 * 1024);
    let parts = snapshots(&first);
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].part, parts[0].complete), (0, false));
    assert_eq!(parts[0].sensors.len(), 3);
    // A value of a sensor already sent, and a departure of one, wait for
    // the end of the snapshot.
    mailbox.value(value(1, 7, 2.5));
    mailbox.leave_sensor(2);
    assert!(mailbox.is_empty(), "held while the snapshot fills");
    assert!(mailbox.drain_frames(64 * 1024).is_empty());
    mailbox.enter_sensor(sensor(10));
    mailbox.end_snapshot();
    let rest = mailbox.drain_frames(64 * 1024);
    let parts = snapshots(&rest);
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].part, parts[0].complete), (1, true));
    assert_eq!(parts[0].sensors.len(), 1);
    let after: Vec<Update> = updates(rest.into_iter().skip(1).collect());
    assert_eq!(after.len(), 1, "the held changes follow the last part");
    assert_eq!(after[0].values, vec![value(1, 7, 2.5)]);
    assert_eq!(after[0].left_sensors, vec![2]);
    assert!(mailbox.is_empty());
}

#[test]
fn ending_an_emptied_snapshot_still_sends_a_complete_part() {
    let mut mailbox = ViewerMailbox::default();
    mailbox.begin_snapshot_in_parts(2);
    mailbox.enter_sensor(sensor(1));
    assert_eq!(snapshots(&mailbox.drain_frames(64 * 1024)).len(), 1);
    mailbox.end_snapshot();
    assert!(!mailbox.is_empty(), "the closing part is due");
    let frames = mailbox.drain_frames(64 * 1024);
    let parts = snapshots(&frames);
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].part, parts[0].complete), (1, true));
    assert!(parts[0].sensors.is_empty());
}

#[test]
fn a_drain_budget_bounds_each_pass_and_loses_nothing() {
    let mut mailbox = ViewerMailbox::default();
    mailbox.begin_snapshot(5);
    for handle in 0..1_000 {
        mailbox.enter_sensor(sensor(handle));
    }
    let mut received = Vec::new();
    let mut parts = Vec::new();
    let mut passes = 0;
    while !mailbox.is_empty() {
        passes += 1;
        assert!(passes < 1_000, "the mailbox must empty");
        let frames = mailbox.drain_frames_up_to(4 * 1024, 8 * 1024);
        let bytes: usize = frames
            .iter()
            .map(|frame| postcard::to_stdvec(frame).map_or(0, |b| b.len()))
            .sum();
        assert!(bytes <= 8 * 1024 + 4 * 1024, "one pass took {bytes} B");
        for part in snapshots(&frames) {
            parts.push((part.part, part.complete));
            received.extend(part.sensors.iter().map(|s| s.handle));
        }
    }
    assert!(passes > 3, "the budget split the work: {passes} passes");
    assert_eq!(received, (0..1_000).collect::<Vec<_>>());
    let numbers: Vec<u32> = parts.iter().map(|&(part, _)| part).collect();
    assert_eq!(numbers, (0..parts.len() as u32).collect::<Vec<_>>());
    let complete: Vec<bool> = parts.iter().map(|&(_, complete)| complete).collect();
    assert_eq!(complete.iter().filter(|&&c| c).count(), 1);
    assert_eq!(
        complete.last(),
        Some(&true),
        "only the last part is complete"
    );
}

#[test]
fn a_shared_mailbox_wakes_again_when_a_drain_leaves_work() {
    let wakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&wakes);
    let mailbox = SharedMailbox::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    mailbox.update(|m| {
        for handle in 0..100 {
            m.value(value(handle, 1, 1.0));
        }
    });
    let before = wakes.load(std::sync::atomic::Ordering::Relaxed);
    let frames = mailbox.drain_frames_up_to(1024, 64);
    assert!(!frames.is_empty());
    assert_eq!(
        wakes.load(std::sync::atomic::Ordering::Relaxed),
        before + 1,
        "work left: woken to come back"
    );
    let _ = mailbox.drain_frames(64 * 1024);
    assert_eq!(
        wakes.load(std::sync::atomic::Ordering::Relaxed),
        before + 1,
        "nothing left: no wake-up"
    );
}
