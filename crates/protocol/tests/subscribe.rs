//! What a server refuses in a viewer's `Subscribe`, checked without a server.

use polis_protocol::*;

/// A valid subscription of about 5 km² in Helsinki, live, no pacing.
fn subscribe() -> Subscribe {
    Subscribe {
        subscription: 1,
        area: GeoBox {
            lon_min_deg: 24.93,
            lat_min_deg: 60.16,
            lon_max_deg: 24.97,
            lat_max_deg: 60.18,
        },
        layers: Vec::new(),
        at_ms: None,
        speed: 1.0,
        publish_interval_ms: 0,
    }
}

const LIMIT_KM2: f64 = 100.0;

fn code_of(subscribe: &Subscribe) -> Option<ErrorCode> {
    subscribe.problem(LIMIT_KM2).map(|error| error.code)
}

#[test]
fn a_valid_subscription_has_no_problem() {
    assert_eq!(subscribe().problem(LIMIT_KM2), None);
    let mut paced = subscribe();
    paced.publish_interval_ms = MAX_PUBLISH_INTERVAL_MS;
    paced.speed = 0.0;
    assert_eq!(paced.problem(LIMIT_KM2), None, "both bounds are inclusive");
}

#[test]
fn an_inverted_or_out_of_range_area_is_invalid() {
    let mut inverted = subscribe();
    std::mem::swap(
        &mut inverted.area.lon_min_deg,
        &mut inverted.area.lon_max_deg,
    );
    assert_eq!(code_of(&inverted), Some(ErrorCode::InvalidArea));
    let mut upside_down = subscribe();
    std::mem::swap(
        &mut upside_down.area.lat_min_deg,
        &mut upside_down.area.lat_max_deg,
    );
    assert_eq!(code_of(&upside_down), Some(ErrorCode::InvalidArea));
    let mut beyond_the_pole = subscribe();
    beyond_the_pole.area.lat_max_deg = 90.5;
    assert_eq!(code_of(&beyond_the_pole), Some(ErrorCode::InvalidArea));
}

#[test]
fn a_non_finite_area_is_invalid_not_too_large() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut area = subscribe();
        area.area.lon_max_deg = bad;
        let error = area.problem(LIMIT_KM2).expect("refused");
        assert_eq!(error.code, ErrorCode::InvalidArea);
        assert!(error.detail.contains("not a WGS84 box"), "{}", error.detail);
    }
}

#[test]
fn an_area_over_the_limit_is_refused_and_one_at_it_is_not() {
    let mut large = subscribe();
    large.area.lon_max_deg = 25.5;
    large.area.lat_max_deg = 60.6;
    let area_km2 = large.area.area_km2();
    assert!(area_km2 > LIMIT_KM2);
    let error = large.problem(LIMIT_KM2).expect("refused");
    assert_eq!(error.code, ErrorCode::InvalidArea);
    assert!(
        error.detail.contains("exceeds the limit of 100 km²"),
        "{}",
        error.detail
    );
    assert_eq!(large.problem(area_km2), None, "the limit itself is allowed");
    assert_eq!(large.problem(f64::INFINITY), None);
}

#[test]
fn an_over_long_publishing_interval_is_refused() {
    let mut slow = subscribe();
    slow.publish_interval_ms = MAX_PUBLISH_INTERVAL_MS + 1;
    let error = slow.problem(LIMIT_KM2).expect("refused");
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert!(
        error.detail.contains("publishing interval"),
        "{}",
        error.detail
    );
    slow.publish_interval_ms = u32::MAX;
    assert_eq!(code_of(&slow), Some(ErrorCode::InvalidRequest));
}

#[test]
fn a_negative_or_non_finite_speed_is_refused() {
    for bad in [-1.0, -0.001, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut travel = subscribe();
        travel.at_ms = Some(1_700_000_000_000);
        travel.speed = bad;
        let error = travel.problem(LIMIT_KM2).expect("refused");
        assert_eq!(error.code, ErrorCode::InvalidRequest, "speed {bad}");
        assert!(error.detail.contains("playback speed"), "{}", error.detail);
    }
}

#[test]
fn the_speed_is_checked_before_the_area() {
    let mut both = subscribe();
    both.speed = f32::NAN;
    both.area.lon_min_deg = f64::NAN;
    assert_eq!(code_of(&both), Some(ErrorCode::InvalidRequest));
}
