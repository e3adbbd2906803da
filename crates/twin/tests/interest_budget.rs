//! What subscriptions may cost: large areas go out in slices, and a viewer
//! that churns its area waits for its own allowance without holding up
//! anyone else.

use std::collections::BTreeSet;
use std::time::Duration;

use bevy::prelude::*;
use polis_protocol::*;
use polis_scene::Scene;
use polis_twin::*;

fn tiny() -> Scene {
    Scene::from_json_str(include_str!("../../../scenes/tiny.json"), "tiny.json")
        .expect("tiny scene loads")
}

fn app(budget: InterestBudget) -> App {
    let mut app = App::new();
    app.add_plugins(TwinPlugin::new(tiny()));
    app.insert_resource(budget);
    app.update();
    app
}

fn area(min: [f64; 2], max: [f64; 2]) -> GeoBox {
    GeoBox::from_enu(&tiny().georeference, min, max)
}

fn whole_city() -> GeoBox {
    area([-5_000.0, -5_000.0], [5_000.0, 5_000.0])
}

fn corner() -> GeoBox {
    area([-400.0, -35.0], [-200.0, 50.0])
}

fn connect(app: &mut App, id: u64) -> SharedMailbox {
    let mailbox = SharedMailbox::new(|| {});
    app.world_mut().write_message(ViewerConnected {
        viewer: ViewerId(id),
        access: Access::Operator,
        name: format!("viewer-{id}"),
        own_sensors: Vec::new(),
        mailbox: mailbox.clone(),
    });
    mailbox
}

fn subscribe(app: &mut App, id: u64, subscription: u32, area: GeoBox) {
    app.world_mut().write_message(ViewerSubscribed {
        viewer: ViewerId(id),
        subscribe: Subscribe {
            subscription,
            area,
            layers: Vec::new(),
            at_ms: None,
            speed: 1.0,
            publish_interval_ms: 0,
        },
    });
}

/// What a client holds after applying frames: the subscription its last
/// complete snapshot answered, and the asset and sensor handles it sees.
#[derive(Debug, Default)]
struct ClientView {
    complete: Option<u32>,
    parts: u32,
    assets: BTreeSet<u32>,
    sensors: BTreeSet<u32>,
}

impl ClientView {
    fn apply(&mut self, frames: Vec<ServerToViewer>) {
        for frame in frames {
            match frame {
                ServerToViewer::Snapshot(part) => {
                    if part.part == 0 {
                        self.assets.clear();
                        self.sensors.clear();
                        self.complete = None;
                    }
                    assert_eq!(part.part, self.parts_expected(part.part), "parts in order");
                    self.parts = part.part + 1;
                    self.assets.extend(part.assets.iter().map(|a| a.handle));
                    self.sensors.extend(part.sensors.iter().map(|s| s.handle));
                    if part.complete {
                        self.complete = Some(part.subscription);
                    }
                }
                ServerToViewer::Update(update) => {
                    self.assets
                        .extend(update.entered_assets.iter().map(|a| a.handle));
                    self.sensors
                        .extend(update.entered_sensors.iter().map(|s| s.handle));
                    for handle in update.left_assets {
                        self.assets.remove(&handle);
                    }
                    for handle in update.left_sensors {
                        self.sensors.remove(&handle);
                    }
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    fn parts_expected(&self, part: u32) -> u32 {
        if part == 0 { 0 } else { self.parts }
    }
}

/// The whole city as an unlimited twin sends it.
fn whole_city_view() -> ClientView {
    let mut app = app(InterestBudget::UNLIMITED);
    let mailbox = connect(&mut app, 1);
    subscribe(&mut app, 1, 1, whole_city());
    app.update();
    let mut view = ClientView::default();
    view.apply(mailbox.drain_frames(64 * 1024));
    assert_eq!(view.complete, Some(1), "unlimited: complete in one tick");
    view
}

#[test]
fn a_large_area_goes_out_in_slices_and_completes_whole() {
    let expected = whole_city_view();
    let items = expected.assets.len() + expected.sensors.len();
    assert!(items >= 20, "the tiny city has {items} items");
    let mut app = app(InterestBudget {
        items_per_tick: 3,
        ..InterestBudget::UNLIMITED
    });
    let mailbox = connect(&mut app, 1);
    subscribe(&mut app, 1, 7, whole_city());
    let mut view = ClientView::default();
    let mut ticks = 0;
    while view.complete.is_none() {
        ticks += 1;
        assert!(ticks <= items, "the snapshot must complete");
        app.update();
        let pending = *app.world().resource::<InterestPending>();
        view.apply(mailbox.drain_frames(64 * 1024));
        if view.complete.is_none() {
            assert!(pending.ready, "work left that may go on: tick again soon");
        }
    }
    assert!(
        ticks >= items / 3,
        "{ticks} ticks for {items} items, 3 a tick"
    );
    assert!(view.parts > 2, "sent in {} parts as it filled", view.parts);
    assert_eq!(view.complete, Some(7));
    assert_eq!(view.assets, expected.assets);
    assert_eq!(view.sensors, expected.sensors);
    assert_eq!(
        *app.world().resource::<InterestPending>(),
        InterestPending::default()
    );
}

#[test]
fn a_churning_viewer_waits_for_its_allowance_and_others_do_not() {
    let expected = whole_city_view();
    let items = (expected.assets.len() + expected.sensors.len()) as f64;
    // A second's worth is one whole-city subscription (query and entries).
    let mut app = app(InterestBudget {
        items_per_tick: u64::MAX,
        items_per_second: f64::INFINITY,
        items_per_second_per_viewer: 2.0 * items,
    });
    let churner = connect(&mut app, 1);
    subscribe(&mut app, 1, 1, whole_city());
    app.update();
    let mut churned = ClientView::default();
    churned.apply(churner.drain_frames(64 * 1024));
    assert_eq!(
        churned.complete,
        Some(1),
        "its first area within its allowance"
    );
    // Switching back and forth within the same second: it is out of
    // allowance, so its subscriptions wait, the latest replacing the others.
    for subscription in 2..=9 {
        let area = if subscription % 2 == 0 {
            corner()
        } else {
            whole_city()
        };
        subscribe(&mut app, 1, subscription, area);
        app.update();
        churned.apply(churner.drain_frames(64 * 1024));
    }
    let pending = *app.world().resource::<InterestPending>();
    assert_eq!(pending.viewers, 1, "the churner's work waits");
    assert!(
        !pending.ready,
        "for its allowance: no tick needed before then"
    );
    // Another viewer is served at once all the same.
    let other = connect(&mut app, 2);
    subscribe(&mut app, 2, 1, whole_city());
    app.update();
    let mut view = ClientView::default();
    view.apply(other.drain_frames(64 * 1024));
    assert_eq!(view.complete, Some(1));
    assert_eq!(view.sensors, expected.sensors);
    // A second later the churner's latest area (subscription 9, the whole
    // city) is what it sees.
    app.world_mut().resource_mut::<TwinClock>().since_start = Duration::from_secs(1);
    for _ in 0..4 {
        app.update();
        churned.apply(churner.drain_frames(64 * 1024));
    }
    assert_eq!(churned.assets, expected.assets);
    assert_eq!(churned.sensors, expected.sensors);
    assert_eq!(
        *app.world().resource::<InterestPending>(),
        InterestPending::default()
    );
}
