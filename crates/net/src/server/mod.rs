//! The QUIC server endpoint: its public types and [`NetServer`], which runs
//! the endpoint on the `polis-net` thread.
//!
//! The parts, one concept each:
//! - `accept`: the accept loop, the handshake, and how a session's end
//!   closes its connection;
//! - `limits`: [`SessionLimits`], the token bucket behind the per-second
//!   rates, the count of connections per token (and per token and source
//!   address) and of handshakes in progress per source address;
//! - `log_text`: escaping client-controlled strings for the log, and the
//!   limiter that summarises repeated warnings per source address;
//! - `gateway_session` with `ack_window`: a gateway's batches in, their
//!   acknowledgements out, at most a window of them unacknowledged;
//! - `viewer_session` with `pacing`: a viewer's requests in, its mailbox
//!   drained out, value updates paced to its publishing interval.
//!
//! The rules (limits, window, pacing; subscription checks live in
//! `polis_protocol::Subscribe::problem`) are plain types that take the time
//! as an argument and are tested without a socket; the async code here and
//! in the session modules only drives them.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use polis_protocol::{
    Access, BatchAck, Georeference, HistoryReply, HistoryRequest, MAX_FRAME_BYTES, PickReply,
    PickRequest, ProtocolError, ReadingBatch, ResidentAction, ResidentOutcome, SharedMailbox,
    Subscribe,
};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::close_code;
use crate::tls::{ServerIdentity, TlsError};

mod accept;
mod ack_window;
mod gateway_session;
mod limits;
mod log_text;
mod pacing;
mod viewer_session;

pub use limits::SessionLimits;
pub use log_text::{
    LOG_DETAIL_MAX_CHARS, LOG_NAME_MAX_CHARS, LogLimiter, LogSource, LogText, LogVerdict,
};

/// A connection with no traffic for this long is closed (keep-alives at a third).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection-level receive window until the client is authenticated:
/// enough for a hello, so an unauthenticated peer cannot make the server
/// buffer more than this.
const PRE_AUTH_RECEIVE_WINDOW_BYTES: u32 = 16 * 1024;

/// Connection-level receive window once the client is welcomed (a
/// gateway's batches are frames of up to a MiB each).
const AUTHENTICATED_RECEIVE_WINDOW_BYTES: u32 = 4 * 1024 * 1024;

/// Most bytes sent to one peer and not yet acknowledged, whatever window it
/// advertises: bounds what a stalled viewer makes the server hold (a frame
/// to viewers is at most a MiB).
const SEND_WINDOW_BYTES: u64 = 2 * 1024 * 1024;

/// What the network tells the twin. Sent through one bounded channel.
#[derive(Debug)]
pub enum NetEvent {
    /// A gateway's batch; answer on `reply` once it is applied.
    Batch {
        /// The gateway connection.
        gateway: u64,
        /// Sensor-id prefixes the gateway's token may write; `None` for all.
        scope: Option<Arc<[String]>>,
        /// The readings.
        batch: ReadingBatch,
        /// Where the acknowledgement goes once the batch is applied and
        /// durable, or the error that prevented it.
        reply: oneshot::Sender<Result<BatchAck, ProtocolError>>,
    },
    /// A viewer completed its handshake; fill `mailbox` for it from now on.
    ViewerConnected {
        /// The viewer connection.
        viewer: u64,
        /// What its token grants (operator, planner, public).
        access: Access,
        /// The token's name, for the audit log.
        name: String,
        /// A resident's own sensors (ids); empty for other roles.
        own_sensors: Arc<[String]>,
        /// Its coalescing outbox.
        mailbox: SharedMailbox,
    },
    /// A viewer set or changed its area (already validated).
    ViewerSubscribed {
        /// The viewer connection.
        viewer: u64,
        /// The subscription.
        subscribe: Subscribe,
    },
    /// A viewer asks what lies along a ray (already validated); answer on
    /// `reply`.
    Pick {
        /// The viewer connection.
        viewer: u64,
        /// The ray.
        request: PickRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<PickReply>,
    },
    /// A viewer went away.
    ViewerDisconnected {
        /// The viewer connection.
        viewer: u64,
    },
}

