//! Round-trip property tests: every message survives encode → frame split at
//! arbitrary points → decode.

use polis_protocol::*;
use proptest::prelude::*;

fn arb_role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Gateway), Just(Role::Viewer)]
}

fn arb_domain() -> impl Strategy<Value = Domain> {
    prop::sample::select(Domain::ALL.to_vec())
}

fn arb_kind() -> impl Strategy<Value = AssetKind> {
    prop::sample::select(AssetKind::ALL.to_vec())
}

fn arb_quality() -> impl Strategy<Value = Option<Quality>> {
    prop::option::of(prop_oneof![
        Just(Quality::Good),
        Just(Quality::Uncertain),
        Just(Quality::Bad)
    ])
}

fn arb_reading() -> impl Strategy<Value = Reading> {
    (".{0,40}", any::<i64>(), any::<f64>(), arb_quality()).prop_map(
        |(sensor, device_time_ms, value, quality)| Reading {
            sensor,
            device_time_ms,
            value,
            quality,
        },
    )
}

fn arb_value() -> impl Strategy<Value = ValueUpdate> {
    (any::<u32>(), any::<i64>(), any::<f64>()).prop_map(|(sensor, device_time_ms, value)| {
        ValueUpdate {
            sensor,
            device_time_ms,
            value,
        }
    })
}

fn arb_point2() -> impl Strategy<Value = [f32; 2]> {
    (any::<f32>(), any::<f32>()).prop_map(|(a, b)| [a, b])
}

fn arb_geometry() -> impl Strategy<Value = Geometry> {
    prop_oneof![
        prop::collection::vec(arb_point2(), 0..8).prop_map(Geometry::Footprint),
        prop::collection::vec(arb_point2(), 0..8).prop_map(Geometry::Line),
        (any::<f32>(), any::<f32>(), any::<f32>()).prop_map(|(a, b, c)| Geometry::Point([a, b, c])),
    ]
}

fn arb_asset() -> impl Strategy<Value = AssetInfo> {
    (
        any::<u32>(),
        "[a-z0-9-]{1,20}",
        arb_kind(),
        arb_geometry(),
        prop::option::of(any::<f32>()),
        prop::collection::vec((".{0,8}", ".{0,8}"), 0..4),
    )
        .prop_map(
            |(handle, id, kind, geometry, height_m, attributes)| AssetInfo {
                handle,
                id,
                kind,
                geometry,
                height_m,
                attributes,
            },
        )
}

fn arb_sensor() -> impl Strategy<Value = SensorInfo> {
    (
        any::<u32>(),
        "[a-z0-9-]{1,20}",
        arb_domain(),
        "[a-z_]{1,12}",
        ".{1,6}",
        (any::<f32>(), any::<f32>(), any::<f32>()),
        prop::option::of(any::<u32>()),
        any::<bool>(),
        prop::option::of(arb_value()),
    )
        .prop_map(
            |(handle, id, domain, quantity, unit, (e, n, u), asset, personal, latest)| SensorInfo {
                handle,
                id,
                domain,
                quantity,
                unit,
                position_enu_m: [e, n, u],
                asset,
                personal,
                latest,
            },
        )
}

fn arb_geobox() -> impl Strategy<Value = GeoBox> {
    (any::<f64>(), any::<f64>(), any::<f64>(), any::<f64>()).prop_map(|(a, b, c, d)| GeoBox {
        lon_min_deg: a,
        lat_min_deg: b,
        lon_max_deg: c,
        lat_max_deg: d,
    })
}

fn arb_error() -> impl Strategy<Value = ProtocolError> {
    (
        prop_oneof![
            Just(ErrorCode::MalformedFrame),
            Just(ErrorCode::FrameTooLarge),
            Just(ErrorCode::UnexpectedMessage),
            Just(ErrorCode::BatchTooLarge),
            Just(ErrorCode::InvalidArea),
            Just(ErrorCode::ShuttingDown),
            Just(ErrorCode::Unavailable),
            Just(ErrorCode::InvalidRequest),
            Just(ErrorCode::RateLimited),
        ],
        ".{0,30}",
    )
        .prop_map(|(code, detail)| ProtocolError { code, detail })
}

