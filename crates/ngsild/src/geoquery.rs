//! Geo-queries (GS CIM 009 clause 4.10): `georel`, `geometry` and
//! `coordinates` (GeoJSON, WGS84), evaluated in a local metric frame the
//! caller supplies (a city's east/north metres), where distances are
//! metres and the spatial relations are those of the Simple Features
//! model (DE-9IM, `geo`'s `Relate`).

use geo::{
    BoundingRect, Coord, Distance, Euclidean, Geometry, LineString, MapCoords, MultiLineString,
    MultiPoint, MultiPolygon, Point, Polygon, Relate,
};
use serde_json::Value;

use crate::error::NgsiError;

/// Most positions in a query geometry.
pub const MAX_POSITIONS: usize = 10_000;

/// How the entity's geometry must relate to the query's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GeoRel {
    /// Within `metres` of it.
    NearMax(f64),
    /// Farther than `metres` from it.
    NearMin(f64),
    /// Inside it.
    Within,
    /// Containing it.
    Contains,
    /// Sharing any point with it.
    Intersects,
    /// The same point set.
    Equals,
    /// Sharing no point with it.
    Disjoint,
    /// Overlapping it (same dimension, each has points outside the other).
    Overlaps,
}

/// A parsed geo-query, in WGS84.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoQuery {
    /// The relation asked for.
    pub georel: GeoRel,
    /// The query's geometry, longitude/latitude degrees.
    pub geometry: Geometry<f64>,
    /// The GeoProperty of the entities it applies to (`location` unless
    /// `geoproperty` says otherwise).
    pub geoproperty: String,
}

fn bad(detail: impl std::fmt::Display) -> NgsiError {
    NgsiError::bad_data(format!("geo-query: {detail}"))
}

impl GeoQuery {
    /// Parses the three parameters (percent-decoded); all or none must be
    /// given, which the caller checks.
    pub fn parse(
        georel: &str,
        geometry: &str,
        coordinates: &str,
        geoproperty: Option<&str>,
    ) -> Result<GeoQuery, NgsiError> {
        let georel = parse_georel(georel)?;
        let coordinates: Value = serde_json::from_str(coordinates)
            .map_err(|err| bad(format!("coordinates are not a JSON array: {err}")))?;
        let geometry = parse_geometry(geometry, &coordinates)?;
        Ok(GeoQuery {
            georel,
            geometry,
            geoproperty: geoproperty.unwrap_or("location").to_owned(),
        })
    }

    /// The query in the caller's metric frame (`to_metres` maps longitude
    /// and latitude to it).
    pub fn prepare(&self, to_metres: impl Fn(f64, f64) -> (f64, f64)) -> PreparedGeoQuery {
        let reference = self.geometry.map_coords(|c| {
            let (x, y) = to_metres(c.x, c.y);
            Coord { x, y }
        });
        PreparedGeoQuery {
            georel: self.georel,
            reference,
        }
    }
}

/// A geo-query in a metric frame, ready to test entities.
#[derive(Debug, Clone)]
pub struct PreparedGeoQuery {
    georel: GeoRel,
    reference: Geometry<f64>,
}

impl PreparedGeoQuery {
    /// Whether an entity whose GeoProperty is `target` (same frame) matches.
    pub fn matches(&self, target: &Geometry<f64>) -> bool {
        match self.georel {
            GeoRel::NearMax(metres) => Euclidean.distance(target, &self.reference) <= metres,
            GeoRel::NearMin(metres) => Euclidean.distance(target, &self.reference) > metres,
            GeoRel::Within => target.relate(&self.reference).is_within(),
            GeoRel::Contains => target.relate(&self.reference).is_contains(),
            GeoRel::Intersects => target.relate(&self.reference).is_intersects(),
            GeoRel::Equals => target.relate(&self.reference).is_equal_topo(),
            GeoRel::Disjoint => target.relate(&self.reference).is_disjoint(),
            GeoRel::Overlaps => target.relate(&self.reference).is_overlaps(),
        }
    }

    /// The box (min, max) every matching entity's geometry meets, for an
    /// index lookup; `None` when entities far away may match too
    /// (`disjoint`, `near;minDistance`).
    pub fn search_box(&self) -> Option<([f64; 2], [f64; 2])> {
        let grow = match self.georel {
            GeoRel::Disjoint | GeoRel::NearMin(_) => return None,
            GeoRel::NearMax(metres) => metres,
            _ => 0.0,
        };
        let rect = self.reference.bounding_rect()?;
        Some((
            [rect.min().x - grow, rect.min().y - grow],
            [rect.max().x + grow, rect.max().y + grow],
        ))
    }
}