/// What the server tells clients about itself in its
/// [`Welcome`](polis_protocol::Welcome).
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Server name and version.
    pub server: String,
    /// Scene being served.
    pub scene_name: String,
    /// The scene's georeference.
    pub georeference: Georeference,
}

/// Settings of the network edge.
pub struct NetServerConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Certificate and key.
    pub identity: ServerIdentity,
    /// What each token grants.
    pub tokens: Arc<dyn TokenDirectory>,
    /// Sent to clients on acceptance.
    pub info: ServerInfo,
    /// Capacity of the channel into the twin, events.
    pub event_capacity: usize,
    /// Most simultaneous connections; more are refused.
    pub max_connections: usize,
    /// Most unacknowledged batches per gateway; further batches wait.
    pub gateway_window: usize,
    /// Target size of frames sent to viewers, bytes.
    pub viewer_frame_bytes: usize,
    /// Answers viewers' history requests, if the server keeps history.
    pub history: Option<Arc<dyn HistoryService>>,
    /// Answers residents' data-subject requests, if the server keeps
    /// history and an audit log.
    pub residents: Option<Arc<dyn ResidentService>>,
    /// Per-connection and per-token limits.
    pub limits: SessionLimits,
}

/// Answers viewers' [`HistoryRequest`]s; runs on a blocking thread.
pub trait HistoryService: Send + Sync + 'static {
    /// The recorded values `request` asks for, or why not, for a viewer
    /// holding `grant`.
    fn query(
        &self,
        viewer: u64,
        grant: &Grant,
        request: &HistoryRequest,
    ) -> Result<HistoryReply, ProtocolError>;
}

/// Answers residents' data-subject requests ([`ResidentAction`]); runs on a
/// blocking thread. Only called for resident tokens, whose
/// [`Grant::own_sensors`] are the home.
pub trait ResidentService: Send + Sync + 'static {
    /// Carries out `action` for the home of `grant`, or says why not.
    fn answer(
        &self,
        grant: &Grant,
        action: &ResidentAction,
    ) -> Result<ResidentAnswer, ProtocolError>;
}

/// What a [`ResidentService`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ResidentAnswer {
    /// An export's whole document, sent to the resident in parts.
    Document(Vec<u8>),
    /// Any other outcome, sent as one frame.
    Outcome(ResidentOutcome),
}

/// What a token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Gateway, or a viewer's level of access.
    pub access: Access,
    /// The token's name, for logs and the audit log.
    pub name: String,
    /// Sensor-id prefixes a gateway may write; `None` for all.
    pub scope: Option<Arc<[String]>>,
    /// A resident's own sensors (ids), whose raw data it may see; empty for
    /// every other role.
    pub own_sensors: Arc<[String]>,
}

/// Looks up tokens.
pub trait TokenDirectory: Send + Sync + 'static {
    /// What `token` grants, or `None` if it is unknown.
    fn grant(&self, token: &str) -> Option<Grant>;
}

impl<F: Fn(&str) -> Option<Grant> + Send + Sync + 'static> TokenDirectory for F {
    fn grant(&self, token: &str) -> Option<Grant> {
        self(token)
    }
}

/// Counters of the network edge, readable from any thread.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Gateways connected now.
    pub gateways_connected: AtomicU64,
    /// Viewers connected now.
    pub viewers_connected: AtomicU64,
    /// Handshakes refused since start.
    pub handshakes_rejected: AtomicU64,
    /// Connections refused before their handshake because the server had
    /// its most connections, since start.
    pub connections_refused_server_full: AtomicU64,
    /// Connections refused before their handshake because their source
    /// address had its most handshakes in progress, since start.
    pub connections_refused_handshakes_per_address: AtomicU64,
    /// Connections asked to prove their source address (a QUIC retry)
    /// because many handshakes were in progress, since start.
    pub handshakes_retried: AtomicU64,
    /// Connections closed for a protocol error since start.
    pub protocol_errors: AtomicU64,
    /// Frames sent to viewers since start.
    pub viewer_frames_sent: AtomicU64,
    /// Frame bytes sent to viewers since start.
    pub viewer_bytes_sent: AtomicU64,
    /// Sensor values sent to viewers since start (snapshots and updates).
    pub viewer_values_sent: AtomicU64,
}

