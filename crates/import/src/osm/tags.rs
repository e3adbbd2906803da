//! Reading building facts from OSM tags: heights, levels, usage, address.

use super::read::Tags;

/// Where a building's height came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeightSource {
    /// The `height` tag.
    Height,
    /// `building:levels` × storey height.
    Levels,
    /// The default height.
    Default,
}

impl HeightSource {
    /// The value of the `height_source` attribute.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HeightSource::Height => "height",
            HeightSource::Levels => "levels",
            HeightSource::Default => "default",
        }
    }
}

/// A metre value written as `12`, `12.5`, `12 m` or `12.5m`; `None` for
/// anything else (feet, ranges, text) and for values that are not finite
/// and positive.
pub(crate) fn parse_height_m(text: &str) -> Option<f64> {
    let text = text.trim();
    let number = text.strip_suffix('m').map_or(text, str::trim_end);
    positive(number.parse().ok()?)
}

/// A level count such as `5` or `4.5`; `None` unless finite and positive.
pub(crate) fn parse_levels(text: &str) -> Option<f64> {
    positive(text.trim().parse().ok()?)
}

fn positive(value: f64) -> Option<f64> {
    (value.is_finite() && value > 0.0).then_some(value)
}

/// `building` values of homes.
const RESIDENTIAL: [&str; 10] = [
    "residential",
    "apartments",
    "house",
    "detached",
    "semidetached_house",
    "terrace",
    "dormitory",
    "bungalow",
    "houseboat",
    "static_caravan",
];

/// `building` values of shops.
const RETAIL: [&str; 3] = ["retail", "supermarket", "kiosk"];

/// `building` values of public buildings.
const PUBLIC: [&str; 28] = [
    "public",
    "civic",
    "government",
    "school",
    "university",
    "college",
    "kindergarten",
    "church",
    "cathedral",
    "chapel",
    "mosque",
    "synagogue",
    "temple",
    "religious",
    "hospital",
    "train_station",
    "transportation",
    "museum",
    "library",
    "theatre",
    "fire_station",
    "police",
    "townhall",
    "stadium",
    "sports_hall",
    "sports_centre",
    "parliament",
    "courthouse",
];

/// `building` values of industry.
const INDUSTRIAL: [&str; 4] = ["industrial", "warehouse", "manufacture", "factory"];

/// The `usage` attribute: `residential`, `retail`, `office`, `commercial`,
/// `public`, `industrial` or `other`. See the crate documentation.
pub(crate) fn usage(tags: &Tags) -> &'static str {
    let building = tags.get("building").map_or("", String::as_str);
    let tag_is = |key: &str, value: &str| tags.get(key).is_some_and(|v| v == value);
    if RESIDENTIAL.contains(&building) || tag_is("building:use", "residential") {
        "residential"
    } else if RETAIL.contains(&building) || tags.contains_key("shop") {
        "retail"
    } else if building == "office" || (building == "commercial" && tags.contains_key("office")) {
        "office"
    } else if building == "commercial" || building == "hotel" {
        "commercial"
    } else if PUBLIC.contains(&building) {
        "public"
    } else if INDUSTRIAL.contains(&building) {
        "industrial"
    } else {
        "other"
    }
}

/// `addr:street addr:housenumber`, or whichever of them is given.
pub(crate) fn address(tags: &Tags) -> Option<String> {
    let street = tags.get("addr:street").map(|s| s.trim());
    let number = tags.get("addr:housenumber").map(|s| s.trim());
    match (street, number) {
        (Some(s), Some(n)) if !s.is_empty() && !n.is_empty() => Some(format!("{s} {n}")),
        (Some(s), _) if !s.is_empty() => Some(s.to_owned()),
        (_, Some(n)) if !n.is_empty() => Some(n.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn heights_with_and_without_unit() {
        assert_eq!(parse_height_m("12"), Some(12.0));
        assert_eq!(parse_height_m("12 m"), Some(12.0));
        assert_eq!(parse_height_m("12.5m"), Some(12.5));
        assert_eq!(parse_height_m(" 7.25 "), Some(7.25));
        assert_eq!(parse_height_m("40'"), None);
        assert_eq!(parse_height_m("tall"), None);
        assert_eq!(parse_height_m("0"), None);
        assert_eq!(parse_height_m("-3"), None);
        assert_eq!(parse_height_m("NaN"), None);
        assert_eq!(parse_height_m("inf"), None);
        assert_eq!(parse_height_m("m"), None);
    }

    #[test]
    fn levels() {
        assert_eq!(parse_levels("5"), Some(5.0));
        assert_eq!(parse_levels("4.5"), Some(4.5));
        assert_eq!(parse_levels("0"), None);
        assert_eq!(parse_levels("3;5"), None);
    }

    #[test]
    fn usage_from_tags() {
        assert_eq!(usage(&tags(&[("building", "apartments")])), "residential");
        assert_eq!(
            usage(&tags(&[
                ("building", "yes"),
                ("building:use", "residential")
            ])),
            "residential"
        );
        assert_eq!(
            usage(&tags(&[("building", "yes"), ("shop", "bakery")])),
            "retail"
        );
        assert_eq!(usage(&tags(&[("building", "supermarket")])), "retail");
        assert_eq!(usage(&tags(&[("building", "office")])), "office");
        assert_eq!(
            usage(&tags(&[("building", "commercial"), ("office", "company")])),
            "office"
        );
        assert_eq!(usage(&tags(&[("building", "commercial")])), "commercial");
        assert_eq!(usage(&tags(&[("building", "hotel")])), "commercial");
        assert_eq!(usage(&tags(&[("building", "cathedral")])), "public");
        assert_eq!(usage(&tags(&[("building", "warehouse")])), "industrial");
        assert_eq!(usage(&tags(&[("building", "yes")])), "other");
    }

    #[test]
    fn addresses() {
        assert_eq!(
            address(&tags(&[
                ("addr:street", "Mannerheimintie"),
                ("addr:housenumber", "5")
            ])),
            Some("Mannerheimintie 5".to_owned())
        );
        assert_eq!(
            address(&tags(&[("addr:street", "Aleksanterinkatu")])),
            Some("Aleksanterinkatu".to_owned())
        );
        assert_eq!(address(&tags(&[("name", "x")])), None);
    }
}
