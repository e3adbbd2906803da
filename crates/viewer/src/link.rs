//! The viewer's connection: a tokio thread that keeps a session to the
//! server, reconnecting when it is lost, with bounded channels to the ECS.

use std::time::Duration;

use bevy::prelude::*;
use polis_net::{ClientError, ClientOptions, Session};
use polis_protocol::{ClientToServer, Rejection, Role, ServerToViewer, Welcome};
use tokio::sync::mpsc;

/// Frames buffered between the connection and the ECS; when full, the
/// connection stops reading and QUIC flow control makes the server coalesce.
const EVENT_CAPACITY: usize = 256;
/// Requests buffered towards the server; more are refused (and retried by
/// the system that made them).
const COMMAND_CAPACITY: usize = 16;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the connection tells the ECS.
#[derive(Debug)]
pub enum LinkEvent {
    /// Trying to connect (attempt number, from 1).
    Connecting(u32),
    /// Connected and welcomed; the ECS (re)subscribes.
    Connected(Box<Welcome>),
    /// The connection failed or was lost; retrying.
    Lost(String),
    /// The server refused us for a reason retrying will not fix.
    Refused(String),
    /// A frame from the server.
    Frame(Box<ServerToViewer>),
}

/// Connection state as the status line shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    /// Connecting (attempt, last error if any).
    Connecting(u32, Option<String>),
    /// Connected to a server serving this scene.
    Connected(String),
    /// Refused for good (wrong token, version).
    Refused(String),
}

/// The ECS side of the connection.
#[derive(Resource)]
pub struct Link {
    /// The server's address, for messages.
    pub server: String,
    commands: mpsc::Sender<ClientToServer>,
    events: mpsc::Receiver<LinkEvent>,
    /// What the status line shows.
    pub state: LinkState,
    /// The latest welcome (georeference of the scene).
    pub welcome: Option<Welcome>,
}

impl Link {
    /// Starts the connection thread.
    pub fn start(options: ClientOptions) -> std::io::Result<Link> {
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let server = options.server.clone();
        std::thread::Builder::new()
            .name("polis-viewer-net".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = events_tx
                            .blocking_send(LinkEvent::Refused(format!("no async runtime: {err}")));
                        return;
                    }
                };
                runtime.block_on(keep_connected(options, commands_rx, events_tx));
            })?;
        Ok(Link {
            server,
            commands: commands_tx,
            events: events_rx,
            state: LinkState::Connecting(1, None),
            welcome: None,
        })
    }

    /// Queues a request; false when not connected or the queue is full.
    pub fn send(&self, message: ClientToServer) -> bool {
        matches!(self.state, LinkState::Connected(_)) && self.commands.try_send(message).is_ok()
    }

    /// The next event, if one is waiting.
    pub fn try_next(&mut self) -> Option<LinkEvent> {
        self.events.try_recv().ok()
    }
}

/// Whether a failure will not go away by retrying.
fn is_permanent(error: &ClientError) -> bool {
    match error {
        ClientError::Rejected(rejection) => matches!(
            rejection,
            Rejection::UnknownToken
                | Rejection::RoleNotAllowed { .. }
                | Rejection::VersionMismatch { .. }
        ),
        ClientError::Tls(_) => true,
        _ => false,
    }
}

fn explain(error: &ClientError, server: &str) -> String {
    match error {
        ClientError::Rejected(Rejection::UnknownToken) => {
            "the server does not know this token: check --token (e.g. polis-data/planner.token)"
                .into()
        }
        ClientError::Connect { .. } => format!(
            "cannot reach a Polis server at {server}: check --server and that `polis serve` runs ({error})"
        ),
        ClientError::Resolve { .. } => format!("cannot resolve --server {server}: {error}"),
        ClientError::Tls(_) => format!("certificate problem (check --cert): {error}"),
        _ => error.to_string(),
    }
}

async fn keep_connected(
    options: ClientOptions,
    mut commands: mpsc::Receiver<ClientToServer>,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut attempt = 0u32;
    let mut backoff = Duration::from_millis(250);
    loop {
        attempt += 1;
        if events.send(LinkEvent::Connecting(attempt)).await.is_err() {
            return;
        }
        let mut session = match Session::connect(&options).await {
            Ok(session) => session,
            Err(error) => {
                let message = explain(&error, &options.server);
                let permanent = is_permanent(&error);
                let event = if permanent {
                    LinkEvent::Refused(message)
                } else {
                    LinkEvent::Lost(message)
                };
                if events.send(event).await.is_err() || permanent {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        attempt = 0;
        backoff = Duration::from_millis(250);
        // Requests made while disconnected are stale.
        while commands.try_recv().is_ok() {}
        let welcome = Box::new(session.welcome().clone());
        if events.send(LinkEvent::Connected(welcome)).await.is_err() {
            session.close().await;
            return;
        }
        let lost = loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else {
                        session.close().await;
                        return;
                    };
                    if let Err(err) = session.send(&command).await {
                        break err.to_string();
                    }
                }
                // Cancel-safe: a frame is either whole or stays buffered.
                frame = session.recv::<ServerToViewer>() => match frame {
                    Ok(frame) => {
                        if events.send(LinkEvent::Frame(Box::new(frame))).await.is_err() {
                            session.close().await;
                            return;
                        }
                    }
                    Err(err) => break err.to_string(),
                }
            }
        };
        if events
            .send(LinkEvent::Lost(format!(
                "connection to {} lost: {lost}",
                options.server
            )))
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Options for a viewer session.
pub fn options(server: &str, cert: &std::path::Path, token: &str) -> ClientOptions {
    let mut options = ClientOptions::new(server, cert, token, Role::Viewer);
    options.client_name = format!("polis-viewer/{}", env!("CARGO_PKG_VERSION"));
    options
}
