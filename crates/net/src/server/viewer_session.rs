//! A viewer's session: subscriptions, history queries and picks in; its
//! mailbox drained out as frames, value updates paced to the viewer's
//! publishing interval ([`Pacer`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use polis_protocol::{
    Access, ClientToServer, ErrorCode, HistoryRequest, PickRequest, ProtocolError, ResidentOutcome,
    ResidentReply, ResidentRequest, ServerToViewer, SharedMailbox,
};
use tokio::sync::{Notify, mpsc, oneshot};

use super::accept::{SessionEnd, read_end};
use super::limits::TokenBucket;
use super::pacing::{Next, Pacer};
use super::{Context, Grant, NetEvent, ResidentAnswer};
use crate::framing::{FrameReader, FrameWriter};

/// About how many bytes of frames one pass of a viewer's writer takes from
/// its mailbox: a viewer whose area just became the whole city is encoded a
/// slice at a time, between other connections' work, rather than in one go.
const DRAIN_BYTES_PER_PASS: usize = 512 * 1024;
use crate::woken::poll_when_woken;

/// Serves a viewer until its stream ends, it breaks the protocol, or the
/// server stops.
pub(super) async fn serve_viewer(
    context: &Context,
    viewer: u64,
    grant: &Grant,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
) -> SessionEnd {
    let ready = Arc::new(Notify::new());
    let mailbox = {
        let ready = Arc::clone(&ready);
        SharedMailbox::new(move || ready.notify_one())
    };
    let connected = NetEvent::ViewerConnected {
        viewer,
        access: grant.access,
        name: grant.name.clone(),
        own_sensors: Arc::clone(&grant.own_sensors),
        mailbox: mailbox.clone(),
    };
    if !context.send_event(connected).await {
        return SessionEnd::ServerStopping;
    }
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let (replies_tx, mut replies_rx) = mpsc::channel::<ServerToViewer>(2);
    // The viewer's publishing interval, set by its latest subscription.
    let publish_interval_ms = AtomicU32::new(0);
    let limits = context.limits;
    let mut subscriptions_allowed =
        TokenBucket::new(limits.max_subscriptions_per_second, 10.0, Instant::now());
    // An export reads all of a home's history: a burst of requests (an
    // app's consent screen, an export), then one a second.
    let mut resident_allowed =
        TokenBucket::new(RESIDENT_REQUESTS_PER_SECOND, RESIDENT_BURST, Instant::now());
    let mut picks_allowed = TokenBucket::new(
        limits.max_picks_per_second,
        limits.max_picks_per_second.max(1.0),
        Instant::now(),
    );
    let mut closing = context.closing.clone();
    let (publish_interval_ms, ready) = (&publish_interval_ms, &ready);
    // Polled only when the stream has something for it, not each time the
    // write side is woken for a value.
    let read_side = poll_when_woken(async move {
        let ended = loop {
            let next = tokio::select! {
                next = reader.next::<ClientToServer>() => next,
                _ = closing.wait_for(|closing| *closing) => break SessionEnd::ServerStopping,
            };
            let message = match next {
                Ok(message) => message,
                Err(err) => break read_end(err),
            };
            let subscribe = match message {
                ClientToServer::Subscribe(subscribe) => subscribe,
                ClientToServer::History(request) => {
                    // One query at a time per viewer: the next frame is read
                    // once this one is answered.
                    let reply = answer_history(context, viewer, grant, request).await;
                    if replies_tx.send(reply).await.is_err() {
                        break SessionEnd::Lost("writer ended".into());
                    }
                    continue;
                }
                ClientToServer::Pick(request) => {
                    // One pick at a time per viewer, like history queries,
                    // and at most its rate: a pick costs the twin ray casts.
                    let reply = if !picks_allowed.take(1.0, Instant::now()) {
                        ServerToViewer::Error(ProtocolError {
                            code: ErrorCode::RateLimited,
                            detail: format!(
                                "pick {} not answered: more than {} picks per second",
                                request.request, limits.max_picks_per_second
                            ),
                        })
                    } else {
                        match answer_pick(context, viewer, request).await {
                            Ok(reply) => reply,
                            Err(None) => break SessionEnd::ServerStopping,
                            Err(Some(error)) => ServerToViewer::Error(error),
                        }
                    };
                    if replies_tx.send(reply).await.is_err() {
                        break SessionEnd::Lost("writer ended".into());
                    }
                    continue;
                }
                ClientToServer::Resident(request) => {
                    // One request at a time per viewer, like history
                    // queries; an export's parts are made one at a time as
                    // the writer's queue takes them.
                    let id = request.request;
                    let mut sent = true;
                    let answer = if resident_allowed.take(1.0, Instant::now()) {
                        answer_resident(context, grant, request).await
                    } else {
                        Err(ProtocolError {
                            code: ErrorCode::RateLimited,
                            detail: format!(
                                "resident request {id} not answered: more than \
                                 {RESIDENT_REQUESTS_PER_SECOND} a second"
                            ),
                        })
                    };
                    for reply in resident_frames(id, answer) {
                        if replies_tx.send(reply).await.is_err() {
                            sent = false;
                            break;
                        }
                    }
                    if !sent {
                        break SessionEnd::Lost("writer ended".into());
                    }
                    continue;
                }
                ClientToServer::Batch(_) => {
                    break SessionEnd::Protocol(ProtocolError {
                        code: ErrorCode::UnexpectedMessage,
                        detail: "a viewer may not push readings; connect with a gateway token"
                            .into(),
                    });
                }
            };
            if let Some(error) = subscribe.problem(limits.max_area_km2) {
                break SessionEnd::Protocol(error);
            }
            if !subscriptions_allowed.take(1.0, Instant::now()) {
                break SessionEnd::Protocol(ProtocolError {
                    code: ErrorCode::RateLimited,
                    detail: format!(
                        "more than {} subscriptions per second",
                        limits.max_subscriptions_per_second
                    ),
                });
            }
            publish_interval_ms.store(subscribe.publish_interval_ms, Ordering::Relaxed);
            // Values held back under a longer interval may go now.
            ready.notify_one();
            let event = NetEvent::ViewerSubscribed { viewer, subscribe };
            if !context.send_event(event).await {
                break SessionEnd::ServerStopping;
            }
        };
        let _ = stop_tx.send(());
        ended
    });
    let frame_bytes = context.viewer_frame_bytes;
    let stats = &context.stats;
    let write_side = async {
        let mut pacer = Pacer::default();
        loop {
            // Stop and replies come first on every pass, so that a mailbox
            // the twin refills faster than the stream drains it cannot
            // starve them. Held, wait for the interval's end or a change
            // that must not wait (an area change, a snapshot), then look
            // again: never wait for a change while holding, as held values
            // wake nobody. Not held, drain (which ends any hold), then wait
            // for the twin's next change: a change during the send has
            // woken this side already, and is found at once.
            let interval_ms = publish_interval_ms.load(Ordering::Relaxed);
            pacer.set_interval(Duration::from_millis(u64::from(interval_ms)));
            let next = pacer.next(Instant::now(), || mailbox.hold_values());
            let held = match next {
                Next::Hold { until } => Some(tokio::time::Instant::from_std(until)),
                Next::WaitForChange | Next::Send => None,
            };
            let send = next == Next::Send;
            tokio::select! {
                biased;
                _ = &mut stop_rx => return None,
                reply = replies_rx.recv() => {
                    if let Err(err) = writer.send(&reply?).await {
                        return Some(SessionEnd::Lost(err.to_string()));
                    }
                    continue;
                }
                () = ready.notified(), if !send => {}
                // Built only when polled: no timer for a pass that does not hold.
                () = async move {
                    if let Some(due) = held {
                        tokio::time::sleep_until(due).await;
                    }
                }, if held.is_some() => {}
                () = std::future::ready(()), if send => {}
            }
            // After any wait, look again (a change may be values to hold).
            if !send {
                pacer.woken();
                continue;
            }
            let frames = mailbox.drain_frames_up_to(frame_bytes, DRAIN_BYTES_PER_PASS);
            pacer.drained(Instant::now(), !frames.is_empty());
            if frames.is_empty() {
                continue;
            }
            let values: usize = frames.iter().map(values_in).sum();
            match writer.send_all(&frames).await {
                Ok(bytes) => {
                    stats
                        .viewer_values_sent
                        .fetch_add(values as u64, Ordering::Relaxed);
                    stats
                        .viewer_bytes_sent
                        .fetch_add(bytes as u64, Ordering::Relaxed);
                }
                Err(err) => return Some(SessionEnd::Lost(err.to_string())),
            }
            stats
                .viewer_frames_sent
                .fetch_add(frames.len() as u64, Ordering::Relaxed);
        }
    };
    let (read_ended, write_ended) = tokio::join!(read_side, write_side);
    let _ = context
        .send_event(NetEvent::ViewerDisconnected { viewer })
        .await;
    match (read_ended, write_ended) {
        (SessionEnd::Protocol(error), _) => SessionEnd::Protocol(error),
        (_, Some(ended)) => ended,
        (ended, None) => ended,
    }
}

