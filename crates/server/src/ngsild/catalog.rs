//! The twin's items as NGSI-LD entities: built once from the twin's tables
//! when it starts (ids, types, geometry, fixed attributes, a spatial index
//! in the city's metres), with the sensors' live values kept beside it and
//! refreshed every tick from what changed.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use geo::{Coord, Geometry as GeoGeometry, LineString, Point, Polygon};
use polis_ngsild::{Attribute, Entity};
use polis_protocol::{Access, AssetKind, Geometry, Georeference};
use polis_twin::{AssetTable, Audience, SensorTable, StoredReading};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde_json::{Value, json};

/// What the twin holds of one item, as an entity.
pub(crate) struct CatalogEntity {
    /// `urn:ngsi-ld:<Type>:<scene id>`.
    pub(crate) id: String,
    /// Its NGSI-LD type (after FIWARE Smart Data Models where one fits).
    pub(crate) entity_type: &'static str,
    /// Who may see it.
    pub(crate) audience: Audience,
    /// The scene's id of a personal sensor (its household's token sees it
    /// raw; operators' views of it are audited).
    pub(crate) personal: Option<String>,
    /// Its geometry in the city's east/north metres.
    pub(crate) geometry_m: GeoGeometry<f64>,
    /// Fixed attributes, `location` included.
    pub(crate) attributes: Vec<(String, Attribute)>,
    /// The attribute that carries a sensor's latest value.
    pub(crate) live: Option<LiveAttribute>,
}

/// The attribute of a sensor entity that holds its latest value.
pub(crate) struct LiveAttribute {
    pub(crate) name: String,
    pub(crate) unit_code: Option<&'static str>,
    pub(crate) handle: u32,
}

type Indexed = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// Every item of the twin as an entity, with a spatial index.
pub(crate) struct Catalog {
    pub(crate) entities: Vec<CatalogEntity>,
    by_id: HashMap<String, usize>,
    index: RTree<Indexed>,
    pub(crate) georeference: Georeference,
}

/// The sensors' latest values, by handle, refreshed every tick.
#[derive(Default)]
pub(crate) struct LiveValues(RwLock<Vec<Option<StoredReading>>>);

impl LiveValues {
    /// Every sensor's latest value now.
    pub(crate) fn fill(&self, sensors: &SensorTable) {
        let mut values = self.0.write().unwrap_or_else(PoisonError::into_inner);
        values.clear();
        values.extend((0u32..).take(sensors.len()).map(|h| sensors.latest(h)));
    }

    /// The latest values of `changed` sensors.
    pub(crate) fn update(&self, sensors: &SensorTable, changed: &[u32]) {
        if changed.is_empty() {
            return;
        }
        let mut values = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for &handle in changed {
            if let Some(slot) = values.get_mut(handle as usize) {
                *slot = sensors.latest(handle);
            }
        }
    }

    /// Sensor `handle`'s latest value.
    pub(crate) fn get(&self, handle: u32) -> Option<StoredReading> {
        let values = self.0.read().unwrap_or_else(PoisonError::into_inner);
        values.get(handle as usize).copied().flatten()
    }
}

/// The entity type of an asset kind.
fn asset_type(kind: AssetKind) -> &'static str {
    match kind {
        AssetKind::Building => "Building",
        AssetKind::Road => "RoadSegment",
        AssetKind::TransitRoute => "GtfsRoute",
        AssetKind::TransitStop => "GtfsStop",
        AssetKind::WaterPipe => "Pipe",
        AssetKind::WaterPump => "Pump",
        AssetKind::WaterValve => "Valve",
        AssetKind::WaterJunction => "Junction",
        AssetKind::WaterTank => "Tank",
        AssetKind::WaterReservoir => "Reservoir",
        AssetKind::PowerLine => "PowerLine",
        AssetKind::Substation => "Substation",
    }
}

/// The UN/CEFACT Rec 20 code of a Polis unit, where there is one.
pub(crate) fn unit_code(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "W" => "WTT",
        "kW" => "KWT",
        "MW" => "MAW",
        "kWh" => "KWH",
        "MWh" => "MWH",
        "m3/h" | "m³/h" => "MQH",
        "m3/s" | "m³/s" => "MQS",
        "m3" | "m³" => "MTQ",
        "L/s" | "l/s" => "G51",
        "L" | "l" => "LTR",
        "bar" => "BAR",
        "kPa" => "KPA",
        "Pa" => "PAL",
        "m" => "MTR",
        "mm" => "MMT",
        "km" => "KMT",
        "Cel" | "°C" | "degC" => "CEL",
        "K" => "KEL",
        "%" => "P1",
        "km/h" => "KMH",
        "m/s" => "MTS",
        "s" => "SEC",
        "V" => "VLT",
        "A" => "AMP",
        "Hz" => "HTZ",
        "lx" => "LUX",
        "ppm" => "59",
        "ug/m3" | "µg/m3" | "µg/m³" => "GQ",
        "dB" | "dB(A)" => "2N",
        "count" => "C62",
        _ => return None,
    })
}