/// Why the network edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS material could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The network thread could not be started.
    #[error("cannot start the network thread: {0}")]
    Thread(std::io::Error),
}

/// The running network edge. Dropping it shuts the endpoint down.
pub struct NetServer {
    events: mpsc::Receiver<NetEvent>,
    /// The thread to wake when an event is queued (see [`NetServer::wake_on_event`]).
    wake: Arc<std::sync::OnceLock<std::thread::Thread>>,
    closing: tokio::sync::watch::Sender<bool>,
    local_addr: SocketAddr,
    stats: Arc<NetStats>,
    shutdown: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
    port: IngestPort,
}

/// Another way in for readings (an MQTT source): the same bounded channel
/// into the twin that the QUIC gateways use, the same wake-up, connection
/// ids from the same counter, and the same closing signal.
#[derive(Clone)]
pub struct IngestPort {
    events: mpsc::Sender<NetEvent>,
    wake: Arc<std::sync::OnceLock<std::thread::Thread>>,
    next_connection: Arc<AtomicU64>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for IngestPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestPort").finish_non_exhaustive()
    }
}

impl IngestPort {
    /// A connection id of its own, never one a QUIC connection has or will
    /// have (they come from the same counter).
    pub fn connection_id(&self) -> u64 {
        self.next_connection
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues `event` for the twin, waiting while the channel is full (so a
    /// busy twin slows the source down), and wakes the twin; false once the
    /// twin takes no events.
    pub async fn send(&self, event: NetEvent) -> bool {
        if self.events.send(event).await.is_err() {
            return false;
        }
        if let Some(thread) = self.wake.get() {
            thread.unpark();
        }
        true
    }

    /// Becomes true when the server begins to close: sources stop reading
    /// new messages (acknowledgements already due are still delivered).
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.clone()
    }
}

impl std::fmt::Debug for NetServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

struct Context {
    events: mpsc::Sender<NetEvent>,
    wake: Arc<std::sync::OnceLock<std::thread::Thread>>,
    limits: SessionLimits,
    /// Connections per token, against `limits.max_connections_per_token`.
    per_token: Mutex<limits::TokenConnections>,
    /// Handshakes in progress, against the accept loop's bounds.
    handshakes: Mutex<limits::Handshakes>,
    /// Summarises repeated warnings caused by clients.
    log_limiter: Mutex<log_text::LogLimiter>,
    history: Option<Arc<dyn HistoryService>>,
    residents: Option<Arc<dyn ResidentService>>,
    /// Becomes true when the server begins to close: sessions stop reading.
    closing: tokio::sync::watch::Receiver<bool>,
    tokens: Arc<dyn TokenDirectory>,
    info: ServerInfo,
    gateway_window: usize,
    viewer_frame_bytes: usize,
    stats: Arc<NetStats>,
    next_connection: Arc<AtomicU64>,
}

impl Context {
    /// Queues `event` for the twin (waiting while the channel is full) and
    /// wakes the registered thread; false once the twin takes no events.
    async fn send_event(&self, event: NetEvent) -> bool {
        if self.events.send(event).await.is_err() {
            return false;
        }
        if let Some(thread) = self.wake.get() {
            thread.unpark();
        }
        true
    }
}

impl NetServer {
    /// Binds the endpoint and starts the `polis-net` thread.
    pub fn start(config: NetServerConfig) -> Result<NetServer, ServerError> {
        let crypto = config.identity.server_crypto()?;
        let reset_key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &config.identity.reset_secret());
        let endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
        let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
            .map_err(|err| TlsError::Rustls(rustls::Error::General(err.to_string())))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(1u32.into())
            .max_concurrent_uni_streams(0u32.into())
            .keep_alive_interval(Some(IDLE_TIMEOUT / 3))
            .max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok())
            .receive_window(quinn::VarInt::from_u32(PRE_AUTH_RECEIVE_WINDOW_BYTES))
            .send_window(SEND_WINDOW_BYTES);
        server_config.transport_config(Arc::new(transport));

