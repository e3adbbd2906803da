//! Accepting connections: the accept loop, the handshake (hello, token,
//! per-token connection slots, welcome), handing the connection to its
//! role's session, and closing it with the reason the session ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use polis_protocol::{
    DecodeError, ErrorCode, Hello, HelloReply, MAX_FRAME_BYTES, MAX_READINGS_PER_BATCH,
    PROTOCOL_VERSION, ProtocolError, Rejection, Role, ServerToViewer, Welcome, check_hello,
};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::{Context, Grant, gateway_session, viewer_session};
use crate::close_code;
use crate::framing::{FrameError, FrameReader, FrameWriter};

/// How long a client has to send its [`Hello`] after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn accept_loop(
    endpoint: &quinn::Endpoint,
    context: Arc<Context>,
    max_connections: usize,
    shutdown: &Notify,
) {
    let live = Arc::new(AtomicU64::new(0));
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shutdown.notified() => break,
        };
        let Some(incoming) = incoming else { break };
        if *context.closing.borrow() {
            incoming.refuse();
            continue;
        }
        if live.load(Ordering::Relaxed) as usize >= max_connections {
            debug!(remote = %incoming.remote_address(), "connection limit reached; refusing");
            incoming.refuse();
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let context = Arc::clone(&context);
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            handle_connection(incoming, &context).await;
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

async fn handle_connection(incoming: quinn::Incoming, context: &Context) {
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
        let mut reader = FrameReader::new(recv);
        let hello = reader.next::<Hello>().await;
        Ok::<_, quinn::ConnectionError>((FrameWriter::new(send), reader, hello))
    })
    .await;
    let (mut writer, mut reader, hello) = match stream {
        Ok(Ok(parts)) => parts,
        Ok(Err(err)) => {
            debug!(%remote, connection = id, "connection ended before its hello: {err}");
            return;
        }
        Err(_) => {
            info!(%remote, connection = id, "no hello within {HELLO_TIMEOUT:?}; closing");
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
                warn!(%remote, connection = id, "bad hello: {err}");
                close_with_error(&connection, &mut writer, error).await;
            }
            return;
        }
    };
    let grant = context.tokens.grant(&hello.token);
    let lookup = |_: &str| grant.as_ref().map(|g| g.access);
    let admitted = check_hello(&hello, &lookup)
        .and_then(|_| grant.ok_or(Rejection::UnknownToken))
        .and_then(|grant| admit(context, &grant).map(|()| grant));
    let grant = match admitted {
        Ok(grant) => grant,
        Err(rejection) => {
            context
                .stats
                .handshakes_rejected
                .fetch_add(1, Ordering::Relaxed);
            warn!(%remote, connection = id, client = %hello.client, "handshake rejected: {rejection}");
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
    info!(%remote, connection = id, access = grant.access.as_str(), token = %grant.name, client = %hello.client, "connected");
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
            warn!(%remote, connection = id, "closing after protocol error: {error}");
            close_with_error(&connection, &mut writer, error).await;
        }
        SessionEnd::Refused(error) => {
            warn!(%remote, connection = id, "closing: {error}");
            close_with_error(&connection, &mut writer, error).await;
        }
    }
}

/// Takes one of the token's connection slots, or refuses.
fn admit(context: &Context, grant: &Grant) -> Result<(), Rejection> {
    context
        .per_token
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .admit(&grant.name, context.limits.max_connections_per_token)
}

/// Gives a token's connection slot back when the session ends.
struct TokenSlot<'a> {
    context: &'a Context,
    name: String,
}

impl Drop for TokenSlot<'_> {
    fn drop(&mut self) {
        self.context
            .per_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .release(&self.name);
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
