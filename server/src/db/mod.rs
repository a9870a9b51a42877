//! Database access: the read pool for REST handlers, raw connections for the
//! listener, the migrations runner, the start-up (warm) queries, and the
//! operator API's query builders (filters, keyset pagination, rows). Every
//! connection is opened through [`connect`] (TLS per the URL's `sslmode`).

pub mod connect;
pub mod keyset;
pub mod migrate;
pub mod queries;
pub mod rows;
pub mod tls;
pub mod warm;

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

pub use connect::{connect_raw, ConnectError, Connection, Target};

/// Parses a PostgreSQL URL, giving a message that never echoes the URL (it may hold a password).
pub fn parse_url(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    Ok(Target::parse(url)?.config)
}

/// Builds the read pool. Every session gets `statement_timeout` and is read-only,
/// so nothing served over HTTP can write or hold locks for long.
pub fn pool(url: &str, size: usize, statement_timeout: Duration) -> anyhow::Result<Pool> {
    let Target {
        config: mut cfg,
        tls,
        ..
    } = Target::parse(url)?;
    cfg.options(format!(
        "-c statement_timeout={} -c default_transaction_read_only=on -c lock_timeout=2000",
        statement_timeout.as_millis()
    ));
    cfg.application_name("ingestwatch");
    let mgr = Manager::from_config(
        cfg,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("building the connection pool")
}

/// Opens one plain connection (its driver task is spawned) for work that must
/// not come from the pool: LISTEN, migrations, the simulator.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = connect_raw(url, |_| {}).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection closed");
        }
    });
    Ok(client)
}
