//! What an attacker on the network must not achieve: lock others out with
//! half-open handshakes or a shared token, make the server buffer much before
//! it knows who is talking, or forge and flood its log. Raw quinn clients
//! stand in for the attacker; a normal client must still get its Welcome.
//!
//! Linux routes all of 127.0.0.0/8 to the loopback interface, so clients
//! bound to 127.0.0.2 and up act as other source addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use polis_e2e::*;
use polis_net::{ClientError, Session};
use polis_protocol::{
    ErrorCode, FrameDecoder, Hello, HelloReply, PROTOCOL_VERSION, Rejection, Role, encode_frame,
};

/// Generous bound for anything that should happen at once.
const PROMPT: Duration = Duration::from_secs(5);

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A QUIC connection from `from` that completes TLS and does nothing else.
async fn raw_connection(
    server: &TestServer,
    from: IpAddr,
) -> Result<(quinn::Endpoint, quinn::Connection), quinn::ConnectionError> {
    let crypto = polis_net::client_crypto(&server.cert).expect("certificate");
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).expect("quic crypto");
    let mut endpoint =
        quinn::Endpoint::client(SocketAddr::new(from, 0)).expect("client endpoint binds");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let addr: SocketAddr = server.addr.parse().expect("server address");
    let connection = endpoint
        .connect(addr, "localhost")
        .expect("connect starts")
        .await?;
    Ok((endpoint, connection))
}

/// Sends `bytes` as the first thing on a new stream and reads the server's
/// first answer.
async fn first_answer(connection: &quinn::Connection, bytes: &[u8]) -> HelloReply {
    let (mut send, mut recv) = connection.open_bi().await.expect("stream opens");
    send.write_all(bytes).await.expect("hello sent");
    let mut decoder = FrameDecoder::default();
    loop {
        if let Some(reply) = decoder
            .next_message::<HelloReply>()
            .expect("a valid answer")
        {
            return reply;
        }
        let chunk = recv
            .read_chunk(64 * 1024, true)
            .await
            .expect("stream readable")
            .expect("an answer before the end of the stream");
        decoder.push(&chunk.bytes);
    }
}

fn hello_frame(role: Role, token: &str, client: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_frame(
        &Hello {
            protocol_version: PROTOCOL_VERSION,
            role,
            token: token.into(),
            client: client.into(),
        },
        &mut bytes,
    )
    .expect("hello encodes");
    bytes
}

/// A viewer handshake from `from` with `token`.
async fn hello_from(server: &TestServer, from: IpAddr, token: &str) -> HelloReply {
    let (_endpoint, connection) = raw_connection(server, from).await.expect("connects");
    tokio::time::timeout(
        PROMPT,
        first_answer(
            &connection,
            &hello_frame(Role::Viewer, token, "lockout-test"),
        ),
    )
    .await
    .expect("answered promptly")
}

/// Longest a fresh viewer may take, during a flood, from connecting to its
/// first live value (the bound; on loopback it takes milliseconds).
const FIRST_VALUE: Duration = Duration::from_secs(1);

/// A fresh operator viewer (token `VIEWER_TOKEN`, from 127.0.0.1) connects,
/// subscribes and receives a value a gateway pushes: returns how long that
/// took from the start of its connection.
async fn fresh_viewer_first_value(server: &TestServer) -> Duration {
    let mut gateway = server.gateway().await;
    let started = Instant::now();
    let mut viewer = server.viewer_with(VIEWER_TOKEN, west(), vec![]).await;
    viewer.until(PROMPT, |v| v.snapshots_complete >= 1).await;
    let ack = gateway
        .push(vec![reading("meter-b-west-2", 1_000, 42.5)])
        .await;
    assert_eq!(ack.accepted, 1);
    viewer
        .until(PROMPT, |v| {
            v.values.get("meter-b-west-2") == Some(&(1_000, 42.5))
        })
        .await;
    started.elapsed()
}

