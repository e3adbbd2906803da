//! The frame codec: encoding and decoding an update of 1,000 values, next to
//! JSON (what a REST/MQTT-JSON deployment would send) as the baseline.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use polis_protocol::{FrameDecoder, ServerToViewer, Update, ValueUpdate, encode_frame};

fn update(values: u32) -> ServerToViewer {
    ServerToViewer::Update(Update {
        tick: 42,
        entered_assets: vec![],
        entered_sensors: vec![],
        left_assets: vec![],
        left_sensors: vec![],
        values: (0..values)
            .map(|i| ValueUpdate {
                sensor: i * 7,
                device_time_ms: 1_780_000_000_000 + i64::from(i),
                value: f64::from(i) * 0.25,
            })
            .collect(),
    })
}

fn codec(c: &mut Criterion) {
    let message = update(1_000);
    let mut group = c.benchmark_group("update of 1,000 values");
    group.throughput(Throughput::Elements(1_000));
    let mut buffer = Vec::with_capacity(64 * 1024);
    group.bench_function(BenchmarkId::new("encode", "postcard frame"), |b| {
        b.iter(|| {
            buffer.clear();
            encode_frame(&message, &mut buffer).expect("encodes")
        });
    });
    group.bench_function(BenchmarkId::new("encode", "baseline: JSON"), |b| {
        b.iter(|| serde_json::to_vec(&message).expect("encodes"));
    });
    let mut frame = Vec::new();
    encode_frame(&message, &mut frame).expect("encodes");
    let json = serde_json::to_vec(&message).expect("encodes");
    group.bench_function(BenchmarkId::new("decode", "postcard frame"), |b| {
        b.iter(|| {
            let mut decoder = FrameDecoder::default();
            decoder.push(&frame);
            decoder
                .next_message::<ServerToViewer>()
                .expect("decodes")
                .expect("complete")
        });
    });
    group.bench_function(BenchmarkId::new("decode", "baseline: JSON"), |b| {
        b.iter(|| serde_json::from_slice::<ServerToViewer>(&json).expect("decodes"));
    });
    group.finish();
    println!(
        "bytes for 1,000 values: postcard frame {} ({:.1} per value), JSON {} ({:.1} per value)",
        frame.len(),
        frame.len() as f64 / 1_000.0,
        json.len(),
        json.len() as f64 / 1_000.0
    );
}

criterion_group!(benches, codec);
criterion_main!(benches);
