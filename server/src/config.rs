//! The server's configuration: [`ServerOptions`] (with [`AuthOptions`]) is
//! every option `serve` takes, each a CLI flag with an environment variable,
//! documented here (and mirrored in `.env.example`). The commands that embed
//! the server (`ingestwatch serve` and `demo`, the bench) flatten it into
//! their own arguments; those live with their commands in the `ingestwatch`
//! and `ingestwatch-bench` crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Server tuning shared by `serve` and `demo`.
#[derive(Debug, Clone, Args)]
pub struct ServerOptions {
    /// Address to listen on.
    #[arg(long, env = "INGESTWATCH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// KPI delta interval in milliseconds (each subscriber gets at most one KPI delta per interval).
    #[arg(long, env = "INGESTWATCH_KPI_INTERVAL_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(20..=60_000))]
    pub kpi_interval_ms: u64,
    /// Frames a WebSocket client may have queued before it is told to resync.
    #[arg(long, env = "INGESTWATCH_WS_QUEUE", default_value_t = 256, value_parser = clap::value_parser!(u64).range(4..=65_536))]
    pub ws_queue: u64,
    /// Largest client frame (bytes) the server parses; larger ones get an error frame.
    #[arg(long, env = "INGESTWATCH_WS_MAX_FRAME", default_value_t = 16_384)]
    pub ws_max_frame: usize,
    /// Seconds between server pings on idle WebSockets.
    #[arg(long, env = "INGESTWATCH_WS_PING_SECS", default_value_t = 15)]
    pub ws_ping_secs: u64,
    /// Seconds without any frame from a client (pong included) before it is closed.
    #[arg(long, env = "INGESTWATCH_WS_IDLE_TIMEOUT_SECS", default_value_t = 45)]
    pub ws_idle_timeout_secs: u64,
    /// Seconds a single write to a client may block before the client is closed as stuck.
    #[arg(long, env = "INGESTWATCH_WS_WRITE_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_write_timeout_secs: u64,
    /// Recent events kept in memory for resuming subscribers (older ones come from the outbox).
    #[arg(long, env = "INGESTWATCH_EVENT_RING", default_value_t = 8192)]
    pub event_ring: usize,
    /// Connections in the read pool (REST queries, catch-up of resuming subscribers).
    #[arg(long, env = "INGESTWATCH_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,
    /// Statement timeout for the server's read queries, in milliseconds.
    #[arg(
        long,
        env = "INGESTWATCH_STATEMENT_TIMEOUT_MS",
        default_value_t = 15_000
    )]
    pub statement_timeout_ms: u64,
    /// How often the trend rollups are flushed to PostgreSQL, in milliseconds.
    #[arg(long, env = "INGESTWATCH_ROLLUP_FLUSH_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(50..=300_000))]
    pub rollup_flush_ms: u64,
    /// Days of minute rollups kept (older minute trends are computed from the base tables).
    #[arg(long, env = "INGESTWATCH_ROLLUP_MINUTE_DAYS", default_value_t = 35, value_parser = clap::value_parser!(u32).range(3..=400))]
    pub rollup_minute_days: u32,
    /// Seconds a finished export job's file is kept for download before it is deleted.
    #[arg(long, env = "INGESTWATCH_EXPORT_TTL_SECS", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub export_ttl_secs: u64,
    /// Write CSV cells exactly as stored, without the `'` that keeps a
    /// spreadsheet from evaluating text cells starting with `=`, `+`, `-`,
    /// `@`, tab or carriage return (formula injection; see docs/api.md).
    #[arg(long, env = "INGESTWATCH_CSV_RAW_FORMULAS")]
    pub csv_raw_formulas: bool,
    /// Directory of client files to serve instead of the embedded ones (development).
    #[arg(long, env = "INGESTWATCH_CLIENT_DIR")]
    pub client_dir: Option<PathBuf>,
    /// Alert rules file (TOML; see alerts.example.toml). Without one this
    /// replica evaluates no rules (it still shows alerts other replicas record).
    #[arg(long, env = "INGESTWATCH_ALERTS")]
    pub alerts: Option<PathBuf>,
    /// Use the embedded default rules when no `--alerts` file is given (set by `demo`).
    #[arg(skip)]
    pub default_alerts: bool,
    /// At most this many sources get their own series on `/metrics` (by name;
    /// the totals count every source). Bounds the label cardinality.
    #[arg(long, env = "INGESTWATCH_METRICS_MAX_SOURCES", default_value_t = 1_000)]
    pub metrics_max_sources: usize,
    /// Authentication and limits.
    #[command(flatten)]
    pub auth: AuthOptions,
}

