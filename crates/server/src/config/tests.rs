//! The configuration's layering, checks and redaction, against the example
//! file and hand-written cases.

use std::path::Path;

use super::*;

#[test]
fn the_example_file_is_valid_and_states_the_defaults() {
    let text = include_str!("../../../../polis.example.toml");
    let example =
        Config::from_toml_str(text, Path::new("polis.example.toml")).expect("the example parses");
    let defaults = Config::default();
    assert_eq!(example.listen, defaults.listen);
    assert_eq!(example.data_dir, defaults.data_dir);
    assert_eq!(example.tick_hz, defaults.tick_hz);
    assert_eq!(example.max_tick_hz, defaults.max_tick_hz);
    assert_eq!(example.scene, defaults.scene);
    assert_eq!(example.http.listen, defaults.http.listen);
    assert_eq!(example.http.enabled, defaults.http.enabled);
    assert_eq!(example.ngsi_ld.enabled, defaults.ngsi_ld.enabled);
    assert_eq!(example.ngsi_ld.listen, defaults.ngsi_ld.listen);
    assert_eq!(example.ngsi_ld.max_page, defaults.ngsi_ld.max_page);
    assert!(example.tokens.is_empty());
    let (e, d) = (&example.limits, &defaults.limits);
    assert_eq!(
        (
            e.max_connections,
            e.event_capacity,
            e.max_events_per_tick,
            e.gateway_window,
            e.viewer_frame_bytes
        ),
        (
            d.max_connections,
            d.event_capacity,
            d.max_events_per_tick,
            d.gateway_window,
            d.viewer_frame_bytes
        )
    );
    // The commented token examples are valid once uncommented.
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|r| r.starts_with('[') || r.contains(" = "))
                .unwrap_or(l)
        })
        .filter(|l| !l.starts_with("scene"))
        .collect::<Vec<_>>()
        .join("\n");
    let with_tokens = Config::from_toml_str(&uncommented, Path::new("uncommented.toml"))
        .expect("the token examples parse");
    assert_eq!(with_tokens.tokens.len(), 3);
    assert_eq!(with_tokens.tokens[2].role, Access::Resident);
    assert_eq!(with_tokens.tokens[2].sensors, ["meter-12b"]);
    assert!(example.mqtt.is_empty(), "no MQTT source by default");
    let [source] = &with_tokens.mqtt[..] else {
        panic!("one commented [[mqtt]] example");
    };
    assert_eq!(source.subscribe.len(), 2);
    assert_eq!(source.max_payload_bytes, DEFAULT_MQTT_MAX_PAYLOAD_BYTES);
}

#[test]
fn mqtt_sources_are_checked_with_key_and_reason() {
    let source = |extra: &str| {
        format!(
            "[[token]]\nname = \"gw\"\nrole = \"gateway\"\ntoken = \"gateway-secret-123456\"\nscope_prefixes = [\"meter-\"]\n\
             [[token]]\nname = \"viewer\"\nrole = \"public\"\ntoken = \"viewer-secret-1234567\"\n\
             [[mqtt]]\nname = \"city\"\nurl = \"mqtt://127.0.0.1:1883\"\n{extra}\n\
             [[mqtt.subscribe]]\nfilter = \"city/#\"\nformat = \"senml\"\n"
        )
    };
    let valid = Config::from_toml_str(
        &source("token = \"gw\"\nversion = \"3.1.1\""),
        Path::new("p.toml"),
    )
    .expect("valid");
    assert_eq!(valid.mqtt[0].version, MqttVersion::V3_1_1);
    assert_eq!(valid.mqtt[0].client_id(), "polis-city");
    assert_eq!(
        crate::config::token_scope(&valid, "gateway-secret-123456"),
        Ok(vec!["meter-".to_owned()]),
        "a token by its secret"
    );
    for (extra, key, message) in [
        ("qos = 2", "mqtt[0].qos", "must be in [0, 1], is 2"),
        (
            "max_payload_bytes = 99999999999",
            "mqtt[0].max_payload_bytes",
            "must be in [64, 16777216], is 99999999999",
        ),
        (
            "max_in_flight = 0",
            "mqtt[0].max_in_flight",
            "must be in [1, 65535], is 0",
        ),
        (
            "token = \"viewer\"",
            "mqtt[0].token",
            "names a `public` token; a source writes readings and needs a `gateway` token",
        ),
        (
            "token = \"nobody\"",
            "mqtt[0].token",
            "names no configured [[token]] (by name, secret or sha256:HEX)",
        ),
        (
            "password_env = \"PW\"",
            "mqtt[0].username",
            "a password needs a `username`",
        ),
        (
            "ca_file = \"ca.pem\"",
            "mqtt[0].url",
            "certificates are only used with mqtts://",
        ),
    ] {
        let err = Config::from_toml_str(&source(extra), Path::new("p.toml")).expect_err(extra);
        assert!(
            err.to_string()
                .contains(&format!("p.toml: `{key}`: {message}")),
            "{extra}: {err}"
        );
    }
    let bad_url = source("").replace("mqtt://127.0.0.1:1883", "http://broker");
    let err = Config::from_toml_str(&bad_url, Path::new("p.toml")).expect_err("scheme");
    assert!(
        err.to_string()
            .contains("`mqtt[0].url`: must start with mqtt:// or mqtts://"),
        "{err}"
    );
    let no_ca = source("").replace("mqtt://", "mqtts://");
    let err = Config::from_toml_str(&no_ca, Path::new("p.toml")).expect_err("ca");
    assert!(err.to_string().contains("`mqtt[0].ca_file`"), "{err}");
    let bad_filter = source("").replace("city/#", "city/#/x");
    let err = Config::from_toml_str(&bad_filter, Path::new("p.toml")).expect_err("filter");
    assert!(
        err.to_string()
            .contains("`mqtt[0].subscribe[0].filter`: `#` must be a whole level"),
        "{err}"
    );
    let json_without_value = source("").replace(
        "format = \"senml\"",
        "format = \"json\"\ntopic = \"city/{sensor}\"",
    );
    let err = Config::from_toml_str(&json_without_value, Path::new("p.toml")).expect_err("json");
    assert!(
        err.to_string()
            .contains("`mqtt[0].subscribe[0].value_pointer`"),
        "{err}"
    );
    let err =
        Config::from_toml_str(&source("version = 4"), Path::new("p.toml")).expect_err("version");
    assert!(err.to_string().contains("MQTT version 4"), "{err}");
    // A password never shows, and a token given by its secret shows as its hash.
    let secret = source(
        "token = \"gateway-secret-123456\"\nusername = \"polis\"\npassword_env = \"POLIS_MQTT_PASSWORD\"",
    );
    let config = Config::from_toml_str(&secret, Path::new("p.toml")).expect("valid");
    let shown = config.to_toml_redacted();
    assert!(!shown.contains("gateway-secret-123456"), "{shown}");
    assert!(shown.contains("token = \"sha256:"), "{shown}");
}

