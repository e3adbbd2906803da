//! The HTTP endpoint for operators: `/healthz`, `/readyz`, `/metrics`.
//!
//! The routes are an axum `Router` ([`ops_router`]); [`HttpEndpoint::serve`]
//! serves any router with hyper's HTTP/1.1 connection builder on its own
//! `polis-http` thread, so it answers while the scene loads and however busy
//! the twin is. A later API adds its routes by merging its router into the
//! operator one before serving, and gets the same limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::prometheus_text;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, info};

use crate::metrics::{Observed, render_prometheus};

/// Largest request head read, bytes (hyper's minimum buffer cap).
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request and read the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once; further connections wait in the backlog.
const MAX_CONCURRENT: usize = 64;
/// Time the connections under way have to finish once the endpoint stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The running endpoint; dropping it stops it.
pub struct HttpEndpoint {
    local_addr: SocketAddr,
    shutdown: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl HttpEndpoint {
    /// Binds `listen` and serves `observed` on the `polis-http` thread.
    pub fn start(listen: SocketAddr, observed: Arc<Observed>) -> anyhow::Result<HttpEndpoint> {
        let endpoint = HttpEndpoint::serve(listen, ops_router(observed))?;
        info!(addr = %endpoint.local_addr, "HTTP endpoint for /healthz, /readyz, /metrics");
        Ok(endpoint)
    }

    /// Binds `listen` and serves `router` on the `polis-http` thread (a
    /// current-thread tokio runtime), within limits fit for any client on
    /// the network:
    ///
    /// - a request head over 8 KiB is answered `431 Request Header Fields
    ///   Too Large` by hyper, whose read buffer is capped at that size
    ///   (`max_buf_size`; hyper refuses more than 100 header fields the
    ///   same way);
    /// - a client has 5 s to send its head (hyper's `header_read_timeout`)
    ///   and, in all, to be answered, after which its connection is dropped;
    /// - one request per connection (`Connection: close`), and at most 64
    ///   connections at once: further ones wait in the listen backlog.
    ///
    /// Dropping the endpoint stops accepting and gives the answers under way
    /// up to a second to finish before the thread ends.
    pub fn serve(listen: SocketAddr, router: Router) -> anyhow::Result<HttpEndpoint> {
        HttpEndpoint::serve_named(listen, router, "polis-http")
    }

    /// [`HttpEndpoint::serve`] on a thread named `thread_name`.
    pub(crate) fn serve_named(
        listen: SocketAddr,
        router: Router,
        thread_name: &str,
    ) -> anyhow::Result<HttpEndpoint> {
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot listen for HTTP on {listen}"))?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let shutdown = Arc::new(Notify::new());
        let thread_shutdown = Arc::clone(&shutdown);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    accept(listener, router, &thread_shutdown).await;
                });
            })
            .context("cannot start the HTTP thread")?;
        Ok(HttpEndpoint {
            local_addr,
            shutdown,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HttpEndpoint {
    fn drop(&mut self) {
        self.shutdown.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until `shutdown`, then waits a little for those
/// under way.
async fn accept(listener: tokio::net::TcpListener, router: Router, shutdown: &Notify) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BYTES)
        .keep_alive(false);
    loop {
        // A free slot first, so that excess connections wait in the backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = shutdown.notified() => break,
        };
        let Ok(slot) = slot else {
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.notified() => break,
        };
        let Ok((stream, remote)) = accepted else {
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, connection).await {
                Err(_) => debug!(%remote, "HTTP request timed out"),
                Ok(Err(err)) => debug!(%remote, "HTTP connection failed: {err}"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("HTTP connections still open at shutdown dropped");
    }
}

/// The operator routes: `GET` (and `HEAD`) `/healthz`, `/readyz` and
/// `/metrics`; other methods get 405 with `Allow`, other paths 404. No
/// answer is cached.
pub(crate) fn ops_router(observed: Arc<Observed>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Applies to the routes above: keep it after them.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(observed)
        .layer(axum::middleware::map_response(no_store))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(observed): State<Arc<Observed>>) -> (StatusCode, &'static str) {
    if observed.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else if observed.scene.get().is_none() {
        (StatusCode::SERVICE_UNAVAILABLE, "loading scene\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(observed): State<Arc<Observed>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        render_prometheus(&observed),
    )
}

async fn method_not_allowed() -> (StatusCode, &'static str) {
    (StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n")
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "try /healthz, /readyz or /metrics\n")
}

async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt as _;

    use super::*;
    use crate::metrics::SceneFacts;

    /// Answers one request with the operator routes: status, headers, body.
    async fn ask(observed: &Arc<Observed>, method: Method, path: &str) -> (StatusCode, Response) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let response = ops_router(Arc::clone(observed))
            .oneshot(request)
            .await
            .expect("infallible");
        (response.status(), response)
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn readiness_follows_the_server_state() {
        let observed = Arc::new(Observed::default());
        let (status, healthz) = ask(&observed, Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(healthz.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(body(healthz).await, "ok\n");
        let (status, loading) = ask(&observed, Method::GET, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(loading).await, "loading scene\n");
        let _ = observed.scene.set(SceneFacts {
            name: "tiny".into(),
            assets: 8,
            sensors: 12,
        });
        let (_, starting) = ask(&observed, Method::GET, "/readyz").await;
        assert_eq!(body(starting).await, "starting\n");
        observed.ready.store(true, Ordering::Relaxed);
        let (status, ready) = ask(&observed, Method::GET, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body(ready).await, "ready\n");

        let (status, refused) = ask(&observed, Method::POST, "/readyz").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()[header::ALLOW], "GET,HEAD");
        assert_eq!(refused.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(body(refused).await, "only GET is supported\n");
        let (status, missing) = ask(&observed, Method::GET, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(body(missing).await, "try /healthz, /readyz or /metrics\n");

        let (status, metrics) = ask(&observed, Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            metrics.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = body(metrics).await;
        assert!(text.contains("polis_scene_sensors 12\n"), "{text}");
        let (status, head) = ask(&observed, Method::HEAD, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body(head).await, "");
    }

    /// Sends `request` to `addr` as raw bytes and returns the whole answer.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = std::net::TcpStream::connect(addr).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // The server may answer and close before reading all of a long head.
        let _ = stream.write_all(request);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[test]
    fn the_endpoint_bounds_heads_and_closes_after_each_answer() {
        let endpoint = HttpEndpoint::start(
            "127.0.0.1:0".parse().expect("address"),
            Arc::new(Observed::default()),
        )
        .expect("starts");
        let addr = endpoint.local_addr();

        // Answered, then closed: reading to the end returns.
        let answer = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: polis\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");

        let answer = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: polis\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(
            answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{answer}"
        );
        assert!(answer.contains("allow: GET,HEAD\r\n"), "{answer}");

        let padding = "x".repeat(MAX_REQUEST_BYTES);
        let oversized = format!("GET /healthz HTTP/1.1\r\nHost: polis\r\nX-Pad: {padding}\r\n\r\n");
        let answer = exchange(addr, oversized.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{answer}"
        );

        // Dropping stops the endpoint: the port no longer answers.
        drop(endpoint);
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_silent_client_delays_the_stop_by_the_grace_only() {
        let endpoint = HttpEndpoint::start(
            "127.0.0.1:0".parse().expect("address"),
            Arc::new(Observed::default()),
        )
        .expect("starts");
        let mut silent = std::net::TcpStream::connect(endpoint.local_addr()).expect("connects");
        // Half a head: the connection is under way when the endpoint stops.
        silent
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .expect("sent");
        std::thread::sleep(Duration::from_millis(100));
        let stopping = std::time::Instant::now();
        drop(endpoint);
        let took = stopping.elapsed();
        assert!(
            took >= SHUTDOWN_GRACE && took < REQUEST_TIMEOUT,
            "stopped after {took:?}"
        );
    }
}
