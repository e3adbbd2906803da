//! The NGSI-LD API as a client sees it over real HTTP: status codes,
//! headers and bodies of each endpoint family per ETSI GS CIM 009, the
//! privacy rules of every role, a reading pushed over QUIC appearing in a
//! query, and `curl` as an independent client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use polis_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const CORE_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("{err}: {}", self.body))
    }
}

/// `GET path` with `token` (if any) and extra header lines.
fn get(addr: SocketAddr, path: &str, token: Option<&str>, extra: &[&str]) -> Answer {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: polis\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn ngsi(server: &TestServer) -> SocketAddr {
    server.server.ngsi_addr().expect("NGSI-LD API on")
}

fn ids(answer: &Answer) -> Vec<String> {
    answer
        .json()
        .as_array()
        .expect("an array of entities")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

fn assert_problem(answer: &Answer, status: u16, kind: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert_eq!(
        body["type"],
        format!("https://uri.etsi.org/ngsi-ld/errors/{kind}"),
        "{body}"
    );
    assert_eq!(body["status"], status);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_types_and_attributes_answer_as_the_spec_says() {
    let server = TestServer::start();
    let addr = ngsi(&server);
    let token = Some(VIEWER_TOKEN);

    // Query by type: JSON with the @context in a Link header.
    let answer = get(addr, "/ngsi-ld/v1/entities?type=Building", token, &[]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let link = answer.header("link").expect("Link header");
    assert!(link.contains(CORE_CONTEXT), "{link}");
    assert!(link.contains("rel=\"http://www.w3.org/ns/json-ld#context\""));
    let buildings = answer.json();
    let ids: Vec<&str> = buildings
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            "urn:ngsi-ld:Building:b-west-1",
            "urn:ngsi-ld:Building:b-west-2",
            "urn:ngsi-ld:Building:b-east-1",
            "urn:ngsi-ld:Building:b-east-2"
        ]
    );
    let first = &buildings[0];
    assert_eq!(first["type"], "Building");
    assert_eq!(first["height"]["type"], "Property");
    assert_eq!(first["height"]["value"], 18.5);
    assert_eq!(first["height"]["unitCode"], "MTR");
    assert_eq!(first["location"]["type"], "GeoProperty");
    assert_eq!(first["location"]["value"]["type"], "Polygon");
    let ring = first["location"]["value"]["coordinates"][0]
        .as_array()
        .expect("ring");
    assert_eq!(ring.len(), 5, "closed ring");
    assert_eq!(ring.first(), ring.last());
    // About 320 m west of the scene's origin (24.931 E, 60.169 N).
    let lon = ring[0][0].as_f64().expect("lon");
    assert!((24.924..24.926).contains(&lon), "{lon}");

    // JSON-LD: the @context in the body, no Link header for it.
    let answer = get(
        addr,
        "/ngsi-ld/v1/entities?type=Building&limit=1",
        token,
        &["Accept: application/ld+json"],
    );
    assert_eq!(answer.header("content-type"), Some("application/ld+json"));
    assert_eq!(answer.json()[0]["@context"], CORE_CONTEXT);

    // keyValues, pick and q.
    let answer = get(
        addr,
        "/ngsi-ld/v1/entities?type=Building&q=height%3E20&format=keyValues&pick=id,height",
        token,
        &[],
    );
    assert_eq!(
        answer.json(),
        serde_json::json!([
            {"id": "urn:ngsi-ld:Building:b-east-1", "height": 24.0},
            {"id": "urn:ngsi-ld:Building:b-east-2", "height": 30.0}
        ])
    );

    // Geo-query: what lies within 20 m of a point in b-west-2 (b-west-1
    // is 25 m away).
    let [lon, lat] = polis_protocol::Georeference {
        origin_lon_deg: 24.931,
        origin_lat_deg: 60.169,
    }
    .lonlat_from_enu(-285.0, 12.0);
    let near = get(
        addr,
        &format!(
            "/ngsi-ld/v1/entities?georel=near%3BmaxDistance%3D%3D20&geometry=Point\
             &coordinates=%5B{lon},{lat}%5D&type=Building"
        ),
        token,
        &[],
    );
    assert_eq!(super_ids(&near), ["urn:ngsi-ld:Building:b-west-2"]);
    let within = get(
        addr,
        &format!(
            "/ngsi-ld/v1/entities?georel=near%3BmaxDistance%3D%3D20&geometry=Point\
             &coordinates=%5B{lon},{lat}%5D&type=Device"
        ),
        token,
        &[],
    );
    // The meter and the panel on b-west-2 stand 5 m away.
    assert_eq!(
        super_ids(&within),
        [
            "urn:ngsi-ld:Device:meter-b-west-2",
            "urn:ngsi-ld:Device:pv-b-west-2"
        ]
    );

    // Pagination and count.
    let page = get(
        addr,
        "/ngsi-ld/v1/entities?type=Building&limit=2&count=true",
        token,
        &[],
    );
    assert_eq!(page.header("ngsild-results-count"), Some("4"));
    assert_eq!(super_ids(&page).len(), 2);
    let next = page
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("link"))
        .map(|(_, v)| v.as_str())
        .find(|v| v.contains("rel=\"next\""))
        .expect("a next link");
    let target = next
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(target, _)| target)
        .expect("link target");
    let rest = get(addr, target, token, &[]);
    assert_eq!(
        super_ids(&rest),
        [
            "urn:ngsi-ld:Building:b-east-1",
            "urn:ngsi-ld:Building:b-east-2"
        ]
    );
    let counted = get(
        addr,
        "/ngsi-ld/v1/entities?type=Device&limit=0&count=true",
        token,
        &[],
    );
    assert_eq!(counted.json(), serde_json::json!([]));
    assert_eq!(counted.header("ngsild-results-count"), Some("12"));

    // Retrieval, and a GeoJSON feature.
    let road = get(
        addr,
        "/ngsi-ld/v1/entities/urn:ngsi-ld:RoadSegment:road-main",
        token,
        &[],
    );
    assert_eq!(road.status, 200, "{}", road.body);
    assert_eq!(road.json()["location"]["value"]["type"], "LineString");
    let feature = get(
        addr,
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b-west-1",
        token,
        &["Accept: application/geo+json"],
    );
    assert_eq!(feature.header("content-type"), Some("application/geo+json"));
    let feature = feature.json();
    assert_eq!(feature["type"], "Feature");
    assert_eq!(feature["geometry"]["type"], "Polygon");
    assert_eq!(feature["properties"]["type"], "Building");

    // Types and attributes.
    let types = get(addr, "/ngsi-ld/v1/types", token, &[]).json();
    assert_eq!(types["type"], "EntityTypeList");
    let list: Vec<&str> = types["typeList"]
        .as_array()
        .expect("typeList")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        "Building",
        "Device",
        "GtfsStop",
        "Junction",
        "Pipe",
        "RoadSegment",
    ] {
        assert!(list.contains(&expected), "{list:?}");
    }
    let building = get(addr, "/ngsi-ld/v1/types/Building", token, &[]).json();
    assert_eq!(building["type"], "EntityTypeInfo");
    assert_eq!(building["entityCount"], 4);
    let attributes = get(addr, "/ngsi-ld/v1/attributes", token, &[]).json();
    assert_eq!(attributes["type"], "AttributeList");
    let location = get(addr, "/ngsi-ld/v1/attributes/location", token, &[]).json();
    assert_eq!(
        location["attributeTypes"],
        serde_json::json!(["GeoProperty"])
    );

    // Errors, each with the spec's type.
    assert_problem(
        &get(addr, "/ngsi-ld/v1/entities", token, &[]),
        400,
        "BadRequestData",
    );
    assert_problem(
        &get(
            addr,
            "/ngsi-ld/v1/entities?type=Building&q=height%3D%3D",
            token,
            &[],
        ),
        400,
        "BadRequestData",
    );
    assert_problem(
        &get(
            addr,
            "/ngsi-ld/v1/entities?type=Building&colour=red",
            token,
            &[],
        ),
        400,
        "InvalidRequest",
    );
    assert_problem(
        &get(
            addr,
            "/ngsi-ld/v1/entities?type=Building&limit=5000",
            token,
            &[],
        ),
        403,
        "TooManyResults",
    );
    assert_problem(
        &get(
            addr,
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Building:nowhere",
            token,
            &[],
        ),
        404,
        "ResourceNotFound",
    );
    assert_problem(
        &get(addr, "/ngsi-ld/v1/types/Castle", token, &[]),
        404,
        "ResourceNotFound",
    );
    assert_problem(
        &get(
            addr,
            "/ngsi-ld/v1/entities?type=Building",
            token,
            &[
                "Link: <https://example.org/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"",
            ],
        ),
        503,
        "LdContextNotAvailable",
    );
    let refused = get(
        addr,
        "/ngsi-ld/v1/entities?type=Building",
        token,
        &["Accept: text/html"],
    );
    assert_eq!(refused.status, 406);
    // No token, a wrong one, a gateway's.
    assert_eq!(get(addr, "/ngsi-ld/v1/types", None, &[]).status, 401);
    assert_eq!(
        get(addr, "/ngsi-ld/v1/types", Some("wrong"), &[]).status,
        401
    );
    assert_eq!(
        get(addr, "/ngsi-ld/v1/types", Some(GATEWAY_TOKEN), &[]).status,
        403
    );
}

