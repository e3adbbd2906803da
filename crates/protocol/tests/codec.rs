//! Golden bytes and the framing rules. A change to any golden vector is a
//! wire-format change: bump `PROTOCOL_VERSION` and say so in the changelog.

use polis_protocol::*;

fn frame<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_frame(message, &mut bytes).expect("encodes");
    bytes
}

#[test]
fn hello_golden_bytes() {
    let hello = Hello {
        protocol_version: 1,
        role: Role::Gateway,
        token: "abc".into(),
        client: "t".into(),
    };
    assert_eq!(
        frame(&hello),
        [8, 0, 0, 0, 1, 0, 3, b'a', b'b', b'c', 1, b't'],
        "length 8; version varint 1; role index 0; token len 3 + bytes; client len 1 + byte"
    );
}

#[test]
fn batch_golden_bytes() {
    let batch = ClientToServer::Batch(ReadingBatch {
        seq: 300,
        readings: vec![Reading {
            sensor: "m1".into(),
            device_time_ms: -1,
            value: 1.5,
            quality: Some(Quality::Uncertain),
        }],
    });
    assert_eq!(
        frame(&batch),
        [
            18, 0, 0, 0, // length
            0, // variant Batch
            0xac, 0x02, // seq 300 varint
            1,    // one reading
            2, b'm', b'1', // sensor id
            1,    // time -1 zigzag
            0, 0, 0, 0, 0, 0, 0xf8, 0x3f, // 1.5 f64 LE
            1, 1, // Some(Uncertain)
        ]
    );
}

#[test]
fn subscribe_golden_bytes() {
    let subscribe = ClientToServer::Subscribe(Subscribe {
        subscription: 7,
        area: GeoBox {
            lon_min_deg: 0.0,
            lat_min_deg: 0.0,
            lon_max_deg: 1.0,
            lat_max_deg: 1.0,
        },
        layers: vec![Domain::Water],
        at_ms: None,
        speed: 1.0,
        publish_interval_ms: 300,
    });
    let mut expected = vec![43, 0, 0, 0, 1, 7]; // length; variant Subscribe; id 7
    expected.extend_from_slice(&0.0f64.to_le_bytes());
    expected.extend_from_slice(&0.0f64.to_le_bytes());
    expected.extend_from_slice(&1.0f64.to_le_bytes());
    expected.extend_from_slice(&1.0f64.to_le_bytes());
    expected.extend_from_slice(&[1, 2]); // one layer: Water
    expected.push(0); // at_ms None
    expected.extend_from_slice(&1.0f32.to_le_bytes());
    expected.extend_from_slice(&[0xac, 0x02]); // publish interval 300 varint
    assert_eq!(frame(&subscribe), expected);
}

#[test]
fn ack_golden_bytes() {
    let ack = ServerToGateway::Ack(BatchAck {
        seq: 2,
        accepted: 5,
        not_accepted: vec![NotAccepted {
            index: 3,
            outcome: ReadingOutcome::UnknownSensor,
        }],
    });
    assert_eq!(frame(&ack), [6, 0, 0, 0, 1, 2, 5, 1, 3, 2]);
}

#[test]
fn update_golden_bytes() {
    let update = ServerToViewer::Update(Update {
        tick: 9,
        entered_assets: vec![],
        entered_sensors: vec![],
        left_assets: vec![4],
        left_sensors: vec![],
        values: vec![ValueUpdate {
            sensor: 1,
            device_time_ms: 1000,
            value: 2.0,
        }],
    });
    assert_eq!(
        frame(&update),
        [
            12, 0, 0, 0, // length
            2, // variant Update
            9, // tick
            0, 0, // no entered assets or sensors
            1, 4,    // one left asset, handle 4
            0,    // no left sensors
            4,    // the values: a byte string of 4 bytes, one record:
            0x10, // header: sensor +1 (zigzag 2) << 3 | form 0 (integer)
            0xd0, 0x0f, // time +1000 ms, zigzag 2000 varint
            4,    // value 2 (zigzag 4) / 10^0
        ]
    );
}

#[test]
fn oversized_header_is_refused_before_buffering() {
    let mut decoder = FrameDecoder::default();
    let announced = u32::try_from(MAX_FRAME_BYTES + 1).expect("fits");
    decoder.push(&announced.to_le_bytes());
    assert_eq!(
        decoder.next_payload(),
        Err(DecodeError::TooLarge {
            len_bytes: MAX_FRAME_BYTES + 1,
            max_bytes: MAX_FRAME_BYTES
        })
    );
}

#[test]
fn a_lowered_limit_refuses_at_the_header_and_a_raised_one_accepts() {
    let mut decoder = FrameDecoder::new(4096);
    decoder.push(&u32::try_from(4097).expect("fits").to_le_bytes());
    assert_eq!(
        decoder.next_payload(),
        Err(DecodeError::TooLarge {
            len_bytes: 4097,
            max_bytes: 4096
        }),
        "refused from the four header bytes alone"
    );
    let mut decoder = FrameDecoder::new(16);
    decoder.set_max_frame_bytes(usize::MAX);
    let payload = vec![7u8; 5000];
    decoder.push(&u32::try_from(payload.len()).expect("fits").to_le_bytes());
    decoder.push(&payload);
    assert_eq!(decoder.next_payload(), Ok(Some(&payload[..])));
    decoder.push(
        &u32::try_from(MAX_FRAME_BYTES + 1)
            .expect("fits")
            .to_le_bytes(),
    );
    assert!(
        decoder.next_payload().is_err(),
        "never above MAX_FRAME_BYTES"
    );
}

