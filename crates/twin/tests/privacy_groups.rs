//! Privacy for every role: the groups behind planners' and the public's
//! aggregates hold at least their role's k households, nest so that no one
//! holding both views can subtract one from the other to single out fewer,
//! and an aggregate's value never changes membership.

use std::collections::{BTreeMap, BTreeSet};

use bevy::prelude::*;
use polis_protocol::*;
use polis_scene::Scene;
use polis_twin::*;

const K_PLANNER: usize = 3;
const K: usize = 5;

/// Buildings with 1, 2, 3 (k_planner), 4 (k − 1) and 5 (k) household
/// meters, and one lone house far away:
/// - block A (x 0..100): `b1` (1 meter) and `b2` (2);
/// - block B (x 200..300): `b3` (3) and `b4` (4);
/// - block C (x 400..500): `b5` (5);
/// - `b6` (1 meter) 5 km east, alone in its district.
///
/// Each meter's raw value is a distinct power of two (in kW), so no sum of
/// other meters equals it.
fn scene() -> Scene {
    let buildings = [
        ("b1", 10.0, 1),
        ("b2", 60.0, 2),
        ("b3", 210.0, 3),
        ("b4", 260.0, 4),
        ("b5", 410.0, 5),
        ("b6", 5_010.0, 1),
    ];
    let mut assets = Vec::new();
    let mut sensors = Vec::new();
    for (id, x, meters) in buildings {
        assets.push(serde_json::json!({
            "id": id, "kind": "building",
            "footprint_enu_m": [[x, 10.0], [x + 20.0, 10.0], [x + 20.0, 30.0], [x, 30.0]],
            "height_m": 12.0, "attributes": {}
        }));
        for meter in 0..meters {
            sensors.push(serde_json::json!({
                "id": format!("meter-{id}-{meter}"), "domain": "energy",
                "quantity": "active_power", "unit": "kW",
                "position_enu_m": [x + 10.0, 20.0, 0.0], "asset": id, "personal": true
            }));
        }
    }
    let json = serde_json::json!({
        "format": "polis-scene", "version": 1, "name": "households",
        "attribution": ["Hand-written for tests."],
        "georeference": {"origin_lon_deg": 24.931, "origin_lat_deg": 60.169},
        "assets": assets, "sensors": sensors
    });
    Scene::from_json_str(&json.to_string(), "households.json").expect("scene loads")
}

fn app() -> App {
    let mut app = App::new();
    app.add_plugins(TwinPlugin::new(scene()).with_privacy(PrivacyOptions {
        k: K,
        k_planner: K_PLANNER,
        block_m: 100.0,
        district_m: 1_000.0,
    }));
    app.update();
    app
}

/// Aggregates by audience: id → member handles.
fn aggregates(app: &App) -> BTreeMap<String, (Audience, BTreeSet<u32>)> {
    let sensors = app.world().resource::<SensorTable>();
    (0..sensors.len() as u32)
        .filter_map(|h| {
            let members = sensors.aggregate_members(h)?;
            Some((
                sensors.id(h)?.to_owned(),
                (sensors.audience(h)?, members.iter().copied().collect()),
            ))
        })
        .collect()
}

fn handle(app: &App, id: &str) -> u32 {
    app.world()
        .resource::<SensorTable>()
        .by_id(id)
        .expect("sensor exists")
}

