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
    assert_eq!(with_tokens.tokens.len(), 2);
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
