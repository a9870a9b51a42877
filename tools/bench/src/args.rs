//! The arguments of `ingestwatch-bench`: what to measure ([`BenchMode`]),
//! where the server runs ([`BenchServer`]) and every knob of each mode.

use clap::{Args, ValueEnum};

/// What `ingestwatch-bench` measures.
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

/// Where `ingestwatch-bench` runs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchServer {
    /// The server in a child process (`ingestwatch-bench serve`, the same code as `ingestwatch serve`): its CPU and RSS are its own.
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
