//! Message types of the wire protocol.
//!
//! Enums are encoded by variant index: new variants are appended only, and any
//! other change bumps [`crate::PROTOCOL_VERSION`]. Every enum the server sends
//! ([`HelloReply`], [`ServerToGateway`], [`ServerToViewer`]) has `Error` as its
//! first variant, so an error frame decodes the same at any stage of a
//! conversation.

use serde::{Deserialize, Serialize};

use crate::vocab::{AssetKind, Domain, GeoBox, Georeference, Role};

use crate::readings::{BatchAck, ReadingBatch};

/// First frame of every connection, client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub protocol_version: u16,
    /// The role the client asks for; the token must grant it.
    pub role: Role,
    /// The secret token from the server's configuration.
    pub token: String,
    /// Free-form client name and version, for the server's logs.
    pub client: String,
}

/// The server's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The hello itself could not be understood (e.g. a garbage frame).
    Error(ProtocolError),
    /// The connection is accepted in the requested role.
    Welcome(Welcome),
    /// The connection is refused; the server closes it after this frame.
    Rejected(Rejection),
}

/// What a client learns on acceptance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's protocol version (equal to the client's).
    pub protocol_version: u16,
    /// Server name and version.
    pub server: String,
    /// Name of the scene being served.
    pub scene_name: String,
    /// Where the scene's local east/north/up metres sit on the Earth.
    pub georeference: Georeference,
    /// Largest frame the server accepts, bytes.
    pub max_frame_bytes: u32,
    /// Most readings the server accepts in one batch.
    pub max_readings_per_batch: u32,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// Client and server speak different protocol versions.
    VersionMismatch {
        /// The version the server speaks.
        server: u16,
        /// The version the client asked for.
        client: u16,
    },
    /// The token is not known to the server.
    UnknownToken,
    /// The token is valid but does not grant the requested role.
    RoleNotAllowed {
        /// The role the client asked for.
        requested: Role,
    },
    /// The server is at its connection limit; try again later.
    ServerBusy,
    /// This token already has as many connections as it may.
    TooManyConnections {
        /// Connections a token may have at once.
        limit: u32,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::VersionMismatch { server, client } => write!(
                f,
                "protocol version mismatch: server speaks {server}, client speaks {client}"
            ),
            Rejection::UnknownToken => write!(f, "unknown token"),
            Rejection::RoleNotAllowed { requested } => write!(
                f,
                "the token does not grant the role `{}`",
                requested.as_str()
            ),
            Rejection::ServerBusy => write!(f, "server busy: connection limit reached"),
            Rejection::TooManyConnections { limit } => {
                write!(f, "this token already has its {limit} connections")
            }
        }
    }
}

/// Frames a client sends after the handshake. Which ones are allowed depends
/// on the role granted: a gateway may only send batches, a viewer may only
/// subscribe; anything else is answered with
/// [`ErrorCode::UnexpectedMessage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientToServer {
    /// Readings to apply (gateways).
    Batch(ReadingBatch),
    /// Set or replace the area of interest (viewers).
    Subscribe(Subscribe),
    /// Ask for a sensor's recorded values (viewers).
    History(HistoryRequest),
    /// Ask what lies along a ray through the city (viewers).
    Pick(PickRequest),
    /// A data-subject request about the resident's own home (resident
    /// tokens only).
    Resident(ResidentRequest),
}

/// Frames the server sends to a gateway after the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerToGateway {
    /// The server refuses what the gateway sent; it may close afterwards.
    Error(ProtocolError),
    /// A batch was applied.
    Ack(BatchAck),
}

/// A viewer's area of interest; sending it again replaces the previous one.
///
/// Live (`at_ms: None`): a snapshot of the area's latest values, then every
/// change. Moving the area or changing layers while live sends only what
/// enters and leaves.
///
/// Time travel (`at_ms: Some(t)`): a snapshot of the area's state at device
/// time `t` (each sensor's latest recorded reading at or before `t`), then
/// the recorded changes in device-time order, played at `speed` × real time
/// (0 holds the state at `t`). Switching between live and a time, or to
/// another time, always starts with a fresh snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Client-chosen id, echoed in the snapshot that answers this subscription.
    pub subscription: u32,
    /// The area, WGS84 degrees.
    pub area: GeoBox,
    /// Layers to receive; empty means all. Buildings come with every layer.
    pub layers: Vec<Domain>,
    /// Device time to travel to, ms since the Unix epoch; `None` for live.
    pub at_ms: Option<i64>,
    /// Playback speed when travelling (simulated seconds per second, ≥ 0).
    pub speed: f32,
    /// Shortest time between two sends of value updates to this viewer, ms
    /// (one send may take several frames); 0 sends each change as soon as
    /// the twin has applied it. In between, the server coalesces: a sensor
    /// that changes several times is sent once, with its latest value.
    /// Snapshots and items entering or leaving the area are never held back,
    /// and the values held so far go with them. At most
    /// [`crate::MAX_PUBLISH_INTERVAL_MS`]. Like an OPC UA subscription's
    /// publishing interval, it lets a client trade freshness for traffic.
    pub publish_interval_ms: u32,
}

