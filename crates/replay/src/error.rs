//! What can go wrong while preparing or running a replay.

use std::time::Duration;

use polis_net::ClientError;
use polis_protocol::{ProtocolError, Role};

/// Why a replay could not be prepared or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A bundled data file does not have the expected shape. The files are
    /// committed with the crate, so this is a bug in the repository.
    #[error("bundled data `{file}`, line {line}: {message}")]
    Data {
        /// The data file, relative to the repository's `assets/`.
        file: &'static str,
        /// One-based line in the file (1 is the header).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The replay options cannot be used (zero interval, non-positive speed,
    /// ...).
    #[error("invalid replay options: {0}")]
    Options(String),
    /// The client options ask for another role than gateway.
    #[error("replay pushes readings and needs the gateway role, not `{}`", .0.as_str())]
    NotGateway(Role),
    /// Connecting, or a frame on the connection, failed; also a lost
    /// connection.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server answered a batch with a protocol error.
    #[error("server reported an error: {0}")]
    Server(ProtocolError),
    /// The server acknowledged batches out of order.
    #[error("server acknowledged batch {got} but {expected} was next")]
    AckOutOfOrder {
        /// The sequence number the replay waited for.
        expected: u64,
        /// The one the server acknowledged.
        got: u64,
    },
    /// The server kept the connection open but did not acknowledge a batch
    /// in time; treated as a lost connection.
    #[error("no acknowledgement of batch {seq} within {waited:?}")]
    AckTimeout {
        /// The batch waited for.
        seq: u64,
        /// How long.
        waited: Duration,
    },
}
