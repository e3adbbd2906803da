//! The NGSI-LD query language (`q`, GS CIM 009 clause 4.9): parsed once,
//! then evaluated against entities.
//!
//! Terms are `attr`, `attr<op>value`, joined by `;` (and, binding tighter)
//! and `|` (or), grouped with parentheses. An attribute path is
//! `name(.sub)*` optionally followed by `[member(.member)*]` into a
//! compound value; `observedAt` and `unitCode` are a Property's
//! sub-attributes. Values are JSON numbers, double-quoted JSON strings,
//! `true`/`false`, unquoted dates, times and date-times, and, for `==` and
//! `!=`, URIs, lists (`a,b`) and inclusive ranges (`a..b`). `~=` and `!~=`
//! take a regular expression (the `regex` crate's syntax, a superset of
//! POSIX ERE's usual forms).

use std::cmp::Ordering;

use regex::Regex;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

use crate::entity::{Attribute, Entity};
use crate::error::NgsiError;

/// Longest `q` accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Deepest nesting of parentheses accepted.
const MAX_DEPTH: usize = 16;

/// A parsed `q`.
#[derive(Debug, Clone)]
pub struct Query(Expr);

#[derive(Debug, Clone)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Term(Term),
}

#[derive(Debug, Clone)]
struct Term {
    path: AttrPath,
    test: Option<(Op, Operand)>,
}

#[derive(Debug, Clone, PartialEq)]
struct AttrPath {
    attribute: String,
    sub: Vec<String>,
    member: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Matches,
    NotMatches,
}

#[derive(Debug, Clone)]
enum Operand {
    One(Val),
    List(Vec<Val>),
    Range(Val, Val),
    Pattern(Regex),
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Number(f64),
    Str(String),
    Bool(bool),
    DateTime(OffsetDateTime),
    Date(Date),
    Time(Time),
    Uri(String),
}

fn bad(detail: impl std::fmt::Display) -> NgsiError {
    NgsiError::bad_data(format!("q: {detail}"))
}

impl Query {
    /// Parses `text` (already percent-decoded).
    pub fn parse(text: &str) -> Result<Query, NgsiError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(bad(format!("longer than {MAX_QUERY_BYTES} bytes")));
        }
        let mut parser = Parser { text, at: 0 };
        let expr = parser.or(0)?;
        if parser.at != text.len() {
            return Err(bad(format!(
                "unexpected `{}` at byte {}",
                parser.rest().chars().next().unwrap_or(' '),
                parser.at
            )));
        }
        Ok(Query(expr))
    }

    /// Whether `entity` matches.
    pub fn matches(&self, entity: &Entity) -> bool {
        self.0.matches(entity)
    }

    /// The attributes the query names (each once, in order).
    pub fn attributes(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.0.collect(&mut names);
        names
    }
}

impl Expr {
    fn matches(&self, entity: &Entity) -> bool {
        match self {
            Self::Or(all) => all.iter().any(|e| e.matches(entity)),
            Self::And(all) => all.iter().all(|e| e.matches(entity)),
            Self::Term(term) => term.matches(entity),
        }
    }

