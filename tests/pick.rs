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
