//! A small HTTP/1.1 endpoint for operators: `/healthz`, `/readyz`, `/metrics`.
//!
//! It answers `GET` only, reads at most a few KiB per request, gives each
//! connection a few seconds, and runs on its own `polis-http` thread so it
//! answers while the scene loads and however busy the twin is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tracing::{debug, info};

use crate::metrics::{Observed, render_prometheus};

/// Largest request head read, bytes.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request and read the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most requests answered at once; further connections wait in the backlog.
const MAX_CONCURRENT: usize = 64;

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
            .name("polis-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    serve(listener, observed, &thread_shutdown).await;
                });
            })
            .context("cannot start the HTTP thread")?;
        info!(addr = %local_addr, "HTTP endpoint for /healthz, /readyz, /metrics");
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

async fn serve(listener: tokio::net::TcpListener, observed: Arc<Observed>, shutdown: &Notify) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.notified() => return,
        };
        let Ok((stream, remote)) = accepted else {
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let observed = Arc::clone(&observed);
        tokio::spawn(async move {
            if let Err(err) = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &observed)).await
            {
                debug!(%remote, "HTTP request timed out: {err}");
            }
            drop(slot);
        });
    }
}

/// A response: status line, content type, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

/// Decides the response to a request head (pure; the tests drive it).
fn respond(head: &str, observed: &Observed) -> Response {
    let text = |status, body: &str| Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.to_owned(),
    };
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return text("405 Method Not Allowed", "only GET is supported\n");
    }
    match path {
        "/healthz" => text("200 OK", "ok\n"),
        "/readyz" => {
            if observed.ready.load(Ordering::Relaxed) {
                text("200 OK", "ready\n")
            } else if observed.scene.get().is_none() {
                text("503 Service Unavailable", "loading scene\n")
            } else {
                text("503 Service Unavailable", "starting\n")
            }
        }
        "/metrics" => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: render_prometheus(observed),
        },
        _ => text("404 Not Found", "try /healthz, /readyz or /metrics\n"),
    }
}

async fn answer(mut stream: tokio::net::TcpStream, observed: &Observed) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
        if head.len() > MAX_REQUEST_BYTES {
            let reply = "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
            stream.write_all(reply.as_bytes()).await?;
            return stream.shutdown().await;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let response = respond(&head, observed);
    let is_head = head.starts_with("HEAD ");
    let reply = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    if !is_head {
        stream.write_all(response.body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SceneFacts;

    #[test]
    fn readiness_follows_the_server_state() {
        let observed = Observed::default();
        assert_eq!(
            respond("GET /healthz HTTP/1.1\r\n", &observed).status,
            "200 OK"
        );
        let loading = respond("GET /readyz HTTP/1.1\r\n", &observed);
        assert_eq!(loading.status, "503 Service Unavailable");
        assert_eq!(loading.body, "loading scene\n");
        let _ = observed.scene.set(SceneFacts {
            name: "tiny".into(),
            assets: 8,
            sensors: 12,
        });
        assert_eq!(
            respond("GET /readyz HTTP/1.1\r\n", &observed).body,
            "starting\n"
        );
        observed.ready.store(true, Ordering::Relaxed);
        assert_eq!(
            respond("GET /readyz HTTP/1.1\r\n", &observed).status,
            "200 OK"
        );
        assert_eq!(
            respond("POST /readyz HTTP/1.1\r\n", &observed).status,
            "405 Method Not Allowed"
        );
        assert_eq!(
            respond("GET /nope HTTP/1.1\r\n", &observed).status,
            "404 Not Found"
        );
        let metrics = respond("GET /metrics HTTP/1.1\r\n", &observed);
        assert!(
            metrics.body.contains("polis_scene_sensors 12\n"),
            "{}",
            metrics.body
        );
    }
}