fn parse_georel(text: &str) -> Result<GeoRel, NgsiError> {
    if let Some(rest) = text.strip_prefix("near;") {
        let (name, metres) = rest.split_once("==").ok_or_else(|| {
            bad(format!(
                "`{text}`: near needs maxDistance==N or minDistance==N"
            ))
        })?;
        let metres: f64 = metres
            .parse()
            .ok()
            .filter(|m: &f64| m.is_finite() && *m >= 0.0)
            .ok_or_else(|| bad(format!("`{metres}` is not a distance in metres")))?;
        return match name {
            "maxDistance" => Ok(GeoRel::NearMax(metres)),
            "minDistance" => Ok(GeoRel::NearMin(metres)),
            other => Err(bad(format!("unknown near modifier `{other}`"))),
        };
    }
    match text {
        "within" => Ok(GeoRel::Within),
        "contains" => Ok(GeoRel::Contains),
        "intersects" => Ok(GeoRel::Intersects),
        "equals" => Ok(GeoRel::Equals),
        "disjoint" => Ok(GeoRel::Disjoint),
        "overlaps" => Ok(GeoRel::Overlaps),
        "near" => Err(bad("near needs ;maxDistance==N or ;minDistance==N")),
        other => Err(bad(format!("unknown georel `{other}`"))),
    }
}

/// A GeoJSON geometry of `kind` with `coordinates` (RFC 7946 §3.1), in
/// WGS84 ranges.
pub fn parse_geometry(kind: &str, coordinates: &Value) -> Result<Geometry<f64>, NgsiError> {
    let mut count = 0usize;
    let geometry = match kind {
        "Point" => Geometry::Point(Point(position(coordinates, &mut count)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            array(coordinates)?
                .iter()
                .map(|p| position(p, &mut count).map(Point))
                .collect::<Result<_, _>>()?,
        )),
        "LineString" => Geometry::LineString(line(coordinates, &mut count)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            array(coordinates)?
                .iter()
                .map(|l| line(l, &mut count))
                .collect::<Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(polygon(coordinates, &mut count)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            array(coordinates)?
                .iter()
                .map(|p| polygon(p, &mut count))
                .collect::<Result<_, _>>()?,
        )),
        other => {
            return Err(bad(format!(
                "geometry `{other}` is not one of Point, MultiPoint, LineString, \
                 MultiLineString, Polygon, MultiPolygon"
            )));
        }
    };
    Ok(geometry)
}

fn array(value: &Value) -> Result<&Vec<Value>, NgsiError> {
    value
        .as_array()
        .ok_or_else(|| bad(format!("expected an array, found {value}")))
}

fn position(value: &Value, count: &mut usize) -> Result<Coord<f64>, NgsiError> {
    *count += 1;
    if *count > MAX_POSITIONS {
        return Err(bad(format!("more than {MAX_POSITIONS} positions")));
    }
    let numbers = array(value)?;
    let (Some(lon), Some(lat)) = (
        numbers.first().and_then(Value::as_f64),
        numbers.get(1).and_then(Value::as_f64),
    ) else {
        return Err(bad(format!(
            "position {value} is not [longitude, latitude]"
        )));
    };
    if numbers.len() > 3 || !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(bad(format!(
            "position {value} is not a WGS84 [longitude, latitude]"
        )));
    }
    Ok(Coord { x: lon, y: lat })
}

fn line(value: &Value, count: &mut usize) -> Result<LineString<f64>, NgsiError> {
    let positions: Vec<Coord<f64>> = array(value)?
        .iter()
        .map(|p| position(p, count))
        .collect::<Result<_, _>>()?;
    if positions.len() < 2 {
        return Err(bad("a LineString needs two or more positions"));
    }
    Ok(LineString(positions))
}

