//! Reading EPANET `.inp` text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::network::{
    EpanetJunction, EpanetNetwork, EpanetPipe, EpanetPump, EpanetReservoir, EpanetTank, EpanetValve,
};
use super::units::FlowUnits;
use crate::error::ImportError;

/// Reads an EPANET `.inp` file. Errors name the file and the 1-based line.
///
/// The sections read are `[TITLE]`, `[JUNCTIONS]`, `[RESERVOIRS]`,
/// `[TANKS]`, `[PIPES]`, `[PUMPS]`, `[VALVES]`, `[PATTERNS]`,
/// `[COORDINATES]`, `[VERTICES]`, `[OPTIONS]` (`Units`, `Pattern`) and
/// `[TIMES]` (`Pattern Timestep`); the others are ignored. Text after `;` is
/// a comment.
///
/// # Errors
///
/// [`ImportError::Io`] when the file cannot be read; [`ImportError::Epanet`]
/// for a malformed number, a missing field, a duplicate id, a reference to
/// an unknown node, link or pattern, or unknown units.
pub fn parse_epanet(path: &Path) -> Result<EpanetNetwork, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Older files are often Latin-1; ids and numbers are ASCII either way.
    let text = String::from_utf8_lossy(&bytes);
    let source = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Parser::new(path.to_path_buf(), source).parse(&text)
}

/// Parses EPANET `.inp` text; `origin` names it in errors (a file name, or
/// `<embedded>`). See [`parse_epanet`].
///
/// # Errors
///
/// As [`parse_epanet`], without I/O errors.
pub fn parse_epanet_str(text: &str, origin: &str) -> Result<EpanetNetwork, ImportError> {
    Parser::new(PathBuf::from(origin), origin.to_owned()).parse(text)
}

/// The sections read; everything else is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Before the first section header.
    Start,
    Title,
    Junctions,
    Reservoirs,
    Tanks,
    Pipes,
    Pumps,
    Valves,
    Patterns,
    Coordinates,
    Vertices,
    Options,
    Times,
    /// A section this reader ignores.
    Ignored,
}

impl Section {
    fn from_header(name: &str) -> Section {
        match name.to_ascii_uppercase().as_str() {
            "TITLE" => Section::Title,
            "JUNCTIONS" => Section::Junctions,
            "RESERVOIRS" => Section::Reservoirs,
            "TANKS" => Section::Tanks,
            "PIPES" => Section::Pipes,
            "PUMPS" => Section::Pumps,
            "VALVES" => Section::Valves,
            "PATTERNS" => Section::Patterns,
            "COORDINATES" => Section::Coordinates,
            "VERTICES" => Section::Vertices,
            "OPTIONS" => Section::Options,
            "TIMES" => Section::Times,
            _ => Section::Ignored,
        }
    }
}

/// A reference checked once the whole file is read (sections may come in
/// any order).
enum Reference {
    /// A link end.
    Node {
        line: usize,
        owner: String,
        node: String,
    },
    /// A pattern named by a node or a pump.
    Pattern {
        line: usize,
        owner: String,
        pattern: String,
    },
    /// Coordinates of a node.
    Coordinates { line: usize, node: String },
    /// Vertices of a link.
    Vertices { line: usize, link: String },
}

/// Valve types EPANET knows.
const VALVE_TYPES: [&str; 6] = ["PRV", "PSV", "PBV", "FCV", "TCV", "GPV"];

/// Pump parameter keywords EPANET knows.
const PUMP_KEYWORDS: [&str; 4] = ["HEAD", "POWER", "SPEED", "PATTERN"];

struct Parser {
    path: PathBuf,
    network: EpanetNetwork,
    /// Node id → line where it is defined.
    nodes: HashMap<String, usize>,
    /// Link id → line where it is defined.
    links: HashMap<String, usize>,
    references: Vec<Reference>,
    title: Vec<String>,
}