    fn collect<'a>(&'a self, names: &mut Vec<&'a str>) {
        match self {
            Self::Or(all) | Self::And(all) => all.iter().for_each(|e| e.collect(names)),
            Self::Term(term) => {
                if !names.contains(&term.path.attribute.as_str()) {
                    names.push(&term.path.attribute);
                }
            }
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.at..).unwrap_or_default()
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, NgsiError> {
        let mut all = vec![self.and(depth)?];
        while self.eat("|") {
            all.push(self.and(depth)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::Or(all)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, NgsiError> {
        let mut all = vec![self.primary(depth)?];
        while self.eat(";") {
            all.push(self.primary(depth)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::And(all)
        })
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, NgsiError> {
        if self.eat("(") {
            if depth >= MAX_DEPTH {
                return Err(bad(format!("more than {MAX_DEPTH} nested parentheses")));
            }
            let inner = self.or(depth + 1)?;
            if !self.eat(")") {
                return Err(bad(format!("missing `)` at byte {}", self.at)));
            }
            return Ok(inner);
        }
        Ok(Expr::Term(self.term()?))
    }

    fn name(&mut self) -> Result<String, NgsiError> {
        let rest = self.rest();
        let mut chars = rest.char_indices();
        match chars.next() {
            Some((_, c)) if c.is_alphabetic() => {}
            _ => {
                return Err(bad(format!(
                    "expected an attribute name at byte {}",
                    self.at
                )));
            }
        }
        let end = chars
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(rest.len(), |(i, _)| i);
        self.at += end;
        Ok(rest.get(..end).unwrap_or_default().to_owned())
    }

    fn term(&mut self) -> Result<Term, NgsiError> {
        let attribute = self.name()?;
        let mut sub = Vec::new();
        while self.rest().starts_with('.') && !self.rest().starts_with("..") {
            self.at += 1;
            sub.push(self.name()?);
        }
        let mut member = Vec::new();
        if self.eat("[") {
            member.push(self.name()?);
            while self.eat(".") {
                member.push(self.name()?);
            }
            if !self.eat("]") {
                return Err(bad(format!("missing `]` at byte {}", self.at)));
            }
        }
        let path = AttrPath {
            attribute,
            sub,
            member,
        };
        let op = [
            ("==", Op::Eq),
            ("!~=", Op::NotMatches),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            (">", Op::Gt),
            ("<=", Op::Le),
            ("<", Op::Lt),
            ("~=", Op::Matches),
        ]
        .into_iter()
        .find(|(token, _)| self.rest().starts_with(token));
        let Some((token, op)) = op else {
            return Ok(Term { path, test: None });
        };
        self.at += token.len();
        let operand = match op {
            Op::Matches | Op::NotMatches => Operand::Pattern(self.pattern()?),
            Op::Eq | Op::Ne => {
                let first = self.value(true)?;
                if self.eat("..") {
                    let last = self.value(false)?;
                    check_range(&first, &last)?;
                    Operand::Range(first, last)
                } else if self.rest().starts_with(',') {
                    let mut all = vec![first];
                    while self.eat(",") {
                        all.push(self.value(true)?);
                    }
                    Operand::List(all)
                } else {
                    Operand::One(first)
                }
            }
            Op::Gt | Op::Ge | Op::Lt | Op::Le => {
                let value = self.value(false)?;
                if matches!(value, Val::Bool(_)) {
                    return Err(bad("`true` and `false` cannot be ordered"));
                }
                Operand::One(value)
            }
        };
        Ok(Term {
            path,
            test: Some((op, operand)),
        })
    }

    /// A value; `uri_allowed` for `==`/`!=`, where a bare token that is no
    /// number, boolean or time is taken as a URI.
    fn value(&mut self, uri_allowed: bool) -> Result<Val, NgsiError> {
        let rest = self.rest();
        if rest.starts_with('"') {
            let mut escaped = false;
            let end = rest
                .char_indices()
                .skip(1)
                .find(|&(_, c)| {
                    let closes = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })
                .map(|(i, _)| i + 1)
                .ok_or_else(|| bad(format!("unterminated string at byte {}", self.at)))?;
            let quoted = rest.get(..end).unwrap_or_default();
            let text: String = serde_json::from_str(quoted)
                .map_err(|err| bad(format!("string {quoted}: {err}")))?;
            self.at += end;
            return Ok(Val::Str(text));
        }
        let mut end = rest.find([',', ';', '|', ')']).unwrap_or(rest.len());
        if let Some(dots) = rest.get(..end).and_then(|token| token.find("..")) {
            end = dots;
        }
        let token = rest.get(..end).unwrap_or_default();
        if token.is_empty() {
            return Err(bad(format!("expected a value at byte {}", self.at)));
        }
        self.at += end;
        classify(token, uri_allowed)
    }

    /// A regular expression: up to `;`, `|` or `)` outside its own
    /// parentheses and brackets.
    fn pattern(&mut self) -> Result<Regex, NgsiError> {
        let rest = self.rest();
        let (mut parens, mut in_class, mut escaped) = (0i32, false, false);
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '[' => in_class = true,
                ']' => in_class = false,
                '(' if !in_class => parens += 1,
                ')' if !in_class && parens > 0 => parens -= 1,
                ';' | '|' | ')' if !in_class && parens == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let pattern = rest.get(..end).unwrap_or_default();
        if pattern.is_empty() {
            return Err(bad(format!("expected a pattern at byte {}", self.at)));
        }
        self.at += end;
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|err| bad(format!("pattern `{pattern}`: {err}")))
    }
}

fn classify(token: &str, uri_allowed: bool) -> Result<Val, NgsiError> {
    match token {
        "true" => return Ok(Val::Bool(true)),
        "false" => return Ok(Val::Bool(false)),
        _ => {}
    }
    if token.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        if let Ok(number) = serde_json::from_str::<f64>(token) {
            return Ok(Val::Number(number));
        }
        if let Ok(at) = OffsetDateTime::parse(token, &Rfc3339) {
            return Ok(Val::DateTime(at));
        }
        if let Ok(date) = Date::parse(
            token,
            time::macros::format_description!("[year]-[month]-[day]"),
        ) {
            return Ok(Val::Date(date));
        }
        if let Some(time) = parse_time(token) {
            return Ok(Val::Time(time));
        }
    }
    if uri_allowed && crate::query::is_uri(token) {
        return Ok(Val::Uri(token.to_owned()));
    }
    Err(bad(format!(
        "`{token}` is not a number, quoted string, boolean, date, time{}",
        if uri_allowed { " or URI" } else { "" }
    )))
}

fn parse_time(token: &str) -> Option<Time> {
    let token = token.strip_suffix('Z').unwrap_or(token);
    Time::parse(
        token,
        time::macros::format_description!("[hour]:[minute]:[second]"),
    )
    .or_else(|_| {
        Time::parse(
            token,
            time::macros::format_description!("[hour]:[minute]:[second].[subsecond]"),
        )
    })
    .ok()
}

fn check_range(first: &Val, last: &Val) -> Result<(), NgsiError> {
    if std::mem::discriminant(first) != std::mem::discriminant(last)
        || matches!(first, Val::Bool(_) | Val::Uri(_))
    {
        return Err(bad("a range needs two values of one ordered type"));
    }
    Ok(())
}

/// What a term's attribute path points at in an entity.
enum Target<'a> {
    Json(&'a Value),
    Text(&'a str),
    Object(&'a str),
}

impl AttrPath {
    fn resolve<'a>(&self, entity: &'a Entity) -> Option<Target<'a>> {
        let attribute = entity.attribute(&self.attribute)?;
        let base = match (attribute, self.sub.as_slice()) {
            (Attribute::Property { value, .. }, []) | (Attribute::GeoProperty { value }, []) => {
                Target::Json(value)
            }
            (Attribute::Relationship { object }, []) => Target::Object(object),
            (Attribute::Property { observed_at, .. }, [sub]) if sub == "observedAt" => {
                Target::Text(observed_at.as_deref()?)
            }
            (Attribute::Property { unit_code, .. }, [sub]) if sub == "unitCode" => {
                Target::Text(unit_code.as_deref()?)
            }
            _ => return None,
        };
        if self.member.is_empty() {
            return Some(base);
        }
        let Target::Json(mut value) = base else {
            return None;
        };
        for key in &self.member {
            value = value.get(key)?;
        }
        Some(Target::Json(value))
    }
}

impl Term {
    fn matches(&self, entity: &Entity) -> bool {
        let Some(target) = self.path.resolve(entity) else {
            return false;
        };
        let Some((op, operand)) = &self.test else {
            return true;
        };
        match target {
            Target::Object(object) => match (op, operand) {
                // A Relationship is compared by its object, with `==` and
                // `!=` only.
                (Op::Eq, operand) => equals_any(&Value::String(object.into()), operand),
                (Op::Ne, operand) => !equals_any(&Value::String(object.into()), operand),
                _ => false,
            },
            Target::Text(text) => test(&Value::String(text.into()), *op, operand),
            Target::Json(value) => test(value, *op, operand),
        }
    }
}

fn test(target: &Value, op: Op, operand: &Operand) -> bool {
    match (op, operand) {
        (Op::Eq, operand) => elements(target).any(|t| equals_any(t, operand)),
        (Op::Ne, operand) => !elements(target).any(|t| equals_any(t, operand)),
        (Op::Matches, Operand::Pattern(pattern)) => {
            target.as_str().is_some_and(|s| pattern.is_match(s))
        }
        (Op::NotMatches, Operand::Pattern(pattern)) => {
            target.as_str().is_some_and(|s| !pattern.is_match(s))
        }
        (Op::Gt | Op::Ge | Op::Lt | Op::Le, Operand::One(value)) => compare(target, value)
            .is_some_and(|ordering| match op {
                Op::Gt => ordering == Ordering::Greater,
                Op::Ge => ordering != Ordering::Less,
                Op::Lt => ordering == Ordering::Less,
                _ => ordering != Ordering::Greater,
            }),
        _ => false,
    }
}

/// An array target matches `==` if any element does (clause 4.9).
fn elements(target: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match target {
        Value::Array(all) => Box::new(all.iter()),
        one => Box::new(std::iter::once(one)),
    }
}

fn equals_any(target: &Value, operand: &Operand) -> bool {
    match operand {
        Operand::One(value) => compare(target, value) == Some(Ordering::Equal),
        Operand::List(values) => values
            .iter()
            .any(|v| compare(target, v) == Some(Ordering::Equal)),
        Operand::Range(first, last) => {
            compare(target, first).is_some_and(|o| o != Ordering::Less)
                && compare(target, last).is_some_and(|o| o != Ordering::Greater)
        }
        Operand::Pattern(_) => false,
    }
}

/// How `target` orders against `value`, if they are of one type (a JSON
/// string holding a date, time or date-time compares as one).
fn compare(target: &Value, value: &Val) -> Option<Ordering> {
    match (target, value) {
        (Value::Number(n), Val::Number(v)) => n.as_f64()?.partial_cmp(v),
        (Value::Bool(b), Val::Bool(v)) => Some(b.cmp(v)),
        (Value::String(s), Val::Str(v) | Val::Uri(v)) => Some(s.as_str().cmp(v.as_str())),
        (Value::String(s), Val::DateTime(v)) => {
            Some(OffsetDateTime::parse(s, &Rfc3339).ok()?.cmp(v))
        }
        (Value::String(s), Val::Date(v)) => Some(
            Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .ok()?
                .cmp(v),
        ),
        (Value::String(s), Val::Time(v)) => Some(parse_time(s)?.cmp(v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entity() -> Entity {
        Entity {
            id: "urn:ngsi-ld:Device:m1".into(),
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
                        value: json!("Kamppi, west"),
                        observed_at: None,
                        unit_code: None,
                    },
                ),
                (
                    "category".into(),
                    Attribute::Property {
                        value: json!(["residential", "office"]),
                        observed_at: None,
                        unit_code: None,
                    },
                ),
                (
                    "address".into(),
                    Attribute::Property {
                        value: json!({"city": {"name": "Helsinki"}, "floors": 4}),
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
            ],
        }
    }

    fn q(text: &str) -> bool {
        Query::parse(text)
            .unwrap_or_else(|err| panic!("{text}: {err}"))
            .matches(&entity())
    }

    #[test]
    fn comparisons_follow_clause_4_9() {
        assert!(q("activePower==3.25"));
        assert!(q("activePower>3"));
        assert!(q("activePower>=3.25"));
        assert!(!q("activePower<3.25"));
        assert!(q("activePower<=3.25"));
        assert!(q("activePower!=4"));
        assert!(q("activePower==3..4"));
        assert!(!q("activePower==3.3..4"));
        assert!(q("activePower!=3.3..4"));
        assert!(q("activePower==1,2,3.25"));
        // Different types: no match for `==` or ordering, a match for `!=`.
        assert!(!q(r#"activePower=="3.25""#));
        assert!(!q(r#"activePower>"3""#));
        assert!(q(r#"activePower!="3.25""#));
        assert!(q(r#"name=="Kamppi, west""#));
        assert!(q(r#"name~=^Kamp"#));
        assert!(q(r#"name!~=^Töölö"#));
    }

    #[test]
    fn arrays_match_by_element_and_compound_values_by_member() {
        assert!(q(r#"category=="office""#));
        assert!(!q(r#"category!="office""#));
        assert!(q(r#"category!="industrial""#));
        assert!(q(r#"address[city.name]=="Helsinki""#));
        assert!(q("address[floors]>3"));
        assert!(!q("address[missing]==1"));
    }

    #[test]
    fn relationships_compare_their_object_with_equality_only() {
        assert!(q("controlledAsset==urn:ngsi-ld:Building:b1"));
        assert!(q(r#"controlledAsset=="urn:ngsi-ld:Building:b1""#));
        assert!(q("controlledAsset!=urn:ngsi-ld:Building:b2"));
        assert!(!q(r#"controlledAsset>"urn""#));
    }

    #[test]
    fn sub_attributes_and_times_compare_as_times() {
        assert!(q("activePower.observedAt>=2026-12-03T09:00:00Z"));
        assert!(!q("activePower.observedAt>2026-12-03T10:00:00Z"));
        assert!(q("activePower.observedAt==2026-12-03T11:00:00+01:00"));
        assert!(q(r#"activePower.unitCode=="KWT""#));
        assert!(!q("name.observedAt"));
    }

    #[test]
    fn existence_precedence_and_parentheses() {
        assert!(q("activePower"));
        assert!(!q("temperature"));
        // `;` binds tighter than `|`.
        assert!(q("temperature;activePower|name"));
        assert!(!q("temperature;(activePower|name)"));
        assert!(q("((activePower>5|name~=west);controlledAsset)"));
        assert_eq!(
            Query::parse("a==1;(b|c);a").expect("parses").attributes(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn malformed_queries_are_bad_request_data() {
        for text in [
            "",
            "==3",
            "activePower==",
            "activePower>true",
            "(activePower==3",
            "activePower==3)",
            r#"name=="unterminated"#,
            "activePower==3..x:y",
            "name~=(",
            "activePower=3",
            "activePower>urn:x:y",
        ] {
            let err = Query::parse(text).expect_err(text);
            assert_eq!(err.kind, crate::ErrorKind::BadRequestData, "{text}");
        }
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert!(Query::parse(&deep).is_err());
    }
}
