//! NGSI-LD entities and their representations (GS CIM 009 clause 4.5):
//! normalized, concise and simplified (`keyValues`).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// The NGSI-LD core @context of version 1.8, referenced (never fetched) by
/// every answer.
pub const CORE_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

/// One attribute of an entity.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    /// A value, with when it was observed and its UN/CEFACT unit code.
    Property {
        /// The value (any JSON).
        value: Value,
        /// When it was observed, RFC 3339 / ISO 8601 UTC.
        observed_at: Option<String>,
        /// UN/CEFACT Rec 20 unit code (e.g. `KWT`).
        unit_code: Option<String>,
    },
    /// A link to another entity.
    Relationship {
        /// The other entity's id.
        object: String,
    },
    /// A place: a GeoJSON geometry in WGS84.
    GeoProperty {
        /// The GeoJSON geometry.
        value: Value,
    },
}

impl Attribute {
    /// `Property`, `Relationship` or `GeoProperty`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Property { .. } => "Property",
            Self::Relationship { .. } => "Relationship",
            Self::GeoProperty { .. } => "GeoProperty",
        }
    }
}

/// An entity: a URI id, a type and attributes in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Its id, a URI (`urn:ngsi-ld:<Type>:<local id>`).
    pub id: String,
    /// Its type (a short name in the default vocabulary).
    pub entity_type: String,
    /// Its attributes by name, in the order they are rendered.
    pub attributes: Vec<(String, Attribute)>,
}

/// How entities are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Every attribute as an object with its `type` (clause 4.5.2.2).
    #[default]
    Normalized,
    /// The shortest lossless form (clause 4.5.2.3).
    Concise,
    /// Values only (`keyValues`, `simplified`; clause 4.5.4).
    KeyValues,
}

/// Which members of an entity to render (`attrs`, `pick`, `omit`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    /// Only these members (`pick`; `id` and `type` count as members), if
    /// given.
    pub pick: Option<BTreeSet<String>>,
    /// Only these attributes, with `id` and `type` (`attrs`), if given.
    pub attrs: Option<BTreeSet<String>>,
    /// Never these members (`omit`).
    pub omit: BTreeSet<String>,
}

impl Projection {
    /// Whether member `name` (`id`, `type` or an attribute) is rendered.
    pub fn keeps(&self, name: &str) -> bool {
        if self.omit.contains(name) {
            return false;
        }
        if let Some(pick) = &self.pick {
            return pick.contains(name);
        }
        match &self.attrs {
            Some(attrs) if name != "id" && name != "type" => attrs.contains(name),
            _ => true,
        }
    }
}

impl Entity {
    /// The attribute `name`, if the entity has it.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }

    /// The entity in `format`, with the members `projection` keeps, and
    /// the core @context in the body when `context_in_body`
    /// (`application/ld+json`).
    pub fn render(&self, format: Format, projection: &Projection, context_in_body: bool) -> Value {
        let mut out = Map::new();
        if projection.keeps("id") {
            out.insert("id".into(), Value::String(self.id.clone()));
        }
        if projection.keeps("type") {
            out.insert("type".into(), Value::String(self.entity_type.clone()));
        }
        for (name, attribute) in &self.attributes {
            if projection.keeps(name) {
                out.insert(name.clone(), render_attribute(attribute, format));
            }
        }
        if context_in_body {
            out.insert("@context".into(), Value::String(CORE_CONTEXT.into()));
        }
        Value::Object(out)
    }
}

