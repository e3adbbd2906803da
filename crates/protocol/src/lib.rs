//! Polis wire protocol: messages, framing codec and handshake rules; no I/O.
//!
//! This crate contains no networking code, spawns no tasks and reads no clock:
//! callers feed it bytes and get messages, or give it messages and get bytes.
//! The QUIC edge (`polis-net`) and the tests drive it.
//!
//! # Shape of a conversation
//! A client opens one bidirectional QUIC stream and sends a [`Hello`] frame
//! (protocol version, role, token). The server answers [`HelloReply`]: a
//! [`Welcome`] or a [`Rejection`] with its reason. After a welcome:
//! - a **gateway** sends [`ClientToServer::Batch`] frames, each a
//!   [`ReadingBatch`] with a sequence number; the server answers each batch
//!   with a [`BatchAck`] once the batch has been applied to the twin, listing an
//!   outcome for every reading that was not accepted;
//! - a **viewer** sends [`ClientToServer::Subscribe`] (again whenever its area
//!   or layers change) and receives a [`Snapshot`] of the area, possibly in
//!   several parts, then [`Update`]s with changed values and the assets and
//!   sensors entering and leaving the area, as soon as the twin has applied
//!   them or, with a publishing interval, at most once per interval for
//!   values alone.
//!
//! Either side may send a typed [`ProtocolError`] before closing.
//!
//! Every frame is a 4-byte little-endian length followed by that many bytes of
//! [postcard](https://docs.rs/postcard)-encoded message, at most
//! [`MAX_FRAME_BYTES`].

mod codec;
mod compact;
mod handshake;
mod mailbox;
mod messages;
mod readings;
pub mod shape;
mod vocab;

pub use codec::{
    DecodeError, EncodeError, FRAME_HEADER_BYTES, FrameDecoder, decode_payload, encode_frame,
};
pub use handshake::{TokenLookup, check_hello};
pub use mailbox::{SharedMailbox, ViewerMailbox};
pub use messages::{
    Aggregation, AssetInfo, ClientToServer, Consent, ErrorCode, ExportFormat, Geometry, Hello,
    HelloReply, HistoryPoint, HistoryReply, HistoryRequest, PickHit, PickReply, PickRequest,
    PickTarget, ProtocolError, Rejection, ResidentAction, ResidentOutcome, ResidentReply,
    ResidentRequest, SensorInfo, ServerToGateway, ServerToViewer, Snapshot, Subscribe, Update,
    ValueUpdate, Welcome,
};
pub use readings::{
    BatchAck, MAX_DEVICE_TIME_MS, MIN_DEVICE_TIME_MS, NotAccepted, Quality, Reading, ReadingBatch,
    ReadingOutcome,
};
pub use vocab::{Access, AssetKind, Domain, GeoBox, GeometryClass, Georeference, Role};

/// The protocol version this crate speaks. A server refuses other versions.
pub const PROTOCOL_VERSION: u16 = 5;

/// ALPN identifier negotiated by TLS; includes the protocol generation.
pub const ALPN: &[u8] = b"polis/4";

/// Longest [`Subscribe::publish_interval_ms`] a server accepts (one minute).
pub const MAX_PUBLISH_INTERVAL_MS: u32 = 60_000;

/// Largest frame payload either side accepts, in bytes (1 MiB). Larger frames
/// are refused before any allocation.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Most points in one [`HistoryReply`].
pub const MAX_HISTORY_POINTS: usize = 10_000;

/// Most readings a single batch may carry.
pub const MAX_READINGS_PER_BATCH: usize = 10_000;

/// The quantity of transit vehicles: their distance along their route,
/// metres. Viewers and the twin turn it into a position on the route.
pub const QUANTITY_DISTANCE_ALONG_ROUTE: &str = "distance_along_route";

/// Most hits in one [`PickReply`].
pub const MAX_PICK_HITS: usize = 16;

/// Longest ray a [`PickRequest`] may cast, metres.
pub const MAX_PICK_DISTANCE_M: f32 = 100_000.0;
