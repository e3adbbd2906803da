//! The parameters of `GET /entities` (GS CIM 009 clause 6.4.3.2, 5.7.2):
//! checked once, then applied to entities.

use std::collections::BTreeSet;

use regex::Regex;

use crate::entity::{Entity, Format, Projection};
use crate::error::{ErrorKind, NgsiError};
use crate::geoquery::GeoQuery;
use crate::q::Query;

/// Entities per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 20;

/// An entity type selection (clause 4.17): any of the alternatives, each
/// a set of types an entity must all have; `None` for `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeSelection(Option<Vec<Vec<String>>>);

impl TypeSelection {
    fn parse(text: &str) -> Result<TypeSelection, NgsiError> {
        if text == "*" {
            return Ok(TypeSelection(None));
        }
        let mut alternatives = Vec::new();
        for alternative in split_outside_parens(text) {
            let inner = alternative
                .strip_prefix('(')
                .and_then(|a| a.strip_suffix(')'))
                .unwrap_or(alternative);
            let all: Vec<String> = inner.split(';').map(str::to_owned).collect();
            if all.iter().any(|t| !is_type_name(t)) {
                return Err(NgsiError::bad_data(format!(
                    "type: `{text}` is not a type selection (names joined by `|`, `,` or `;`)"
                )));
            }
            alternatives.push(all);
        }
        Ok(TypeSelection(Some(alternatives)))
    }

    /// Whether an entity of `entity_type` is selected.
    pub fn selects(&self, entity_type: &str) -> bool {
        match &self.0 {
            None => true,
            Some(alternatives) => alternatives
                .iter()
                .any(|all| all.iter().all(|t| t == entity_type)),
        }
    }

    /// Every type named (empty for `*`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().flatten().flatten().map(String::as_str)
    }
}