fn render_attribute(attribute: &Attribute, format: Format) -> Value {
    match (attribute, format) {
        (
            Attribute::Property {
                value,
                observed_at,
                unit_code,
            },
            Format::Normalized | Format::Concise,
        ) => {
            let mut out = Map::new();
            if format == Format::Normalized {
                out.insert("type".into(), "Property".into());
            } else if observed_at.is_none() && unit_code.is_none() && !value.is_object() {
                // Concise: a Property without sub-attributes is its value
                // (an object value keeps `value`, so it is not taken for
                // an attribute of another kind).
                return value.clone();
            }
            out.insert("value".into(), value.clone());
            if let Some(observed_at) = observed_at {
                out.insert("observedAt".into(), observed_at.clone().into());
            }
            if let Some(unit_code) = unit_code {
                out.insert("unitCode".into(), unit_code.clone().into());
            }
            Value::Object(out)
        }
        (Attribute::Relationship { object }, Format::Normalized) => {
            json!({"type": "Relationship", "object": object})
        }
        (Attribute::Relationship { object }, Format::Concise) => json!({"object": object}),
        (Attribute::GeoProperty { value }, Format::Normalized) => {
            json!({"type": "GeoProperty", "value": value})
        }
        // Concise: `value` holding a GeoJSON geometry makes it a GeoProperty.
        (Attribute::GeoProperty { value }, Format::Concise) => json!({"value": value}),
        (
            Attribute::Property { value, .. } | Attribute::GeoProperty { value },
            Format::KeyValues,
        ) => value.clone(),
        (Attribute::Relationship { object }, Format::KeyValues) => Value::String(object.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> Entity {
        Entity {
            id: "urn:ngsi-ld:Device:meter-1".into(),
            entity_type: "Device".into(),
            attributes: vec![
                (
                    "activePower".into(),
                    Attribute::Property {
                        value: json!(3.25),
                        observed_at: Some("2026-12-03T10:00:00Z".into()),
                        unit_code: Some("KWT".into()),
                    },
                ),
                (
                    "name".into(),
                    Attribute::Property {
                        value: json!("meter 1"),
                        observed_at: None,
                        unit_code: None,
                    },
                ),
                (
                    "controlledAsset".into(),
                    Attribute::Relationship {
                        object: "urn:ngsi-ld:Building:b1".into(),
                    },
                ),
                (
                    "location".into(),
                    Attribute::GeoProperty {
                        value: json!({"type": "Point", "coordinates": [24.93, 60.17]}),
                    },
                ),
            ],
        }
    }

    #[test]
    fn the_three_representations_follow_clause_4_5() {
        let all = Projection::default();
        assert_eq!(
            meter().render(Format::Normalized, &all, false),
            json!({
                "id": "urn:ngsi-ld:Device:meter-1", "type": "Device",
                "activePower": {"type": "Property", "value": 3.25,
                                "observedAt": "2026-12-03T10:00:00Z", "unitCode": "KWT"},
                "name": {"type": "Property", "value": "meter 1"},
                "controlledAsset": {"type": "Relationship", "object": "urn:ngsi-ld:Building:b1"},
                "location": {"type": "GeoProperty",
                             "value": {"type": "Point", "coordinates": [24.93, 60.17]}},
            })
        );
        assert_eq!(
            meter().render(Format::Concise, &all, false),
            json!({
                "id": "urn:ngsi-ld:Device:meter-1", "type": "Device",
                "activePower": {"value": 3.25, "observedAt": "2026-12-03T10:00:00Z",
                                "unitCode": "KWT"},
                "name": "meter 1",
                "controlledAsset": {"object": "urn:ngsi-ld:Building:b1"},
                "location": {"value": {"type": "Point", "coordinates": [24.93, 60.17]}},
            })
        );
        assert_eq!(
            meter().render(Format::KeyValues, &all, true),
            json!({
                "id": "urn:ngsi-ld:Device:meter-1", "type": "Device",
                "activePower": 3.25, "name": "meter 1",
                "controlledAsset": "urn:ngsi-ld:Building:b1",
                "location": {"type": "Point", "coordinates": [24.93, 60.17]},
                "@context": CORE_CONTEXT,
            })
        );
    }

    #[test]
    fn attrs_pick_and_omit_select_members() {
        let attrs = Projection {
            attrs: Some(["name".to_owned()].into()),
            ..Projection::default()
        };
        assert_eq!(
            meter().render(Format::KeyValues, &attrs, false),
            json!({"id": "urn:ngsi-ld:Device:meter-1", "type": "Device", "name": "meter 1"})
        );
        let pick = Projection {
            pick: Some(["id".to_owned(), "location".to_owned()].into()),
            ..Projection::default()
        };
        assert_eq!(
            meter().render(Format::KeyValues, &pick, false),
            json!({"id": "urn:ngsi-ld:Device:meter-1",
                   "location": {"type": "Point", "coordinates": [24.93, 60.17]}})
        );
        let omit = Projection {
            omit: [
                "location".to_owned(),
                "activePower".to_owned(),
                "type".to_owned(),
            ]
            .into(),
            ..Projection::default()
        };
        assert_eq!(
            meter().render(Format::KeyValues, &omit, false),
            json!({"id": "urn:ngsi-ld:Device:meter-1", "name": "meter 1",
                   "controlledAsset": "urn:ngsi-ld:Building:b1"})
        );
    }
}