/// Answers a viewer's history request on the blocking pool; errors become
/// an error frame (the connection stays open).
async fn answer_history(
    context: &Context,
    viewer: u64,
    grant: &Grant,
    request: HistoryRequest,
) -> ServerToViewer {
    let Some(service) = context.history.clone() else {
        return ServerToViewer::Error(ProtocolError {
            code: ErrorCode::InvalidRequest,
            detail: "this server keeps no history".into(),
        });
    };
    let grant = grant.clone();
    let answer = tokio::task::spawn_blocking(move || service.query(viewer, &grant, &request)).await;
    match answer {
        Ok(Ok(reply)) => ServerToViewer::History(reply),
        Ok(Err(error)) => ServerToViewer::Error(error),
        Err(_) => ServerToViewer::Error(ProtocolError {
            code: ErrorCode::Unavailable,
            detail: "history query failed".into(),
        }),
    }
}

/// Residents' requests answered per second and connection, after a burst
/// of [`RESIDENT_BURST`].
const RESIDENT_REQUESTS_PER_SECOND: f64 = 1.0;
/// Residents' requests answered at once before the rate applies.
const RESIDENT_BURST: f64 = 8.0;

/// Bytes of an export per frame, well inside a frame's limit.
const EXPORT_PART_BYTES: usize = 256 * 1024;

