//! A gateway's session: batches in, checked against the protocol and the
//! connection's rate, handed to the twin; their acknowledgements out, in
//! order, as the twin answers. At most a window of batches awaits its
//! acknowledgement ([`AckWindow`]); the next one waits for a free slot.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use polis_protocol::{
    BatchAck, ClientToServer, ErrorCode, MAX_READINGS_PER_BATCH, ProtocolError, ServerToGateway,
};
use tokio::sync::{Notify, mpsc, oneshot};

use super::accept::{SessionEnd, read_end};
use super::ack_window::AckWindow;
use super::limits::TokenBucket;
use super::{Context, Grant, NetEvent};
use crate::framing::{FrameReader, FrameWriter};

/// Serves a gateway until its stream ends, it breaks the protocol, or the
/// server stops.
pub(super) async fn serve_gateway(
    context: &Context,
    gateway: u64,
    grant: &Grant,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
) -> SessionEnd {
    // The twin's answers, in the order of the batches; never more than the
    // window holds, so sending one never waits.
    let (pending_tx, mut pending_rx) =
        mpsc::channel::<oneshot::Receiver<Result<BatchAck, ProtocolError>>>(context.gateway_window);
    let window = &SharedWindow {
        window: Mutex::new(AckWindow::new(context.gateway_window)),
        freed: Notify::new(),
    };
    let mut closing = context.closing.clone();
    let max_rate = context.limits.max_readings_per_second;
    let mut readings_allowed = TokenBucket::new(max_rate, max_rate, Instant::now());
    let read_side = async move {
        loop {
            let next = tokio::select! {
                next = reader.next::<ClientToServer>() => next,
                _ = closing.wait_for(|closing| *closing) => return SessionEnd::ServerStopping,
            };
            let message = match next {
                Ok(message) => message,
                Err(err) => return read_end(err),
            };
            let batch = match message {
                ClientToServer::Batch(batch) => batch,
                ClientToServer::Subscribe(_)
                | ClientToServer::History(_)
                | ClientToServer::Pick(_)
                | ClientToServer::Resident(_) => {
                    return SessionEnd::Protocol(ProtocolError {
                        code: ErrorCode::UnexpectedMessage,
                        detail: "a gateway may only push readings; connect with a viewer token \
                                 to subscribe, pick or query history"
                            .into(),
                    });
                }
            };
            if batch.readings.len() > MAX_READINGS_PER_BATCH {
                return SessionEnd::Protocol(ProtocolError {
                    code: ErrorCode::BatchTooLarge,
                    detail: format!(
                        "batch {} holds {} readings; the limit is {MAX_READINGS_PER_BATCH}",
                        batch.seq,
                        batch.readings.len()
                    ),
                });
            }
            if !readings_allowed.take(batch.readings.len() as f64, Instant::now()) {
                return SessionEnd::Protocol(ProtocolError {
                    code: ErrorCode::RateLimited,
                    detail: format!("more than {max_rate} readings per second on one connection"),
                });
            }
            // Wait while a full window of batches awaits acknowledgement.
            window.open().await;
            let (reply, answer) = oneshot::channel();
            let event = NetEvent::Batch {
                gateway,
                scope: grant.scope.clone(),
                batch,
                reply,
            };
            if !context.send_event(event).await {
                return SessionEnd::ServerStopping;
            }
            if pending_tx.send(answer).await.is_err() {
                return SessionEnd::Lost("acknowledgement writer ended".into());
            }
        }
    };
    let write_side = async {
        while let Some(answer) = pending_rx.recv().await {
            let ack = match answer.await {
                Ok(Ok(ack)) => ack,
                Ok(Err(error)) => return Some(SessionEnd::Refused(error)),
                Err(_) => return Some(SessionEnd::ServerStopping),
            };
            if let Err(err) = writer.send(&ServerToGateway::Ack(ack)).await {
                return Some(SessionEnd::Lost(err.to_string()));
            }
            window.acked();
        }
        None
    };
    tokio::pin!(read_side);
    tokio::pin!(write_side);
    tokio::select! {
        // The client stopped sending (or broke the protocol): the
        // acknowledgements of what it sent are still delivered.
        read_ended = &mut read_side => match (read_ended, write_side.await) {
            (SessionEnd::Protocol(error), _) => SessionEnd::Protocol(error),
            (_, Some(ended)) => ended,
            (ended, None) => ended,
        },
        // Acknowledging failed (storage refused, connection lost): end now,
        // without waiting for the client's next frame.
        write_ended = &mut write_side => write_ended.unwrap_or(SessionEnd::PeerDone),
    }
}

/// The [`AckWindow`] shared by a gateway session's read side (which opens
/// slots) and write side (which frees them once an ack is written).
struct SharedWindow {
    window: Mutex<AckWindow>,
    /// Signalled after every ack, for a read side waiting for a slot.
    freed: Notify,
}

impl SharedWindow {
    fn lock(&self) -> std::sync::MutexGuard<'_, AckWindow> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a slot for a batch, waiting while the window is full.
    async fn open(&self) {
        // A slot freed between a refusal and the wait leaves a permit in
        // `freed`, so the wait ends at once and the loop looks again.
        loop {
            let opened = self.lock().try_open();
            if opened {
                return;
            }
            self.freed.notified().await;
        }
    }

    /// A batch was acknowledged.
    fn acked(&self) {
        self.lock().acked();
        self.freed.notify_one();
    }
}
