//! The twin's hot paths on a synthetic city of 100,000 sensors: area queries
//! on the R-tree next to a linear scan, and applying a batch of readings next
//! to inserting the same values into a plain HashMap.

use std::collections::HashMap;

use bevy::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use polis_protocol::{AssetKind, Domain, Reading, ReadingBatch};
use polis_scene::{Asset, Geometry, Georeference, Scene, Sensor};
use polis_twin::{BatchTicket, IncomingBatch, IndexedItem, SpatialIndex, TwinPlugin};

const SIDE: usize = 316; // ~100,000 sensors, 10 m apart

fn grid() -> Scene {
    let mut assets = Vec::new();
    let mut sensors = Vec::new();
    for i in 0..SIDE * SIDE {
        let position = [(i % SIDE) as f64 * 10.0, (i / SIDE) as f64 * 10.0, 0.0];
        assets.push(Asset {
            id: format!("j{i}"),
            kind: AssetKind::WaterJunction,
            geometry: Geometry::Point(position),
            height_m: None,
            attributes: Default::default(),
        });
        sensors.push(Sensor {
            id: format!("s{i}"),
            domain: Domain::Water,
            quantity: "pressure".into(),
            unit: "m".into(),
            position_enu_m: position,
            asset: Some(format!("j{i}")),
            personal: false,
        });
    }
    Scene {
        name: "grid".into(),
        description: None,
        attribution: vec![],
        georeference: Georeference {
            origin_lon_deg: 24.94,
            origin_lat_deg: 60.17,
        },
        assets,
        sensors,
    }
}

fn area_query(c: &mut Criterion) {
    let points: Vec<[f64; 2]> = (0..SIDE * SIDE)
        .map(|i| [(i % SIDE) as f64 * 10.0, (i / SIDE) as f64 * 10.0])
        .collect();
    let index = SpatialIndex::bulk_load(
        points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let point = [p[0] as f32, p[1] as f32];
                IndexedItem::sensor(i as u32, point, point)
            })
            .collect(),
    );
    // A 320 m × 320 m area: ~1,000 sensors.
    let (min, max) = ([1_000.0, 1_000.0], [1_315.0, 1_315.0]);
    let mut group = c.benchmark_group("area query, ~1,000 of 100,000 sensors");
    group.bench_function(BenchmarkId::new("query", "R-tree"), |b| {
        b.iter(|| index.entries_in_area(min, max).count());
    });
    group.bench_function(BenchmarkId::new("query", "baseline: linear scan"), |b| {
        b.iter(|| {
            points
                .iter()
                .filter(|p| p[0] >= min[0] && p[0] <= max[0] && p[1] >= min[1] && p[1] <= max[1])
                .count()
        });
    });
    group.finish();
}

fn apply(c: &mut Criterion) {
    let mut app = App::new();
    app.add_plugins(TwinPlugin::new(grid()));
    app.update();
    let ids: Vec<String> = (0..SIDE * SIDE).map(|i| format!("s{i}")).collect();
    let batch_len = 5_000;
    let mut group = c.benchmark_group("apply a batch of 5,000 readings");
    group.throughput(Throughput::Elements(batch_len as u64));
    let mut step = 0i64;
    group.bench_function(BenchmarkId::new("apply", "twin (one tick)"), |b| {
        b.iter(|| {
            step += 1;
            let readings = ids
                .iter()
                .take(batch_len)
                .map(|id| Reading {
                    sensor: id.clone(),
                    device_time_ms: step,
                    value: step as f64,
                    quality: None,
                })
                .collect();
            app.world_mut().write_message(IncomingBatch {
                ticket: BatchTicket(step as u64),
                scope: None,
                batch: ReadingBatch {
                    seq: step as u64,
                    readings,
                },
            });
            app.update();
        });
    });
    let mut latest: HashMap<String, (i64, f64)> = HashMap::new();
    group.bench_function(BenchmarkId::new("apply", "baseline: HashMap insert"), |b| {
        b.iter(|| {
            step += 1;
            for id in ids.iter().take(batch_len) {
                latest.insert(id.clone(), (step, step as f64));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, area_query, apply);
criterion_main!(benches);
