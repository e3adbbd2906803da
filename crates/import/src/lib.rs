//! Importers that turn real city data (OpenStreetMap, EPANET, readings CSV) into Polis scenes and readings, and the sensor deployment generated on them.
//!
//! * [`import_osm`] reads an OpenStreetMap `.osm.pbf` extract into a new
//!   [`Scene`](polis_scene::Scene): buildings, roads, transit routes and
//!   stops.
//! * [`parse_epanet`] reads an EPANET `.inp` water network;
//!   [`add_epanet`] places it into a scene.
//! * [`generate_sensors`] puts meters, photovoltaics, water sensors and
//!   transit vehicles on a scene's assets.
//!
//! Each returns an [`ImportReport`]: what was made, by kind, and what was
//! left out, by reason. Bad elements in good files are skipped and counted,
//! never silently; a file that cannot be read as a whole is an
//! [`ImportError`] naming it (and, for EPANET, the line). Scenes produced
//! always pass [`Scene::validate`](polis_scene::Scene::validate): an asset
//! the scene format would refuse is dropped and counted as
//! `"<kind>: invalid: <message>"`.
//!
//! All positions are local east/north/up metres around the scene's
//! georeference, rounded to the centimetre.
//!
//! # OpenStreetMap rules
//!
//! The scene origin is [`OsmOptions::origin`], or the centre of the
//! bounding box of all nodes rounded to 1e-4 degrees. The scene's
//! attribution credits OpenStreetMap contributors ([`OSM_ATTRIBUTION`]).
//!
//! **Buildings** (`building`, id `osm-way-<id>` or `osm-rel-<id>`) come
//! from closed ways tagged `building=*` (not `building=no`) and from
//! `type=multipolygon` relations tagged `building=*`. A multipolygon's
//! outer (and empty-role) member ways are joined end to end into rings; its
//! inner rings (courtyards) are not part of the footprint, which has no
//! holes, but are counted in the attribute `inner_rings` and subtracted
//! from the floor area. A multipolygon with several outer rings gives one
//! building per ring, with ids `osm-rel-<id>-1`, `-2`, ... The footprint is
//! the ring without its closing repeat; it needs 3 distinct points and a
//! non-zero area.
//!
//! * Height: the `height` tag (`12`, `12 m`, `12.5m`; other forms are
//!   ignored and counted), else `building:levels` × storey height
//!   (`roof:levels` is ignored), else the default height; the attribute
//!   `height_source` is `height`, `levels` or `default`.
//! * `usage`: `residential` (`building` = residential, apartments, house,
//!   detached, semidetached_house, terrace, dormitory, bungalow, houseboat,
//!   static_caravan, or `building:use=residential`), else `retail`
//!   (retail, supermarket, kiosk, or any `shop=*`), else `office` (office,
//!   or commercial with `office=*`), else `commercial` (commercial, hotel),
//!   else `public` (public, civic, government, school, university, college,
//!   kindergarten, places of worship, hospital, train_station,
//!   transportation, museum, library, theatre, fire_station, police,
//!   townhall, stadium, sports halls, parliament, courthouse), else
//!   `industrial` (industrial, warehouse, manufacture, factory), else
//!   `other`.
//! * `floor_area_m2`: footprint area (minus inner rings) × the number of
//!   floors, rounded to 1 m²; floors are `building:levels` when tagged,
//!   else the height divided by the storey height, rounded, and at least 1.
//! * Also `name`, `address` (`addr:street addr:housenumber`), `building`
//!   (the raw tag) and `levels` (the raw tag, when usable).
//!
//! **Roads** (`road`, id `osm-way-<id>`) come from ways whose `highway`
//! is a road or path class: motorway, trunk, primary, secondary, tertiary,
//! unclassified, residential, their `_link`s, service, living_street,
//! pedestrian, track, bus_guideway, busway, road, footway, cycleway, path,
//! steps, bridleway. Attributes `class` (the `highway` value), `name`,
//! `ref`.
//!
//! **Transit routes** (`transit_route`, id `osm-rel-<id>`) come from
//! `type=route` relations with `route` = tram, bus, subway, train,
//! light_rail or ferry. The line chains the member ways with role empty,
//! `forward`, `backward` or `hail_and_ride`, in member order, each reversed
//! when needed to continue from the end so far; a roundabout is followed
//! from entry to exit. Ways that do not connect are still appended (in the
//! direction starting nearer the end so far), and the route is counted
//! under `transit_route: gap in geometry`; so is a route with member ways
//! outside the extract. Attributes: `route`, `ref`, `name`, `from`, `to`,
//! `colour`, `operator`, `length_m`, `gaps` and `stops`, the ids of its
//! stops in member order, comma-separated.
//!
//! **Transit stops** (`transit_stop`, id `osm-node-<id>`, at ground level)
//! are the route members with role `stop`, `stop_entry_only` or
//! `stop_exit_only`; for a route with none of those, its `platform`,
//! `platform_entry_only` and `platform_exit_only` nodes (routes that list
//! only their `railway=tram_stop` or `highway=bus_stop` nodes, as in
//! Helsinki). A node shared by routes is one stop, with attribute `routes`
//! listing them. Nodes tagged `public_transport=stop_position`,
//! `railway=tram_stop` or `highway=bus_stop` that no route uses are stops
//! too. Attributes `name`, `ref`.
//!
//! **Missing data.** Extracts cut ways and relations at their edge. Nodes
//! missing from the extract are dropped from a way's shape (counted as
//! `<kind>: clipped to the nodes in the extract`) and the way kept if its
//! shape is still valid, else skipped (`<kind>: too few nodes in the
//! extract`). Member ways and stops missing from the extract are counted
//! too.
//!
//! # EPANET rules
//!
//! [`add_epanet`] maps the network's drawing coordinates to local metres:
//! `rotate((x - cx, y - cy), rotation_deg) × metres_per_unit`, where
//! `(cx, cy)` is the centre of the bounding box of the coordinates and
//! vertices, then moved so that the centre lands on the placement's
//! longitude/latitude in the scene's own frame. US flow units (CFS, GPM,
//! MGD, IMGD, AFD) imply feet and inches, converted to metres and
//! millimetres; SI units are kept.
//!
//! | EPANET    | Asset kind        | Id                      | Up (z)         | Attributes |
//! |-----------|-------------------|-------------------------|----------------|------------|
//! | junction  | `water_junction`  | `epanet-junction-<id>`  | elevation, m   | `elevation_m`, `base_demand`, `demand_unit`, `base_demand_l_s`, `pattern`, `demand_pattern`, `pattern_step_s` |
//! | reservoir | `water_reservoir` | `epanet-reservoir-<id>` | head, m        | `head_m`, `pattern`, `head_pattern`, `pattern_step_s` |
//! | tank      | `water_tank`      | `epanet-tank-<id>`      | elevation, m   | `elevation_m`, `init_level_m`, `min_level_m`, `max_level_m`, `diameter_m`, `min_volume_m3`, `volume_curve` |
//! | pipe      | `water_pipe`      | `epanet-pipe-<id>`      | —              | `length_m`, `diameter_mm`, `roughness`, `minor_loss`, `status` |
//! | pump      | `water_pump`      | `epanet-pump-<id>`      | —              | `parameters`, `head_curve`, `power_kw`, `speed`, `pattern` |
//! | valve     | `water_valve`     | `epanet-valve-<id>`     | —              | `valve_type`, `setting`, `diameter_mm`, `minor_loss` |
//!
//! Every asset also has `epanet_id`; links have `from` and `to`, the asset
//! ids of their end nodes, and run from node to node through their
//! `[VERTICES]`. A node's `z` is its elevation above the network's datum
//! (a reservoir's: its head), not above local ground. A junction's demand
//! pattern is its own, else `[OPTIONS] Pattern`, else pattern `1` when the
//! file defines one; `demand_pattern` lists its multipliers, one per
//! `pattern_step_s` seconds. Nodes without coordinates are skipped with
//! their links, and counted.
//!
//! # Sensor rules
//!
//! [`generate_sensors`] appends, deterministically:
//!
//! | Rule (report key) | On | Id | Domain | Quantity | Unit | Position | Personal |
//! |---|---|---|---|---|---|---|---|
//! | `meter` | every building | `meter-<asset id>` | energy | `active_power` | `kW` | footprint centroid, 1.5 m up | unless `usage` is retail, office, commercial, public or industrial (privacy by default: homes and unknown uses are personal) |
//! | `pv` | a share of suitable roofs | `pv-<asset id>` | energy | `pv_power` | `kW` | footprint centroid, at `height_m` | no |
//! | `pressure` | every water junction | `pressure-<asset id>` | water | `pressure` | `m` | the junction | no |
//! | `level` | every water tank | `level-<asset id>` | water | `level` | `m` | the tank | no |
//! | `flow` | every pump, every pipe with `diameter_mm` ≥ the minimum | `flow-<asset id>` | water | `flow` | `l/s` | midpoint of the line, ground level | no |
//! | `vehicle` | each transit route, `vehicles_per_route` times | `vehicle-<route id>-<n>` (n from 1) | transport | `distance_along_route` | `m` | start of the route | no |
//!
//! A roof is suitable when its footprint polygon has at least
//! [`SensorOptions::pv_min_roof_m2`]; of those, a building gets
//! photovoltaics when the 64-bit FNV-1a hash of its asset id, mixed by the
//! MurmurHash3 `fmix64` finalizer and scaled to [0, 1), is below
//! [`SensorOptions::pv_share`]: the same buildings on every run. A vehicle's reading is how far along its route's line it is.
//! Passenger counts are not generated. Sensors whose id already exists are
//! skipped and counted.

mod epanet;
mod error;
mod geometry;
mod osm;
mod readings_csv;
mod report;
mod sensors;
mod validity;

pub use epanet::{
    EpanetJunction, EpanetNetwork, EpanetPipe, EpanetPlacement, EpanetPump, EpanetReservoir,
    EpanetTank, EpanetValve, FlowUnits, add_epanet, parse_epanet, parse_epanet_str,
};
pub use error::ImportError;
pub use osm::{OSM_ATTRIBUTION, OsmOptions, import_osm};
pub use readings_csv::{
    MAX_LINE_BYTES, ReadingsCsv, ReadingsCsvError, parse_readings_csv, readings_csv,
};
pub use report::{ImportReport, Progress};
pub use sensors::{
    METER_HEIGHT_M, NON_RESIDENTIAL_USAGES, SensorOptions, generate_sensors, meter_is_personal,
};
