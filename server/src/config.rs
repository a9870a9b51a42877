//! The one configuration: every option is a CLI flag with an environment
//! variable, documented here (and mirrored in `.env.example`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ingestwatch — live monitor for PostgreSQL-backed data-ingestion pipelines.
#[derive(Debug, Parser)]
#[command(name = "ingestwatch", version, about, long_about = None)]
pub struct Cli {
    /// Log output format.
    #[arg(long, env = "INGESTWATCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the SQL migrations in `sql/` (idempotent; applied versions are recorded).
    Migrate(MigrateArgs),
    /// Serve the API, WebSocket stream and client against an existing database.
    Serve(ServeArgs),
    /// Run the embedded demo: throwaway PostgreSQL (unless DATABASE_URL is set),
    /// migrations, a simulated pipeline and the server with the live client.
    Demo(DemoArgs),
    /// Drive the simulated pipeline against DATABASE_URL.
    Simulate(SimulateArgs),
    /// Benchmark the whole path (commit -> WebSocket receipt) and print a table.
    Bench(BenchArgs),
    /// Subscribe to a server's WebSocket stream and print one line per frame;
    /// reconnects and resumes without gaps or duplicates. Exit codes: 0 on
    /// Ctrl-C, 2 on a protocol error (refused subscription, not an
    /// ingestwatch endpoint), 3 when authentication is refused.
    Tail(TailArgs),
    /// Mint a token from the HS256 secret (for operators and wallboards).
    Token(TokenArgs),
}

/// Options of `migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL of a role that may create schemas, tables, triggers and roles.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

/// Options of `serve` (also used by `demo`).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// PostgreSQL URL the server reads from (use the read-only role `ingestwatch_reader`).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Server tuning.
    #[command(flatten)]
    pub server: ServerOptions,
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
    /// Direct (session) PostgreSQL URL of the primary for the LISTEN connection,
    /// the rollup writer and the alerts leader (default: DATABASE_URL). Set it
    /// when DATABASE_URL goes through a pooler in transaction mode.
    #[arg(long, env = "LISTEN_DATABASE_URL", hide_env_values = true)]
    pub listen_database_url: Option<String>,
    /// PostgreSQL URL of a read replica for lists, drill-downs, trends and
    /// exports (live figures, the event stream and the monitor's writes stay
    /// on the primary). Unreachable or lagging: reads fall back to the primary.
    #[arg(long, env = "REPLICA_DATABASE_URL", hide_env_values = true)]
    pub replica_database_url: Option<String>,
    /// Replica replay lag (ms) above which heavy reads go to the primary.
    #[arg(long, env = "INGESTWATCH_REPLICA_MAX_LAG_MS", default_value_t = 30_000)]
    pub replica_max_lag_ms: u64,
    /// What DATABASE_URL goes through: `session` (PostgreSQL itself, or a
    /// session pooler) or `transaction` (PgBouncer pool_mode=transaction,
    /// Supabase port 6543): each pooled use then runs in one transaction.
    #[arg(long, env = "INGESTWATCH_POOLER_MODE", value_enum, default_value_t = crate::db::PoolerMode::Session)]
    pub pooler_mode: crate::db::PoolerMode,
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

/// Options of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Use this database instead of a throwaway cluster (it is migrated first).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Simulated pipeline statements per second.
    #[arg(long, env = "INGESTWATCH_DEMO_RATE", default_value_t = 20.0)]
    pub rate: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Server tuning.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Options of `token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// HS256 secret to sign with.
    #[arg(long, env = "INGESTWATCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Role to grant.
    #[arg(long, value_parser = ["viewer", "operator"])]
    pub role: String,
    /// Lifetime, e.g. `90s`, `30m`, `8h`, `30d`.
    #[arg(long, default_value = "8h")]
    pub ttl: String,
    /// Limit the token to these sources (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub sources: Vec<String>,
    /// `sub` claim.
    #[arg(long, default_value = "ingestwatch-cli")]
    pub subject: String,
    /// `aud` claim to set.
    #[arg(long, env = "INGESTWATCH_JWT_AUDIENCE")]
    pub audience: Option<String>,
    /// `iss` claim to set.
    #[arg(long, env = "INGESTWATCH_JWT_ISSUER")]
    pub issuer: Option<String>,
    /// Dotted claim path for the role.
    #[arg(long, env = "INGESTWATCH_ROLE_CLAIM", default_value = "role")]
    pub role_claim: String,
}

/// Options of `simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// PostgreSQL URL of a role that may write to `ingest.*`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Statements per second across all sources.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds to run (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Concurrent writer connections.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// What `ingestwatch bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchMode {
    /// Commit -> WebSocket receipt latency, loss and duplicates (`--rates` × `--subscribers`).
    Latency,
    /// Server RSS per idle WebSocket subscriber (`--idle-subscribers`; server in a child process).
    Memory,
    /// Insert throughput with and without the capture triggers (own scratch clusters, fsync off and on).
    Triggers,
    /// `GET /api/kpis` latency at a paced request rate (`--kpi-rps`).
    Rest,
    /// A long run at a high rate, sampling server memory, holes, queues and tasks (`--soak`).
    Soak,
}

