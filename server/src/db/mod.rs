//! Database access: the read pool for REST handlers, raw connections for the
//! listener, the migrations runner, the start-up (warm) queries, and the
//! operator API's query builders (filters, keyset pagination, rows). Every
//! connection is opened through [`connect`] (TLS per the URL's `sslmode`).

pub mod connect;
pub mod keyset;
pub mod migrate;
pub mod pool;
pub mod preflight;
pub mod queries;
pub mod replica;
pub mod rows;
pub mod tls;
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

pub use connect::{connect_raw, ConnectError, Connection, Target};
pub use pool::{pool, Pool, PoolClient, PoolerMode};

/// Parses a PostgreSQL URL, giving a message that never echoes the URL (it may hold a password).
pub fn parse_url(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    Ok(Target::parse(url)?.config)
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