impl Subscribe {
    /// Why a server refuses this subscription, if it does: a playback speed
    /// that is not a number ≥ 0 ([`ErrorCode::InvalidRequest`]), an area that
    /// is not a WGS84 box or is larger than `max_area_km2`
    /// ([`ErrorCode::InvalidArea`]), or a publishing interval longer than
    /// [`crate::MAX_PUBLISH_INTERVAL_MS`] ([`ErrorCode::InvalidRequest`]).
    /// Checked in that order; the first problem found is returned.
    pub fn problem(&self, max_area_km2: f64) -> Option<ProtocolError> {
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            return Some(ProtocolError {
                code: ErrorCode::InvalidRequest,
                detail: format!("playback speed {} is not a number >= 0", self.speed),
            });
        }
        if !self.area.is_valid() {
            return Some(ProtocolError {
                code: ErrorCode::InvalidArea,
                detail: format!(
                    "area {:?} is not a WGS84 box (finite, min <= max, lon in ±180, lat in ±90)",
                    self.area
                ),
            });
        }
        let area_km2 = self.area.area_km2();
        if area_km2 > max_area_km2 {
            return Some(ProtocolError {
                code: ErrorCode::InvalidArea,
                detail: format!(
                    "area of {area_km2:.1} km² exceeds the limit of {max_area_km2} km²"
                ),
            });
        }
        if self.publish_interval_ms > crate::MAX_PUBLISH_INTERVAL_MS {
            return Some(ProtocolError {
                code: ErrorCode::InvalidRequest,
                detail: format!(
                    "publishing interval of {} ms exceeds the limit of {} ms",
                    self.publish_interval_ms,
                    crate::MAX_PUBLISH_INTERVAL_MS
                ),
            });
        }
        None
    }
}

/// How readings in a time bucket are combined in a [`HistoryRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aggregation {
    /// Every reading, no buckets.
    Raw,
    /// Mean of each bucket.
    Mean,
    /// Minimum of each bucket.
    Min,
    /// Maximum of each bucket.
    Max,
    /// Latest reading of each bucket.
    Last,
}

/// A viewer asks for a sensor's recorded values (e.g. for a sparkline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// Client-chosen id, echoed in the reply.
    pub request: u32,
    /// Sensor handle (from a snapshot or update).
    pub sensor: u32,
    /// From this device time (inclusive), ms since the Unix epoch.
    pub from_ms: i64,
    /// To this device time (exclusive), ms since the Unix epoch.
    pub to_ms: i64,
    /// Bucket width, ms (ignored for [`Aggregation::Raw`]).
    pub every_ms: i64,
    /// How to combine readings.
    pub aggregation: Aggregation,
}

/// One point of a [`HistoryReply`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Device time of the reading, or start of the bucket, ms since the Unix epoch.
    pub time_ms: i64,
    /// The value (or aggregate).
    pub value: f64,
    /// Readings behind the point (1 for raw readings).
    pub count: u32,
}

/// The answer to a [`HistoryRequest`], sorted by time; at most
/// [`crate::MAX_HISTORY_POINTS`] points (the latest ones when there are more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryReply {
    /// The request's id.
    pub request: u32,
    /// The sensor handle.
    pub sensor: u32,
    /// The points.
    pub points: Vec<HistoryPoint>,
    /// True when points were left out to stay within the limit.
    pub truncated: bool,
}

/// A viewer asks what lies along a ray (e.g. under the mouse pointer). The
/// server casts it against the shapes of every asset, sensor and vehicle
/// along it, so a client needs no meshes of its own to pick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickRequest {
    /// Client-chosen id, echoed in the reply.
    pub request: u32,
    /// Start of the ray, local east/north/up metres.
    pub origin_enu_m: [f32; 3],
    /// Direction of the ray (east, north, up); need not be normalised.
    pub direction_enu: [f32; 3],
    /// Length of the ray, metres (at most [`crate::MAX_PICK_DISTANCE_M`]).
    pub max_distance_m: f32,
}