#[test]
fn defaults_when_empty() {
    let config = Config::from_toml_str("", Path::new("polis.toml")).expect("empty is valid");
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.tick_hz, DEFAULT_TICK_HZ);
}

#[test]
fn errors_name_file_line_and_reason() {
    let text = "tick_hz = 20\nlisten = 12\n";
    let err = Config::from_toml_str(text, Path::new("polis.toml")).expect_err("bad type");
    let shown = err.to_string();
    assert!(shown.starts_with("polis.toml:2:10:"), "{shown}");
    let err = Config::from_toml_str("tick_hzz = 1\n", Path::new("p.toml")).expect_err("unknown");
    assert!(err.to_string().contains("p.toml:1:1"), "{err}");
    assert!(err.to_string().contains("tick_hzz"), "{err}");
    let err = Config::from_toml_str("tick_hz = 0\n", Path::new("p.toml")).expect_err("range");
    assert_eq!(
        err.to_string(),
        "p.toml: `tick_hz`: must be in [0.1, 1000], is 0"
    );
}

/// Settings a hostile or mistaken file held that passed the check and then
/// panicked a thread or made retention delete fresh data: each is refused
/// with its key, its range and its value.
#[test]
fn settings_that_would_panic_or_destroy_data_are_refused() {
    let refused = [
        (
            "tick_hz = 1e-300",
            "tick_hz",
            "must be in [0.1, 1000], is 1e-300",
        ),
        (
            "[history]\npersonal_raw_max_age_hours = 1e300",
            "history.personal_raw_max_age_hours",
            "must be 0 or in [0.01, 876000], is 1e300",
        ),
        (
            "[history]\npersonal_raw_max_age_hours = 2.6e12",
            "history.personal_raw_max_age_hours",
            "must be 0 or in [0.01, 876000], is 2.6e12",
        ),
        (
            "[limits]\nevent_capacity = 9223372036854775807",
            "limits.event_capacity",
            "must be in [1, 1000000], is 9223372036854775807",
        ),
        (
            "[limits]\ngateway_window = 9223372036854775807",
            "limits.gateway_window",
            "must be in [1, 65536], is 9223372036854775807",
        ),
        (
            "[history]\nretention_every_secs = 9223372036854775807",
            "history.retention_every_secs",
            "must be in [1, 31536000], is 9223372036854775807",
        ),
        (
            "[limits]\nmax_area_km2 = inf",
            "limits.max_area_km2",
            "must be in [0.000001, 510072000], is inf",
        ),
        (
            "[privacy]\nk = 1",
            "privacy.k",
            "must be in [2, 1000000], is 1",
        ),
        (
            "[privacy]\nk = 4\nk_planner = 5",
            "privacy.k_planner",
            "must be in [2, 4], is 5",
        ),
        (
            "[privacy]\ndp_epsilon = -1",
            "privacy.dp_epsilon",
            "must be 0 or in [0.001, 1000], is -1",
        ),
        (
            "[privacy]\ndp_releases = 0",
            "privacy.dp_releases",
            "must be in [1, 1000000], is 0",
        ),
        (
            "[privacy.dp_bounds]\nactive_power = [5.0, 5.0]",
            "privacy.dp_bounds.active_power",
            "must be [lo, hi], finite, with lo < hi",
        ),
        (
            "[limits]\nmax_area_items_per_tick = 0",
            "limits.max_area_items_per_tick",
            "must be in [10, 10000000], is 0",
        ),
        (
            "[limits]\nmax_area_items_per_second = nan",
            "limits.max_area_items_per_second",
            "must be in [100, 1000000000], is NaN",
        ),
        (
            "[[token]]\nrole = \"resident\"\ntoken = \"resident-token-0123456789\"",
            "token[0]",
            "a resident token needs `sensors`",
        ),
        (
            "[[token]]\nrole = \"public\"\ntoken = \"public-token-0123456789\"\nsensors = [\"m-1\"]",
            "token[0]",
            "`sensors` applies to resident tokens only",
        ),
        (
            "[limits]\nmax_handshakes_per_address = 0",
            "limits.max_handshakes_per_address",
            "must be in [1, 100000], is 0",
        ),
    ];
    for (text, key, message) in refused {
        let config: Config = toml::from_str(text).expect("parses; only the range is wrong");
        let problems = config.problems();
        let problem = problems
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("`{text}` is refused: {problems:?}"));
        assert!(
            problem.message.starts_with(message),
            "`{text}`: {}",
            problem.message
        );
        let err = Config::from_toml_str(text, Path::new("polis.toml")).expect_err("refused");
        assert!(
            err.to_string().contains(&format!("polis.toml: `{key}`")),
            "{err}"
        );
    }
    // Zero keeps personal readings forever, and stays allowed.
    let forever: Config =
        toml::from_str("[history]\npersonal_raw_max_age_hours = 0").expect("parses");
    assert_eq!(forever.problems(), []);
}