/// Everything the process logs as text, from the first call on.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    Arc::clone(LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .try_init();
        log
    }))
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_names_in_a_wrong_token_flood_neither_forge_nor_flood_the_log() {
    let log = captured_log();
    let server = TestServer::start();
    let forged = format!(
        "x\n2026-12-03T11:00:00.000000Z  INFO polis_server: forged line\x1b[2J{}",
        "y".repeat(3_000)
    );
    let attempts = 60;
    for _ in 0..attempts {
        let frame = hello_frame(Role::Viewer, "not-a-token-of-this-server", &forged);
        let (_endpoint, connection) = raw_connection(&server, loopback(1))
            .await
            .expect("connects");
        let reply = tokio::time::timeout(PROMPT, first_answer(&connection, &frame))
            .await
            .expect("answered promptly");
        assert!(
            matches!(reply, HelloReply::Rejected(Rejection::UnknownToken)),
            "{reply:?}"
        );
    }
    // The server keeps serving everyone else.
    let session = tokio::time::timeout(
        PROMPT,
        Session::connect(&server.options(Role::Viewer, PUBLIC_TOKEN)),
    )
    .await
    .expect("connects promptly");
    assert!(session.is_ok(), "{session:?}");

    let text = String::from_utf8_lossy(
        &log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    assert!(!text.contains('\x1b'), "an escape reached the log");
    for line in text.lines() {
        assert!(
            !line.contains("forged line") || line.contains("handshake rejected"),
            "a forged line reached the log: {line}"
        );
    }
    let warnings = text
        .lines()
        .filter(|line| line.contains("handshake rejected") && line.contains("forged line"))
        .count();
    assert!(
        (1..=3).contains(&warnings),
        "{attempts} rejections should be summarised, got {warnings} lines"
    );
    assert!(
        text.lines().all(|line| line.len() < 2_000),
        "a client's long name was written in full"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_client_cannot_make_the_server_buffer_much() {
    let server = TestServer::start();
    let (_endpoint, connection) = raw_connection(&server, loopback(1))
        .await
        .expect("connects");
    // A hello frame that says it is 4 KiB long and then never ends: the
    // server waits for the rest of it, and QUIC flow control lets the
    // client send no more than the small pre-authentication window.
    let (mut send, _recv) = connection.open_bi().await.expect("stream opens");
    let mut written = 0usize;
    let header = 4_000u32.to_le_bytes();
    send.write_all(&header).await.expect("header sent");
    let chunk = vec![b'A'; 1_024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while written < 1 << 20 {
        match tokio::time::timeout_at(deadline, send.write(&chunk)).await {
            Ok(Ok(n)) => written += n,
            // Blocked by flow control (or closed by the server): done.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    assert!(
        written <= 16 * 1024,
        "the client could send {written} B before authenticating"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_announcing_a_mebibyte_is_refused_at_once() {
    let server = TestServer::start();
    let (_endpoint, connection) = raw_connection(&server, loopback(1))
        .await
        .expect("connects");
    // A header announcing 1 MiB and the first few KiB of it.
    let mut bytes = (1u32 << 20).to_le_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(b'A', 8 * 1024));
    let started = Instant::now();
    let reply = tokio::time::timeout(PROMPT, first_answer(&connection, &bytes))
        .await
        .expect("answered promptly");
    let HelloReply::Error(error) = reply else {
        panic!("expected an error, got {reply:?}");
    };
    assert_eq!(error.code, ErrorCode::FrameTooLarge, "{error:?}");
    let closed = tokio::time::timeout(PROMPT, connection.closed())
        .await
        .expect("closed promptly");
    assert!(
        matches!(
            &closed,
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code == quinn::VarInt::from_u32(polis_net::close_code::PROTOCOL_ERROR)
        ),
        "{closed:?}"
    );
    assert!(started.elapsed() < PROMPT);

    // A normal client still connects.
    let session = tokio::time::timeout(
        PROMPT,
        Session::connect(&server.options(Role::Gateway, GATEWAY_TOKEN)),
    )
    .await
    .expect("connects promptly");
    assert!(session.is_ok(), "{session:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshakes_from_one_address_lock_out_neither_it_nor_others() {
    let server = TestServer::start();
    // Many connections from one address (127.0.0.3) that complete TLS and
    // never send their hello: beyond its bound of handshakes in progress,
    // it is refused.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        match raw_connection(&server, loopback(3)).await {
            Ok(connection) => held.push(connection),
            Err(_) => refused += 1,
        }
    }
    assert!(
        held.len() <= 16 && refused >= 24,
        "held {}, refused {refused}",
        held.len()
    );
    // A fresh client from another address gets its Welcome at once.
    let started = Instant::now();
    let reply = hello_from(&server, loopback(2), VIEWER_TOKEN).await;
    assert!(matches!(reply, HelloReply::Welcome(_)), "{reply:?}");
    assert!(started.elapsed() < PROMPT);
    // And a viewer with another token from yet another address gets its
    // first value within a second.
    let took = fresh_viewer_first_value(&server).await;
    assert!(took < FIRST_VALUE, "first value after {took:?}");

    assert!(
        net_count(&server, |net| &net
            .connections_refused_handshakes_per_address)
            >= 24
    );
    let metrics = polis_server::render_prometheus(server.server.observed());
    assert!(
        metrics.contains("polis_connections_refused_total{reason=\"handshakes_per_address\"}"),
        "{metrics}"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_half_open_handshakes_make_new_clients_prove_their_address() {
    let server = TestServer::start();
    // 16 from each of five addresses: more than the 64 handshakes in
    // progress above which unvalidated addresses get a QUIC retry first.
    let mut held = Vec::new();
    for last in 3..=7 {
        for _ in 0..16 {
            held.push(
                raw_connection(&server, loopback(last))
                    .await
                    .expect("within the per-address bound"),
            );
        }
    }
    // A fresh client passes the retry and gets its Welcome.
    let reply = hello_from(&server, loopback(9), VIEWER_TOKEN).await;
    assert!(matches!(reply, HelloReply::Welcome(_)), "{reply:?}");
    assert!(net_count(&server, |net| &net.handshakes_retried) >= 1);
    let took = fresh_viewer_first_value(&server).await;
    assert!(took < FIRST_VALUE, "first value after {took:?}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_use_up_a_shared_token() {
    let server = TestServer::start_configured(tiny(), |config| {
        config.limits.max_connections_per_token_per_address = 3;
    });
    let mut held = Vec::new();
    for _ in 0..3 {
        let session = Session::connect(&server.options(Role::Viewer, PUBLIC_TOKEN))
            .await
            .expect("within the per-address limit");
        held.push(session);
    }
    let refused = Session::connect(&server.options(Role::Viewer, PUBLIC_TOKEN)).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Rejected(Rejection::TooManyConnections {
                limit: 3
            }))
        ),
        "{refused:?}"
    );
    // The same token from another address still gets in.
    let reply = hello_from(&server, loopback(2), PUBLIC_TOKEN).await;
    assert!(matches!(reply, HelloReply::Welcome(_)), "{reply:?}");
    // A viewer with another token from the flooding address gets its first
    // value within a second.
    let took = fresh_viewer_first_value(&server).await;
    assert!(took < FIRST_VALUE, "first value after {took:?}");
    drop(held);
}

/// A counter of the server's network edge.
fn net_count(
    server: &TestServer,
    counter: impl Fn(&polis_net::NetStats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    let net = server
        .server
        .observed()
        .net
        .get()
        .expect("network edge started");
    counter(net).load(std::sync::atomic::Ordering::Relaxed)
}
