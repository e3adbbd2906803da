//! The shared vocabulary of Polis: sensor domains, asset kinds and roles.
//!
//! Scene files and the wire protocol use the same names (`snake_case` in text
//! formats), so a scene written by an importer reads the same as what a viewer
//! receives.

use serde::{Deserialize, Serialize};

/// What a sensor measures, coarsely: also the viewer's layers.
///
/// New variants are only ever appended: the wire format encodes the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// Electricity: meters, photovoltaics, substations, power lines.
    Energy,
    /// Mobility: traffic counters, transit vehicles, stops.
    Transport,
    /// Water network: flow, pressure, tank levels.
    Water,
    /// Air quality, noise, weather.
    Environment,
}

impl Domain {
    /// Every domain, in wire order.
    pub const ALL: [Domain; 4] = [
        Domain::Energy,
        Domain::Transport,
        Domain::Water,
        Domain::Environment,
    ];

    /// The `snake_case` name used in scene files, CLI flags and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Energy => "energy",
            Domain::Transport => "transport",
            Domain::Water => "water",
            Domain::Environment => "environment",
        }
    }

    /// Parses the `snake_case` name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// How an asset's geometry is described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeometryClass {
    /// A closed footprint polygon extruded to a height.
    Footprint,
    /// An open polyline.
    Line,
    /// A single point.
    Point,
}

/// What a physical asset of the city is.
///
/// New variants are only ever appended: the wire format encodes the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// A building, given by its footprint and height.
    Building,
    /// A road segment (line).
    Road,
    /// A public-transport route (line through its stops).
    TransitRoute,
    /// A public-transport stop (point).
    TransitStop,
    /// A water pipe (line).
    WaterPipe,
    /// A water pump (line between two nodes, as in EPANET).
    WaterPump,
    /// A water valve (line between two nodes, as in EPANET).
    WaterValve,
    /// A water network junction (point).
    WaterJunction,
    /// A water storage tank (point).
    WaterTank,
    /// A water reservoir or source (point).
    WaterReservoir,
    /// A power line or cable (line).
    PowerLine,
    /// A substation or transformer (point).
    Substation,
}

impl AssetKind {
    /// Every kind, in wire order.
    pub const ALL: [AssetKind; 12] = [
        AssetKind::Building,
        AssetKind::Road,
        AssetKind::TransitRoute,
        AssetKind::TransitStop,
        AssetKind::WaterPipe,
        AssetKind::WaterPump,
        AssetKind::WaterValve,
        AssetKind::WaterJunction,
        AssetKind::WaterTank,
        AssetKind::WaterReservoir,
        AssetKind::PowerLine,
        AssetKind::Substation,
    ];

    /// The layer an asset of this kind belongs to; `None` for buildings, which
    /// are the base map and shown with every layer.
    pub fn domain(self) -> Option<Domain> {
        match self {
            AssetKind::Building => None,
            AssetKind::Road | AssetKind::TransitRoute | AssetKind::TransitStop => {
                Some(Domain::Transport)
            }
            AssetKind::WaterPipe
            | AssetKind::WaterPump
            | AssetKind::WaterValve
            | AssetKind::WaterJunction
            | AssetKind::WaterTank
            | AssetKind::WaterReservoir => Some(Domain::Water),
            AssetKind::PowerLine | AssetKind::Substation => Some(Domain::Energy),
        }
    }

    /// Which geometry an asset of this kind carries.
    pub fn geometry_class(self) -> GeometryClass {
        match self {
            AssetKind::Building => GeometryClass::Footprint,
            AssetKind::Road
            | AssetKind::TransitRoute
            | AssetKind::WaterPipe
            | AssetKind::WaterPump
            | AssetKind::WaterValve
            | AssetKind::PowerLine => GeometryClass::Line,
            AssetKind::TransitStop
            | AssetKind::WaterJunction
            | AssetKind::WaterTank
            | AssetKind::WaterReservoir
            | AssetKind::Substation => GeometryClass::Point,
        }
    }

    /// The `snake_case` name used in scene files and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Building => "building",
            AssetKind::Road => "road",
            AssetKind::TransitRoute => "transit_route",
            AssetKind::TransitStop => "transit_stop",
            AssetKind::WaterPipe => "water_pipe",
            AssetKind::WaterPump => "water_pump",
            AssetKind::WaterValve => "water_valve",
            AssetKind::WaterJunction => "water_junction",
            AssetKind::WaterTank => "water_tank",
            AssetKind::WaterReservoir => "water_reservoir",
            AssetKind::PowerLine => "power_line",
            AssetKind::Substation => "substation",
        }
    }
}

/// Who a connection speaks for. A token grants exactly one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A sensor gateway: may push readings, may not subscribe.
    Gateway,
    /// A viewer (3D client, `polis watch`): may subscribe, may not push.
    Viewer,
}

impl Role {
    /// The `snake_case` name used in `polis.toml` and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Viewer => "viewer",
        }
    }
}