#[test]
fn one_secret_for_two_roles_is_refused() {
    let text = format!(
        "[[token]]\nrole = \"operator\"\ntoken = \"shared-secret-0123456\"\n\n[[token]]\nrole = \"public\"\nsha256 = \"{}\"\n",
        crate::tokens::token_sha256("shared-secret-0123456").to_ascii_uppercase()
    );
    let err = Config::from_toml_str(&text, Path::new("polis.toml")).expect_err("duplicate");
    assert_eq!(
        err.to_string(),
        "polis.toml: `token[1]`: has the same secret as token[0]; give each holder its own"
    );
}

#[test]
fn command_line_beats_environment_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("polis.toml");
    std::fs::write(
        &path,
        "tick_hz = 10\ndata_dir = \"from-file\"\n[limits]\ngateway_window = 3\n",
    )
    .expect("written");
    let env = |var: &str| match var {
        "POLIS_TICK_HZ" => Some("30".to_owned()),
        "POLIS_LIMITS_GATEWAY_WINDOW" => Some("7".to_owned()),
        "POLIS_TLS_NAMES" => Some("twin.example.org, 10.0.0.5".to_owned()),
        _ => None,
    };
    let mut overrides = Config::env_overrides(env);
    overrides.push(("--tick-hz".into(), "tick_hz", "40".into()));
    let config = Config::layered(Some(&path), &overrides).expect("valid");
    assert_eq!(config.tick_hz, 40.0, "flag wins");
    assert_eq!(config.limits.gateway_window, 7, "environment beats file");
    assert_eq!(
        config.data_dir,
        PathBuf::from("from-file"),
        "file beats default"
    );
    assert_eq!(
        config.limits.event_capacity,
        Limits::default().event_capacity
    );
    assert_eq!(config.tls_names, ["twin.example.org", "10.0.0.5"]);

    let bad = [("POLIS_TICK_HZ".to_owned(), "tick_hz", "fast".to_owned())];
    let err = Config::layered(Some(&path), &bad).expect_err("not a number");
    assert!(
        err.to_string()
            .starts_with("POLIS_TICK_HZ: `tick_hz` = `fast`"),
        "{err}"
    );
}

#[test]
fn shown_configuration_hides_secrets_and_reads_back() {
    let text = "[[token]]\nrole = \"gateway\"\ntoken = \"gateway-secret-123456\"\n";
    let config = Config::from_toml_str(text, Path::new("p.toml")).expect("valid");
    let shown = config.to_toml_redacted();
    assert!(!shown.contains("gateway-secret-123456"), "{shown}");
    assert!(
        shown.contains(&crate::tokens::token_sha256("gateway-secret-123456")),
        "{shown}"
    );
    let again = Config::from_toml_str(&shown, Path::new("shown.toml")).expect("reads back");
    assert_eq!(again.listen, config.listen);
    assert_eq!(again.limits.gateway_window, config.limits.gateway_window);
}