/// Authentication (JWT) and abuse limits.
#[derive(Debug, Clone, Args)]
pub struct AuthOptions {
    /// HS256 shared secret (e.g. Supabase's JWT secret). Never logged.
    #[arg(long, env = "INGESTWATCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file with an RS256 or ES256 public key.
    #[arg(long, env = "INGESTWATCH_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS URL (keys chosen by `kid`, cached, re-fetched on an unknown `kid`).
    #[arg(long, env = "INGESTWATCH_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Required `aud` claim (Supabase: `authenticated`).
    #[arg(long, env = "INGESTWATCH_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required `iss` claim.
    #[arg(long, env = "INGESTWATCH_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Dotted path of the claim holding `viewer` or `operator` (e.g. `app_metadata.ingestwatch_role`).
    #[arg(long, env = "INGESTWATCH_ROLE_CLAIM", default_value = "role")]
    pub role_claim: String,
    /// Dotted path of the optional claim listing the source names a token may see.
    #[arg(long, env = "INGESTWATCH_SOURCES_CLAIM", default_value = "sources")]
    pub sources_claim: String,
    /// Clock leeway for `exp` / `nbf`, in seconds.
    #[arg(long, env = "INGESTWATCH_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// Run without authentication (refused on a non-loopback address).
    #[arg(long, env = "INGESTWATCH_AUTH_DISABLED")]
    pub auth_disabled: bool,
    /// Seconds a WebSocket may stay open after its token expired, waiting for `{"op":"auth"}`.
    #[arg(long, env = "INGESTWATCH_WS_AUTH_GRACE_SECS", default_value_t = 30)]
    pub ws_auth_grace_secs: u64,
    /// Client frames per second per WebSocket (burst: twice as many).
    #[arg(long, env = "INGESTWATCH_WS_MESSAGES_PER_SEC", default_value_t = 20)]
    pub ws_messages_per_sec: u32,
    /// Concurrent WebSocket / SSE connections in total.
    #[arg(long, env = "INGESTWATCH_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,
    /// Concurrent WebSocket / SSE connections per token subject.
    #[arg(
        long,
        env = "INGESTWATCH_MAX_CONNECTIONS_PER_TOKEN",
        default_value_t = 64
    )]
    pub max_connections_per_token: usize,
    /// Origins allowed by CORS (comma-separated); none by default (same origin only).
    #[arg(long, env = "INGESTWATCH_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

impl ServerOptions {
    /// KPI tick as a duration.
    pub fn kpi_interval(&self) -> Duration {
        Duration::from_millis(self.kpi_interval_ms)
    }
}

/// The claims [`crate::auth::mint`] signs (the `token` command, the demo,
/// the bench and the tests build one).
#[derive(Debug, Clone)]
pub struct TokenClaims {
    /// HS256 secret to sign with.
    pub jwt_secret: String,
    /// Role to grant (`viewer` or `operator`).
    pub role: String,
    /// Lifetime, e.g. `90s`, `30m`, `8h`, `30d`.
    pub ttl: String,
    /// Limit the token to these sources (names); empty: all sources.
    pub sources: Vec<String>,
    /// `sub` claim.
    pub subject: String,
    /// `aud` claim to set.
    pub audience: Option<String>,
    /// `iss` claim to set.
    pub issuer: Option<String>,
    /// Dotted claim path for the role.
    pub role_claim: String,
}