impl Parser {
    fn new(path: PathBuf, source: String) -> Parser {
        Parser {
            path,
            network: EpanetNetwork {
                source,
                title: String::new(),
                flow_units: FlowUnits::Gpm,
                default_pattern: None,
                pattern_timestep_s: 3600,
                junctions: Vec::new(),
                reservoirs: Vec::new(),
                tanks: Vec::new(),
                pipes: Vec::new(),
                pumps: Vec::new(),
                valves: Vec::new(),
                patterns: Default::default(),
                coordinates: Default::default(),
                vertices: Default::default(),
            },
            nodes: HashMap::new(),
            links: HashMap::new(),
            references: Vec::new(),
            title: Vec::new(),
        }
    }

    fn error(&self, line: usize, message: impl Into<String>) -> ImportError {
        ImportError::Epanet {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    fn parse(mut self, text: &str) -> Result<EpanetNetwork, ImportError> {
        let mut section = Section::Start;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split(';').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            if let Some(header) = content.strip_prefix('[') {
                let Some(name) = header.split(']').next().filter(|_| header.contains(']')) else {
                    return Err(self.error(line, format!("malformed section header {content:?}")));
                };
                section = Section::from_header(name.trim());
                continue;
            }
            let tokens: Vec<&str> = content.split_whitespace().collect();
            self.record(section, &tokens, content, line)
                .map_err(|message| self.error(line, message))?;
            self.note_references(section, &tokens, line);
        }
        self.network.title = self.title.join("\n");
        self.check_references()?;
        Ok(self.network)
    }

    /// Reads one data line of `section`.
    fn record(
        &mut self,
        section: Section,
        t: &[&str],
        content: &str,
        line: usize,
    ) -> Result<(), String> {
        match section {
            Section::Start => Err(format!("data before any section header: {content:?}")),
            Section::Title => {
                self.title.push(content.to_owned());
                Ok(())
            }
            Section::Junctions => {
                let junction = EpanetJunction {
                    id: self.new_node(t, line)?,
                    elevation: number(t, 1, "elevation")?,
                    base_demand: optional_number(t, 2, "demand")?.unwrap_or(0.0),
                    pattern: text(t, 3),
                };
                self.network.junctions.push(junction);
                Ok(())
            }
            Section::Reservoirs => {
                let reservoir = EpanetReservoir {
                    id: self.new_node(t, line)?,
                    head: number(t, 1, "head")?,
                    pattern: text(t, 2),
                };
                self.network.reservoirs.push(reservoir);
                Ok(())
            }
            Section::Tanks => {
                let tank = EpanetTank {
                    id: self.new_node(t, line)?,
                    elevation: number(t, 1, "elevation")?,
                    init_level: number(t, 2, "initial level")?,
                    min_level: number(t, 3, "minimum level")?,
                    max_level: number(t, 4, "maximum level")?,
                    diameter: number(t, 5, "diameter")?,
                    min_volume: optional_number(t, 6, "minimum volume")?.unwrap_or(0.0),
                    volume_curve: text(t, 7).filter(|c| c != "*"),
                };
                self.network.tanks.push(tank);
                Ok(())
            }
            Section::Pipes => {
                let pipe = EpanetPipe {
                    id: self.new_link(t, line)?,
                    node1: field(t, 1, "start node")?.to_owned(),
                    node2: field(t, 2, "end node")?.to_owned(),
                    length: number(t, 3, "length")?,
                    diameter: number(t, 4, "diameter")?,
                    roughness: number(t, 5, "roughness")?,
                    minor_loss: optional_number(t, 6, "minor loss")?.unwrap_or(0.0),
                    status: pipe_status(t.get(7).copied())?,
                };
                self.network.pipes.push(pipe);
                Ok(())
            }
            Section::Pumps => {
                let pump = EpanetPump {
                    id: self.new_link(t, line)?,
                    node1: field(t, 1, "suction node")?.to_owned(),
                    node2: field(t, 2, "discharge node")?.to_owned(),
                    parameters: pump_parameters(t.get(3..).unwrap_or_default())?,
                };
                self.network.pumps.push(pump);
                Ok(())
            }
            Section::Valves => {
                let valve_type = field(t, 4, "type")?.to_ascii_uppercase();
                if !VALVE_TYPES.contains(&valve_type.as_str()) {
                    return Err(format!(
                        "unknown valve type {valve_type:?}, expected one of {}",
                        VALVE_TYPES.join(", ")
                    ));
                }
                let setting = field(t, 5, "setting")?.to_owned();
                if valve_type != "GPV" {
                    number(t, 5, "setting")?;
                }
                let valve = EpanetValve {
                    id: self.new_link(t, line)?,
                    node1: field(t, 1, "upstream node")?.to_owned(),
                    node2: field(t, 2, "downstream node")?.to_owned(),
                    diameter: number(t, 3, "diameter")?,
                    valve_type,
                    setting,
                    minor_loss: optional_number(t, 6, "minor loss")?.unwrap_or(0.0),
                };
                self.network.valves.push(valve);
                Ok(())
            }
            Section::Patterns => {
                let id = field(t, 0, "pattern id")?;
                let mut multipliers = Vec::new();
                for index in 1..t.len() {
                    multipliers.push(number(t, index, "multiplier")?);
                }
                self.network
                    .patterns
                    .entry(id.to_owned())
                    .or_default()
                    .extend(multipliers);
                Ok(())
            }
            Section::Coordinates => {
                let node = field(t, 0, "node id")?;
                let point = [number(t, 1, "x coordinate")?, number(t, 2, "y coordinate")?];
                if self
                    .network
                    .coordinates
                    .insert(node.to_owned(), point)
                    .is_some()
                {
                    return Err(format!("node {node:?} has coordinates twice"));
                }
                Ok(())
            }
            Section::Vertices => {
                let link = field(t, 0, "link id")?;
                let point = [number(t, 1, "x coordinate")?, number(t, 2, "y coordinate")?];
                self.network
                    .vertices
                    .entry(link.to_owned())
                    .or_default()
                    .push(point);
                Ok(())
            }
            Section::Options => self.option(t),
            Section::Times => {
                let key = |i: usize| t.get(i).map(|s| s.to_ascii_uppercase());
                if key(0).as_deref() == Some("PATTERN") && key(1).as_deref() == Some("TIMESTEP") {
                    self.network.pattern_timestep_s = duration_s(t.get(2..).unwrap_or_default())?;
                }
                Ok(())
            }
            Section::Ignored => Ok(()),
        }
    }

    /// `[OPTIONS]`: `Units` and `Pattern`.
    fn option(&mut self, t: &[&str]) -> Result<(), String> {
        let key = t.first().map(|k| k.to_ascii_uppercase());
        match key.as_deref() {
            Some("UNITS") => {
                let name = field(t, 1, "units")?;
                self.network.flow_units = FlowUnits::from_name(name).ok_or_else(|| {
                    format!(
                        "unknown flow units {name:?}, expected one of {}",
                        FlowUnits::ALL.map(FlowUnits::as_str).join(", ")
                    )
                })?;
            }
            Some("PATTERN") => {
                self.network.default_pattern = Some(field(t, 1, "pattern id")?.to_owned());
            }
            _ => {}
        }
        Ok(())
    }

    /// Registers the node id in the first field; duplicates are errors.
    fn new_node(&mut self, t: &[&str], line: usize) -> Result<String, String> {
        let id = field(t, 0, "node id")?;
        if let Some(first) = self.nodes.get(id) {
            return Err(format!(
                "duplicate node id {id:?} (first defined on line {first})"
            ));
        }
        self.nodes.insert(id.to_owned(), line);
        Ok(id.to_owned())
    }

    /// Registers the link id in the first field; duplicates are errors.
    fn new_link(&mut self, t: &[&str], line: usize) -> Result<String, String> {
        let id = field(t, 0, "link id")?;
        if let Some(first) = self.links.get(id) {
            return Err(format!(
                "duplicate link id {id:?} (first defined on line {first})"
            ));
        }
        self.links.insert(id.to_owned(), line);
        Ok(id.to_owned())
    }

    /// Remembers what a line refers to, once it has been read successfully.
    fn note_references(&mut self, section: Section, t: &[&str], line: usize) {
        let get = |i: usize| t.get(i).map(|s| (*s).to_owned());
        let Some(id) = get(0) else {
            return;
        };
        match section {
            Section::Junctions | Section::Reservoirs | Section::Tanks => {
                let pattern_field = match section {
                    Section::Junctions => 3,
                    Section::Reservoirs => 2,
                    _ => usize::MAX,
                };
                if let Some(pattern) = get(pattern_field) {
                    self.references.push(Reference::Pattern {
                        line,
                        owner: format!("node {id:?}"),
                        pattern,
                    });
                }
            }
            Section::Pipes | Section::Pumps | Section::Valves => {
                for node in [get(1), get(2)].into_iter().flatten() {
                    self.references.push(Reference::Node {
                        line,
                        owner: format!("link {id:?}"),
                        node,
                    });
                }
                if section == Section::Pumps {
                    let pattern = t
                        .iter()
                        .skip(3)
                        .position(|k| k.eq_ignore_ascii_case("PATTERN"))
                        .and_then(|i| get(i + 4));
                    if let Some(pattern) = pattern {
                        self.references.push(Reference::Pattern {
                            line,
                            owner: format!("pump {id:?}"),
                            pattern,
                        });
                    }
                }
            }
            Section::Coordinates => self
                .references
                .push(Reference::Coordinates { line, node: id }),
            Section::Vertices => self.references.push(Reference::Vertices { line, link: id }),
            _ => {}
        }
    }

    /// Every reference names something defined; the first that does not
    /// (by line) is the error.
    fn check_references(&self) -> Result<(), ImportError> {
        let mut problems: Vec<(usize, String)> = Vec::new();
        for reference in &self.references {
            match reference {
                Reference::Node { line, owner, node } if !self.nodes.contains_key(node) => {
                    problems.push((*line, format!("{owner} refers to unknown node {node:?}")));
                }
                Reference::Pattern {
                    line,
                    owner,
                    pattern,
                } if !self.network.patterns.contains_key(pattern) => {
                    problems.push((
                        *line,
                        format!("{owner} refers to unknown pattern {pattern:?}"),
                    ));
                }
                Reference::Coordinates { line, node } if !self.nodes.contains_key(node) => {
                    problems.push((*line, format!("coordinates for unknown node {node:?}")));
                }
                Reference::Vertices { line, link } if !self.links.contains_key(link) => {
                    problems.push((*line, format!("vertices for unknown link {link:?}")));
                }
                _ => {}
            }
        }
        match problems.into_iter().min_by_key(|(line, _)| *line) {
            Some((line, message)) => Err(self.error(line, message)),
            None => Ok(()),
        }
    }
}

/// The field at `index`, or an error naming it.
fn field<'t>(t: &[&'t str], index: usize, name: &str) -> Result<&'t str, String> {
    t.get(index)
        .copied()
        .ok_or_else(|| format!("missing {name}"))
}

