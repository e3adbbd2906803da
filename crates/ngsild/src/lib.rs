//! Sans-IO core of Polis' NGSI-LD API (ETSI GS CIM 009): what an entity
//! looks like in each representation ([`Entity`], [`Format`]), the
//! parameters of an entity query ([`EntityQuery`]) with the query language
//! ([`Query`]) and geo-queries ([`GeoQuery`]), content negotiation
//! ([`negotiate`]) and errors as ProblemDetails ([`NgsiError`]). No I/O:
//! the server maps the twin's items to entities and serves them over HTTP.

mod entity;
mod error;
mod geoquery;
mod negotiate;
mod q;
mod query;

pub use entity::{Attribute, CORE_CONTEXT, Entity, Format, Projection};
pub use error::{ERROR_TYPE_PREFIX, ErrorKind, NgsiError};
pub use geoquery::{GeoQuery, GeoRel, MAX_POSITIONS, PreparedGeoQuery, parse_geometry};
pub use negotiate::{CONTEXT_REL, MediaType, check_context_links, context_link, negotiate};
pub use q::{MAX_QUERY_BYTES, Query};
pub use query::{DEFAULT_LIMIT, EntityQuery, TypeSelection, is_uri, parse_format};