/// `active_power` → `activePower`: NGSI-LD attribute names are terms.
pub(crate) fn attribute_name(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut upper = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if upper && !out.is_empty() {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.starts_with(|c: char| !c.is_alphabetic()) {
        out.insert(0, 'a');
    }
    out
}

/// Longitude/latitude rounded to 1e-7 degrees (about 1 cm).
fn lonlat(georeference: &Georeference, east_m: f64, north_m: f64) -> Value {
    let [lon, lat] = georeference.lonlat_from_enu(east_m, north_m);
    let round = |d: f64| (d * 1e7).round() / 1e7;
    json!([round(lon), round(lat)])
}

/// An asset's geometry in metres and as GeoJSON in WGS84.
fn shape(georeference: &Georeference, geometry: &Geometry) -> (GeoGeometry<f64>, Value) {
    let coords = |points: &[[f32; 2]]| -> Vec<Coord<f64>> {
        points
            .iter()
            .map(|p| Coord {
                x: f64::from(p[0]),
                y: f64::from(p[1]),
            })
            .collect()
    };
    let positions = |c: &[Coord<f64>]| -> Vec<Value> {
        c.iter().map(|c| lonlat(georeference, c.x, c.y)).collect()
    };
    match geometry {
        Geometry::Footprint(points) => {
            let mut ring = coords(points);
            if ring.first() != ring.last()
                && let Some(&first) = ring.first()
            {
                ring.push(first);
            }
            let json = json!({"type": "Polygon", "coordinates": [positions(&ring)]});
            (
                GeoGeometry::Polygon(Polygon::new(LineString(ring), vec![])),
                json,
            )
        }
        Geometry::Line(points) => {
            let line = coords(points);
            let json = json!({"type": "LineString", "coordinates": positions(&line)});
            (GeoGeometry::LineString(LineString(line)), json)
        }
        Geometry::Point([e, n, _]) => {
            let (e, n) = (f64::from(*e), f64::from(*n));
            let json = json!({"type": "Point", "coordinates": lonlat(georeference, e, n)});
            (GeoGeometry::Point(Point::new(e, n)), json)
        }
    }
}

fn property(value: Value) -> Attribute {
    Attribute::Property {
        value,
        observed_at: None,
        unit_code: None,
    }
}

impl Catalog {
    /// Every asset and sensor of the twin's tables.
    pub(crate) fn build(
        assets: &AssetTable,
        sensors: &SensorTable,
        georeference: Georeference,
    ) -> Catalog {
        let mut entities = Vec::with_capacity(assets.len() + sensors.len());
        let mut asset_ids = Vec::with_capacity(assets.len());
        for handle in (0u32..).take(assets.len()) {
            let Some(info) = assets.info(handle) else {
                asset_ids.push(None);
                continue;
            };
            let entity_type = asset_type(info.kind);
            let id = format!("urn:ngsi-ld:{entity_type}:{}", info.id);
            asset_ids.push(Some(id.clone()));
            let (geometry_m, location) = shape(&georeference, &info.geometry);
            let mut attributes = Vec::new();
            if let Some(height_m) = info.height_m {
                attributes.push((
                    "height".to_owned(),
                    Attribute::Property {
                        value: json!(height_m),
                        observed_at: None,
                        unit_code: Some("MTR".into()),
                    },
                ));
            }
            for (key, value) in info.attributes {
                let name = attribute_name(&key);
                if !attributes.iter().any(|(n, _)| *n == name) && name != "location" {
                    attributes.push((name, property(Value::String(value))));
                }
            }
            attributes.push((
                "location".into(),
                Attribute::GeoProperty { value: location },
            ));
            entities.push(CatalogEntity {
                id,
                entity_type,
                audience: Audience::EVERYONE,
                personal: None,
                geometry_m,
                attributes,
                live: None,
            });
        }
        for handle in (0u32..).take(sensors.len()) {
            let (Some(sensor_id), Some(quantity), Some(position), Some(audience)) = (
                sensors.id(handle),
                sensors.quantity(handle),
                sensors.position_enu_m(handle),
                sensors.audience(handle),
            ) else {
                continue;
            };
            let (e, n) = (f64::from(position.x), f64::from(position.y));
            let mut attributes = vec![(
                "controlledProperty".to_owned(),
                property(Value::String(quantity.to_owned())),
            )];
            if let Some(members) = sensors.aggregate_members(handle) {
                attributes.push(("households".into(), property(json!(members.len()))));
            }
            let asset = sensors
                .asset(handle)
                .and_then(|a| asset_ids.get(a as usize).cloned().flatten());
            if let Some(object) = asset {
                attributes.push(("controlledAsset".into(), Attribute::Relationship { object }));
            }
            attributes.push((
                "location".into(),
                Attribute::GeoProperty {
                    value: json!({"type": "Point", "coordinates": lonlat(&georeference, e, n)}),
                },
            ));
            entities.push(CatalogEntity {
                id: format!("urn:ngsi-ld:Device:{sensor_id}"),
                entity_type: "Device",
                audience,
                personal: (sensors.personal(handle) == Some(true)).then(|| sensor_id.to_owned()),
                geometry_m: GeoGeometry::Point(Point::new(e, n)),
                attributes,
                live: Some(LiveAttribute {
                    name: attribute_name(quantity),
                    unit_code: sensors.unit(handle).and_then(unit_code),
                    handle,
                }),
            });
        }
        let by_id = entities
            .iter()
            .enumerate()
            .map(|(index, e)| (e.id.clone(), index))
            .collect();
        let index = RTree::bulk_load(
            entities
                .iter()
                .enumerate()
                .filter_map(|(index, e)| {
                    use geo::BoundingRect as _;
                    let rect = e.geometry_m.bounding_rect()?;
                    Some(GeomWithData::new(
                        Rectangle::from_corners(
                            [rect.min().x, rect.min().y],
                            [rect.max().x, rect.max().y],
                        ),
                        index,
                    ))
                })
                .collect(),
        );
        Catalog {
            entities,
            by_id,
            index,
            georeference,
        }
    }

    /// The entity with `id`, if any.
    pub(crate) fn get(&self, id: &str) -> Option<(usize, &CatalogEntity)> {
        let index = *self.by_id.get(id)?;
        Some((index, self.entities.get(index)?))
    }

    /// Indices of the entities whose box meets `min..max` (metres), in
    /// catalog order.
    pub(crate) fn near(&self, min: [f64; 2], max: [f64; 2]) -> Vec<usize> {
        let mut found: Vec<usize> = self
            .index
            .locate_in_envelope_intersecting(AABB::from_corners(min, max))
            .map(|item| item.data)
            .collect();
        found.sort_unstable();
        found
    }
}

/// Who is asking, as far as what they may see goes.
pub(crate) struct Viewer<'a> {
    pub(crate) access: Access,
    pub(crate) own_sensors: &'a [String],
}

