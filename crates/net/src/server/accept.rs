//! Accepting connections: the accept loop (with its bounds on handshakes in
//! progress), the handshake (hello, token, per-token connection slots,
//! welcome), handing the connection to its role's session, and closing it
//! with the reason the session ended.
//!
//! Before a client is welcomed it may make the server hold little: a hello
//! of at most [`MAX_HELLO_BYTES`] in a small receive window, one of at most
//! [`MAX_HANDSHAKES_PER_ADDRESS`] handshakes from its address, and, when
//! many handshakes are in progress, a QUIC retry first proves its address.
//! What it says is escaped before it is logged, and repeated warnings it
//! causes are summarised per source address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use polis_protocol::{
    DecodeError, ErrorCode, Hello, HelloReply, MAX_FRAME_BYTES, MAX_READINGS_PER_BATCH,
    PROTOCOL_VERSION, ProtocolError, Rejection, Role, ServerToViewer, Welcome, check_hello,
};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::log_text::{LogText, LogVerdict};
use super::{AUTHENTICATED_RECEIVE_WINDOW_BYTES, Context, Grant, gateway_session, viewer_session};
use crate::close_code;
use crate::framing::{FrameError, FrameReader, FrameWriter};

/// How long a client has to send its [`Hello`] after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest hello frame accepted, bytes; a header announcing more is refused
/// at once with `FrameTooLarge`.
const MAX_HELLO_BYTES: usize = 4 * 1024;

/// Takes one of the server's log lines for a warning of `kind` from
/// `source`: `Some(suppressed)` to write it (with how many like it were left
/// out since), `None` to leave it out.
fn log_slot(context: &Context, source: IpAddr, kind: &'static str) -> Option<u64> {
    let verdict = context
        .log_limiter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .check(source, kind, Instant::now());
    match verdict {
        LogVerdict::Write { suppressed } => Some(suppressed),
        LogVerdict::Suppress => None,
    }
}

/// How often warnings held back by the log limiter are summarised.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Logs how many warnings of each kind each source had held back in the
/// minute that just ended (a burst followed by silence is counted too).
fn log_held_back_warnings(context: &Context) {
    let ended = context
        .log_limiter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take_ended(Instant::now());
    for (source, kind, suppressed) in ended {
        warn!(remote = %source, suppressed, "{suppressed} more like this in the last minute: {kind}");
    }
}

/// Whether a new connection from `remote` is taken on, sent a retry, or
/// refused (counted and logged, summarised per address).
fn screen(
    incoming: &quinn::Incoming,
    context: &Context,
    live: usize,
    max_connections: usize,
) -> Screen {
    let remote = incoming.remote_address();
    let mut handshakes = context
        .handshakes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if handshakes.total() >= context.limits.retry_above_handshakes
        && !incoming.remote_address_validated()
        && incoming.may_retry()
    {
        return Screen::Retry;
    }
    let refusal = if live >= max_connections {
        context
            .stats
            .connections_refused_server_full
            .fetch_add(1, Ordering::Relaxed);
        "the server has its most connections"
    } else if !handshakes.begin(remote.ip(), context.limits.max_handshakes_per_address) {
        context
            .stats
            .connections_refused_handshakes_per_address
            .fetch_add(1, Ordering::Relaxed);
        "this address has its most handshakes in progress"
    } else {
        return Screen::Accept;
    };
    drop(handshakes);
    if let Some(suppressed) = log_slot(context, remote.ip(), refusal) {
        warn!(%remote, suppressed, "refusing connection: {refusal}");
    }
    Screen::Refuse
}

/// What the accept loop does with a new connection.
enum Screen {
    /// Take it on (a handshake slot of its address is taken).
    Accept,
    /// Ask it to prove its address first.
    Retry,
    /// Refuse it.
    Refuse,
}

/// Holds one of the handshake slots of an address until dropped.
struct HandshakeSlot {
    context: Arc<Context>,
    source: IpAddr,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.context
            .handshakes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .end(self.source);
    }
}