#[test]
fn groups_hold_k_households_per_role_and_nest() {
    let app = app();
    let groups = aggregates(&app);
    let of = |audience: Audience| -> Vec<(&String, &BTreeSet<u32>)> {
        groups
            .iter()
            .filter(|(_, (a, _))| *a == audience)
            .map(|(id, (_, members))| (id, members))
            .collect()
    };
    let planner = of(Audience::PLANNERS);
    let public = of(Audience::PUBLIC);
    let names: Vec<&str> = planner.iter().map(|(id, _)| id.as_str()).collect();
    // b3, b4, b5 by themselves; b1 and b2 together as block A; b6 nowhere.
    assert_eq!(planner.len(), 4, "{names:?}");
    for (id, members) in &planner {
        assert!(members.len() >= K_PLANNER, "{id} has {}", members.len());
    }
    for (id, members) in &public {
        assert!(members.len() >= K, "{id} has {}", members.len());
    }
    // Each role's groups are disjoint.
    for role in [&planner, &public] {
        let mut seen = BTreeSet::new();
        for (id, members) in role {
            assert!(members.iter().all(|m| seen.insert(*m)), "{id} overlaps");
        }
    }
    // Every public group is a union of whole planner groups.
    for (id, members) in &public {
        let covered: BTreeSet<u32> = planner
            .iter()
            .filter(|(_, p)| !p.is_disjoint(members))
            .inspect(|(pid, p)| assert!(p.is_subset(members), "{id} splits {pid}"))
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        assert_eq!(
            &covered, *members,
            "{id} holds households of no planner group"
        );
    }
    // b5 (k meters) is public by itself; b3 + b4 (3 + 4) make block B's.
    let sizes: BTreeSet<usize> = public.iter().map(|(_, m)| m.len()).collect();
    assert_eq!(sizes, BTreeSet::from([5, 7]), "{public:?}");
    // The lone house is in no group.
    let lone = handle(&app, "meter-b6-0");
    assert!(groups.values().all(|(_, members)| !members.contains(&lone)));
}

/// Every value a viewer of `access` holds after subscribing to the whole
/// town and after the readings: sensor id → value.
fn seen_by(app: &mut App, viewer: u64, access: Access) -> SharedMailbox {
    let mailbox = SharedMailbox::new(|| {});
    app.world_mut().write_message(ViewerConnected {
        viewer: ViewerId(viewer),
        access,
        name: format!("viewer-{viewer}"),
        own_sensors: Vec::new(),
        mailbox: mailbox.clone(),
    });
    app.world_mut().write_message(ViewerSubscribed {
        viewer: ViewerId(viewer),
        subscribe: Subscribe {
            subscription: 1,
            area: GeoBox::from_enu(
                &scene().georeference,
                [-1_000.0, -1_000.0],
                [6_000.0, 1_000.0],
            ),
            layers: Vec::new(),
            at_ms: None,
            speed: 1.0,
            publish_interval_ms: 0,
        },
    });
    app.update();
    mailbox
}

/// The ids of the twin's personal sensors (the households' meters).
fn personal_meters(app: &App) -> Vec<String> {
    let sensors = app.world().resource::<SensorTable>();
    (0..sensors.len() as u32)
        .filter(|&h| sensors.personal(h) == Some(true))
        .filter_map(|h| sensors.id(h).map(str::to_owned))
        .collect()
}

fn push(app: &mut App, seq: u64, readings: Vec<(String, f64)>) {
    app.world_mut().write_message(IncomingBatch {
        ticket: BatchTicket(seq),
        scope: None,
        batch: ReadingBatch {
            seq,
            readings: readings
                .into_iter()
                .map(|(sensor, value)| Reading {
                    sensor,
                    device_time_ms: 1_000 * seq as i64,
                    value,
                    quality: None,
                })
                .collect(),
        },
    });
    app.update();
}

