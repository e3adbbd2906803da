//! The client side: connect, handshake, exchange typed frames.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use polis_protocol::{
    Hello, HelloReply, PROTOCOL_VERSION, ProtocolError, Rejection, Role, Welcome,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::close_code;
use crate::framing::{FrameError, FrameReader, FrameWriter};
use crate::tls::{TlsError, client_crypto};

/// A client gives up on a silent server after this long.
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach and authenticate with a server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `HOST:PORT` of the server.
    pub server: String,
    /// PEM file with the server's certificate (printed and written by `polis serve`).
    pub cert: PathBuf,
    /// The secret token.
    pub token: String,
    /// The role to ask for.
    pub role: Role,
    /// Client name for the server's logs.
    pub client_name: String,
    /// Protocol version to announce (tests of version checks change it).
    pub protocol_version: u16,
}

impl ClientOptions {
    /// Options for `role` with the current protocol version.
    pub fn new(
        server: impl Into<String>,
        cert: impl Into<PathBuf>,
        token: impl Into<String>,
        role: Role,
    ) -> Self {
        Self {
            server: server.into(),
            cert: cert.into(),
            token: token.into(),
            role,
            client_name: format!("polis-net/{}", env!("CARGO_PKG_VERSION")),
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// Why a client session failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address could not be resolved.
    #[error("cannot resolve server address `{server}`: {detail}")]
    Resolve {
        /// The address given.
        server: String,
        /// Why.
        detail: String,
    },
    /// The certificate file could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No QUIC connection could be made.
    #[error("cannot connect to {server}: {detail}")]
    Connect {
        /// The address given.
        server: String,
        /// Why.
        detail: String,
    },
    /// The server refused the handshake.
    #[error("server refused the connection: {0}")]
    Rejected(Rejection),
    /// The server reported a protocol error.
    #[error("server reported an error: {0}")]
    Server(ProtocolError),
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A connected, authenticated session on one bidirectional stream.
#[derive(Debug)]
pub struct Session {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    reader: FrameReader,
    writer: FrameWriter,
    welcome: Welcome,
}

fn server_name(server: &str) -> String {
    let host = match server.rsplit_once(':') {
        Some((host, _port)) => host,
        None => server,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

impl Session {
    /// Connects, verifies the server's certificate against `options.cert`,
    /// and performs the handshake.
    pub async fn connect(options: &ClientOptions) -> Result<Session, ClientError> {
        let crypto = client_crypto(&options.cert)?;
        let quic_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|err| TlsError::Rustls(rustls::Error::General(err.to_string())))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic_crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(CLIENT_IDLE_TIMEOUT / 3))
            .max_idle_timeout(quinn::IdleTimeout::try_from(CLIENT_IDLE_TIMEOUT).ok());
        config.transport_config(Arc::new(transport));

        let resolve_error = |detail: String| ClientError::Resolve {
            server: options.server.clone(),
            detail,
        };
        let addr: SocketAddr = tokio::net::lookup_host(&options.server)
            .await
            .map_err(|err| resolve_error(err.to_string()))?
            .next()
            .ok_or_else(|| resolve_error("no address found".into()))?;
        let connect_error = |detail: String| ClientError::Connect {
            server: options.server.clone(),
            detail,
        };
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| connect_error("bad bind address".into()))?
        } else {
            "[::]:0"
                .parse()
                .map_err(|_| connect_error("bad bind address".into()))?
        };
        let mut endpoint = client_endpoint(bind).map_err(|err| connect_error(err.to_string()))?;
        endpoint.set_default_client_config(config);
        let connection = endpoint
            .connect(addr, &server_name(&options.server))
            .map_err(|err| connect_error(err.to_string()))?
            .await
            .map_err(|err| match err {
                quinn::ConnectionError::TimedOut => {
                    connect_error("no answer (is the server running at this address?)".into())
                }
                other => connect_error(other.to_string()),
            })?;
        let (send, recv) = connection
            .open_bi()
            .await
            .map_err(|err| connect_error(err.to_string()))?;
        let mut writer = FrameWriter::new(send);
        let mut reader = FrameReader::new(recv);
        writer
            .send(&Hello {
                protocol_version: options.protocol_version,
                role: options.role,
                token: options.token.clone(),
                client: options.client_name.clone(),
            })
            .await?;
        let welcome = match reader.next::<HelloReply>().await? {
            HelloReply::Welcome(welcome) => welcome,
            HelloReply::Rejected(rejection) => return Err(ClientError::Rejected(rejection)),
            HelloReply::Error(error) => return Err(ClientError::Server(error)),
        };
        Ok(Session {
            endpoint,
            connection,
            reader,
            writer,
            welcome,
        })
    }

    /// What the server said on acceptance.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), ClientError> {
        Ok(self.writer.send(message).await?)
    }

    /// Sends raw bytes on the stream; for testing how a server handles
    /// malformed input.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        Ok(self.writer.send_raw(bytes).await?)
    }

    /// Receives the next message.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ClientError> {
        Ok(self.reader.next::<T>().await?)
    }

    /// Ends the session cleanly: finishes the stream and closes.
    pub async fn close(mut self) {
        self.writer.finish().await;
        self.reader.stop(close_code::DONE);
        self.connection
            .close(quinn::VarInt::from_u32(close_code::DONE), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// A client endpoint for exactly one connection: its own UDP socket, and
/// zero-length connection ids for packets sent to it. The socket alone tells
/// its packets apart, so an id would only cost every packet the server sends
/// (values, acknowledgements) 8 bytes; the server's packets to a viewer are
/// most of Polis' traffic. The server keeps its own 8-byte ids, so the
/// connection still survives the client's address changing (NAT rebinding).
fn client_endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(|| Box::new(NoConnectionId));
    let socket = std::net::UdpSocket::bind(bind)?;
    quinn::Endpoint::new(
        config,
        None,
        socket,
        std::sync::Arc::new(quinn::TokioRuntime),
    )
}

/// Issues the empty connection id (see [`client_endpoint`]).
struct NoConnectionId;

impl quinn::ConnectionIdGenerator for NoConnectionId {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&[])
    }

    fn cid_len(&self) -> usize {
        0
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}