impl PickRequest {
    /// Why this request cannot be answered, if it cannot: a non-finite or
    /// zero direction, a non-finite origin, or a length out of range.
    pub fn problem(&self) -> Option<String> {
        let finite = |v: &[f32; 3]| v.iter().all(|c| c.is_finite());
        if !finite(&self.origin_enu_m) {
            return Some(format!("ray origin {:?} is not finite", self.origin_enu_m));
        }
        let length_sq: f32 = self.direction_enu.iter().map(|c| c * c).sum();
        if !finite(&self.direction_enu) || !length_sq.is_finite() || length_sq <= 1e-12 {
            return Some(format!(
                "ray direction {:?} is not a finite non-zero vector",
                self.direction_enu
            ));
        }
        let in_range =
            self.max_distance_m > 0.0 && self.max_distance_m <= crate::MAX_PICK_DISTANCE_M;
        if !in_range {
            return Some(format!(
                "ray length {} m is not within (0, {}] m",
                self.max_distance_m,
                crate::MAX_PICK_DISTANCE_M
            ));
        }
        None
    }
}

/// What a pick hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PickTarget {
    /// An asset, by its handle ([`AssetInfo::handle`]).
    Asset(u32),
    /// A sensor or vehicle, by its handle ([`SensorInfo::handle`]).
    Sensor(u32),
}

/// One thing along a picked ray.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickHit {
    /// The asset or sensor hit.
    pub target: PickTarget,
    /// Its stable id from the scene.
    pub id: String,
    /// Distance from the ray's origin, metres.
    pub distance_m: f32,
}

/// The answer to a [`PickRequest`]: hits nearest first, at most
/// [`crate::MAX_PICK_HITS`]. Sensors the viewer may not see (e.g. a
/// household's meter for a public viewer) are never listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickReply {
    /// The request's id.
    pub request: u32,
    /// What lies along the ray, nearest first.
    pub hits: Vec<PickHit>,
}

/// Geometry of an asset, in the scene's local east/north/up metres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Geometry {
    /// Footprint polygon (east, north), extruded by the asset's height.
    Footprint(Vec<[f32; 2]>),
    /// Polyline (east, north).
    Line(Vec<[f32; 2]>),
    /// A point (east, north, up).
    Point([f32; 3]),
}

/// An asset as a viewer needs it to draw and label it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetInfo {
    /// Server-assigned compact handle, stable for the server's lifetime.
    pub handle: u32,
    /// Stable string id from the scene.
    pub id: String,
    /// What the asset is.
    pub kind: AssetKind,
    /// Shape in local metres.
    pub geometry: Geometry,
    /// Height above ground, metres (buildings).
    pub height_m: Option<f32>,
    /// Attributes from the scene (name, usage, class, …), sorted by key.
    pub attributes: Vec<(String, String)>,
}

/// A sensor as a viewer needs it, with its latest value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorInfo {
    /// Server-assigned compact handle used by [`ValueUpdate`].
    pub handle: u32,
    /// Stable string id from the scene.
    pub id: String,
    /// The sensor's domain (layer).
    pub domain: Domain,
    /// What it measures, e.g. `active_power`.
    pub quantity: String,
    /// Unit of its values, e.g. `kW`.
    pub unit: String,
    /// Position in local east/north/up metres.
    pub position_enu_m: [f32; 3],
    /// Handle of the asset it belongs to, if any.
    pub asset: Option<u32>,
    /// Whether readings concern a household or a person.
    pub personal: bool,
    /// Latest reading by device time, if any was received.
    pub latest: Option<ValueUpdate>,
}

/// The latest value of one sensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValueUpdate {
    /// Sensor handle from [`SensorInfo::handle`].
    pub sensor: u32,
    /// Device timestamp of the reading, ms since the Unix epoch, UTC.
    pub device_time_ms: i64,
    /// The value in the sensor's unit.
    pub value: f64,
}

/// The full state of a viewer's area after a [`Subscribe`]; large areas come
/// in several parts, the last with `complete` set. A viewer replaces its
/// whole state with the parts of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The subscription this snapshot answers.
    pub subscription: u32,
    /// Zero-based part number.
    pub part: u32,
    /// True on the last part.
    pub complete: bool,
    /// Assets in the area (in this part).
    pub assets: Vec<AssetInfo>,
    /// Sensors in the area (in this part), each with its latest value.
    pub sensors: Vec<SensorInfo>,
}

