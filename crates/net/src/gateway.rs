//! A gateway client that survives server restarts: it keeps every batch until
//! it is acknowledged and resends the unacknowledged ones after reconnecting.
//! The server stores a reading once per sensor and device time, so a resent
//! batch that had in fact been stored comes back as duplicates, never twice.

use std::collections::VecDeque;
use std::time::Duration;

use polis_protocol::{
    BatchAck, ClientToServer, ErrorCode, Reading, ReadingBatch, Role, ServerToGateway,
};
use tracing::{info, warn};

use crate::client::{ClientError, ClientOptions, Session};

/// How a [`GatewayClient`] behaves.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Most batches sent and not yet acknowledged.
    pub window: usize,
    /// How long to keep trying to reconnect after losing the server; the
    /// session fails after that.
    pub reconnect_for: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            window: 8,
            reconnect_for: Duration::from_secs(60),
        }
    }
}

/// A gateway session that resends unacknowledged batches after a reconnect.
#[derive(Debug)]
pub struct GatewayClient {
    client: ClientOptions,
    options: GatewayOptions,
    session: Option<Session>,
    next_seq: u64,
    /// Batches sent (or to be resent) and not yet acknowledged, in order.
    unacked: VecDeque<ReadingBatch>,
    /// How many of `unacked` were sent on the current session.
    sent_on_session: usize,
    reconnects: u64,
    /// Reconnects since the last acknowledgement: a server that keeps
    /// refusing the same batch is given up on after [`MAX_FUTILE_RECONNECTS`].
    futile_reconnects: u32,
}

/// Reconnects in a row without any batch acknowledged before giving up.
const MAX_FUTILE_RECONNECTS: u32 = 5;

/// Whether an error means "try again later" rather than "give up".
fn is_transient(err: &ClientError) -> bool {
    match err {
        ClientError::Connect { .. } | ClientError::Frame(_) => true,
        ClientError::Server(error) => {
            matches!(error.code, ErrorCode::ShuttingDown | ErrorCode::Unavailable)
        }
        ClientError::Resolve { .. } | ClientError::Tls(_) | ClientError::Rejected(_) => false,
    }
}

impl GatewayClient {
    /// Connects as a gateway (the first connection must succeed).
    pub async fn connect(
        client: ClientOptions,
        options: GatewayOptions,
    ) -> Result<GatewayClient, ClientError> {
        let client = ClientOptions {
            role: Role::Gateway,
            ..client
        };
        let session = Session::connect(&client).await?;
        Ok(GatewayClient {
            client,
            options,
            session: Some(session),
            next_seq: 0,
            unacked: VecDeque::new(),
            sent_on_session: 0,
            reconnects: 0,
            futile_reconnects: 0,
        })
    }

    /// How often the client had to reconnect.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Batches not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.unacked.len()
    }

    /// Queues `readings` as the next batch and sends it; waits for
    /// acknowledgements while the window is full. Returns the batch's
    /// sequence number and the acknowledgements that arrived meanwhile.
    pub async fn push(
        &mut self,
        readings: Vec<Reading>,
    ) -> Result<(u64, Vec<BatchAck>), ClientError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.push_back(ReadingBatch { seq, readings });
        let mut acks = Vec::new();
        loop {
            match self.pump(&mut acks, self.options.window).await {
                Ok(()) => return Ok((seq, acks)),
                Err(err) => self.recover(err).await?,
            }
        }
    }

    /// Waits until every batch is acknowledged; returns the acknowledgements.
    pub async fn flush(&mut self) -> Result<Vec<BatchAck>, ClientError> {
        let mut acks = Vec::new();
        loop {
            match self.pump(&mut acks, 0).await {
                Ok(()) => return Ok(acks),
                Err(err) => self.recover(err).await?,
            }
        }
    }

    /// Ends the session cleanly (after [`GatewayClient::flush`]).
    pub async fn close(mut self) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }

    /// Sends what is unsent, then reads acks until at most `in_flight` remain.
    async fn pump(
        &mut self,
        acks: &mut Vec<BatchAck>,
        in_flight: usize,
    ) -> Result<(), ClientError> {
        loop {
            let Some(session) = self.session.as_mut() else {
                return Err(ClientError::Connect {
                    server: self.client.server.clone(),
                    detail: "not connected".into(),
                });
            };
            let unsent = self.sent_on_session < self.unacked.len();
            if unsent && self.sent_on_session < self.options.window {
                let batch = &self.unacked[self.sent_on_session];
                session.send(&ClientToServer::Batch(batch.clone())).await?;
                self.sent_on_session += 1;
                continue;
            }
            if !unsent && self.unacked.len() <= in_flight {
                return Ok(());
            }
            let ack = read_ack(session).await?;
            let expected = self.unacked.front().map(|b| b.seq);
            if expected != Some(ack.seq) {
                return Err(ClientError::Server(polis_protocol::ProtocolError {
                    code: ErrorCode::UnexpectedMessage,
                    detail: format!(
                        "acknowledgement of batch {} while {expected:?} was due",
                        ack.seq
                    ),
                }));
            }
            self.unacked.pop_front();
            self.sent_on_session = self.sent_on_session.saturating_sub(1);
            self.futile_reconnects = 0;
            acks.push(ack);
        }
    }

    /// Reconnects after a transient failure (within `reconnect_for`), or
    /// returns the error.
    async fn recover(&mut self, err: ClientError) -> Result<(), ClientError> {
        if !is_transient(&err) || self.futile_reconnects >= MAX_FUTILE_RECONNECTS {
            return Err(err);
        }
        self.futile_reconnects += 1;
        warn!(
            unacknowledged = self.unacked.len(),
            "lost the server ({err}); reconnecting"
        );
        self.session = None;
        let deadline = tokio::time::Instant::now() + self.options.reconnect_for;
        let mut backoff = Duration::from_millis(100);
        loop {
            match Session::connect(&self.client).await {
                Ok(session) => {
                    self.session = Some(session);
                    self.sent_on_session = 0;
                    self.reconnects += 1;
                    info!(
                        resending = self.unacked.len(),
                        "reconnected; resending unacknowledged batches"
                    );
                    return Ok(());
                }
                Err(next) if is_transient(&next) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(next) => return Err(next),
            }
        }
    }
}

async fn read_ack(session: &mut Session) -> Result<BatchAck, ClientError> {
    match session.recv::<ServerToGateway>().await? {
        ServerToGateway::Ack(ack) => Ok(ack),
        ServerToGateway::Error(error) => Err(ClientError::Server(error)),
    }
}
