//! Reading an OpenStreetMap PBF file into memory.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use osmpbf::{BlobDecode, BlobError, BlobReader, Element, PrimitiveBlock, RelMemberType};

use crate::error::ImportError;
use crate::report::Progress;

/// Tags of an element.
pub(crate) type Tags = BTreeMap<String, String>;

/// Header features this reader understands; files requiring others (history
/// files, node locations on ways only) are refused.
const SUPPORTED_FEATURES: [&str; 2] = ["OsmSchema-V0.6", "DenseNodes"];

/// A way: its node references in order, and its tags.
#[derive(Debug, Clone)]
pub(crate) struct Way {
    /// OSM id.
    pub(crate) id: i64,
    /// Node ids in order; a closed way repeats its first node at the end.
    pub(crate) refs: Vec<i64>,
    /// Tags.
    pub(crate) tags: Tags,
}

/// What a relation member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberKind {
    /// A node.
    Node,
    /// A way.
    Way,
    /// Another relation.
    Relation,
}

/// One member of a relation.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// The kind of element referenced.
    pub(crate) kind: MemberKind,
    /// Its OSM id.
    pub(crate) id: i64,
    /// Its role in the relation (`outer`, `stop`, `platform`, or empty).
    pub(crate) role: String,
}

/// A relation: its members in order, and its tags.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    /// OSM id.
    pub(crate) id: i64,
    /// Members in order.
    pub(crate) members: Vec<Member>,
    /// Tags.
    pub(crate) tags: Tags,
}

/// Everything read from a file.
#[derive(Debug, Default)]
pub(crate) struct OsmData {
    /// Node id → `[lon_deg, lat_deg]`.
    pub(crate) nodes: HashMap<i64, [f64; 2]>,
    /// Tags of the nodes that have any.
    pub(crate) node_tags: HashMap<i64, Tags>,
    /// Ways in file order.
    pub(crate) ways: Vec<Way>,
    /// Relations in file order.
    pub(crate) relations: Vec<Relation>,
}

impl OsmData {
    /// Index of ways by id.
    pub(crate) fn way_index(&self) -> HashMap<i64, &Way> {
        self.ways.iter().map(|w| (w.id, w)).collect()
    }

    /// Total number of elements.
    pub(crate) fn element_count(&self) -> usize {
        self.nodes.len() + self.ways.len() + self.relations.len()
    }
}

/// Reads the whole file, calling `progress` after each data block (a few
/// thousand elements).
pub(crate) fn read_osm(
    path: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<OsmData, ImportError> {
    let osm_error = |message: String| ImportError::Osm {
        path: path.to_path_buf(),
        message,
    };
    let reader = BlobReader::from_path(path).map_err(|e| match e.into_kind() {
        osmpbf::ErrorKind::Io(source) => ImportError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => osm_error(describe(&other)),
    })?;

    let mut data = OsmData::default();
    let mut done: u64 = 0;
    let mut saw_header = false;
    for (index, blob) in reader.enumerate() {
        let blob = blob.map_err(|e| osm_error(format!("block {index}: {}", describe(e.kind()))))?;
        let decoded = blob
            .decode()
            .map_err(|e| osm_error(format!("block {index}: {}", describe(e.kind()))))?;
        match decoded {
            BlobDecode::OsmHeader(header) => {
                saw_header = true;
                if let Some(feature) = header
                    .required_features()
                    .iter()
                    .find(|f| !SUPPORTED_FEATURES.contains(&f.as_str()))
                {
                    return Err(osm_error(format!(
                        "requires the unsupported feature {feature:?}"
                    )));
                }
            }
            BlobDecode::OsmData(block) => {
                if !saw_header {
                    return Err(osm_error("data block before the file header".to_owned()));
                }
                // The decoder panics on some malformed blocks (an unknown
                // member type); such a block is an error in the file.
                let elements = catch_unwind(AssertUnwindSafe(|| collect_block(&block)))
                    .map_err(|_| osm_error(format!("block {index}: malformed elements")))?
                    .map_err(|message| osm_error(format!("block {index}: {message}")))?;
                done += elements.merge_into(&mut data);
                progress(Progress {
                    stage: "reading",
                    done,
                    total: None,
                });
            }
            BlobDecode::Unknown(_) => {}
        }
    }
    if !saw_header {
        return Err(osm_error("no file header (empty file?)".to_owned()));
    }
    if data.nodes.is_empty() {
        return Err(osm_error("the file contains no nodes".to_owned()));
    }
    Ok(data)
}

/// A readable description of a decoder error.
fn describe(kind: &osmpbf::ErrorKind) -> String {
    match kind {
        osmpbf::ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "unexpected end of file (truncated?)".to_owned()
        }
        osmpbf::ErrorKind::Io(e) => e.to_string(),
        osmpbf::ErrorKind::Protobuf { err, location } => format!("{location}: {err}"),
        osmpbf::ErrorKind::Blob(BlobError::InvalidHeaderSize) => {
            "unreadable block header size".to_owned()
        }
        osmpbf::ErrorKind::Blob(BlobError::HeaderTooBig { size }) => {
            format!("block header of {size} bytes is too big")
        }
        osmpbf::ErrorKind::Blob(BlobError::MessageTooBig { size }) => {
            format!("block of {size} bytes is too big")
        }
        osmpbf::ErrorKind::Blob(BlobError::Empty) => "block without data".to_owned(),
        osmpbf::ErrorKind::StringtableUtf8 { index, .. } => {
            format!("string {index} of the string table is not UTF-8")
        }
        osmpbf::ErrorKind::StringtableIndexOutOfBounds { index } => {
            format!("reference to string {index} beyond the string table")
        }
        other => format!("{other:?}"),
    }
}