pub(super) async fn accept_loop(
    endpoint: &quinn::Endpoint,
    context: Arc<Context>,
    max_connections: usize,
    shutdown: &Notify,
) {
    let live = Arc::new(AtomicU64::new(0));
    let mut summaries = tokio::time::interval(SUMMARY_EVERY);
    summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = summaries.tick() => {
                log_held_back_warnings(&context);
                continue;
            }
            () = shutdown.notified() => break,
        };
        let Some(incoming) = incoming else { break };
        if *context.closing.borrow() {
            incoming.refuse();
            continue;
        }
        match screen(
            &incoming,
            &context,
            live.load(Ordering::Relaxed) as usize,
            max_connections,
        ) {
            Screen::Accept => {}
            Screen::Retry => {
                context
                    .stats
                    .handshakes_retried
                    .fetch_add(1, Ordering::Relaxed);
                if let Err(err) = incoming.retry() {
                    err.into_incoming().refuse();
                }
                continue;
            }
            Screen::Refuse => {
                incoming.refuse();
                continue;
            }
        }
        live.fetch_add(1, Ordering::Relaxed);
        let slot = HandshakeSlot {
            context: Arc::clone(&context),
            source: incoming.remote_address().ip(),
        };
        let context = Arc::clone(&context);
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            handle_connection(incoming, &context, slot).await;
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // Sessions wind down on their own (they watch `closing`); give them a
    // bounded time to deliver their last acknowledgements and reasons.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while live.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Maps a read failure to the error to send, or `None` when the peer simply left.
fn protocol_error_for(err: &FrameError) -> Option<ProtocolError> {
    match err {
        FrameError::Decode(DecodeError::TooLarge {
            len_bytes,
            max_bytes,
        }) => Some(ProtocolError {
            code: ErrorCode::FrameTooLarge,
            detail: format!("frame of {len_bytes} bytes exceeds the limit of {max_bytes} bytes"),
        }),
        FrameError::Decode(err) => Some(ProtocolError {
            code: ErrorCode::MalformedFrame,
            detail: err.to_string(),
        }),
        FrameError::Truncated(_) => Some(ProtocolError {
            code: ErrorCode::MalformedFrame,
            detail: err.to_string(),
        }),
        FrameError::Encode(_)
        | FrameError::Read(_)
        | FrameError::Write(_)
        | FrameError::Finished => None,
    }
}

async fn handle_connection(incoming: quinn::Incoming, context: &Context, slot: HandshakeSlot) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(err) => {
            debug!(%remote, "QUIC handshake failed: {err}");
            return;
        }
    };
    let id = context.next_connection.fetch_add(1, Ordering::Relaxed);
    let stream = tokio::time::timeout(HELLO_TIMEOUT, async {
        let (send, recv) = connection.accept_bi().await?;
        let mut reader = FrameReader::with_max_frame_bytes(recv, MAX_HELLO_BYTES);
        let hello = reader.next::<Hello>().await;
        Ok::<_, quinn::ConnectionError>((FrameWriter::new(send), reader, hello))
    })
    .await;
    drop(slot);
    let (mut writer, mut reader, hello) = match stream {
        Ok(Ok(parts)) => parts,
        Ok(Err(err)) => {
            debug!(%remote, connection = id, "connection ended before its hello: {err}");
            return;
        }
        Err(_) => {
            if let Some(suppressed) = log_slot(context, remote.ip(), "no hello") {
                info!(%remote, connection = id, suppressed, "no hello within {HELLO_TIMEOUT:?}; closing");
            }
            connection.close(
                quinn::VarInt::from_u32(close_code::PROTOCOL_ERROR),
                b"no hello",
            );
            return;
        }
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(err) => {
            if let Some(error) = protocol_error_for(&err) {
                context
                    .stats
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = log_slot(context, remote.ip(), "bad hello") {
                    let err = err.to_string();
                    warn!(%remote, connection = id, suppressed, "bad hello: {}", LogText::detail(&err));
                }
                // Read no more of what it sends: the close discards it.
                reader.stop(close_code::PROTOCOL_ERROR);
                close_with_error(&connection, &mut writer, error).await;
            }
            return;
        }
    };
    let grant = context.tokens.grant(&hello.token);
    let lookup = |_: &str| grant.as_ref().map(|g| g.access);
    let admitted = check_hello(&hello, &lookup)
        .and_then(|_| grant.ok_or(Rejection::UnknownToken))
        .and_then(|grant| admit(context, &grant, remote).map(|()| grant));
    let grant = match admitted {
        Ok(grant) => grant,
        Err(rejection) => {
            context
                .stats
                .handshakes_rejected
                .fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = log_slot(context, remote.ip(), "handshake rejected") {
                warn!(%remote, connection = id, client = %LogText::name(&hello.client), suppressed, "handshake rejected: {rejection}");
            }
            let _ = writer.send(&HelloReply::Rejected(rejection.clone())).await;
            writer.finish().await;
            connection.close(
                quinn::VarInt::from_u32(close_code::REJECTED),
                rejection.to_string().as_bytes(),
            );
            return;
        }
    };
    let _release = TokenSlot {
        context,
        name: grant.name.clone(),
        source: remote.ip(),
    };
    let welcome = HelloReply::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        server: context.info.server.clone(),
        scene_name: context.info.scene_name.clone(),
        georeference: context.info.georeference,
        max_frame_bytes: MAX_FRAME_BYTES as u32,
        max_readings_per_batch: MAX_READINGS_PER_BATCH as u32,
    });
    if writer.send(&welcome).await.is_err() {
        return;
    }
    // Welcomed: from now on it may send frames and windows of full size.
    connection.set_receive_window(quinn::VarInt::from_u32(AUTHENTICATED_RECEIVE_WINDOW_BYTES));
    reader.set_max_frame_bytes(MAX_FRAME_BYTES);
    info!(%remote, connection = id, access = grant.access.as_str(), token = %LogText::name(&grant.name), client = %LogText::name(&hello.client), "connected");
    let ended = match grant.access.role() {
        Role::Gateway => {
            context
                .stats
                .gateways_connected
                .fetch_add(1, Ordering::Relaxed);
            let ended =
                gateway_session::serve_gateway(context, id, &grant, &mut reader, &mut writer).await;
            context
                .stats
                .gateways_connected
                .fetch_sub(1, Ordering::Relaxed);
            ended
        }
        Role::Viewer => {
            context
                .stats
                .viewers_connected
                .fetch_add(1, Ordering::Relaxed);
            let ended =
                viewer_session::serve_viewer(context, id, &grant, &mut reader, &mut writer).await;
            context
                .stats
                .viewers_connected
                .fetch_sub(1, Ordering::Relaxed);
            ended
        }
    };
    match ended {
        SessionEnd::PeerDone => {
            info!(%remote, connection = id, "disconnected");
            writer.finish().await;
            connection.close(quinn::VarInt::from_u32(close_code::DONE), b"done");
        }
        SessionEnd::Lost(reason) => {
            info!(%remote, connection = id, "connection lost: {reason}");
        }
        SessionEnd::ServerStopping => {
            let error = ProtocolError {
                code: ErrorCode::ShuttingDown,
                detail: "server shutting down".into(),
            };
            close_with_error(&connection, &mut writer, error).await;
        }
        SessionEnd::Protocol(error) => {
            context
                .stats
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = log_slot(context, remote.ip(), "protocol error") {
                warn!(%remote, connection = id, suppressed, "closing after protocol error: {}", LogText::detail(&error.to_string()));
            }
            close_with_error(&connection, &mut writer, error).await;
        }
        SessionEnd::Refused(error) => {
            warn!(%remote, connection = id, "closing: {}", LogText::detail(&error.to_string()));
            close_with_error(&connection, &mut writer, error).await;
        }
    }
}

