//! The NGSI-LD API (ETSI GS CIM 009) over HTTP: the twin's buildings,
//! networks and sensors as entities, for the city platforms, dashboards and
//! brokers that speak NGSI-LD.
//!
//! The twin thread builds the [`Catalog`] once it has loaded the scene and
//! refreshes the sensors' [`LiveValues`] every tick from what changed
//! (`NgsiPlugin`); the `polis-ngsi` HTTP thread answers from those alone,
//! never waiting for a tick. Requests carry `Authorization: Bearer TOKEN`;
//! each token sees exactly what it sees in a 3D client: personal sensors
//! raw only for operators (audited) and their own household, aggregates by
//! role. The protocol rules (parameters, representations, errors) are
//! `polis_ngsild`'s.

mod catalog;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bevy::prelude::*;
use polis_net::TokenDirectory;
use polis_ngsild::{
    Entity, EntityQuery, ErrorKind, Format, MediaType, NgsiError, Projection, check_context_links,
    context_link, negotiate, parse_format,
};
use polis_protocol::Access;
use polis_twin::{AssetTable, ChangedSensors, SensorTable, TwinInfo, TwinSystems};
use serde_json::{Value, json};

use self::catalog::{Catalog, LiveValues, Viewer};
use crate::audit::AuditLog;
use crate::http::HttpEndpoint;

/// Path prefix of every resource.
const API_ROOT: &str = "/ngsi-ld/v1";
/// How long a request made while the twin is still loading waits for it.
const LOADING_WAIT: Duration = Duration::from_secs(3);
/// The default vocabulary short names expand with (no user @context).
const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

/// What the twin thread and the HTTP thread share.
#[derive(Default)]
pub(crate) struct NgsiState {
    catalog: OnceLock<Catalog>,
    live: LiveValues,
}

/// The twin's half: builds the catalog at the first tick and keeps the
/// live values current.
#[derive(Resource, Clone, Default)]
pub(crate) struct NgsiShared(pub(crate) Arc<NgsiState>);

/// Builds the catalog when the twin starts and refreshes live values after
/// each tick's readings.
pub(crate) struct NgsiPlugin;

impl Plugin for NgsiPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Startup, build_catalog).add_systems(
            Update,
            refresh_live
                .after(TwinSystems::Apply)
                .before(TwinSystems::Interest),
        );
    }
}

fn build_catalog(
    shared: Option<Res<NgsiShared>>,
    assets: Res<AssetTable>,
    sensors: Res<SensorTable>,
    info: Res<TwinInfo>,
) {
    let Some(shared) = shared else {
        return;
    };
    shared.0.live.fill(&sensors);
    let catalog = Catalog::build(&assets, &sensors, info.georeference);
    tracing::info!(entities = catalog.entities.len(), "NGSI-LD entities ready");
    let _ = shared.0.catalog.set(catalog);
}

fn refresh_live(
    shared: Option<Res<NgsiShared>>,
    sensors: Res<SensorTable>,
    changed: Res<ChangedSensors>,
) {
    if let Some(shared) = shared {
        shared.0.live.update(&sensors, changed.handles());
    }
}

/// What the HTTP handlers answer from.
#[derive(Clone)]
struct Api {
    state: Arc<NgsiState>,
    tokens: Arc<dyn TokenDirectory>,
    audit: AuditLog,
    max_page: usize,
}

/// Starts the API on `listen` (the `polis-ngsi` thread), answering from
/// `shared` for the holders of `tokens`.
pub(crate) fn start(
    listen: SocketAddr,
    max_page: usize,
    shared: &NgsiShared,
    tokens: Arc<dyn TokenDirectory>,
    audit: AuditLog,
) -> anyhow::Result<HttpEndpoint> {
    let api = Api {
        state: Arc::clone(&shared.0),
        tokens,
        audit,
        max_page,
    };
    let endpoint = HttpEndpoint::serve_named(listen, router(api), "polis-ngsi")?;
    tracing::info!(addr = %endpoint.local_addr(), "NGSI-LD API at {API_ROOT}");
    Ok(endpoint)
}