/// The field at `index` as text, `None` when absent.
fn text(t: &[&str], index: usize) -> Option<String> {
    t.get(index).map(|s| (*s).to_owned())
}

/// A required finite number.
fn number(t: &[&str], index: usize, name: &str) -> Result<f64, String> {
    parse_number(field(t, index, name)?, name)
}

/// An optional finite number.
fn optional_number(t: &[&str], index: usize, name: &str) -> Result<Option<f64>, String> {
    t.get(index).map(|s| parse_number(s, name)).transpose()
}

fn parse_number(s: &str, name: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{name} {s:?} is not a number")),
    }
}

/// `Open`, `Closed` or `CV` in any case; `Open` when absent.
fn pipe_status(status: Option<&str>) -> Result<String, String> {
    let Some(status) = status else {
        return Ok("Open".to_owned());
    };
    ["Open", "Closed", "CV"]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(status))
        .map(str::to_owned)
        .ok_or_else(|| format!("unknown pipe status {status:?}, expected Open, Closed or CV"))
}

/// Keyword/value pairs of a pump.
fn pump_parameters(t: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = t.iter();
    while let Some(keyword) = rest.next() {
        let keyword = keyword.to_ascii_uppercase();
        if !PUMP_KEYWORDS.contains(&keyword.as_str()) {
            return Err(format!(
                "unknown pump parameter {keyword:?}, expected one of {}",
                PUMP_KEYWORDS.join(", ")
            ));
        }
        let Some(value) = rest.next() else {
            return Err(format!("pump parameter {keyword} has no value"));
        };
        if keyword == "POWER" || keyword == "SPEED" {
            parse_number(value, &keyword.to_ascii_lowercase())?;
        }
        out.push((keyword, (*value).to_owned()));
    }
    Ok(out)
}