impl CatalogEntity {
    /// Whether `viewer` may see this entity.
    pub(crate) fn visible_to(&self, viewer: &Viewer<'_>) -> bool {
        self.audience.admits(viewer.access)
            || (viewer.access == Access::Resident
                && self
                    .personal
                    .as_ref()
                    .is_some_and(|id| viewer.own_sensors.contains(id)))
    }

    /// The entity with its latest value from `live`.
    pub(crate) fn entity(&self, live: &LiveValues) -> Entity {
        let mut attributes = self.attributes.clone();
        if let Some(attribute) = &self.live
            && let Some(reading) = live.get(attribute.handle)
        {
            let observed_at = crate::cli::format_time_ms(reading.device_time_ms);
            attributes.insert(
                0,
                (
                    attribute.name.clone(),
                    Attribute::Property {
                        value: json!(reading.value),
                        observed_at: Some(observed_at),
                        unit_code: attribute.unit_code.map(str::to_owned),
                    },
                ),
            );
        }
        Entity {
            id: self.id.clone(),
            entity_type: self.entity_type.to_owned(),
            attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_become_attribute_terms_and_units_rec_20_codes() {
        assert_eq!(attribute_name("active_power"), "activePower");
        assert_eq!(attribute_name("pv_power"), "pvPower");
        assert_eq!(attribute_name("flow"), "flow");
        assert_eq!(attribute_name("building:levels"), "buildingLevels");
        assert_eq!(attribute_name("3d"), "a3d");
        assert_eq!(unit_code("kW"), Some("KWT"));
        assert_eq!(unit_code("m3/h"), Some("MQH"));
        assert_eq!(unit_code("bar"), Some("BAR"));
        assert_eq!(unit_code("furlong"), None);
    }
}
