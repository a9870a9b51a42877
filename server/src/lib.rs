//! ingestwatch-server: a live monitor for PostgreSQL-backed data-ingestion
//! pipelines — everything `ingestwatch serve` runs, and nothing else (the
//! command line is the `ingestwatch` crate in `cli/`; the simulator and the
//! throwaway cluster are `ingestwatch-sim`, the bench `ingestwatch-bench`).
//!
//! The layout follows the data flow:
//!
//! - [`alerts`] — rules, evaluation, webhooks, alert history and leadership.
//! - [`auth`] — JWT verification, roles and source scopes; token minting.
//! - [`config`] — the server's options (CLI flags and environment).
//! - [`db`] — connection pool, migrations runner, start-up (warm) queries.
//! - [`listen`] — the dedicated LISTEN connection, outbox catch-up and the
//!   watermark that turns a lossy, out-of-order doorbell into an exactly-once,
//!   seq-ordered event stream.
//! - [`live`] — rolling KPI windows held in memory, and the KPI snapshot.
//! - [`limits`] — connection limits and per-connection rate limiting.
//! - [`hub`] — topics, subscribers and the fan-out policy (bounded queues).
//! - [`trends`] — per-bucket history to 12 months: rollup tables kept from
//!   the event stream by one writer, joined with the live edge.
//! - [`http`] — the axum router: REST (live figures, trends, operator lists,
//!   drill-downs, exports), WebSocket, SSE, health, metrics, client.
//! - [`export`] — CSV export: streamed synchronous exports and background jobs.
//! - [`metrics`], [`telemetry`], [`error`], [`state`] — Prometheus metrics,
//!   tracing set-up, the error envelope, the shared `AppState`.
//! - [`server`] — wiring: `run(listener, config, shutdown)`.

pub mod alerts;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod export;
pub mod http;
pub mod hub;
pub mod limits;
pub mod listen;
pub mod live;
pub mod metrics;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod trends;