/// Takes one of the token's connection slots (and one of its slots for the
/// address of `remote`), or refuses.
fn admit(context: &Context, grant: &Grant, remote: SocketAddr) -> Result<(), Rejection> {
    context
        .per_token
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .admit(
            &grant.name,
            remote.ip(),
            context.limits.max_connections_per_token,
            context.limits.max_connections_per_token_per_address,
        )
}

/// Gives a token's connection slot back when the session ends.
struct TokenSlot<'a> {
    context: &'a Context,
    name: String,
    source: IpAddr,
}

impl Drop for TokenSlot<'_> {
    fn drop(&mut self) {
        self.context
            .per_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .release(&self.name, self.source);
    }
}

async fn close_with_error(
    connection: &quinn::Connection,
    writer: &mut FrameWriter,
    error: ProtocolError,
) {
    let code = if error.code == ErrorCode::ShuttingDown {
        close_code::SHUTTING_DOWN
    } else {
        close_code::PROTOCOL_ERROR
    };
    // Error is the first variant of every server-to-client enum, so this frame
    // reads the same whatever stage or role the client is in.
    let _ = writer.send(&ServerToViewer::Error(error.clone())).await;
    writer.finish().await;
    connection.close(quinn::VarInt::from_u32(code), error.detail.as_bytes());
}

/// How a session ended.
pub(super) enum SessionEnd {
    /// The client finished its stream.
    PeerDone,
    /// The connection failed underneath.
    Lost(String),
    /// The twin stopped taking events.
    ServerStopping,
    /// The client broke the protocol.
    Protocol(ProtocolError),
    /// The server could not serve the client (e.g. storage failure).
    Refused(ProtocolError),
}

/// How a session whose stream failed with `err` ended.
pub(super) fn read_end(err: FrameError) -> SessionEnd {
    match protocol_error_for(&err) {
        Some(error) => SessionEnd::Protocol(error),
        None if matches!(err, FrameError::Finished) => SessionEnd::PeerDone,
        None => SessionEnd::Lost(err.to_string()),
    }
}