/// Bit-exact comparison: NaN payloads must survive too, which `PartialEq`
/// cannot tell.
fn assert_roundtrip<T>(message: &T, split_at: usize)
where
    T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut bytes = Vec::new();
    let written = encode_frame(message, &mut bytes).expect("encodes");
    assert_eq!(written, bytes.len());
    let mut decoder = FrameDecoder::default();
    let split_at = split_at % (bytes.len() + 1);
    decoder.push(&bytes[..split_at]);
    let early: Option<T> = decoder
        .next_message()
        .expect("partial frame is not an error");
    assert!(early.is_none() || split_at == bytes.len());
    decoder.push(&bytes[split_at..]);
    let decoded: T = match early {
        Some(message) => message,
        None => decoder
            .next_message()
            .expect("decodes")
            .expect("complete frame"),
    };
    assert_eq!(format!("{decoded:?}"), format!("{message:?}"));
    assert_eq!(decoder.buffered_bytes(), 0);
}

proptest! {
    #[test]
    fn hello_roundtrips(version in any::<u16>(), role in arb_role(), token in ".{0,64}", client in ".{0,32}", split in any::<usize>()) {
        assert_roundtrip(&Hello { protocol_version: version, role, token, client }, split);
    }

    #[test]
    fn batches_roundtrip(seq in any::<u64>(), readings in prop::collection::vec(arb_reading(), 0..20), split in any::<usize>()) {
        assert_roundtrip(&ClientToServer::Batch(ReadingBatch { seq, readings }), split);
    }

    #[test]
    fn acks_roundtrip(seq in any::<u64>(), accepted in any::<u32>(), idx in prop::collection::vec(any::<u32>(), 0..10), split in any::<usize>()) {
        let outcomes = [ReadingOutcome::Stale, ReadingOutcome::Duplicate, ReadingOutcome::UnknownSensor, ReadingOutcome::NonFiniteValue, ReadingOutcome::ConflictingValue, ReadingOutcome::OutOfScope];
        let not_accepted = idx.iter().map(|&i| NotAccepted { index: i, outcome: outcomes[i as usize % outcomes.len()] }).collect();
        assert_roundtrip(&ServerToGateway::Ack(BatchAck { seq, accepted, not_accepted }), split);
    }

    #[test]
    fn subscriptions_roundtrip(subscription in any::<u32>(), area in arb_geobox(), layers in prop::collection::vec(arb_domain(), 0..4), at_ms in prop::option::of(any::<i64>()), speed in any::<f32>(), publish_interval_ms in any::<u32>(), split in any::<usize>()) {
        assert_roundtrip(&ClientToServer::Subscribe(Subscribe { subscription, area, layers, at_ms, speed, publish_interval_ms }), split);
    }

    #[test]
    fn history_requests_and_replies_roundtrip(request in any::<u32>(), sensor in any::<u32>(), from_ms in any::<i64>(), to_ms in any::<i64>(), every_ms in any::<i64>(), points in prop::collection::vec((any::<i64>(), any::<f64>(), any::<u32>()), 0..20), truncated in any::<bool>(), split in any::<usize>()) {
        let aggregations = [Aggregation::Raw, Aggregation::Mean, Aggregation::Min, Aggregation::Max, Aggregation::Last];
        let aggregation = aggregations[request as usize % aggregations.len()];
        assert_roundtrip(&ClientToServer::History(HistoryRequest { request, sensor, from_ms, to_ms, every_ms, aggregation }), split);
        let points = points.into_iter().map(|(time_ms, value, count)| HistoryPoint { time_ms, value, count }).collect();
        assert_roundtrip(&ServerToViewer::History(HistoryReply { request, sensor, points, truncated }), split);
    }

    #[test]
    fn viewer_frames_roundtrip(
        tick in any::<u64>(),
        assets in prop::collection::vec(arb_asset(), 0..4),
        sensors in prop::collection::vec(arb_sensor(), 0..4),
        left in prop::collection::vec(any::<u32>(), 0..4),
        values in prop::collection::vec(arb_value(), 0..16),
        error in arb_error(),
        split in any::<usize>(),
    ) {
        assert_roundtrip(&ServerToViewer::Snapshot(Snapshot { subscription: 7, part: 0, complete: true, assets: assets.clone(), sensors: sensors.clone() }), split);
        assert_roundtrip(&ServerToViewer::Update(Update { tick, entered_assets: assets, entered_sensors: sensors, left_assets: left.clone(), left_sensors: left, values }), split);
        assert_roundtrip(&ServerToViewer::Error(error), split);
    }

    #[test]
    fn decoder_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut decoder = FrameDecoder::default();
        decoder.push(&bytes);
        for _ in 0..8 {
            match decoder.next_message::<ClientToServer>() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}