fn router(api: Api) -> Router {
    Router::new()
        .route(&format!("{API_ROOT}/entities"), get(query_entities))
        .route(&format!("{API_ROOT}/entities/{{id}}"), get(retrieve_entity))
        .route(&format!("{API_ROOT}/types"), get(types))
        .route(&format!("{API_ROOT}/types/{{name}}"), get(type_info))
        .route(&format!("{API_ROOT}/attributes"), get(attributes))
        .route(
            &format!("{API_ROOT}/attributes/{{name}}"),
            get(attribute_info),
        )
        .fallback(not_found)
        .with_state(api)
}

/// An answer that is an NGSI-LD error.
struct Problem(NgsiError);

impl From<NgsiError> for Problem {
    fn from(error: NgsiError) -> Self {
        Problem(error)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::BAD_REQUEST);
        // Errors are `application/json` whatever was asked (clause 5.5.3).
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.0.body().to_string(),
        )
            .into_response()
    }
}

/// An answer outside NGSI-LD's error types (authentication), in RFC 7807's
/// plain form.
fn http_problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or_default(),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"polis\""),
        );
    }
    response
}

async fn not_found() -> Response {
    Problem(NgsiError::new(
        ErrorKind::ResourceNotFound,
        "no such resource; the API is under /ngsi-ld/v1/",
    ))
    .into_response()
}

/// Who asks (by bearer token), how to answer, and the catalog; or the
/// answer that refuses.
struct Request<'a> {
    access: Access,
    name: String,
    own: Vec<String>,
    media: MediaType,
    catalog: &'a Catalog,
}

impl Request<'_> {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            access: self.access,
            own_sensors: &self.own,
        }
    }
}

async fn begin<'a>(api: &'a Api, headers: &HeaderMap, geo: bool) -> Result<Request<'a>, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return Err(http_problem(
            StatusCode::UNAUTHORIZED,
            "send `Authorization: Bearer TOKEN` with a viewer token",
        ));
    };
    let Some(grant) = api.tokens.grant(token) else {
        return Err(http_problem(StatusCode::UNAUTHORIZED, "unknown token"));
    };
    if grant.access == Access::Gateway {
        return Err(http_problem(
            StatusCode::FORBIDDEN,
            "a gateway token may push readings, not read entities",
        ));
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let media = negotiate(accept, geo).map_err(|e| Problem(e).into_response())?;
    let links = headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok());
    check_context_links(links).map_err(|e| Problem(e).into_response())?;
    let catalog = wait_for_catalog(&api.state).await.ok_or_else(|| {
        let mut response = Problem(NgsiError::new(
            ErrorKind::InternalError,
            "the twin is still loading the city; try again shortly",
        ))
        .into_response();
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    })?;
    Ok(Request {
        access: grant.access,
        name: grant.name,
        own: grant.own_sensors.to_vec(),
        media,
        catalog,
    })
}

