//! The headless Polis server and the `polis` command: config, plugins wiring twin and network, CLI tools.
//!
//! [`start`] loads the scene, the TLS identity and the tokens, binds the QUIC
//! edge and runs the twin's fixed tick on a thread of its own; the `polis`
//! binary is a thin wrapper around [`cli::run`].

mod audit;
mod bridge;
pub mod cli;
mod config;
pub mod consent;
mod groups;
mod http;
mod memory;
mod metrics;
mod mqtt;
mod ngsild;
mod playback;
pub mod resident;
mod server;
mod startup;
mod ticks;
mod tokens;

pub use audit::AuditLog;
pub use bridge::{NetBridgePlugin, NetLink, NetSystems};
pub use config::{
    Config, ConfigError, ConfigProblem, DEFAULT_DATA_DIR, DEFAULT_HTTP_LISTEN, DEFAULT_LISTEN,
    DEFAULT_MAX_CLOCK_SKEW_SECS, DEFAULT_MAX_TICK_HZ, DEFAULT_MQTT_MAX_PAYLOAD_BYTES,
    DEFAULT_TICK_HZ, ENV_KEYS, HistoryConfig, Http, Limits, MqttSourceConfig, MqttSubscribeConfig,
    MqttVersion, NgsiLdConfig, PayloadFormat, PrivacyConfig, SyncMode, TimeFormatName, TokenEntry,
    env_var_for,
};
pub use http::HttpEndpoint;
pub use memory::release_freed_memory;
pub use metrics::{Observed, ObservedHandle, SceneFacts, ServerMetrics, render_prometheus};
pub use server::{
    BUNDLED_SCENE, RunningServer, ServerStarted, bundled_scene, load_scene, start, start_http,
    start_with,
};
pub use tokens::{
    ServerTokens, TokenTable, generated_token, new_token, server_tokens, token_sha256,
};