/// Where `ingestwatch bench` runs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchServer {
    /// `ingestwatch serve` as a child process: its CPU and RSS are its own.
    Child,
    /// In the bench's own process (CPU and RSS include the load generator).
    InProcess,
}

/// Options of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Database to benchmark against (it is migrated); default: a throwaway cluster.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// What to measure, comma-separated (default: latency; `--soak` alone: soak).
    #[arg(long, value_delimiter = ',')]
    pub mode: Vec<BenchMode>,
    /// Where the server runs (memory and soak need `child`).
    #[arg(long, value_enum, default_value_t = BenchServer::Child)]
    pub server: BenchServer,
    /// Event rates (statements per second) to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    pub rates: Vec<u32>,
    /// WebSocket subscribers, comma-separated (each rate is run with each count).
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    pub subscribers: Vec<u32>,
    /// Seconds per measurement (latency, triggers and rest runs).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Rows per statement.
    #[arg(long, default_value_t = 10)]
    pub rows: u32,
    /// Concurrent writer connections.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Also search for the highest sustained rate with p99 <= this many ms and zero loss.
    #[arg(long)]
    pub find_max_p99_ms: Option<f64>,
    /// Memory mode: idle subscriber counts to measure at, ascending (each step adds to the last).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub idle_subscribers: Vec<u32>,
    /// Triggers mode: rows per INSERT statement, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    pub trigger_rows: Vec<u32>,
    /// Triggers mode: concurrent inserting connections.
    #[arg(long, default_value_t = 4)]
    pub trigger_connections: usize,
    /// Rest mode: requests per second (paced, open loop).
    #[arg(long, default_value_t = 1000)]
    pub kpi_rps: u32,
    /// Rest mode: the window asked for.
    #[arg(long, default_value = "5m")]
    pub kpi_window: String,
    /// Rest mode: sources with five minutes of history loaded before the run.
    #[arg(long, default_value_t = 10)]
    pub kpi_sources: u32,
    /// Rest mode: keep-alive HTTP connections the requests are spread over.
    #[arg(long, default_value_t = 8)]
    pub kpi_connections: usize,
    /// Soak: run this many seconds (alone, unless `--mode` names other modes too).
    #[arg(long)]
    pub soak: Option<u64>,
    /// Soak: statements per second.
    #[arg(long, default_value_t = 1000)]
    pub soak_rate: u32,
    /// Soak: WebSocket subscribers.
    #[arg(long, default_value_t = 100)]
    pub soak_subscribers: u32,
    /// Latency: extra subscribers (own tokens) that subscribe to `events` from
    /// the run's start and never read a frame: slow-client isolation (the
    /// others' latency and the server's RSS with them connected).
    #[arg(long, default_value_t = 0)]
    pub stalled: u32,
    /// Soak: seconds between samples.
    #[arg(long, default_value_t = 10)]
    pub soak_interval: u64,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Output format of `tail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TailFormat {
    /// Each frame exactly as received: one JSON object per line.
    Json,
    /// One readable line per event (seq, time, kind, source, rows).
    Text,
}

/// Options of `tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// WebSocket endpoint of an ingestwatch server.
    #[arg(
        long,
        env = "INGESTWATCH_TAIL_URL",
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    pub url: String,
    /// Topics, comma-separated: events, errors (the errors.* events only), kpis.
    #[arg(long, value_delimiter = ',', default_value = "events")]
    pub topics: Vec<String>,
    /// Print the events after this seq first (default: start at the newest event).
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    pub since: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TailFormat::Json)]
    pub format: TailFormat,
    /// Bearer token, for servers that require authentication.
    #[arg(long, env = "INGESTWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Reconnect after this many seconds without any frame (the server pings every 15 s).
    #[arg(long, env = "INGESTWATCH_TAIL_IDLE_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
}