/// An EPANET duration: `h:mm[:ss]`, or a number with an optional unit
/// (`SEC`, `MIN`, `HOURS`, `DAYS`; hours when none), in whole seconds. Zero
/// and negative durations are errors.
fn duration_s(t: &[&str]) -> Result<u64, String> {
    let value = field(t, 0, "time")?;
    let seconds = if value.contains(':') {
        let mut total = 0.0;
        let parts: Vec<&str> = value.split(':').collect();
        if parts.len() > 3 {
            return Err(format!("time {value:?} is not h:mm[:ss]"));
        }
        for (part, scale) in parts.iter().zip([3600.0, 60.0, 1.0]) {
            total += parse_number(part, "time")? * scale;
        }
        total
    } else {
        let amount = parse_number(value, "time")?;
        let unit = t.get(1).map(|u| u.to_ascii_uppercase()).unwrap_or_default();
        let scale = match unit.get(..3.min(unit.len())).unwrap_or_default() {
            "" | "HOU" | "HR" | "H" => 3600.0,
            "SEC" | "S" => 1.0,
            "MIN" | "M" => 60.0,
            "DAY" | "D" => 86_400.0,
            _ => return Err(format!("unknown time unit {unit:?}")),
        };
        amount * scale
    };
    let rounded = seconds.round();
    if !(1.0..1e12).contains(&rounded) {
        return Err(format!("time step {value:?} must be positive"));
    }
    Ok(rounded as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_s(&["1:00"]), Ok(3600));
        assert_eq!(duration_s(&["0:15"]), Ok(900));
        assert_eq!(duration_s(&["1:00:30"]), Ok(3630));
        assert_eq!(duration_s(&["2"]), Ok(7200));
        assert_eq!(duration_s(&["900", "SEC"]), Ok(900));
        assert_eq!(duration_s(&["30", "min"]), Ok(1800));
        assert_eq!(duration_s(&["1", "Days"]), Ok(86_400));
        assert!(duration_s(&["0"]).is_err());
        assert!(duration_s(&["x"]).is_err());
        assert!(duration_s(&["1", "fortnights"]).is_err());
        assert!(duration_s(&[]).is_err());
    }

    #[test]
    fn pump_parameter_pairs() {
        assert_eq!(
            pump_parameters(&["head", "1", "SPEED", "1.2"]),
            Ok(vec![
                ("HEAD".to_owned(), "1".to_owned()),
                ("SPEED".to_owned(), "1.2".to_owned())
            ])
        );
        assert!(pump_parameters(&["HEAD"]).is_err());
        assert!(pump_parameters(&["FLOW", "3"]).is_err());
        assert!(pump_parameters(&["POWER", "lots"]).is_err());
    }
}