/// `|` or `,` separated alternatives, not splitting inside parentheses.
fn split_outside_parens(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '|' | ',' if depth == 0 => {
                parts.push(text.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

/// A short type or attribute name, or a URI.
fn is_type_name(text: &str) -> bool {
    !text.is_empty()
        && (is_uri(text)
            || (text.starts_with(|c: char| c.is_alphabetic())
                && text.chars().all(|c| c.is_alphanumeric() || c == '_')))
}

/// Whether `text` looks like an absolute URI (`scheme:rest`).
pub fn is_uri(text: &str) -> bool {
    text.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && !text.contains(char::is_whitespace)
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// A query of entities, as its parameters ask.
#[derive(Debug, Clone)]
pub struct EntityQuery {
    /// Only these ids.
    pub ids: Option<BTreeSet<String>>,
    /// Only these types.
    pub types: Option<TypeSelection>,
    /// Only ids matching this.
    pub id_pattern: Option<Regex>,
    /// Only entities with one of these attributes (`attrs`).
    pub attrs: Option<BTreeSet<String>>,
    /// The `q` filter.
    pub q: Option<Query>,
    /// The geo-query.
    pub geo: Option<GeoQuery>,
    /// `scopeQ` was given: entities here have no scope, so none matches.
    pub scope_query: bool,
    /// Which members to render.
    pub projection: Projection,
    /// How to render.
    pub format: Format,
    /// Entities to skip.
    pub offset: usize,
    /// Most entities to return.
    pub limit: usize,
    /// Whether to report the total in `NGSILD-Results-Count`.
    pub count: bool,
    /// The GeoProperty that becomes a GeoJSON feature's geometry.
    pub geometry_property: String,
}

/// The parameters `GET /entities` knows.
const KNOWN: [&str; 18] = [
    "id",
    "type",
    "idPattern",
    "attrs",
    "pick",
    "omit",
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "geometryProperty",
    "scopeQ",
    "lang",
    "limit",
    "offset",
    "count",
    "options",
];

/// Parameters this server has nothing to apply to: it holds no
/// registrations, datasets or linked-entity maps.
const NOT_SUPPORTED: [&str; 6] = [
    "csf",
    "datasetId",
    "join",
    "joinLevel",
    "entityMap",
    "containedBy",
];

fn names(text: &str, what: &str) -> Result<BTreeSet<String>, NgsiError> {
    let all: BTreeSet<String> = text.split(',').map(str::to_owned).collect();
    if all.iter().any(|n| !is_type_name(n)) {
        return Err(NgsiError::bad_data(format!(
            "{what}: `{text}` is not a list of names"
        )));
    }
    Ok(all)
}

fn number(name: &str, text: &str) -> Result<usize, NgsiError> {
    text.parse()
        .map_err(|_| NgsiError::bad_data(format!("{name}: `{text}` is not a whole number >= 0")))
}

fn boolean(name: &str, text: &str) -> Result<bool, NgsiError> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(NgsiError::bad_data(format!(
            "{name}: `{text}` is not true or false"
        ))),
    }
}

/// The representation asked for by `format` (which wins) or `options`;
/// `sysAttrs` is accepted and adds nothing (no system times are kept,
/// which clause 6.3.11 allows).
pub fn parse_format(format: Option<&str>, options: Option<&str>) -> Result<Format, NgsiError> {
    let pick = |name: &str| match name {
        "normalized" => Ok(Some(Format::Normalized)),
        "concise" => Ok(Some(Format::Concise)),
        "keyValues" | "simplified" => Ok(Some(Format::KeyValues)),
        "sysAttrs" => Ok(None),
        other => Err(NgsiError::invalid(format!(
            "unknown option or format `{other}`"
        ))),
    };
    let mut chosen = None;
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        if let Some(format) = pick(option)? {
            if chosen.is_some_and(|c| c != format) {
                return Err(NgsiError::invalid("options name two representations"));
            }
            chosen = Some(format);
        }
    }
    if let Some(format) = format {
        match pick(format)? {
            Some(format) => chosen = Some(format),
            None => {
                return Err(NgsiError::invalid(
                    "format: `sysAttrs` is an option, not a format",
                ));
            }
        }
    }
    Ok(chosen.unwrap_or_default())
}

impl EntityQuery {
    /// Checks the parameters of a query (percent-decoded name/value pairs),
    /// with `max_limit` entities per page at most.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        max_limit: usize,
    ) -> Result<EntityQuery, NgsiError> {
        let mut given: Vec<(&str, &str)> = Vec::new();
        for (name, value) in pairs {
            if NOT_SUPPORTED.contains(&name) {
                return Err(NgsiError::new(
                    ErrorKind::InvalidRequest,
                    format!("parameter `{name}` is not supported by this server"),
                ));
            }
            if !KNOWN.contains(&name) && name != "format" && name != "local" {
                return Err(NgsiError::invalid(format!("unknown parameter `{name}`")));
            }
            if given.iter().any(|(n, _)| *n == name) {
                return Err(NgsiError::invalid(format!(
                    "parameter `{name}` given twice"
                )));
            }
            given.push((name, value));
        }
        let get = |name: &str| given.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);

        let ids = get("id")
            .map(|text| {
                let ids: BTreeSet<String> = text.split(',').map(str::to_owned).collect();
                match ids.iter().find(|id| !is_uri(id)) {
                    Some(bad) => Err(NgsiError::bad_data(format!("id: `{bad}` is not a URI"))),
                    None => Ok(ids),
                }
            })
            .transpose()?;
        let types = get("type").map(TypeSelection::parse).transpose()?;
        let id_pattern = get("idPattern")
            .map(|pattern| {
                regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|err| NgsiError::bad_data(format!("idPattern: {err}")))
            })
            .transpose()?;
        let attrs = get("attrs").map(|a| names(a, "attrs")).transpose()?;
        let pick = get("pick").map(|a| names(a, "pick")).transpose()?;
        let omit = get("omit")
            .map(|a| names(a, "omit"))
            .transpose()?
            .unwrap_or_default();
        let q = get("q").map(Query::parse).transpose()?;
        let geo = match (get("georel"), get("geometry"), get("coordinates")) {
            // `geoproperty` alone is ignored (clause 6.4.3.2).
            (None, None, None) => None,
            (Some(georel), Some(geometry), Some(coordinates)) => Some(GeoQuery::parse(
                georel,
                geometry,
                coordinates,
                get("geoproperty"),
            )?),
            _ => {
                return Err(NgsiError::bad_data(
                    "georel, geometry and coordinates go together",
                ));
            }
        };
        let local = get("local")
            .map(|l| boolean("local", l))
            .transpose()?
            .unwrap_or(false);
        let count = get("count")
            .map(|c| boolean("count", c))
            .transpose()?
            .unwrap_or(false);
        let offset = get("offset")
            .map(|o| number("offset", o))
            .transpose()?
            .unwrap_or(0);
        let limit = get("limit")
            .map(|l| number("limit", l))
            .transpose()?
            .unwrap_or(DEFAULT_LIMIT.min(max_limit));
        if limit == 0 && !count {
            return Err(NgsiError::bad_data(
                "limit=0 is allowed only with count=true",
            ));
        }
        if limit > max_limit {
            return Err(NgsiError::new(
                ErrorKind::TooManyResults,
                format!("limit {limit} is more than the {max_limit} entities a page may hold"),
            ));
        }
        let wildcard = types.as_ref().is_some_and(|t| t.0.is_none());
        if wildcard && get("local") == Some("false") {
            return Err(NgsiError::bad_data("type=* implies local=true"));
        }
        if types.is_none() && attrs.is_none() && q.is_none() && geo.is_none() && !local {
            return Err(NgsiError::bad_data(
                "too wide query: give type, attrs, q or a geo-query (or local=true)",
            ));
        }
        let format = parse_format(get("format"), get("options"))?;
        if get("geometryProperty").is_some_and(|g| !is_type_name(g)) {
            return Err(NgsiError::bad_data(
                "geometryProperty: not an attribute name",
            ));
        }
        Ok(EntityQuery {
            ids,
            types,
            id_pattern,
            projection: Projection {
                pick,
                attrs: attrs.clone(),
                omit,
            },
            attrs,
            q,
            geo,
            scope_query: get("scopeQ").is_some(),
            format,
            offset,
            limit,
            count,
            geometry_property: get("geometryProperty").unwrap_or("location").to_owned(),
        })
    }

    /// Whether `entity` passes every filter but the geo-query (which needs
    /// the caller's metric geometry).
    pub fn selects(&self, entity: &Entity) -> bool {
        !self.scope_query
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&entity.id))
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.selects(&entity.entity_type))
            && self
                .id_pattern
                .as_ref()
                .is_none_or(|p| p.is_match(&entity.id))
            && self
                .attrs
                .as_ref()
                .is_none_or(|attrs| attrs.iter().any(|a| entity.attribute(a).is_some()))
            && self.q.as_ref().is_none_or(|q| q.matches(entity))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::entity::Attribute;

    fn parse(query: &str) -> Result<EntityQuery, NgsiError> {
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        EntityQuery::parse(pairs, 1000)
    }

    fn kind(query: &str) -> ErrorKind {
        parse(query).expect_err(query).kind
    }

    fn building(id: &str, height: f64) -> Entity {
        Entity {
            id: format!("urn:ngsi-ld:Building:{id}"),
            entity_type: "Building".into(),
            attributes: vec![(
                "height".into(),
                Attribute::Property {
                    value: json!(height),
                    observed_at: None,
                    unit_code: Some("MTR".into()),
                },
            )],
        }
    }

    #[test]
    fn a_query_must_restrict_something() {
        assert_eq!(kind(""), ErrorKind::BadRequestData);
        assert_eq!(
            kind("id=urn:ngsi-ld:Building:b1"),
            ErrorKind::BadRequestData
        );
        assert_eq!(kind("idPattern=.*"), ErrorKind::BadRequestData);
        assert!(parse("type=Building").is_ok());
        assert!(parse("attrs=height").is_ok());
        assert!(parse("q=height>3").is_ok());
        assert!(parse("local=true").is_ok());
        assert!(
            parse("georel=near;maxDistance==10&geometry=Point&coordinates=[24.9,60.1]").is_ok()
        );
        assert!(parse("type=*").is_ok());
        assert_eq!(kind("type=*&local=false"), ErrorKind::BadRequestData);
    }

    #[test]
    fn parameters_are_checked_with_the_spec_error_types() {
        assert_eq!(kind("type=Building&color=red"), ErrorKind::InvalidRequest);
        assert_eq!(kind("type=Building&type=Device"), ErrorKind::InvalidRequest);
        assert_eq!(kind("type=Building&csf=x"), ErrorKind::InvalidRequest);
        assert_eq!(
            kind("type=Building&options=fancy"),
            ErrorKind::InvalidRequest
        );
        assert_eq!(kind("type=Building&limit=0"), ErrorKind::BadRequestData);
        assert!(parse("type=Building&limit=0&count=true").is_ok());
        assert_eq!(kind("type=Building&limit=5000"), ErrorKind::TooManyResults);
        assert_eq!(kind("type=Building&limit=-1"), ErrorKind::BadRequestData);
        assert_eq!(
            kind("type=Building&id=not a uri"),
            ErrorKind::BadRequestData
        );
        assert_eq!(kind("type=Building&idPattern=("), ErrorKind::BadRequestData);
        assert_eq!(kind("type=Build ing"), ErrorKind::BadRequestData);
        assert_eq!(
            kind("type=Building&georel=within"),
            ErrorKind::BadRequestData
        );
        assert_eq!(kind("type=Building&count=yes"), ErrorKind::BadRequestData);
    }

    #[test]
    fn format_wins_over_options() {
        let q = parse("type=Building&options=keyValues,sysAttrs").expect("parses");
        assert_eq!(q.format, Format::KeyValues);
        let q = parse("type=Building&options=keyValues&format=concise").expect("parses");
        assert_eq!(q.format, Format::Concise);
        assert_eq!(
            parse("type=Building").expect("parses").format,
            Format::Normalized
        );
        assert_eq!(
            kind("type=Building&options=keyValues,concise"),
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn filters_select_entities() {
        let (low, high) = (building("b1", 6.0), building("b2", 30.0));
        let select = |query: &str| {
            let q = parse(query).expect(query);
            [&low, &high]
                .into_iter()
                .filter(|e| q.selects(e))
                .map(|e| e.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(select("type=Building").len(), 2);
        assert_eq!(select("type=Device|Building").len(), 2);
        assert_eq!(select("type=Device,Building").len(), 2);
        assert!(select("type=(Device;Building)").is_empty());
        assert!(select("type=Device").is_empty());
        assert_eq!(
            select("type=Building&q=height>10"),
            ["urn:ngsi-ld:Building:b2"]
        );
        assert_eq!(
            select("type=Building&id=urn:ngsi-ld:Building:b1,urn:x:y"),
            ["urn:ngsi-ld:Building:b1"]
        );
        assert_eq!(
            select("type=Building&idPattern=b2$"),
            ["urn:ngsi-ld:Building:b2"]
        );
        assert!(select("attrs=name").is_empty());
        assert_eq!(select("attrs=name,height").len(), 2);
        assert!(select("type=Building&scopeQ=/Helsinki").is_empty());
    }
}
