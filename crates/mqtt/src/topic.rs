//! MQTT topic filters: which are valid, and which topics they match
//! (MQTT 3.1.1 §4.7, MQTT 5 §4.7 and §4.8.2 for shared subscriptions).

/// The prefix of a shared subscription's filter: `$share/GROUP/FILTER`.
const SHARE_PREFIX: &str = "$share/";

/// The filter a shared subscription applies (`FILTER` of
/// `$share/GROUP/FILTER`), or `filter` itself.
pub fn without_share(filter: &str) -> &str {
    filter
        .strip_prefix(SHARE_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, inner)| inner)
}

/// What is wrong with `filter`, if anything: empty, a `#` not alone in the
/// last level, a `+` not alone in its level, a NUL, or a shared
/// subscription without a group name or filter.
pub fn filter_problem(filter: &str) -> Option<&'static str> {
    let inner = if let Some(rest) = filter.strip_prefix(SHARE_PREFIX) {
        match rest.split_once('/') {
            Some((group, inner)) if !group.is_empty() && !group.contains(['+', '#']) => inner,
            _ => return Some("a shared subscription is `$share/GROUP/FILTER` with a group name"),
        }
    } else {
        filter
    };
    if inner.is_empty() {
        return Some("is empty");
    }
    if inner.contains('\0') {
        return Some("contains a NUL character");
    }
    if inner.len() > 65_535 {
        return Some("is longer than 65,535 bytes");
    }
    let levels: Vec<&str> = inner.split('/').collect();
    for (index, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || index + 1 != levels.len()) {
            return Some("`#` must be a whole level, and the last one");
        }
        if level.contains('+') && *level != "+" {
            return Some("`+` must be a whole level");
        }
    }
    None
}

/// True when `topic` matches `filter` (a shared subscription's inner
/// filter). Topics starting with `$` match no filter starting with a
/// wildcard.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let filter = without_share(filter);
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if topic_levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_the_specification_says() {
        for (filter, topic, matches) in [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "anything/at/all", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/broker/uptime", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/broker/uptime", true),
            ("$share/polis/city/+/power", "city/m1/power", true),
            ("$share/polis/city/+/power", "city/m1/flow", false),
            ("city/m1", "city/m1", true),
            ("city/m1", "city/m2", false),
        ] {
            assert_eq!(topic_matches(filter, topic), matches, "{filter} vs {topic}");
        }
    }

    #[test]
    fn malformed_filters_are_named() {
        for good in ["a/b", "#", "+", "a/+/c", "a/#", "$share/g/a/#", "/"] {
            assert_eq!(filter_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "a/#/c",
            "a#",
            "a/b+",
            "$share//a",
            "$share/g",
            "$share/g/",
            "a\0b",
        ] {
            assert!(filter_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(without_share("$share/g/a/b"), "a/b");
        assert_eq!(without_share("a/b"), "a/b");
    }
}