fn super_ids(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    ids(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_pushed_over_quic_appears_in_queries_and_personal_data_only_where_allowed() {
    let server = TestServer::start();
    let addr = ngsi(&server);
    let mut gateway = server.gateway().await;
    gateway
        .push(vec![
            reading("air-west", 1_700_000_000_000, 12.5),
            reading("meter-b-west-1", 1_700_000_000_000, 3.25),
        ])
        .await;
    // Live values are copied after each tick: poll briefly.
    let deadline = std::time::Instant::now() + WAIT;
    let air = loop {
        let answer = get(
            addr,
            "/ngsi-ld/v1/entities?type=Device&q=pm25%3E10",
            Some(PUBLIC_TOKEN),
            &[],
        );
        if answer.status == 200 && answer.json().as_array().is_some_and(|a| !a.is_empty()) {
            break answer.json();
        }
        assert!(std::time::Instant::now() < deadline, "{}", answer.body);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(air[0]["id"], "urn:ngsi-ld:Device:air-west");
    assert_eq!(air[0]["pm25"]["value"], 12.5);
    assert_eq!(air[0]["pm25"]["observedAt"], "2023-11-14T22:13:20Z");
    assert_eq!(air[0]["pm25"]["unitCode"], "GQ");
    assert_eq!(air[0]["controlledProperty"]["value"], "pm2_5");

    // The household meter: raw for the operator (audited) and its own
    // household; absent for planners and the public.
    let house = "/ngsi-ld/v1/entities/urn:ngsi-ld:Device:meter-b-west-1";
    let operator = get(addr, house, Some(VIEWER_TOKEN), &[]);
    assert_eq!(operator.json()["activePower"]["value"], 3.25);
    assert_eq!(
        get(addr, house, Some(RESIDENT_TOKEN), &[]).json()["activePower"]["value"],
        3.25
    );
    assert_problem(
        &get(addr, house, Some(PUBLIC_TOKEN), &[]),
        404,
        "ResourceNotFound",
    );
    assert_problem(
        &get(addr, house, Some(PLANNER_TOKEN), &[]),
        404,
        "ResourceNotFound",
    );
    for token in [PUBLIC_TOKEN, PLANNER_TOKEN] {
        let all = get(
            addr,
            "/ngsi-ld/v1/entities?type=Device&limit=100",
            Some(token),
            &[],
        );
        let body = all.body.clone();
        assert!(!body.contains("meter-b-west-1"), "{body}");
        assert!(!body.contains("3.25"), "{body}");
    }
    let audit =
        std::fs::read_to_string(server.data_dir.path().join("audit.log")).expect("audit log");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("control-room") && l.contains("meter-b-west-1")),
        "{audit}"
    );
}

#[test]
fn curl_reads_the_api_as_the_readme_shows() {
    let server = TestServer::start();
    let addr = ngsi(&server);
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail-with-body", "-G"])
        .arg(format!("http://{addr}/ngsi-ld/v1/entities"))
        .args(["--data-urlencode", "type=Building"])
        .args(["--data-urlencode", "q=height>=24"])
        .args(["--data-urlencode", "format=keyValues"])
        .args(["-H", &format!("Authorization: Bearer {PUBLIC_TOKEN}")])
        .args(["-H", "Accept: application/ld+json"])
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let ids: Vec<&str> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            "urn:ngsi-ld:Building:b-east-1",
            "urn:ngsi-ld:Building:b-east-2"
        ]
    );
    assert_eq!(body[0]["@context"], CORE_CONTEXT);
    assert_eq!(body[0]["height"], 24.0);
}