/// The elements of one block, before they are merged.
#[derive(Default)]
struct BlockElements {
    nodes: Vec<(i64, [f64; 2], Tags)>,
    ways: Vec<Way>,
    relations: Vec<Relation>,
}

impl BlockElements {
    /// Moves the elements into `data`; returns how many there were.
    fn merge_into(self, data: &mut OsmData) -> u64 {
        let n = self.nodes.len() + self.ways.len() + self.relations.len();
        for (id, lonlat, tags) in self.nodes {
            data.nodes.insert(id, lonlat);
            if !tags.is_empty() {
                data.node_tags.insert(id, tags);
            }
        }
        data.ways.extend(self.ways);
        data.relations.extend(self.relations);
        n as u64
    }
}

/// Copies the elements of a block out of the decoder's structures.
fn collect_block(block: &PrimitiveBlock) -> Result<BlockElements, String> {
    let mut out = BlockElements::default();
    let mut error: Option<String> = None;
    block.for_each_element(|element| match element {
        Element::Node(node) => {
            out.nodes.push((
                node.id(),
                [node.lon(), node.lat()],
                collect_tags(node.tags()),
            ));
        }
        Element::DenseNode(node) => {
            out.nodes.push((
                node.id(),
                [node.lon(), node.lat()],
                collect_tags(node.tags()),
            ));
        }
        Element::Way(way) => out.ways.push(Way {
            id: way.id(),
            refs: way.refs().collect(),
            tags: collect_tags(way.tags()),
        }),
        Element::Relation(relation) => {
            let mut members = Vec::new();
            for member in relation.members() {
                let role = match member.role() {
                    Ok(role) => role.to_owned(),
                    Err(e) => {
                        error.get_or_insert_with(|| {
                            format!("relation {}: unreadable member role: {e:?}", relation.id())
                        });
                        String::new()
                    }
                };
                let kind = match member.member_type {
                    RelMemberType::Node => MemberKind::Node,
                    RelMemberType::Way => MemberKind::Way,
                    RelMemberType::Relation => MemberKind::Relation,
                };
                members.push(Member {
                    kind,
                    id: member.member_id,
                    role,
                });
            }
            out.relations.push(Relation {
                id: relation.id(),
                members,
                tags: collect_tags(relation.tags()),
            });
        }
    });
    match error {
        Some(message) => Err(message),
        None => Ok(out),
    }
}

/// Owned tags. Undecodable tags are already dropped by the decoder.
fn collect_tags<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>) -> Tags {
    tags.map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}
