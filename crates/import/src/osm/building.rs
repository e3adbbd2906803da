//! Buildings from closed ways and multipolygon relations tagged `building`.

use std::collections::{BTreeMap, HashMap};

use polis_protocol::AssetKind;
use polis_scene::{Asset, Geometry};

use super::frame::{Frame, ShapeProblem};
use super::read::{MemberKind, OsmData, Relation, Tags, Way};
use super::rings::assemble_rings;
use super::tags::{HeightSource, address, parse_height_m, parse_levels, usage};
use crate::geometry::{area_m2, centroid, ring_contains};
use crate::report::{ImportReport, Progress};

/// How building heights are estimated when not tagged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeightRules {
    /// Height of one storey, metres.
    pub(crate) storey_height_m: f64,
    /// Height of a building with neither `height` nor `building:levels`.
    pub(crate) default_height_m: f64,
}

/// True for elements tagged `building=*` other than `building=no`.
fn is_building(tags: &Tags) -> bool {
    tags.get("building").is_some_and(|v| v != "no")
}

/// True for closed ways (first node repeated at the end).
fn is_closed(way: &Way) -> bool {
    way.refs.len() > 1 && way.refs.first() == way.refs.last()
}

/// Every building of the extract, ways first, then relations.
pub(crate) fn buildings(
    data: &OsmData,
    frame: &Frame<'_>,
    rules: HeightRules,
    report: &mut ImportReport,
    progress: &mut dyn FnMut(Progress),
) -> Vec<Asset> {
    let total = (data.ways.len() + data.relations.len()) as u64;
    let mut done = 0u64;
    let mut tick = |progress: &mut dyn FnMut(Progress)| {
        done += 1;
        if done.is_multiple_of(2000) || done == total {
            progress(Progress {
                stage: "buildings",
                done,
                total: Some(total),
            });
        }
    };
    let mut out = Vec::new();
    for way in &data.ways {
        tick(progress);
        if !is_building(&way.tags) {
            continue;
        }
        if !is_closed(way) {
            report.skip("building: way not closed");
            continue;
        }
        match frame.points(&way.refs).into_ring() {
            Ok((ring, missing)) => {
                if missing > 0 {
                    report.skip("building: clipped to the nodes in the extract");
                }
                let id = format!("osm-way-{}", way.id);
                out.push(building(id, &way.tags, ring, &[], None, rules, report));
            }
            Err(problem) => report.skip(shape_reason(problem)),
        }
    }

    let ways = data.way_index();
    for relation in &data.relations {
        tick(progress);
        if relation
            .tags
            .get("type")
            .is_some_and(|t| t == "multipolygon")
            && is_building(&relation.tags)
        {
            out.extend(multipolygon(relation, &ways, frame, rules, report));
        }
    }
    out
}

/// The skip reason for an unusable footprint.
fn shape_reason(problem: ShapeProblem) -> &'static str {
    match problem {
        ShapeProblem::MissingNodes => "building: too few nodes in the extract",
        ShapeProblem::Degenerate => "building: degenerate polygon",
    }
}