fn polygon(value: &Value, count: &mut usize) -> Result<Polygon<f64>, NgsiError> {
    let mut rings = array(value)?
        .iter()
        .map(|ring| {
            let ring = line(ring, count)?;
            if ring.0.len() < 4 || ring.0.first() != ring.0.last() {
                return Err(bad(
                    "a Polygon ring needs four or more positions, the last equal to the first",
                ));
            }
            Ok(ring)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rings.is_empty() {
        return Err(bad("a Polygon needs a ring"));
    }
    let exterior = rings.remove(0);
    Ok(Polygon::new(exterior, rings))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Degrees to metres on a flat plane: 1° = 100 km, enough for tests.
    fn flat(lon: f64, lat: f64) -> (f64, f64) {
        (lon * 100_000.0, lat * 100_000.0)
    }

    fn point(x: f64, y: f64) -> Geometry<f64> {
        Geometry::Point(Point::new(x, y))
    }

    fn square(x: f64, y: f64, side: f64) -> Geometry<f64> {
        Geometry::Polygon(Polygon::new(
            LineString::from(vec![
                (x, y),
                (x + side, y),
                (x + side, y + side),
                (x, y + side),
                (x, y),
            ]),
            vec![],
        ))
    }

    fn query(georel: &str, geometry: &str, coordinates: &str) -> PreparedGeoQuery {
        GeoQuery::parse(georel, geometry, coordinates, None)
            .unwrap_or_else(|err| panic!("{georel} {geometry} {coordinates}: {err}"))
            .prepare(flat)
    }

    #[test]
    fn near_measures_metres_in_the_frame() {
        // The point (0.001°, 0) is 100 m east of the origin.
        let near = query("near;maxDistance==150", "Point", "[0.001,0]");
        assert!(near.matches(&point(0.0, 0.0)));
        assert!(!near.matches(&point(-60.0, 0.0)));
        // A building 40 m away at its nearest edge is near.
        assert!(near.matches(&square(200.0, 0.0, 20.0)));
        let far = query("near;minDistance==150", "Point", "[0.001,0]");
        assert!(far.matches(&point(-60.0, 0.0)));
        assert!(!far.matches(&point(0.0, 0.0)));
        assert_eq!(far.search_box(), None);
        assert_eq!(near.search_box(), Some(([-50.0, -150.0], [250.0, 150.0])));
    }

    #[test]
    fn relations_are_those_of_simple_features() {
        // A 200 m square with its corner at the origin.
        let area = "[[[0,0],[0.002,0],[0.002,0.002],[0,0.002],[0,0]]]";
        let inside = square(50.0, 50.0, 20.0);
        let across = square(190.0, 50.0, 20.0);
        let outside = square(500.0, 500.0, 20.0);
        let within = query("within", "Polygon", area);
        assert!(within.matches(&inside) && !within.matches(&across) && !within.matches(&outside));
        let intersects = query("intersects", "Polygon", area);
        assert!(intersects.matches(&inside) && intersects.matches(&across));
        assert!(!intersects.matches(&outside));
        let disjoint = query("disjoint", "Polygon", area);
        assert!(disjoint.matches(&outside) && !disjoint.matches(&across));
        let overlaps = query("overlaps", "Polygon", area);
        assert!(overlaps.matches(&across) && !overlaps.matches(&inside));
        let contains = query("contains", "Point", "[0.0005,0.0005]");
        assert!(contains.matches(&square(0.0, 0.0, 100.0)));
        assert!(!contains.matches(&inside));
        let equals = query("equals", "Point", "[0.0005,0.0005]");
        assert!(equals.matches(&point(50.0, 50.0)) && !equals.matches(&point(50.0, 51.0)));
    }

    #[test]
    fn malformed_geo_queries_are_bad_request_data() {
        for (georel, geometry, coordinates) in [
            ("near", "Point", "[0,0]"),
            ("near;maxDistance==-1", "Point", "[0,0]"),
            ("near;radius==5", "Point", "[0,0]"),
            ("nearby", "Point", "[0,0]"),
            ("within", "Circle", "[0,0]"),
            ("within", "Point", "[0]"),
            ("within", "Point", "[190,0]"),
            ("within", "Point", "not json"),
            ("within", "LineString", "[[0,0]]"),
            ("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]"),
            ("within", "Polygon", "[]"),
        ] {
            let err = GeoQuery::parse(georel, geometry, coordinates, None)
                .expect_err(&format!("{georel} {geometry} {coordinates}"));
            assert_eq!(err.kind, crate::ErrorKind::BadRequestData);
        }
    }
}