async fn wait_for_catalog(state: &NgsiState) -> Option<&Catalog> {
    let deadline = tokio::time::Instant::now() + LOADING_WAIT;
    loop {
        if let Some(catalog) = state.catalog.get() {
            return Some(catalog);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Query parameters, percent-decoded (`+` as a space, as forms have it).
fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let text = text.replace('+', " ");
        percent_encoding::percent_decode_str(&text)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// A JSON answer in the negotiated representation: the @context in a
/// `Link` header for JSON, in the body (already) for JSON-LD.
fn answer(media: MediaType, body: &Value, extra: Vec<(&'static str, String)>) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.as_str()),
    );
    if media != MediaType::JsonLd
        && let Ok(link) = HeaderValue::from_str(&context_link())
    {
        headers.append(header::LINK, link);
    }
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(name, value);
        }
    }
    response
}

/// An entity as GeoJSON (clause 4.5.16): its `geometry_property` as the
/// geometry, every attribute under `properties`.
fn feature(entity: &Entity, rendered: Value, geometry_property: &str) -> Value {
    let geometry = match entity.attribute(geometry_property) {
        Some(polis_ngsild::Attribute::GeoProperty { value }) => value.clone(),
        _ => Value::Null,
    };
    let mut properties = rendered;
    if let Some(object) = properties.as_object_mut() {
        object.remove("id");
        object.remove("@context");
    }
    json!({"id": entity.id, "type": "Feature", "geometry": geometry, "properties": properties})
}

/// Records that an operator was shown personal sensors' raw values.
fn audit_personal(api: &Api, request: &Request<'_>, shown: Vec<String>) {
    if request.access == Access::Operator && !shown.is_empty() {
        api.audit.shown(&request.name, &shown, None);
    }
}

async fn query_entities(
    State(api): State<Api>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match begin(&api, &headers, true).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let pairs = pairs(query.as_deref());
    let query = match EntityQuery::parse(
        pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        api.max_page,
    ) {
        Ok(query) => query,
        Err(error) => return Problem(error).into_response(),
    };
    let catalog = request.catalog;
    let prepared = query.geo.as_ref().map(|geo| {
        let georeference = catalog.georeference;
        geo.prepare(move |lon, lat| {
            let [e, n] = georeference.enu_from_lonlat(lon, lat);
            (e, n)
        })
    });
    // A geo-query on another GeoProperty than `location` matches nothing
    // here: `location` is every entity's only one.
    let other_geoproperty = query
        .geo
        .as_ref()
        .is_some_and(|g| g.geoproperty != "location");
    let candidates: Box<dyn Iterator<Item = usize>> =
        match prepared.as_ref().and_then(|p| p.search_box()) {
            Some((min, max)) => Box::new(catalog.near(min, max).into_iter()),
            None => Box::new(0..catalog.entities.len()),
        };
    let viewer = request.viewer();
    let mut total = 0usize;
    let mut page = Vec::new();
    let mut shown = Vec::new();
    for index in candidates {
        let Some(item) = catalog.entities.get(index) else {
            continue;
        };
        if other_geoproperty
            || !item.visible_to(&viewer)
            || prepared
                .as_ref()
                .is_some_and(|p| !p.matches(&item.geometry_m))
        {
            continue;
        }
        let entity = item.entity(&api.state.live);
        if !query.selects(&entity) {
            continue;
        }
        total += 1;
        if total > query.offset && page.len() < query.limit {
            if let Some(id) = &item.personal {
                shown.push(id.clone());
            }
            page.push(entity);
        }
    }
    audit_personal(&api, &request, shown);
    let ld = request.media == MediaType::JsonLd;
    let rendered: Vec<Value> = page
        .iter()
        .map(|entity| {
            let body = entity.render(query.format, &query.projection, ld);
            if request.media == MediaType::GeoJson {
                feature(entity, body, &query.geometry_property)
            } else {
                body
            }
        })
        .collect();
    let body = if request.media == MediaType::GeoJson {
        json!({"type": "FeatureCollection", "features": rendered})
    } else {
        Value::Array(rendered)
    };
    let mut extra = Vec::new();
    if query.count {
        extra.push(("NGSILD-Results-Count", total.to_string()));
    }
    if query.offset + page.len() < total && query.limit > 0 {
        let next: Vec<String> = pairs
            .iter()
            .filter(|(n, _)| n != "offset")
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .chain([format!("offset={}", query.offset + query.limit)])
            .collect();
        extra.push((
            "Link",
            format!(
                "<{API_ROOT}/entities?{}>; rel=\"next\"; type=\"{}\"",
                next.join("&"),
                request.media.as_str()
            ),
        ));
    }
    answer(request.media, &body, extra)
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Parameters of a retrieval: projection and representation.
fn retrieval(pairs: &[(String, String)]) -> Result<(Projection, Format, String), NgsiError> {
    let mut projection = Projection::default();
    let (mut format, mut options, mut geometry_property) = (None, None, None);
    let names = |text: &str| -> BTreeSet<String> { text.split(',').map(str::to_owned).collect() };
    for (name, value) in pairs {
        match name.as_str() {
            "attrs" => projection.attrs = Some(names(value)),
            "pick" => projection.pick = Some(names(value)),
            "omit" => projection.omit = names(value),
            "format" => format = Some(value.as_str()),
            "options" => options = Some(value.as_str()),
            "geometryProperty" => geometry_property = Some(value.clone()),
            "lang" | "local" => {}
            other => return Err(NgsiError::invalid(format!("unknown parameter `{other}`"))),
        }
    }
    Ok((
        projection,
        parse_format(format, options)?,
        geometry_property.unwrap_or_else(|| "location".into()),
    ))
}

async fn retrieve_entity(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match begin(&api, &headers, true).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if !polis_ngsild::is_uri(&id) {
        return Problem(NgsiError::bad_data(format!("`{id}` is not a URI"))).into_response();
    }
    let (projection, format, geometry_property) = match retrieval(&pairs(query.as_deref())) {
        Ok(parsed) => parsed,
        Err(error) => return Problem(error).into_response(),
    };
    // An entity the token may not see does not exist for it.
    let viewer = request.viewer();
    let Some((_, item)) = request
        .catalog
        .get(&id)
        .filter(|(_, item)| item.visible_to(&viewer))
    else {
        return Problem(NgsiError::not_found(&id, format!("no entity {id}"))).into_response();
    };
    let entity = item.entity(&api.state.live);
    if let Some(attrs) = &projection.attrs
        && attrs.iter().all(|a| entity.attribute(a).is_none())
    {
        return Problem(NgsiError::not_found(
            &id,
            format!("{id} has none of the attributes asked for"),
        ))
        .into_response();
    }
    if let Some(personal) = &item.personal {
        audit_personal(&api, &request, vec![personal.clone()]);
    }
    let body = entity.render(format, &projection, request.media == MediaType::JsonLd);
    let body = if request.media == MediaType::GeoJson {
        feature(&entity, body, &geometry_property)
    } else {
        body
    };
    answer(request.media, &body, Vec::new())
}

/// Per entity type: how many the viewer sees, and each attribute's name
/// with the kinds it comes as.
type Summary = BTreeMap<&'static str, (usize, BTreeMap<String, BTreeSet<&'static str>>)>;

fn summary(request: &Request<'_>, live: &LiveValues) -> Summary {
    let viewer = request.viewer();
    let mut summary = Summary::new();
    for item in request
        .catalog
        .entities
        .iter()
        .filter(|e| e.visible_to(&viewer))
    {
        let (count, attributes) = summary.entry(item.entity_type).or_default();
        *count += 1;
        for (name, attribute) in &item.entity(live).attributes {
            attributes
                .entry(name.clone())
                .or_default()
                .insert(attribute.type_name());
        }
    }
    summary
}

fn details(pairs: &[(String, String)]) -> Result<bool, NgsiError> {
    let mut details = false;
    for (name, value) in pairs {
        match (name.as_str(), value.as_str()) {
            ("details", "true") => details = true,
            ("details", "false") | ("local", _) => {}
            ("details", other) => {
                return Err(NgsiError::bad_data(format!(
                    "details: `{other}` is not true or false"
                )));
            }
            (other, _) => return Err(NgsiError::invalid(format!("unknown parameter `{other}`"))),
        }
    }
    Ok(details)
}

fn with_context(mut body: Value, media: MediaType) -> Value {
    if media == MediaType::JsonLd {
        let add = |v: &mut Value| {
            if let Some(object) = v.as_object_mut() {
                object.insert("@context".into(), polis_ngsild::CORE_CONTEXT.into());
            }
        };
        match &mut body {
            Value::Array(all) => all.iter_mut().for_each(add),
            one => add(one),
        }
    }
    body
}

async fn types(State(api): State<Api>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let request = match begin(&api, &headers, false).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let details = match details(&pairs(query.as_deref())) {
        Ok(details) => details,
        Err(error) => return Problem(error).into_response(),
    };
    let summary = summary(&request, &api.state.live);
    let body = if details {
        Value::Array(
            summary
                .iter()
                .map(|(name, (_, attributes))| {
                    json!({
                        "id": format!("{DEFAULT_VOCAB}{name}"),
                        "type": "EntityType",
                        "typeName": name,
                        "attributeNames": attributes.keys().collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": "urn:ngsi-ld:EntityTypeList:polis",
            "type": "EntityTypeList",
            "typeList": summary.keys().collect::<Vec<_>>(),
        })
    };
    answer(
        request.media,
        &with_context(body, request.media),
        Vec::new(),
    )
}

async fn type_info(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match begin(&api, &headers, false).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if let Err(error) = details(&pairs(query.as_deref())) {
        return Problem(error).into_response();
    }
    let short = name.strip_prefix(DEFAULT_VOCAB).unwrap_or(&name);
    let summary = summary(&request, &api.state.live);
    let Some((count, attributes)) = summary.get(short) else {
        return Problem(NgsiError::not_found(
            &name,
            format!("no entity of type {name}"),
        ))
        .into_response();
    };
    let body = json!({
        "id": format!("{DEFAULT_VOCAB}{short}"),
        "type": "EntityTypeInfo",
        "typeName": short,
        "entityCount": count,
        "attributeDetails": attributes.iter().map(|(attribute, kinds)| json!({
            "id": format!("{DEFAULT_VOCAB}{attribute}"),
            "type": "Attribute",
            "attributeName": attribute,
            "attributeTypes": kinds,
        })).collect::<Vec<_>>(),
    });
    answer(
        request.media,
        &with_context(body, request.media),
        Vec::new(),
    )
}

/// Per attribute: how many entities have it, the kinds it comes as, and
/// the types that have it.
fn attribute_summary(summary: &Summary) -> BTreeMap<&str, (usize, BTreeSet<&str>, BTreeSet<&str>)> {
    let mut out: BTreeMap<&str, (usize, BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for (type_name, (count, attributes)) in summary {
        for (attribute, kinds) in attributes {
            let entry = out.entry(attribute.as_str()).or_default();
            entry.0 += count;
            entry.1.extend(kinds.iter().copied());
            entry.2.insert(type_name);
        }
    }
    out
}

fn attribute_body(
    name: &str,
    (count, kinds, types): &(usize, BTreeSet<&str>, BTreeSet<&str>),
) -> Value {
    json!({
        "id": format!("{DEFAULT_VOCAB}{name}"),
        "type": "Attribute",
        "attributeName": name,
        "attributeCount": count,
        "attributeTypes": kinds,
        "typeNames": types,
    })
}

async fn attributes(
    State(api): State<Api>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match begin(&api, &headers, false).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let details = match details(&pairs(query.as_deref())) {
        Ok(details) => details,
        Err(error) => return Problem(error).into_response(),
    };
    let summary = summary(&request, &api.state.live);
    let all = attribute_summary(&summary);
    let body = if details {
        Value::Array(
            all.iter()
                .map(|(name, facts)| attribute_body(name, facts))
                .collect(),
        )
    } else {
        json!({
            "id": "urn:ngsi-ld:AttributeList:polis",
            "type": "AttributeList",
            "attributeList": all.keys().collect::<Vec<_>>(),
        })
    };
    answer(
        request.media,
        &with_context(body, request.media),
        Vec::new(),
    )
}

async fn attribute_info(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match begin(&api, &headers, false).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if let Err(error) = details(&pairs(query.as_deref())) {
        return Problem(error).into_response();
    }
    let short = name.strip_prefix(DEFAULT_VOCAB).unwrap_or(&name);
    let summary = summary(&request, &api.state.live);
    let all = attribute_summary(&summary);
    match all.get(short) {
        Some(facts) => answer(
            request.media,
            &with_context(attribute_body(short, facts), request.media),
            Vec::new(),
        ),
        None => {
            Problem(NgsiError::not_found(&name, format!("no attribute {name}"))).into_response()
        }
    }
}