/// Answers a resident's request on the blocking pool, or gives the error
/// frame that refuses it: other roles, and servers without the service,
/// are refused (the connection stays open).
async fn answer_resident(
    context: &Context,
    grant: &Grant,
    request: ResidentRequest,
) -> Result<ResidentAnswer, ProtocolError> {
    let id = request.request;
    let refuse = |detail: &str| ProtocolError {
        code: ErrorCode::InvalidRequest,
        detail: format!("resident request {id} refused: {detail}"),
    };
    if grant.access != Access::Resident {
        return Err(refuse(
            "only a resident's token may make requests about its home",
        ));
    }
    let Some(service) = context.residents.clone() else {
        return Err(refuse("this server keeps no history to export or erase"));
    };
    let grant = grant.clone();
    let answer = tokio::task::spawn_blocking(move || service.answer(&grant, &request.action)).await;
    answer.unwrap_or_else(|_| {
        Err(ProtocolError {
            code: ErrorCode::Unavailable,
            detail: format!("resident request {id} failed"),
        })
    })
}

/// The frames answering resident request `id`: an export in parts of at
/// most [`EXPORT_PART_BYTES`], made one at a time as the writer takes them.
fn resident_frames(
    id: u32,
    answer: Result<ResidentAnswer, ProtocolError>,
) -> Box<dyn Iterator<Item = ServerToViewer> + Send> {
    let reply = move |outcome| {
        ServerToViewer::Resident(ResidentReply {
            request: id,
            outcome,
        })
    };
    match answer {
        Ok(ResidentAnswer::Outcome(outcome)) => Box::new(std::iter::once(reply(outcome))),
        Ok(ResidentAnswer::Document(bytes)) => {
            let parts = bytes.len().div_ceil(EXPORT_PART_BYTES).max(1);
            Box::new((0..parts).map(move |index| {
                let start = index * EXPORT_PART_BYTES;
                let end = (start + EXPORT_PART_BYTES).min(bytes.len());
                reply(ResidentOutcome::ExportPart {
                    bytes: bytes.get(start..end).unwrap_or_default().to_vec(),
                    last: index + 1 == parts,
                })
            }))
        }
        Err(error) => Box::new(std::iter::once(ServerToViewer::Error(error))),
    }
}

/// The twin answers a pick within this time or the viewer gets an error.
const PICK_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the twin what lies along a viewer's ray. `Err(None)`: the server is
/// stopping; `Err(Some(_))`: an error frame for the viewer, whose connection
/// stays open.
async fn answer_pick(
    context: &Context,
    viewer: u64,
    request: PickRequest,
) -> Result<ServerToViewer, Option<ProtocolError>> {
    if let Some(problem) = request.problem() {
        return Err(Some(ProtocolError {
            code: ErrorCode::InvalidRequest,
            detail: problem,
        }));
    }
    let (reply, answer) = oneshot::channel();
    let event = NetEvent::Pick {
        viewer,
        request,
        reply,
    };
    if !context.send_event(event).await {
        return Err(None);
    }
    match tokio::time::timeout(PICK_TIMEOUT, answer).await {
        Ok(Ok(reply)) => Ok(ServerToViewer::Pick(reply)),
        Ok(Err(_)) => Err(None),
        Err(_) => Err(Some(ProtocolError {
            code: ErrorCode::Unavailable,
            detail: "the twin did not answer the pick in time".into(),
        })),
    }
}

/// Sensor values carried by a frame.
fn values_in(frame: &ServerToViewer) -> usize {
    match frame {
        ServerToViewer::Error(_)
        | ServerToViewer::History(_)
        | ServerToViewer::Pick(_)
        | ServerToViewer::Resident(_) => 0,
        ServerToViewer::Snapshot(snapshot) => snapshot
            .sensors
            .iter()
            .filter(|s| s.latest.is_some())
            .count(),
        ServerToViewer::Update(update) => {
            update.values.len()
                + update
                    .entered_sensors
                    .iter()
                    .filter(|s| s.latest.is_some())
                    .count()
        }
    }
}
