//! Database access: the read pool for REST handlers, raw connections for the
//! listener, the migrations runner, the start-up (warm) queries, and the
//! operator API's query builders (filters, keyset pagination, rows).

pub mod keyset;
pub mod migrate;
pub mod queries;
pub mod rows;
pub mod warm;
pub mod xact;

/// Opens the read-only snapshot transaction as SQL, for a connection that
/// must own its transaction without a borrow (see `export::ReadTx`); the
/// same transaction as [`snapshot`].
pub const SNAPSHOT_BEGIN: &str = "begin isolation level repeatable read read only";

/// Opens a read-only repeatable-read transaction on `client`: one
/// consistent snapshot for several reads (warm-up, alerts view, trends,
/// rollup backfill). Committing or dropping it ends the snapshot.
pub async fn snapshot(
    client: &mut tokio_postgres::Client,
) -> Result<tokio_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Parses a PostgreSQL URL, giving a message that never echoes the URL (it may hold a password).
pub fn parse_url(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"))
}

/// Builds the read pool. Every session gets `statement_timeout` and is read-only,
/// so nothing served over HTTP can write or hold locks for long.
pub fn pool(url: &str, size: usize, statement_timeout: Duration) -> anyhow::Result<Pool> {
    let mut cfg = parse_url(url)?;
    cfg.options(format!(
        "-c statement_timeout={} -c default_transaction_read_only=on -c lock_timeout=2000",
        statement_timeout.as_millis()
    ));
    cfg.application_name("ingestwatch");
    cfg.connect_timeout(Duration::from_secs(5));
    let mgr = Manager::from_config(
        cfg,
        NoTls,
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
    let mut cfg = parse_url(url)?;
    cfg.connect_timeout(Duration::from_secs(5));
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection closed");
        }
    });
    Ok(client)
}
