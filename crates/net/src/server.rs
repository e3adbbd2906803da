//! The QUIC server endpoint: handshake, gateway and viewer sessions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use polis_protocol::{
    Access, BatchAck, ClientToServer, DecodeError, ErrorCode, Georeference, Hello, HelloReply,
    HistoryReply, HistoryRequest, MAX_FRAME_BYTES, MAX_PUBLISH_INTERVAL_MS, MAX_READINGS_PER_BATCH,
    PROTOCOL_VERSION, PickReply, PickRequest, ProtocolError, ReadingBatch, Rejection, Role,
    ServerToGateway, ServerToViewer, SharedMailbox, Subscribe, Welcome, check_hello,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::close_code;
use crate::framing::{FrameError, FrameReader, FrameWriter};
use crate::tls::{ServerIdentity, TlsError};
use crate::woken::poll_when_woken;

/// How long a client has to send its [`Hello`] after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no traffic for this long is closed (keep-alives at a third).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// What the server tells clients about itself in its [`Welcome`].
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
    /// Per-connection and per-token limits.
    pub limits: SessionLimits,
}

/// What one client may do; exceeding a limit gets an explicit error.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Connections one token may have at once.
    pub max_connections_per_token: u32,
    /// Readings one gateway connection may push per second (burst: one second's worth).
    pub max_readings_per_second: f64,
    /// Subscriptions one viewer connection may make per second (burst: ten).
    pub max_subscriptions_per_second: f64,
    /// Largest area a viewer may subscribe to, km².
    pub max_area_km2: f64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_connections_per_token: 256,
            max_readings_per_second: 1_000_000.0,
            max_subscriptions_per_second: 10.0,
            max_area_km2: 100.0,
        }
    }
}

/// A token bucket: `rate` per second, holding at most `burst`.
struct Bucket {
    rate: f64,
    burst: f64,
    level: f64,
    last: tokio::time::Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            level: burst,
            last: tokio::time::Instant::now(),
        }
    }

    /// Takes `amount`; false when that exceeds what the rate allows.
    fn take(&mut self, amount: f64) -> bool {
        let now = tokio::time::Instant::now();
        self.level =
            (self.level + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if amount > self.level {
            return false;
        }
        self.level -= amount;
        true
    }
}

/// Answers viewers' [`HistoryRequest`]s; runs on a blocking thread.
pub trait HistoryService: Send + Sync + 'static {
    /// The recorded values `request` asks for, or why not, for a viewer with
    /// `access` known as `name`.
    fn query(
        &self,
        viewer: u64,
        access: Access,
        name: &str,
        request: &HistoryRequest,
    ) -> Result<HistoryReply, ProtocolError>;
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
    per_token: std::sync::Mutex<HashMap<String, u32>>,
    history: Option<Arc<dyn HistoryService>>,
    /// Becomes true when the server begins to close: sessions stop reading.
    closing: tokio::sync::watch::Receiver<bool>,
    tokens: Arc<dyn TokenDirectory>,
    info: ServerInfo,
    gateway_window: usize,
    viewer_frame_bytes: usize,
    stats: Arc<NetStats>,
    next_connection: AtomicU64,
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
            .max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
        server_config.transport_config(Arc::new(transport));

        let (events_tx, events_rx) = mpsc::channel(config.event_capacity.max(1));
        let wake = Arc::new(std::sync::OnceLock::new());
        let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
        let stats = Arc::new(NetStats::default());
        let shutdown = Arc::new(Notify::new());
        let context = Arc::new(Context {
            events: events_tx,
            wake: Arc::clone(&wake),
            limits: config.limits,
            per_token: std::sync::Mutex::new(HashMap::new()),
            history: config.history,
            closing: closing_rx,
            tokens: config.tokens,
            info: config.info,
            gateway_window: config.gateway_window.max(1),
            viewer_frame_bytes: config.viewer_frame_bytes.clamp(4096, MAX_FRAME_BYTES),
            stats: Arc::clone(&stats),
            next_connection: AtomicU64::new(1),
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
                    accept_loop(&endpoint, context, max_connections, &thread_shutdown).await;
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
        })
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

async fn accept_loop(
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
            let ended = serve_gateway(context, id, &grant, &mut reader, &mut writer).await;
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
            let ended = serve_viewer(context, id, &grant, &mut reader, &mut writer).await;
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
    let mut per_token = context
        .per_token
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = per_token.entry(grant.name.clone()).or_insert(0);
    if *count >= context.limits.max_connections_per_token {
        return Err(Rejection::TooManyConnections {
            limit: context.limits.max_connections_per_token,
        });
    }
    *count += 1;
    Ok(())
}

/// Gives a token's connection slot back when the session ends.
struct TokenSlot<'a> {
    context: &'a Context,
    name: String,
}