/// What a token grants: a gateway, or a viewer with one of three levels of
/// access to personal data.
///
/// - `operator`: raw values of every sensor (each access to personal data is
///   audited);
/// - `planner`: personal sensors only as building-level aggregates;
/// - `public`: personal sensors only as aggregates over at least k of them
///   (building, else block, else district), or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// May push readings (within its scope); may not subscribe.
    Gateway,
    /// A viewer that sees raw values of personal sensors.
    Operator,
    /// A viewer that sees personal sensors as building aggregates.
    Planner,
    /// A viewer that sees personal sensors as k-anonymous aggregates
    /// (`viewer` in configuration files means this).
    #[serde(alias = "viewer")]
    Public,
    /// A household (data subject): sees what the public sees, and the raw
    /// values and history of its own home's sensors (named by its token).
    Resident,
}

impl Access {
    /// The protocol role this access is for.
    pub fn role(self) -> Role {
        match self {
            Access::Gateway => Role::Gateway,
            Access::Operator | Access::Planner | Access::Public | Access::Resident => Role::Viewer,
        }
    }

    /// The `snake_case` name used in `polis.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Gateway => "gateway",
            Access::Operator => "operator",
            Access::Planner => "planner",
            Access::Public => "public",
            Access::Resident => "resident",
        }
    }
}

/// A box in WGS84 longitude/latitude degrees: the area a viewer looks at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoBox {
    /// Western edge, degrees east.
    pub lon_min_deg: f64,
    /// Southern edge, degrees north.
    pub lat_min_deg: f64,
    /// Eastern edge, degrees east.
    pub lon_max_deg: f64,
    /// Northern edge, degrees north.
    pub lat_max_deg: f64,
}

impl GeoBox {
    /// The box whose corners are `min` and `max`, local east/north metres
    /// of `georeference`.
    pub fn from_enu(georeference: &Georeference, min: [f64; 2], max: [f64; 2]) -> GeoBox {
        let [lon_min_deg, lat_min_deg] = georeference.lonlat_from_enu(min[0], min[1]);
        let [lon_max_deg, lat_max_deg] = georeference.lonlat_from_enu(max[0], max[1]);
        GeoBox {
            lon_min_deg,
            lat_min_deg,
            lon_max_deg,
            lat_max_deg,
        }
    }

    /// True when the box is finite, within WGS84 bounds and not inverted.
    pub fn is_valid(&self) -> bool {
        let finite = [
            self.lon_min_deg,
            self.lat_min_deg,
            self.lon_max_deg,
            self.lat_max_deg,
        ]
        .iter()
        .all(|v| v.is_finite());
        finite
            && self.lon_min_deg <= self.lon_max_deg
            && self.lat_min_deg <= self.lat_max_deg
            && (-180.0..=180.0).contains(&self.lon_min_deg)
            && (-180.0..=180.0).contains(&self.lon_max_deg)
            && (-90.0..=90.0).contains(&self.lat_min_deg)
            && (-90.0..=90.0).contains(&self.lat_max_deg)
    }
}

impl GeoBox {
    /// Approximate surface of the box, km² (spherical Earth).
    pub fn area_km2(&self) -> f64 {
        let mid_lat = ((self.lat_min_deg + self.lat_max_deg) / 2.0).to_radians();
        let width_km = (self.lon_max_deg - self.lon_min_deg).to_radians() * 6_371.0 * mid_lat.cos();
        let height_km = (self.lat_max_deg - self.lat_min_deg).to_radians() * 6_371.0;
        width_km.abs() * height_km.abs()
    }
}

/// Where a scene sits on the Earth: local east/north/up metres around an origin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Georeference {
    /// Longitude of the local origin, degrees east (WGS84).
    pub origin_lon_deg: f64,
    /// Latitude of the local origin, degrees north (WGS84).
    pub origin_lat_deg: f64,
}

/// Mean Earth radius used by the local tangent-plane approximation, metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

impl Georeference {
    /// Local east/north metres of a WGS84 point (equirectangular tangent plane
    /// at the origin; sub-metre error over a few kilometres, which is the scale
    /// of a city scene).
    pub fn enu_from_lonlat(&self, lon_deg: f64, lat_deg: f64) -> [f64; 2] {
        let east_m = (lon_deg - self.origin_lon_deg).to_radians()
            * EARTH_RADIUS_M
            * self.origin_lat_deg.to_radians().cos();
        let north_m = (lat_deg - self.origin_lat_deg).to_radians() * EARTH_RADIUS_M;
        [east_m, north_m]
    }

    /// WGS84 longitude/latitude degrees of a local east/north point; the
    /// inverse of [`Georeference::enu_from_lonlat`].
    pub fn lonlat_from_enu(&self, east_m: f64, north_m: f64) -> [f64; 2] {
        let lon_deg = self.origin_lon_deg
            + (east_m / (EARTH_RADIUS_M * self.origin_lat_deg.to_radians().cos())).to_degrees();
        let lat_deg = self.origin_lat_deg + (north_m / EARTH_RADIUS_M).to_degrees();
        [lon_deg, lat_deg]
    }
}