/// Applies frames to (handle → id) and (id → values received).
fn collect(
    frames: Vec<ServerToViewer>,
    ids: &mut BTreeMap<u32, String>,
    values: &mut BTreeMap<String, Vec<f64>>,
) {
    for frame in frames {
        match frame {
            ServerToViewer::Snapshot(snapshot) => {
                for sensor in snapshot.sensors {
                    if let Some(latest) = sensor.latest {
                        values
                            .entry(sensor.id.clone())
                            .or_default()
                            .push(latest.value);
                    }
                    ids.insert(sensor.handle, sensor.id);
                }
            }
            ServerToViewer::Update(update) => {
                for sensor in update.entered_sensors {
                    ids.insert(sensor.handle, sensor.id);
                }
                for value in update.values {
                    if let Some(id) = ids.get(&value.sensor) {
                        values.entry(id.clone()).or_default().push(value.value);
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn no_role_but_operators_receives_a_value_of_fewer_than_its_k_households() {
    let mut app = app();
    let planner = seen_by(&mut app, 1, Access::Planner);
    let public = seen_by(&mut app, 2, Access::Public);
    let operator = seen_by(&mut app, 3, Access::Operator);
    let meters = personal_meters(&app);
    let raw: BTreeMap<String, f64> = meters
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), f64::from(1u32 << i)))
        .collect();
    // Every meter but one of b5's reports: b5's groups stay dark.
    let (late, early): (Vec<_>, Vec<_>) = raw
        .iter()
        .map(|(id, v)| (id.clone(), *v))
        .partition(|(id, _)| id == "meter-b5-4");
    push(&mut app, 1, early);
    let mut views = BTreeMap::new();
    for (role, mailbox) in [
        ("planner", &planner),
        ("public", &public),
        ("operator", &operator),
    ] {
        let mut ids = BTreeMap::new();
        let mut values = BTreeMap::new();
        collect(mailbox.drain_frames(1 << 20), &mut ids, &mut values);
        views.insert(role, (ids, values));
    }
    let b5_planner = "agg-building-4-active_power";
    for role in ["planner", "public"] {
        let values = &views[role].1;
        assert!(
            !values
                .keys()
                .any(|id| id.contains("-4-") || id == b5_planner),
            "{role} got a b5 aggregate before all of b5 reported: {values:?}"
        );
    }
    push(&mut app, 2, late);
    for (role, mailbox) in [
        ("planner", &planner),
        ("public", &public),
        ("operator", &operator),
    ] {
        let (ids, values) = views.get_mut(role).expect("view");
        collect(mailbox.drain_frames(1 << 20), ids, values);
    }
    let k_of = |role: &str| if role == "planner" { K_PLANNER } else { K };
    for role in ["planner", "public"] {
        let values = &views[role].1;
        assert!(!values.is_empty(), "{role} sees aggregates");
        for (id, received) in values {
            assert!(!raw.contains_key(id), "{role} received the raw meter {id}");
            for value in received {
                // A sum of distinct powers of two names its members: it
                // must hold at least k of them.
                let households = (*value as u64).count_ones() as usize;
                assert!(
                    households >= k_of(role),
                    "{role} got {id} = {value}, the sum of {households} households"
                );
            }
        }
    }
    // The operator sees every raw meter.
    let operator_values = &views["operator"].1;
    for (id, value) in &raw {
        assert_eq!(
            operator_values.get(id).and_then(|v| v.last()),
            Some(value),
            "{id}"
        );
    }
}

#[test]
fn a_residents_export_names_every_aggregate_its_meter_feeds_and_its_size() {
    let options = PrivacyOptions {
        k: K,
        k_planner: K_PLANNER,
        ..PrivacyOptions::default()
    };
    let scene = scene();
    // A meter of b3 feeds its building's planner group (3 households)
    // and block B's public group (b3 + b4: 7).
    let derived = aggregates_fed_by(
        &scene,
        &options,
        &Consents::default(),
        &["meter-b3-0".to_owned()],
    )
    .expect("scene builds");
    let planners: Vec<_> = derived
        .iter()
        .filter(|d| d.shown_to == "planners")
        .collect();
    let public: Vec<_> = derived.iter().filter(|d| d.shown_to == "public").collect();
    assert_eq!(planners.len(), 1, "{derived:?}");
    assert_eq!(planners[0].households, 3);
    assert_eq!(public.len(), 1, "{derived:?}");
    assert_eq!(public[0].households, 7, "{derived:?}");
    assert!(derived.iter().all(|d| d.from == ["meter-b3-0"]));
    // The lone house far away feeds nothing: too few in its district.
    let none = aggregates_fed_by(
        &scene,
        &options,
        &Consents::default(),
        &["meter-b6-0".to_owned()],
    )
    .expect("scene builds");
    assert!(none.is_empty(), "{none:?}");
    // Unknown ids are skipped.
    assert!(
        aggregates_fed_by(
            &scene,
            &options,
            &Consents::default(),
            &["no-such".to_owned()]
        )
        .expect("scene builds")
        .is_empty()
    );
}

#[test]
fn public_aggregates_get_one_noisy_release_per_slot_and_others_stay_exact() {
    let options = PrivacyOptions {
        k: K,
        k_planner: K_PLANNER,
        block_m: 100.0,
        district_m: 1_000.0,
    };
    // Slots of 10 s (a 40 s window, 4 releases, ε 1 → 0.25 each); the
    // twin starts in slot 0, which releases nothing.
    let noise = NoiseOptions {
        epsilon: 1.0,
        window_ms: 40_000,
        releases: 4,
        bounds: [("active_power".to_owned(), (0.0, 10.0))].into(),
        key: [42; 32],
    };
    let mut app = App::new();
    app.add_plugins(
        TwinPlugin::new(scene())
            .with_privacy(options)
            .with_public_noise(noise.clone(), 5_000),
    );
    app.update();
    let public = seen_by(&mut app, 1, Access::Public);
    let planner = seen_by(&mut app, 2, Access::Planner);
    let derived = aggregates_fed_by(
        &scene(),
        &options,
        &Consents::default(),
        &["meter-b3-0".to_owned()],
    )
    .expect("scene builds");
    let block_b = derived
        .iter()
        .find(|d| d.shown_to == "public")
        .expect("b3 is in a public group")
        .id
        .clone();
    let b3 = derived
        .iter()
        .find(|d| d.shown_to == "planners")
        .expect("b3 has a planner group")
        .id
        .clone();
    let meters = personal_meters(&app);
    // Every meter at `value`, b3's first at `first` (beyond the range).
    let all = |value: f64, first: f64| -> Vec<(String, f64)> {
        meters
            .iter()
            .map(|id| (id.clone(), if id == "meter-b3-0" { first } else { value }))
            .collect()
    };
    let scale = 10.0 / 0.25;
    let mut ids = (BTreeMap::new(), BTreeMap::new());
    let mut values = (BTreeMap::new(), BTreeMap::new());
    let mut look = |app: &mut App| {
        let _ = app;
        collect(public.drain_frames(1 << 20), &mut ids.0, &mut values.0);
        collect(planner.drain_frames(1 << 20), &mut ids.1, &mut values.1);
        (values.0.clone(), values.1.clone())
    };

    // Slot 0 (the start slot): planners get exact values, the public none.
    push(&mut app, 3, all(2.0, 50.0));
    let (public_seen, planner_seen) = look(&mut app);
    assert_eq!(public_seen.get(&block_b), None, "{public_seen:?}");
    assert_eq!(planner_seen[&b3], [54.0]);

    // Slot 1: one release, the clamped exact sum (10 + 6 × 2) plus the
    // noise of (aggregate, slot); the same slot again holds it.
    push(&mut app, 11, all(2.0, 50.0));
    let (public_seen, _) = look(&mut app);
    let first = 22.0 + noise.noise(&block_b, 1, scale);
    assert_eq!(public_seen[&block_b], [first]);
    assert_ne!(first, 22.0);
    push(&mut app, 12, all(3.0, 3.0));
    let (public_seen, planner_seen) = look(&mut app);
    assert_eq!(public_seen[&block_b], [first], "held for the slot");
    assert_eq!(planner_seen[&b3].last(), Some(&9.0), "planners: exact");

    // Slot 2: the next release, with the next slot's noise.
    push(&mut app, 25, all(4.0, 4.0));
    let (public_seen, _) = look(&mut app);
    assert_eq!(
        public_seen[&block_b],
        [first, 28.0 + noise.noise(&block_b, 2, scale)]
    );
}

fn app_with(consents: Consents, restored: Vec<(String, StoredReading)>) -> App {
    app_after(consents, restored, PastGroups::default())
}

fn app_after(consents: Consents, restored: Vec<(String, StoredReading)>, past: PastGroups) -> App {
    let mut app = App::new();
    app.add_plugins(
        TwinPlugin::new(scene())
            .with_privacy(PrivacyOptions {
                k: K,
                k_planner: K_PLANNER,
                block_m: 100.0,
                district_m: 1_000.0,
            })
            .with_consents(consents)
            .with_past_groups(past)
            .with_latest(restored),
    );
    app.update();
    app
}

/// Every public group is a union of whole planner groups (when its
/// households are shown to planners at all).
fn assert_public_groups_are_unions_of_planner_groups(app: &App) {
    let groups = aggregates(app);
    let planner: Vec<&BTreeSet<u32>> = groups
        .values()
        .filter(|(a, _)| *a == Audience::PLANNERS)
        .map(|(_, m)| m)
        .collect();
    for (id, (audience, members)) in &groups {
        if *audience != Audience::PUBLIC {
            continue;
        }
        for p in &planner {
            assert!(
                p.is_disjoint(members) || p.is_subset(members),
                "{id} splits a planner group"
            );
        }
    }
}

#[test]
fn a_group_formed_at_a_later_start_never_differs_from_an_earlier_one_by_fewer_than_k() {
    // First start: everyone consents; its groups are recorded.
    let first = app_with(Consents::default(), Vec::new());
    let past = PastGroups::new(PastGroups::formed_in(
        first.world().resource::<SensorTable>(),
    ));
    assert!(!past.groups().is_empty());
    // One of b5's five homes then refuses every aggregate. b5's planners'
    // group of four would differ from the recorded one by one home; so
    // would its block's and district's: its homes are in no group now.
    let none = Consent {
        planners: false,
        public: false,
    };
    let consents = Consents::new([("meter-b5-0".to_owned(), none)]);
    let second = app_after(consents, Vec::new(), past.clone());
    let sensors = second.world().resource::<SensorTable>();
    let now = PastGroups::formed_in(sensors);
    for new in &now {
        for old in past.groups() {
            let (new_set, old_set): (BTreeSet<&String>, BTreeSet<&String>) =
                (new.members.iter().collect(), old.members.iter().collect());
            if new_set.is_disjoint(&old_set) {
                continue;
            }
            let differ = new_set.symmetric_difference(&old_set).count();
            let k = if new.public && old.public {
                K
            } else {
                K_PLANNER
            };
            assert!(
                differ == 0 || differ >= k,
                "{:?} differs from {:?} by {differ}",
                new.members,
                old.members
            );
        }
    }
    let b5_homes = meters_of("b5", 5);
    assert!(
        now.iter()
            .all(|g| g.members.iter().all(|m| !b5_homes.contains(m))),
        "{now:?}"
    );
    // Every other group is formed as before.
    let others: Vec<&PastGroup> = past
        .groups()
        .iter()
        .filter(|g| g.members.iter().all(|m| !b5_homes.contains(m)))
        .collect();
    assert_eq!(others.len(), now.len());
    assert_public_groups_are_unions_of_planner_groups(&second);
}

fn meters_of(building: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|m| format!("meter-{building}-{m}"))
        .collect()
}

#[test]
fn households_are_grouped_only_with_households_that_consent_alike() {
    let no_public = Consent {
        planners: true,
        public: false,
    };
    let no_planners = Consent {
        planners: false,
        public: true,
    };
    // b4's four homes refuse the public, b5's five refuse planners.
    let consents = Consents::new(
        meters_of("b4", 4)
            .into_iter()
            .map(|id| (id, no_public))
            .chain(meters_of("b5", 5).into_iter().map(|id| (id, no_planners))),
    );
    let app = app_with(consents.clone(), Vec::new());
    assert_public_groups_are_unions_of_planner_groups(&app);
    let sensors = app.world().resource::<SensorTable>();
    let groups = aggregates(&app);
    let consent_of = |handle: u32| consents.of(sensors.id(handle).expect("member id"));
    for (id, (audience, members)) in &groups {
        let first = consent_of(*members.first().expect("members"));
        assert!(
            members.iter().all(|&m| consent_of(m) == first),
            "{id} mixes consent classes"
        );
        if *audience == Audience::PUBLIC {
            assert!(first.public, "{id} is shown to the public against consent");
            assert!(members.len() >= K, "{id} has {}", members.len());
        } else {
            assert!(first.planners, "{id} is shown to planners against consent");
            assert!(members.len() >= K_PLANNER, "{id} has {}", members.len());
        }
    }
    // b4 still has its planners' aggregate, under a name of its class.
    let b4 = groups
        .iter()
        .find(|(_, (_, m))| m.contains(&handle(&app, "meter-b4-0")))
        .map(|(id, (audience, _))| (id.clone(), *audience));
    let (b4_id, b4_audience) = b4.expect("b4 feeds an aggregate");
    assert_eq!(b4_audience, Audience::PLANNERS);
    assert!(b4_id.ends_with("-nopublic"), "{b4_id}");
    // b5's homes feed only a public aggregate, of single households.
    let b5: Vec<_> = groups
        .iter()
        .filter(|(_, (_, m))| m.contains(&handle(&app, "meter-b5-0")))
        .collect();
    assert_eq!(b5.len(), 1, "{b5:?}");
    assert_eq!(b5[0].1.0, Audience::PUBLIC);
    // Everyone else is grouped as before: block A and b3 make a public
    // district group now that b4 left (3 + 3 households).
    let district = groups
        .iter()
        .find(|(id, _)| id.starts_with("agg-public-district-"))
        .expect("a public district group");
    assert_eq!(district.1.1.len(), 6);
}

#[test]
fn a_change_of_consent_withdraws_every_aggregate_the_home_feeds_at_once() {
    let mut app = app_with(Consents::default(), Vec::new());
    let meters = personal_meters(&app);
    push(
        &mut app,
        1,
        meters.iter().map(|m| (m.clone(), 1.0)).collect(),
    );
    let fed: Vec<u32> = aggregates(&app)
        .iter()
        .filter(|(_, (_, m))| m.contains(&handle(&app, "meter-b3-0")))
        .map(|(id, _)| handle_of_aggregate(&app, id))
        .collect();
    // b3's planners' aggregate and block B's public one.
    assert_eq!(fed.len(), 2);
    let latest = |app: &App, h: u32| app.world().resource::<SensorTable>().latest(h);
    assert!(fed.iter().all(|&h| latest(&app, h).is_some()));
    let b5 = handle_of_aggregate(&app, "agg-building-4-active_power");
    assert!(latest(&app, b5).is_some());

    let (done, withdrawn) = std::sync::mpsc::channel();
    app.world_mut().write_message(ConsentChanged {
        sensors: vec!["meter-b3-0".to_owned()],
        done: Some(done),
    });
    app.update();
    assert_eq!(withdrawn.try_recv(), Ok(2), "told once withdrawn");
    assert!(fed.iter().all(|&h| latest(&app, h).is_none()));
    // New readings bring none of them back; others carry on.
    push(
        &mut app,
        2,
        meters.iter().map(|m| (m.clone(), 2.0)).collect(),
    );
    assert!(fed.iter().all(|&h| latest(&app, h).is_none()));
    assert_eq!(latest(&app, b5).map(|r| r.value), Some(10.0));
}

fn handle_of_aggregate(app: &App, id: &str) -> u32 {
    let sensors = app.world().resource::<SensorTable>();
    (0..sensors.len() as u32)
        .find(|&h| sensors.id(h) == Some(id))
        .unwrap_or_else(|| panic!("no aggregate {id}"))
}

#[test]
fn restored_readings_feed_no_aggregate_until_every_member_reports_again() {
    let restored: Vec<(String, StoredReading)> = meters_of("b5", 5)
        .into_iter()
        .map(|id| {
            (
                id,
                StoredReading {
                    device_time_ms: 500,
                    value: 1.0,
                    quality: None,
                },
            )
        })
        .collect();
    let mut app = app_with(Consents::default(), restored);
    let b5 = handle_of_aggregate(&app, "agg-building-4-active_power");
    let latest = |app: &App| app.world().resource::<SensorTable>().latest(b5);
    // The members' own latest readings are back; the aggregate is not.
    let meter = handle(&app, "meter-b5-0");
    assert!(
        app.world()
            .resource::<SensorTable>()
            .latest(meter)
            .is_some()
    );
    assert_eq!(latest(&app), None);
    // Four of five report again: still none.
    push(
        &mut app,
        1,
        meters_of("b5", 4).into_iter().map(|m| (m, 2.0)).collect(),
    );
    assert_eq!(latest(&app), None);
    push(&mut app, 2, vec![("meter-b5-4".to_owned(), 2.0)]);
    assert_eq!(latest(&app).map(|r| r.value), Some(10.0));
}
