//! Picking over the protocol: a viewer's ray through a known building
//! returns that building; a malformed ray gets a typed error and the
//! connection keeps serving.

use std::time::Duration;

use polis_e2e::*;
use polis_net::ClientError;
use polis_protocol::{ClientToServer, ErrorCode, PickRequest, PickTarget};

const WAIT: Duration = Duration::from_secs(10);

fn ray_down(request: u32, east: f32, north: f32) -> ClientToServer {
    ClientToServer::Pick(PickRequest {
        request,
        origin_enu_m: [east, north, 1_000.0],
        direction_enu: [0.0, 0.0, -1.0],
        max_distance_m: 2_000.0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ray_through_a_building_returns_that_building() {
    let server = TestServer::start();
    let mut viewer = server.viewer_with(PUBLIC_TOKEN, west(), vec![]).await;
    viewer.until(WAIT, |v| v.snapshots_complete == 1).await;

    // b-east-1 (x 270..290, y 5..20, 24 m): outside this viewer's area, yet
    // pickable — picking answers from the whole city's colliders.
    viewer
        .session
        .send(&ray_down(1, 280.0, 12.0))
        .await
        .expect("sent");
    viewer.until(WAIT, |v| !v.picks.is_empty()).await;
    let reply = &viewer.picks[0];
    assert_eq!(reply.request, 1);
    let first = reply.hits.first().expect("a hit");
    assert_eq!(first.id, "b-east-1");
    assert!(matches!(first.target, PickTarget::Asset(_)));
    assert!(
        (first.distance_m - 976.0).abs() < 0.01,
        "{}",
        first.distance_m
    );
    // The household meter inside is not for the public.
    assert!(
        reply.hits.iter().all(|h| h.id != "meter-b-east-1"),
        "{:?}",
        reply.hits
    );

    // A ray with no direction is refused with a typed error …
    viewer
        .session
        .send(&ClientToServer::Pick(PickRequest {
            request: 2,
            origin_enu_m: [0.0, 0.0, 100.0],
            direction_enu: [0.0, 0.0, 0.0],
            max_distance_m: 100.0,
        }))
        .await
        .expect("sent");
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            match viewer.step().await {
                Err(ClientError::Server(error)) => break error,
                Ok(()) => continue,
                Err(other) => panic!("unexpected: {other}"),
            }
        }
    })
    .await
    .expect("an error frame");
    assert_eq!(refused.code, ErrorCode::InvalidRequest);
    assert!(refused.detail.contains("direction"), "{}", refused.detail);

    // … and the same connection keeps answering.
    viewer
        .session
        .send(&ray_down(3, -320.0, 12.5))
        .await
        .expect("sent");
    viewer.until(WAIT, |v| v.picks.len() == 2).await;
    assert_eq!(viewer.picks[1].request, 3);
    assert_eq!(
        viewer.picks[1].hits.first().map(|h| h.id.as_str()),
        Some("b-west-1")
    );
}

/// A viewer firing picks faster than its allowance gets `RateLimited` for
/// the excess, not a closed connection: it keeps being answered once its
/// allowance refills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_beyond_the_rate_are_refused_and_the_connection_stays() {
    let server = TestServer::start_configured(tiny(), |config| {
        config.limits.max_picks_per_second = 2.0;
    });
    let mut viewer = server.viewer_with(PUBLIC_TOKEN, west(), vec![]).await;
    viewer.until(WAIT, |v| v.snapshots_complete == 1).await;
    let burst = 20u32;
    for request in 0..burst {
        viewer
            .session
            .send(&ray_down(request, 280.0, 12.0))
            .await
            .expect("sent");
    }
    let mut refused = 0u32;
    tokio::time::timeout(WAIT, async {
        while viewer.picks.len() as u32 + refused < burst {
            match viewer.step().await {
                Ok(()) => {}
                Err(ClientError::Server(error)) => {
                    assert_eq!(error.code, ErrorCode::RateLimited, "{error}");
                    refused += 1;
                }
                Err(other) => panic!("unexpected: {other}"),
            }
        }
    })
    .await
    .expect("every pick answered or refused");
    // The burst allowance (2) and what refilled meanwhile were answered.
    let answered = viewer.picks.len() as u32;
    assert!((2..burst).contains(&answered), "{answered} answered");
    assert_eq!(answered + refused, burst);
    // Once the allowance refills, the same connection is answered again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    viewer
        .session
        .send(&ray_down(99, -320.0, 12.5))
        .await
        .expect("sent");
    viewer
        .until(WAIT, |v| v.picks.iter().any(|p| p.request == 99))
        .await;
}