/// One building per usable outer ring of a multipolygon.
fn multipolygon(
    relation: &Relation,
    ways: &HashMap<i64, &Way>,
    frame: &Frame<'_>,
    rules: HeightRules,
    report: &mut ImportReport,
) -> Vec<Asset> {
    let mut outer: Vec<&[i64]> = Vec::new();
    let mut inner: Vec<&[i64]> = Vec::new();
    for member in &relation.members {
        if member.kind != MemberKind::Way {
            report.skip("building: multipolygon member that is not a way");
            continue;
        }
        let Some(way) = ways.get(&member.id) else {
            report.skip("building: multipolygon member way missing from the extract");
            continue;
        };
        match member.role.as_str() {
            "outer" | "" if is_closed(way) && is_building(&way.tags) => {
                // Already imported as a building way of its own.
                report.skip("building: multipolygon outer ring already a building way");
            }
            "outer" | "" => outer.push(&way.refs),
            "inner" => inner.push(&way.refs),
            _ => report.skip("building: multipolygon member with an unknown role"),
        }
    }
    let outers = assemble_rings(&outer);
    let inners = assemble_rings(&inner);
    report.skip_n(
        "building: multipolygon ring not closed",
        (outers.unclosed + inners.unclosed) as u64,
    );

    let mut outer_rings = Vec::new();
    for ring in &outers.closed {
        match frame.points(ring).into_ring() {
            Ok((points, missing)) => {
                if missing > 0 {
                    report.skip("building: clipped to the nodes in the extract");
                }
                outer_rings.push(points);
            }
            Err(problem) => report.skip(shape_reason(problem)),
        }
    }
    let mut holes: Vec<Vec<Vec<[f64; 2]>>> = vec![Vec::new(); outer_rings.len()];
    for ring in &inners.closed {
        let points = match frame.points(ring).into_ring() {
            Ok((points, _)) => points,
            Err(ShapeProblem::MissingNodes) => {
                report.skip("building: inner ring with too few nodes in the extract");
                continue;
            }
            Err(ShapeProblem::Degenerate) => {
                report.skip("building: degenerate inner ring");
                continue;
            }
        };
        let owner =
            centroid(&points).and_then(|c| outer_rings.iter().position(|o| ring_contains(o, c)));
        match owner.and_then(|k| holes.get_mut(k)) {
            Some(list) => list.push(points),
            None if outer_rings.is_empty() => {
                report.skip("building: inner ring of an outer ring not imported");
            }
            None => report.skip("building: inner ring outside every outer ring"),
        }
    }

    let several = outer_rings.len() > 1;
    outer_rings
        .into_iter()
        .zip(holes)
        .enumerate()
        .map(|(k, (ring, holes))| {
            let id = if several {
                format!("osm-rel-{}-{}", relation.id, k + 1)
            } else {
                format!("osm-rel-{}", relation.id)
            };
            building(
                id,
                &relation.tags,
                ring,
                &holes,
                Some(holes.len()),
                rules,
                report,
            )
        })
        .collect()
}

/// A building asset with its height and attributes (see the crate
/// documentation for the rules). `inner_rings` is given for multipolygons.
fn building(
    id: String,
    tags: &Tags,
    ring: Vec<[f64; 2]>,
    holes: &[Vec<[f64; 2]>],
    inner_rings: Option<usize>,
    rules: HeightRules,
    report: &mut ImportReport,
) -> Asset {
    let height_tag = tags.get("height");
    let levels_tag = tags.get("building:levels");
    let tagged_height_m = height_tag.and_then(|h| parse_height_m(h));
    let levels = levels_tag.and_then(|l| parse_levels(l));
    if height_tag.is_some() && tagged_height_m.is_none() {
        report.skip("building: unusable height tag (estimated instead)");
    }
    if levels_tag.is_some() && levels.is_none() {
        report.skip("building: unusable building:levels tag (ignored)");
    }
    let (height_m, source) = match (tagged_height_m, levels) {
        (Some(h), _) => (h, HeightSource::Height),
        (None, Some(l)) if l * rules.storey_height_m > 0.0 => {
            (l * rules.storey_height_m, HeightSource::Levels)
        }
        _ => (rules.default_height_m, HeightSource::Default),
    };
    // Floors: the tagged levels, else as many storeys as fit the height.
    let floors = levels
        .unwrap_or_else(|| (height_m / rules.storey_height_m).round())
        .max(1.0);
    let net_area_m2 = (area_m2(&ring) - holes.iter().map(|h| area_m2(h)).sum::<f64>()).max(0.0);

    let mut attributes = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        attributes.insert(key.to_owned(), value);
    };
    if let Some(name) = tags.get("name") {
        put("name", name.clone());
    }
    if let Some(address) = address(tags) {
        put("address", address);
    }
    if let Some(building) = tags.get("building") {
        put("building", building.clone());
    }
    if let (Some(raw), Some(_)) = (levels_tag, levels) {
        put("levels", raw.trim().to_owned());
    }
    put("height_source", source.as_str().to_owned());
    put("usage", usage(tags).to_owned());
    put(
        "floor_area_m2",
        format!("{}", (net_area_m2 * floors).round()),
    );
    if let Some(n) = inner_rings {
        put("inner_rings", n.to_string());
    }
    Asset {
        id,
        kind: AssetKind::Building,
        geometry: Geometry::Footprint(ring),
        height_m: Some(height_m),
        attributes,
    }
}
