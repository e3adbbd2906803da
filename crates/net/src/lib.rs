//! QUIC edge of Polis: the server endpoint on its own tokio thread, bounded channels to the twin, and the client used by push and watch.
//!
//! The server side runs quinn on a dedicated, named thread with a tokio
//! runtime. Everything it learns goes to the twin through one **bounded**
//! channel of [`NetEvent`]s, which the world drains once per tick; a full
//! channel slows the sending gateway down (QUIC flow control), never the
//! world. Acknowledgements come back on one-shot channels, and each viewer's
//! changes through its coalescing [`polis_protocol::SharedMailbox`], so a
//! slow viewer never holds up the tick or anyone else.
//!
//! The client side ([`Session`]) is what `polis push`, `polis watch` and the
//! tests use: connect, handshake, then typed frames.

mod client;
mod framing;
mod gateway;
mod server;
mod tls;
mod woken;

pub use client::{ClientError, ClientOptions, Session};
pub use framing::FrameError;
pub use gateway::{GatewayClient, GatewayOptions};
pub use server::{
    Grant, HistoryService, IngestPort, LOG_DETAIL_MAX_CHARS, LOG_NAME_MAX_CHARS, LogLimiter,
    LogSource, LogText, LogVerdict, NetEvent, NetServer, NetServerConfig, NetStats, ResidentAnswer,
    ResidentService, ServerError, ServerInfo, SessionLimits, TokenDirectory,
};
pub use tls::{
    ServerIdentity, TlsError, client_crypto, load_certificates, load_or_create_identity,
};

/// QUIC application close codes used by Polis.
pub mod close_code {
    /// Normal close by either side.
    pub const DONE: u32 = 0;
    /// The handshake was rejected (reason sent in a frame first).
    pub const REJECTED: u32 = 1;
    /// The peer broke the protocol (error sent in a frame first).
    pub const PROTOCOL_ERROR: u32 = 2;
    /// The server is shutting down.
    pub const SHUTTING_DOWN: u32 = 3;
}