/// Changes to a viewer's area since the previous frame; values coalesce, so
/// only each sensor's latest value is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Server tick that produced the newest change in this update.
    pub tick: u64,
    /// Assets that entered the area.
    pub entered_assets: Vec<AssetInfo>,
    /// Sensors that entered the area, with their latest value.
    pub entered_sensors: Vec<SensorInfo>,
    /// Handles of assets that left the area.
    pub left_assets: Vec<u32>,
    /// Handles of sensors that left the area.
    pub left_sensors: Vec<u32>,
    /// New latest values of sensors in the area, sorted by sensor handle
    /// (any order decodes; sorted is shortest). In binary formats, one byte
    /// string of compact delta-encoded records (5–8 bytes for a typical
    /// value instead of 17), lossless for every `f64`.
    #[serde(with = "crate::compact")]
    pub values: Vec<ValueUpdate>,
}

/// A household's choices about what is derived from its sensors: whether
/// their readings may feed the aggregates planners are shown, and those the
/// public is shown. Both by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// May feed planners' aggregates.
    pub planners: bool,
    /// May feed the public's aggregates.
    pub public: bool,
}

impl Default for Consent {
    fn default() -> Self {
        Self {
            planners: true,
            public: true,
        }
    }
}

/// What a resident asks about their own home (the sensors their token is
/// bound to). Every request is written to the server's audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidentRequest {
    /// Client-chosen id, echoed in every reply frame.
    pub request: u32,
    /// What to do.
    pub action: ResidentAction,
}

/// A resident's data-subject request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResidentAction {
    /// Everything held about the home: recorded readings, the aggregates
    /// derived from them and who is shown each, every audited access.
    Export(ExportFormat),
    /// Delete the home's recorded readings, all or those with a device time
    /// before `before_ms`, from every history path at once.
    Erase {
        /// Only readings before this device time, ms since the Unix epoch.
        before_ms: Option<i64>,
    },
    /// Tell what the home consents to now.
    GetConsent,
    /// Set what the home consents to; takes effect at once on every path.
    SetConsent(Consent),
}

/// Formats of a resident's export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportFormat {
    /// One JSON document.
    Json,
    /// CSV, `record,sensor,time,value,quality,detail` (RFC 4180).
    Csv,
}

/// One frame answering a [`ResidentRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidentReply {
    /// The request's id.
    pub request: u32,
    /// What happened.
    pub outcome: ResidentOutcome,
}

/// What a resident's request did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResidentOutcome {
    /// The next part of an export, in order; `last` marks its end. The
    /// document is the concatenation of every part's bytes.
    ExportPart {
        /// Bytes of the document.
        bytes: Vec<u8>,
        /// Whether this is the export's last part.
        last: bool,
    },
    /// So many recorded readings were erased.
    Erased {
        /// Readings deleted.
        readings: u64,
    },
    /// The home's consent now (after a change, the one that took effect).
    Consent(Consent),
}

/// Frames the server sends to a viewer after the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerToViewer {
    /// The server refuses what the viewer sent; it may close afterwards.
    Error(ProtocolError),
    /// State of the area after a subscription.
    Snapshot(Snapshot),
    /// Changes since the last frame.
    Update(Update),
    /// Recorded values of a sensor, answering a [`HistoryRequest`].
    History(HistoryReply),
    /// What lies along a ray, answering a [`PickRequest`].
    Pick(PickReply),
    /// An answer to a [`ResidentRequest`] (an export comes as several).
    Resident(ResidentReply),
}

/// Kinds of protocol errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A frame could not be decoded.
    MalformedFrame,
    /// A frame exceeded [`crate::MAX_FRAME_BYTES`].
    FrameTooLarge,
    /// A well-formed message that is not allowed here (e.g. a viewer pushing).
    UnexpectedMessage,
    /// A batch held more than [`crate::MAX_READINGS_PER_BATCH`] readings.
    BatchTooLarge,
    /// A subscription's area is not a valid WGS84 box.
    InvalidArea,
    /// The server is shutting down.
    ShuttingDown,
    /// The server cannot take readings now (its history store failed);
    /// unacknowledged batches should be resent later.
    Unavailable,
    /// A request names something the viewer cannot see (e.g. a sensor
    /// handle outside its area) or asks for too much.
    InvalidRequest,
    /// The client exceeded a rate limit (readings or subscriptions per
    /// second); the server closes the connection.
    RateLimited,
}

/// A typed error with a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolError {
    /// What went wrong.
    pub code: ErrorCode,
    /// Details for logs and users.
    pub detail: String,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.detail)
    }
}

impl std::error::Error for ProtocolError {}
