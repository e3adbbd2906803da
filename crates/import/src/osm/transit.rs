//! Public-transport routes (`type=route` relations) and their stops.

use std::collections::{BTreeMap, HashMap, HashSet};

use polis_protocol::AssetKind;
use polis_scene::{Asset, Geometry};

use super::chain::chain_ways;
use super::frame::Frame;
use super::read::{MemberKind, OsmData, Relation, Tags};
use crate::geometry::{is_valid_line, length_m};
use crate::report::ImportReport;

/// `route` values imported as transit routes.
pub(crate) const ROUTE_MODES: [&str; 6] = ["tram", "bus", "subway", "train", "light_rail", "ferry"];

/// Member roles of ways that make up a route's path.
const PATH_ROLES: [&str; 4] = ["", "forward", "backward", "hail_and_ride"];

/// Member roles of a route's stops.
const STOP_ROLES: [&str; 3] = ["stop", "stop_entry_only", "stop_exit_only"];

/// Member roles of a route's platforms: its stops when it has no member
/// with a [`STOP_ROLES`] role (as in routes that list only the
/// `railway=tram_stop` or `highway=bus_stop` nodes).
const PLATFORM_ROLES: [&str; 3] = ["platform", "platform_entry_only", "platform_exit_only"];

/// Transit stops and routes: stops first (each node once, however many
/// routes serve it), then routes.
pub(crate) struct Transit {
    /// `transit_stop` assets.
    pub(crate) stops: Vec<Asset>,
    /// `transit_route` assets.
    pub(crate) routes: Vec<Asset>,
}

/// True for a relation imported as a transit route.
fn is_route(relation: &Relation) -> bool {
    relation.tags.get("type").is_some_and(|t| t == "route")
        && relation
            .tags
            .get("route")
            .is_some_and(|m| ROUTE_MODES.contains(&m.as_str()))
}

/// True for a node tagged as a stop on its own, outside any route.
fn is_stop_node(tags: &Tags) -> bool {
    let tag_is = |key: &str, value: &str| tags.get(key).is_some_and(|v| v == value);
    tag_is("public_transport", "stop_position")
        || tag_is("railway", "tram_stop")
        || tag_is("highway", "bus_stop")
}

/// The routes of the extract and their stops, then stop nodes served by
/// no route.
pub(crate) fn transit(data: &OsmData, frame: &Frame<'_>, report: &mut ImportReport) -> Transit {
    let ways = data.way_index();
    // Stop node id → ids of the routes serving it, in first-seen order.
    let mut stop_routes: Vec<(i64, Vec<String>)> = Vec::new();
    let mut stop_index: HashMap<i64, usize> = HashMap::new();
    let mut routes = Vec::new();

    for relation in data.relations.iter().filter(|r| is_route(r)) {
        let route_id = format!("osm-rel-{}", relation.id);
        let mut path: Vec<&[i64]> = Vec::new();
        let mut stop_nodes: Vec<i64> = Vec::new();
        let mut missing_ways = 0u64;
        let has_stops = relation
            .members
            .iter()
            .any(|m| STOP_ROLES.contains(&m.role.as_str()));
        let stop_roles = if has_stops {
            STOP_ROLES
        } else {
            PLATFORM_ROLES
        };
        for member in &relation.members {
            let role = member.role.as_str();
            match member.kind {
                MemberKind::Way if PATH_ROLES.contains(&role) => match ways.get(&member.id) {
                    Some(way) => path.push(&way.refs),
                    None => missing_ways += 1,
                },
                MemberKind::Node if stop_roles.contains(&role) => {
                    if !data.nodes.contains_key(&member.id) {
                        report.skip("transit_stop: stop node missing from the extract");
                        continue;
                    }
                    if stop_nodes.last() != Some(&member.id) {
                        stop_nodes.push(member.id);
                    }
                }
                _ if stop_roles.contains(&role) => {
                    report.skip("transit_stop: stop or platform member that is not a node");
                }
                _ => {} // platforms and other roles are not part of the path
            }
        }
        report.skip_n(
            "transit_route: member ways missing from the extract",
            missing_ways,
        );
        if path.is_empty() {
            report.skip("transit_route: no ways in the extract");
            continue;
        }
        let chain = chain_ways(&path, &|id| frame.point(id));
        let projected = frame.points(&chain.nodes);
        if !is_valid_line(&projected.points) {
            report.skip("transit_route: degenerate geometry");
            continue;
        }
        if chain.gaps > 0 || missing_ways > 0 {
            report.skip("transit_route: gap in geometry");
        }
        if projected.missing > 0 {
            report.skip("transit_route: clipped to the nodes in the extract");
        }
        let mut attributes = BTreeMap::new();
        for key in ["route", "ref", "name", "from", "to", "colour", "operator"] {
            if let Some(value) = relation.tags.get(key) {
                attributes.insert(key.to_owned(), value.clone());
            }
        }
        let stop_ids: Vec<String> = stop_nodes.iter().map(|n| format!("osm-node-{n}")).collect();
        attributes.insert("stops".to_owned(), stop_ids.join(","));
        attributes.insert(
            "length_m".to_owned(),
            format!("{:.1}", length_m(&projected.points)),
        );
        attributes.insert("gaps".to_owned(), chain.gaps.to_string());
        for node in stop_nodes {
            let index = *stop_index.entry(node).or_insert_with(|| {
                stop_routes.push((node, Vec::new()));
                stop_routes.len() - 1
            });
            if let Some((_, served)) = stop_routes.get_mut(index)
                && !served.contains(&route_id)
            {
                served.push(route_id.clone());
            }
        }
        routes.push(Asset {
            id: route_id,
            kind: AssetKind::TransitRoute,
            geometry: Geometry::Line(projected.points),
            height_m: None,
            attributes,
        });
    }

    let in_routes: HashSet<i64> = stop_routes.iter().map(|(id, _)| *id).collect();
    let mut standalone: Vec<i64> = data
        .node_tags
        .iter()
        .filter(|(id, tags)| !in_routes.contains(id) && is_stop_node(tags))
        .map(|(id, _)| *id)
        .collect();
    standalone.sort_unstable();

    let mut stops = Vec::new();
    let served = stop_routes.into_iter();
    let unserved = standalone.into_iter().map(|id| (id, Vec::new()));
    for (node, route_ids) in served.chain(unserved) {
        let Some([east_m, north_m]) = frame.point(node) else {
            continue; // outside WGS84 bounds, counted when read
        };
        let mut attributes = BTreeMap::new();
        if let Some(tags) = data.node_tags.get(&node) {
            for key in ["name", "ref"] {
                if let Some(value) = tags.get(key) {
                    attributes.insert(key.to_owned(), value.clone());
                }
            }
        }
        if !route_ids.is_empty() {
            attributes.insert("routes".to_owned(), route_ids.join(","));
        }
        stops.push(Asset {
            id: format!("osm-node-{node}"),
            kind: AssetKind::TransitStop,
            geometry: Geometry::Point([east_m, north_m, 0.0]),
            height_m: None,
            attributes,
        });
    }
    Transit { stops, routes }
}
