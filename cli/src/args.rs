//! The `ingestwatch` command line: [`Cli`], its subcommands and each
//! command's arguments (clap derive; every option a flag with an environment
//! variable where one makes sense). The server's own options
//! ([`ServerOptions`]) live in the server crate and are flattened in here.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ingestwatch_server::config::{LogFormat, ServerOptions, TokenClaims};

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
    /// Subscribe to a server's WebSocket stream and print one line per frame;
    /// reconnects and resumes without gaps or duplicates. Exit codes: 0 on
    /// Ctrl-C, 2 on a protocol error (refused subscription, not an
    /// ingestwatch endpoint), 3 when authentication is refused.
    Tail(TailArgs),
    /// Mint a token from the HS256 secret (for operators and wallboards).
    Token(TokenArgs),
    /// GET a health endpoint (default: this host's /readyz); exit 0 on 2xx,
    /// 1 otherwise. For container health checks (the image has no curl).
    Probe(ProbeArgs),
}

/// Options of `probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// The URL to GET.
    #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
    pub url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
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

impl TokenArgs {
    /// The claims to sign.
    pub fn claims(&self) -> TokenClaims {
        TokenClaims {
            jwt_secret: self.jwt_secret.clone(),
            role: self.role.clone(),
            ttl: self.ttl.clone(),
            sources: self.sources.clone(),
            subject: self.subject.clone(),
            audience: self.audience.clone(),
            issuer: self.issuer.clone(),
            role_claim: self.role_claim.clone(),
        }
    }
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
