//! Topic templates: which MQTT topic level names the sensor.

use std::fmt;
use std::str::FromStr;

use crate::error::{Quoted, TemplateError};

/// The level of a template that yields the sensor id.
const SENSOR_LEVEL: &str = "{sensor}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// `+`: any one level.
    Any,
    /// `{sensor}`: any one non-empty level, which is the sensor id.
    Sensor,
}

/// A topic template such as `city/{sensor}/power` or `meters/+/{sensor}`:
/// `{sensor}` matches one topic level and yields the sensor id; other levels
/// must match literally or be `+` (any one level). `#` is not allowed: a
/// template has a fixed number of levels.
///
/// As in MQTT, a template whose first level is `+` or `{sensor}` does not
/// match topics starting with `$` (broker topics such as `$SYS/…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    text: String,
    levels: Vec<Level>,
}

impl TopicTemplate {
    /// Parses a template; exactly one level must be `{sensor}`.
    pub fn parse(s: &str) -> Result<Self, TemplateError> {
        if s.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut levels = Vec::new();
        for level in s.split('/') {
            levels.push(match level {
                SENSOR_LEVEL => Level::Sensor,
                "+" => Level::Any,
                _ if level.contains(['+', '#', '{', '}', '\0']) => {
                    return Err(TemplateError::BadLevel(Quoted::new(level)));
                }
                _ => Level::Literal(level.to_owned()),
            });
        }
        match levels.iter().filter(|l| **l == Level::Sensor).count() {
            0 => Err(TemplateError::NoSensorLevel(Quoted::new(s))),
            1 => Ok(Self {
                text: s.to_owned(),
                levels,
            }),
            _ => Err(TemplateError::SeveralSensorLevels(Quoted::new(s))),
        }
    }

    /// The sensor id in `topic`, or `None` when the topic does not match the
    /// template (other number of levels, another literal, an empty sensor
    /// level, a wildcard character in the sensor level).
    pub fn sensor_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Literal(_))) {
            return None;
        }
        let mut sensor = None;
        let mut topic_levels = topic.split('/');
        for level in &self.levels {
            let got = topic_levels.next()?;
            match level {
                Level::Literal(want) if want != got => return None,
                Level::Literal(_) | Level::Any => {}
                Level::Sensor => {
                    if got.is_empty() || got.contains(['+', '#']) {
                        return None;
                    }
                    sensor = Some(got);
                }
            }
        }
        if topic_levels.next().is_some() {
            return None;
        }
        sensor
    }

    /// The MQTT topic filter to subscribe to: the template with `{sensor}`
    /// replaced by `+`.
    pub fn filter(&self) -> String {
        let levels: Vec<&str> = self
            .levels
            .iter()
            .map(|level| match level {
                Level::Literal(text) => text.as_str(),
                Level::Any | Level::Sensor => "+",
            })
            .collect();
        levels.join("/")
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for TopicTemplate {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(s: &str) -> TopicTemplate {
        TopicTemplate::parse(s).expect("valid template")
    }

    #[test]
    fn sensor_level_yields_the_id() {
        let t = template("city/{sensor}/power");
        assert_eq!(t.sensor_of("city/meter-1/power"), Some("meter-1"));
        assert_eq!(t.sensor_of("city/meter-1/energy"), None);
        assert_eq!(t.sensor_of("city/meter-1"), None);
        assert_eq!(t.sensor_of("city/meter-1/power/x"), None);
        assert_eq!(t.sensor_of("city//power"), None);
        assert_eq!(t.sensor_of("town/meter-1/power"), None);
        assert_eq!(t.filter(), "city/+/power");
    }

    #[test]
    fn plus_matches_any_level() {
        let t = template("meters/+/{sensor}");
        assert_eq!(t.sensor_of("meters/north/m-7"), Some("m-7"));
        assert_eq!(t.sensor_of("meters//m-7"), Some("m-7"));
        assert_eq!(t.sensor_of("meters/north"), None);
        assert_eq!(t.filter(), "meters/+/+");
    }

    #[test]
    fn dollar_topics_need_a_literal_first_level() {
        assert_eq!(template("{sensor}").sensor_of("$SYS"), None);
        assert_eq!(template("+/{sensor}").sensor_of("$SYS/x"), None);
        assert_eq!(template("$SYS/{sensor}").sensor_of("$SYS/x"), Some("x"));
        assert_eq!(template("{sensor}").sensor_of("m1"), Some("m1"));
    }

    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(TopicTemplate::parse(""), Err(TemplateError::Empty));
        assert!(matches!(
            TopicTemplate::parse("a/b"),
            Err(TemplateError::NoSensorLevel(_))
        ));
        assert!(matches!(
            TopicTemplate::parse("{sensor}/{sensor}"),
            Err(TemplateError::SeveralSensorLevels(_))
        ));
        for bad in [
            "a/#",
            "a/x+/{sensor}",
            "{sensor}x",
            "a/{b}/{sensor}",
            "{sensor}/#",
        ] {
            assert!(
                matches!(TopicTemplate::parse(bad), Err(TemplateError::BadLevel(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn round_trips_through_text() {
        let t: TopicTemplate = "a/{sensor}/+".parse().expect("valid");
        assert_eq!(t.to_string(), "a/{sensor}/+");
        assert_eq!(t.as_str(), "a/{sensor}/+");
    }
}