#[test]
fn oversized_message_is_not_encoded() {
    let batch = ClientToServer::Batch(ReadingBatch {
        seq: 0,
        readings: vec![
            Reading {
                sensor: "x".repeat(1000),
                device_time_ms: 0,
                value: 0.0,
                quality: None,
            };
            1100
        ],
    });
    let mut out = vec![1, 2, 3];
    assert!(matches!(
        encode_frame(&batch, &mut out),
        Err(EncodeError::TooLarge { .. })
    ));
    assert_eq!(out, [1, 2, 3], "output untouched on error");
}

#[test]
fn trailing_bytes_and_garbage_are_malformed() {
    let mut payload = frame(&Hello {
        protocol_version: 1,
        role: Role::Viewer,
        token: String::new(),
        client: String::new(),
    })[FRAME_HEADER_BYTES..]
        .to_vec();
    payload.push(0);
    assert_eq!(
        decode_payload::<Hello>(&payload),
        Err(DecodeError::TrailingBytes(1))
    );
    assert!(matches!(
        decode_payload::<Hello>(&[0xff, 0xff, 0xff]),
        Err(DecodeError::Malformed(_))
    ));
    // Role index out of range.
    assert!(matches!(
        decode_payload::<Hello>(&[1, 9, 0, 0]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn decoder_yields_back_to_back_frames_in_order() {
    let mut bytes = Vec::new();
    for seq in 0..100u64 {
        encode_frame(
            &ClientToServer::Batch(ReadingBatch {
                seq,
                readings: vec![],
            }),
            &mut bytes,
        )
        .expect("encodes");
    }
    let mut decoder = FrameDecoder::default();
    let mut seen = Vec::new();
    for chunk in bytes.chunks(7) {
        decoder.push(chunk);
        while let Some(ClientToServer::Batch(batch)) =
            decoder.next_message::<ClientToServer>().expect("decodes")
        {
            seen.push(batch.seq);
        }
    }
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
}

fn lookup(token: &str) -> Option<Access> {
    match token {
        "gw" => Some(Access::Gateway),
        "view" => Some(Access::Public),
        "plan" => Some(Access::Planner),
        _ => None,
    }
}

fn hello(version: u16, role: Role, token: &str) -> Hello {
    Hello {
        protocol_version: version,
        role,
        token: token.into(),
        client: "test".into(),
    }
}

#[test]
fn handshake_accepts_matching_token_and_role() {
    assert_eq!(
        check_hello(&hello(PROTOCOL_VERSION, Role::Gateway, "gw"), &lookup),
        Ok(Access::Gateway)
    );
    assert_eq!(
        check_hello(&hello(PROTOCOL_VERSION, Role::Viewer, "view"), &lookup),
        Ok(Access::Public)
    );
}

#[test]
fn handshake_rejects_with_reasons() {
    assert_eq!(
        check_hello(&hello(PROTOCOL_VERSION + 1, Role::Gateway, "gw"), &lookup),
        Err(Rejection::VersionMismatch {
            server: PROTOCOL_VERSION,
            client: PROTOCOL_VERSION + 1
        })
    );
    assert_eq!(
        check_hello(&hello(PROTOCOL_VERSION, Role::Gateway, "nope"), &lookup),
        Err(Rejection::UnknownToken)
    );
    assert_eq!(
        check_hello(&hello(PROTOCOL_VERSION, Role::Viewer, "gw"), &lookup),
        Err(Rejection::RoleNotAllowed {
            requested: Role::Viewer
        })
    );
    assert_eq!(
        check_hello(&hello(PROTOCOL_VERSION, Role::Gateway, "view"), &lookup),
        Err(Rejection::RoleNotAllowed {
            requested: Role::Gateway
        })
    );
}

#[test]
fn georeference_roundtrips_within_a_millimetre() {
    let georef = Georeference {
        origin_lon_deg: 24.931,
        origin_lat_deg: 60.169,
    };
    let [east_m, north_m] = georef.enu_from_lonlat(24.95, 60.175);
    assert!((east_m - 1052.0).abs() < 5.0, "east {east_m}");
    assert!((north_m - 667.2).abs() < 2.0, "north {north_m}");
    let [lon, lat] = georef.lonlat_from_enu(east_m, north_m);
    assert!((lon - 24.95).abs() < 1e-8 && (lat - 60.175).abs() < 1e-8);
}

#[test]
fn error_frames_are_identical_at_every_stage() {
    let error = ProtocolError {
        code: ErrorCode::MalformedFrame,
        detail: "bad".into(),
    };
    let viewer = frame(&ServerToViewer::Error(error.clone()));
    assert_eq!(viewer, frame(&ServerToGateway::Error(error.clone())));
    assert_eq!(viewer, frame(&HelloReply::Error(error.clone())));
    assert_eq!(viewer, [6, 0, 0, 0, 0, 0, 3, b'b', b'a', b'd']);
}

/// History stores the quality as this byte: the codes are a storage format
/// and must never change.
#[test]
fn quality_codes_are_stable_and_round_trip() {
    use polis_protocol::Quality;
    let codes: Vec<u8> = Quality::ALL.iter().map(|q| q.code()).collect();
    assert_eq!(codes, [0, 1, 2]);
    for quality in Quality::ALL {
        assert_eq!(Quality::from_code(quality.code()), Some(quality));
    }
    assert_eq!(Quality::from_code(3), None);
    assert_eq!(Quality::from_code(u8::MAX), None);
}