impl Drop for TokenSlot<'_> {
    fn drop(&mut self) {
        let mut per_token = self
            .context
            .per_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = per_token.get_mut(&self.name) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_token.remove(&self.name);
            }
        }
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
enum SessionEnd {
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

fn read_end(err: FrameError) -> SessionEnd {
    match protocol_error_for(&err) {
        Some(error) => SessionEnd::Protocol(error),
        None if matches!(err, FrameError::Finished) => SessionEnd::PeerDone,
        None => SessionEnd::Lost(err.to_string()),
    }
}

async fn serve_gateway(
    context: &Context,
    gateway: u64,
    grant: &Grant,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
) -> SessionEnd {
    let (pending_tx, mut pending_rx) =
        mpsc::channel::<oneshot::Receiver<Result<BatchAck, ProtocolError>>>(context.gateway_window);
    let mut closing = context.closing.clone();
    let max_rate = context.limits.max_readings_per_second;
    let mut readings_allowed = Bucket::new(max_rate, max_rate);
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
                | ClientToServer::Pick(_) => {
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
            if !readings_allowed.take(batch.readings.len() as f64) {
                return SessionEnd::Protocol(ProtocolError {
                    code: ErrorCode::RateLimited,
                    detail: format!("more than {max_rate} readings per second on one connection"),
                });
            }
            // A slot in the acknowledgement pipeline bounds unacknowledged batches.
            let Ok(slot) = pending_tx.reserve().await else {
                return SessionEnd::Lost("acknowledgement writer ended".into());
            };
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
            slot.send(answer);
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

async fn serve_viewer(
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
    let mut subscriptions_allowed = Bucket::new(limits.max_subscriptions_per_second, 10.0);
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
                    // One pick at a time per viewer, like history queries.
                    let reply = match answer_pick(context, viewer, request).await {
                        Ok(reply) => reply,
                        Err(None) => break SessionEnd::ServerStopping,
                        Err(Some(error)) => ServerToViewer::Error(error),
                    };
                    if replies_tx.send(reply).await.is_err() {
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
            if !(subscribe.speed.is_finite() && subscribe.speed >= 0.0) {
                break SessionEnd::Protocol(ProtocolError {
                    code: ErrorCode::InvalidRequest,
                    detail: format!("playback speed {} is not a number >= 0", subscribe.speed),
                });
            }
            if !subscriptions_allowed.take(1.0) {
                break SessionEnd::Protocol(ProtocolError {
                    code: ErrorCode::RateLimited,
                    detail: format!(
                        "more than {} subscriptions per second",
                        limits.max_subscriptions_per_second
                    ),
                });
            }
            if subscribe.area.is_valid() && subscribe.area.area_km2() > limits.max_area_km2 {
                break SessionEnd::Protocol(ProtocolError {
                    code: ErrorCode::InvalidArea,
                    detail: format!(
                        "area of {:.1} km² exceeds the limit of {} km²",
                        subscribe.area.area_km2(),
                        limits.max_area_km2
                    ),
                });
            }
            if !subscribe.area.is_valid() {
                break SessionEnd::Protocol(ProtocolError {
                    code: ErrorCode::InvalidArea,
                    detail: format!(
                        "area {:?} is not a WGS84 box (finite, min <= max, lon in ±180, lat in ±90)",
                        subscribe.area
                    ),
                });
            }
            if subscribe.publish_interval_ms > MAX_PUBLISH_INTERVAL_MS {
                break SessionEnd::Protocol(ProtocolError {
                    code: ErrorCode::InvalidRequest,
                    detail: format!(
                        "publishing interval of {} ms exceeds the limit of {MAX_PUBLISH_INTERVAL_MS} ms",
                        subscribe.publish_interval_ms
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
    // Until when value updates wait, having last left at `sent_at`: only
    // while nothing but values is pending and the interval has not passed.
    // While they wait, further values wake nobody (`hold_values`).
    let held_until = |sent_at: Option<tokio::time::Instant>| {
        let interval_ms = publish_interval_ms.load(Ordering::Relaxed);
        let due = sent_at? + Duration::from_millis(u64::from(interval_ms));
        (interval_ms > 0 && due > tokio::time::Instant::now() && mailbox.hold_values())
            .then_some(due)
    };
    let write_side = async {
        let mut sent_at = None;
        // Everything pending was taken: wait for the twin's next change.
        let mut idle = false;
        loop {
            // Stop and replies come first on every pass, so that a mailbox
            // the twin refills faster than the stream drains it cannot
            // starve them. Held, wait for the interval's end or a change
            // that must not wait (an area change, a snapshot), then look
            // again: never wait for a change while holding, as held values
            // wake nobody. Not held, drain (which ends any hold), then wait
            // for the twin's next change: a change during the send has
            // woken this side already, and is found at once.
            let held = held_until(sent_at);
            if held.is_some() {
                // Holding: the next drain comes after this hold, so no idle
                // wait (which held values would never end) may follow it.
                idle = false;
            }
            tokio::select! {
                biased;
                _ = &mut stop_rx => return None,
                reply = replies_rx.recv() => {
                    if let Err(err) = writer.send(&reply?).await {
                        return Some(SessionEnd::Lost(err.to_string()));
                    }
                    continue;
                }
                () = ready.notified(), if held.is_some() || idle => {}
                // Built only when polled: no timer for a pass that does not hold.
                () = async move {
                    if let Some(due) = held {
                        tokio::time::sleep_until(due).await;
                    }
                }, if held.is_some() => {}
                () = std::future::ready(()), if held.is_none() && !idle => {}
            }
            // After any wait, look again (a change may be values to hold).
            if held.is_some() || std::mem::take(&mut idle) {
                continue;
            }
            let frames = mailbox.drain_frames(frame_bytes);
            idle = true;
            if frames.is_empty() {
                continue;
            }
            sent_at = Some(tokio::time::Instant::now());
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
    let (access, name) = (grant.access, grant.name.clone());
    let answer =
        tokio::task::spawn_blocking(move || service.query(viewer, access, &name, &request)).await;
    match answer {
        Ok(Ok(reply)) => ServerToViewer::History(reply),
        Ok(Err(error)) => ServerToViewer::Error(error),
        Err(_) => ServerToViewer::Error(ProtocolError {
            code: ErrorCode::Unavailable,
            detail: "history query failed".into(),
        }),
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
        ServerToViewer::Error(_) | ServerToViewer::History(_) | ServerToViewer::Pick(_) => 0,
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
