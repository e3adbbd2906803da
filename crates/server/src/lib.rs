//! The headless Polis server and the `polis` command: config, plugins wiring twin and network, CLI tools.
//!
//! [`start`] loads the scene, the TLS identity and the tokens, binds the QUIC
//! edge and runs the twin's fixed tick on a thread of its own; the `polis`
//! binary is a thin wrapper around [`cli::run`].

mod bridge;
pub mod cli;
mod config;
mod server;

pub use bridge::{MetricsHandle, NetBridgePlugin, NetLink, NetSystems, ServerMetrics};
pub use config::{
    Config, ConfigError, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_TICK_HZ, Limits, TokenEntry,
    TokenTable, generated_token, token_sha256,
};
pub use server::{BUNDLED_SCENE, RunningServer, ServerStarted, bundled_scene, load_scene, start};