        let (events_tx, events_rx) = mpsc::channel(config.event_capacity.max(1));
        let wake = Arc::new(std::sync::OnceLock::new());
        let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
        let stats = Arc::new(NetStats::default());
        let shutdown = Arc::new(Notify::new());
        let next_connection = Arc::new(AtomicU64::new(1));
        let port = IngestPort {
            events: events_tx.clone(),
            wake: Arc::clone(&wake),
            next_connection: Arc::clone(&next_connection),
            closing: closing_rx.clone(),
        };
        let context = Arc::new(Context {
            events: events_tx,
            wake: Arc::clone(&wake),
            limits: config.limits,
            per_token: Mutex::new(limits::TokenConnections::default()),
            handshakes: Mutex::new(limits::Handshakes::default()),
            log_limiter: Mutex::new(log_text::LogLimiter::new(Duration::from_secs(60), 4096)),
            history: config.history,
            residents: config.residents,
            closing: closing_rx,
            tokens: config.tokens,
            info: config.info,
            gateway_window: config.gateway_window.max(1),
            viewer_frame_bytes: config.viewer_frame_bytes.clamp(4096, MAX_FRAME_BYTES),
            stats: Arc::clone(&stats),
            next_connection,
        });
        let (bound_tx, bound_rx) = std::sync::mpsc::sync_channel(1);
        let listen = config.listen;
        let max_connections = config.max_connections;
        let thread_shutdown = Arc::clone(&shutdown);
        let thread = std::thread::Builder::new()
            .name("polis-net".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(source) => {
                        let _ = bound_tx.send(Err(ServerError::Thread(source)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let endpoint = std::net::UdpSocket::bind(listen).and_then(|socket| {
                        quinn::Endpoint::new(
                            endpoint_config,
                            Some(server_config),
                            socket,
                            Arc::new(quinn::TokioRuntime),
                        )
                    });
                    let endpoint = match endpoint {
                        Ok(endpoint) => endpoint,
                        Err(source) => {
                            let _ = bound_tx.send(Err(ServerError::Bind {
                                addr: listen,
                                source,
                            }));
                            return;
                        }
                    };
                    let local = endpoint.local_addr().unwrap_or(listen);
                    let _ = bound_tx.send(Ok(local));
                    accept::accept_loop(&endpoint, context, max_connections, &thread_shutdown)
                        .await;
                    endpoint.close(
                        quinn::VarInt::from_u32(close_code::SHUTTING_DOWN),
                        b"server shutting down",
                    );
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
                });
            })
            .map_err(ServerError::Thread)?;
        let local_addr = match bound_rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(ServerError::Thread(std::io::Error::other(
                    "network thread ended before binding",
                )));
            }
        };
        Ok(NetServer {
            events: events_rx,
            wake,
            closing: closing_tx,
            local_addr,
            stats,
            shutdown,
            thread: Some(thread),
            port,
        })
    }

    /// A port for another source of readings into the twin (see
    /// [`IngestPort`]).
    pub fn ingest_port(&self) -> IngestPort {
        self.port.clone()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next event for the twin, if any (never blocks).
    pub fn try_recv(&mut self) -> Option<NetEvent> {
        self.events.try_recv().ok()
    }

    /// Events waiting in the channel.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Unparks `thread` whenever an event is queued, so a consumer waiting
    /// in [`std::thread::park_timeout`] takes it at once instead of at its
    /// next poll. The first thread registered stays registered.
    pub fn wake_on_event(&self, thread: std::thread::Thread) {
        let _ = self.wake.set(thread);
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<NetStats> {
        &self.stats
    }

    /// First step of a clean shutdown: refuse new connections and stop
    /// reading from clients, but keep delivering what the twin still answers
    /// (acknowledgements of batches already received). The twin then applies
    /// what is left in the channel, and [`NetServer::shutdown`] closes.
    pub fn begin_close(&self) {
        let _ = self.closing.send(true);
    }

    /// Closes every connection with the reason "server shutting down" (after
    /// sending the acknowledgements still due) and stops the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.closing.send(true);
        self.shutdown.notify_one();
        // Refuse whatever is still queued so connections waiting on acks end.
        self.events.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for NetServer {
    fn drop(&mut self) {
        self.stop();
    }
}
