//! The start-up self-check of `serve`: before anything is spawned, prove
//! that the databases are the ones the server needs, or stop with one line
//! naming the setting to change.
//!
//! 1. The direct connection (`LISTEN_DATABASE_URL`, default `DATABASE_URL`)
//!    opens, reaches a primary (not a standby), and its role sees the
//!    monitor schema with the grants the listener, the rollup writer and
//!    the alerts leader use.
//! 2. The read pool (`DATABASE_URL`) opens.
//! 3. A notification sent through the pool arrives on a LISTEN made over the
//!    direct URL within [`NOTIFY_WAIT`]. A transaction pooler (PgBouncer in
//!    `pool_mode = transaction`, Supavisor on port 6543) never delivers
//!    notifications, and this is how that shows.
//!
//! Every query on the direct connection is a simple query (no named
//! statements), so a misconfigured pooler fails with this module's message,
//! not with a protocol error.

use std::time::Duration;

use anyhow::{anyhow, bail};
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

use super::{connect, connect_raw, Pool, Target};

/// How long the notification sent through the pool may take to arrive.
pub const NOTIFY_WAIT: Duration = Duration::from_secs(5);
/// The channel of the self-check (not the outbox's).
const CHANNEL: &str = "ingestwatch_selfcheck";
/// `application_name` of the self-check connection.
pub const APPLICATION_NAME: &str = "ingestwatch-selfcheck";

/// Which setting each URL came from (for the messages).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The direct URL's setting name.
    pub direct: &'static str,
}

impl Settings {
    /// `LISTEN_DATABASE_URL` when one was given, else `DATABASE_URL`.
    pub fn new(listen_url_given: bool) -> Settings {
        Settings {
            direct: if listen_url_given {
                "LISTEN_DATABASE_URL"
            } else {
                "DATABASE_URL"
            },
        }
    }
}

/// Runs the self-check; the error is one line naming the setting to change.
pub async fn check(
    pool: &Pool,
    database_url: &str,
    direct_url: &str,
    settings: Settings,
) -> anyhow::Result<()> {
    let direct = settings.direct;
    let (client, mut conn) = connect_raw(direct_url, |c| {
        c.application_name(APPLICATION_NAME);
    })
    .await
    .map_err(|e| anyhow!("{direct}: {e}"))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = messages.next().await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    let result = async {
        let row = first_row(
            &client,
            "select pg_is_in_recovery()::text, current_user::text,
                    exists (select from pg_class c join pg_namespace n on n.oid = c.relnamespace
                             where n.nspname = 'monitor' and c.relname = 'events')::text,
                    coalesce((select has_schema_privilege(oid, 'usage') from pg_namespace
                               where nspname = 'monitor'), false)::text",
        )
        .await
        .map_err(|e| anyhow!("{direct}: the self-check query failed: {e}"))?;
        let user = row[1].clone();
        if row[0] == "true" {
            bail!(
                "{direct} reaches a read-only standby (pg_is_in_recovery() is true): the listener, \
                 rollup writer and alerts leader need the primary; give standbys as --replica-database-url (REPLICA_DATABASE_URL)"
            );
        }
        if row[2] != "true" {
            bail!(
                "{direct}: the database has no monitor.events: run `ingestwatch migrate` against it \
                 first, as the database owner"
            );
        }
        if row[3] != "true" {
            bail!(
                "{direct}: role \"{user}\" lacks usage on schema monitor: connect as ingestwatch_reader \
                 (whose grants `ingestwatch migrate` sets up), or grant it"
            );
        }
        let grants = first_row(
            &client,
            "select has_table_privilege('monitor.events', 'select')::text,
                    has_table_privilege('monitor.rollup_state', 'insert, update')::text,
                    has_table_privilege('monitor.alert_state', 'insert, update')::text",
        )
        .await
        .map_err(|e| anyhow!("{direct}: the self-check query failed: {e}"))?;
        let missing: Vec<&str> = [
            "select on monitor.events",
            "insert, update on monitor.rollup_*",
            "insert, update on monitor.alert_*",
        ]
        .into_iter()
        .zip(&grants)
        .filter(|(_, ok)| *ok != "true")
        .map(|(what, _)| what)
        .collect();
        if !missing.is_empty() {
            bail!(
                "{direct}: role \"{user}\" lacks {}: connect as ingestwatch_reader (whose grants \
                 `ingestwatch migrate` sets up), or grant them",
                missing.join(", ")
            );
        }
        client
            .batch_execute(&format!("listen {CHANNEL}"))
            .await
            .map_err(|e| anyhow!("{direct}: LISTEN failed: {e}"))?;

        let token = format!("{:016x}", rand::random::<u64>());
        let pooled = pool
            .get()
            .await
            .map_err(|e| anyhow!("DATABASE_URL: {}", explain_pool(&e, database_url)))?;
        // `commit`: in transaction-pooler mode the checkout is a transaction,
        // and a notification is only sent when its transaction commits.
        pooled
            .batch_execute(&format!(
                "select pg_notify('{CHANNEL}', '{token}'); commit"
            ))
            .await
            .map_err(|e| anyhow!("DATABASE_URL: the self-check query failed: {e}"))?;
        drop(pooled);
        let arrived = tokio::time::timeout(NOTIFY_WAIT, async {
            while let Some(payload) = rx.recv().await {
                if payload == token {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !arrived {
            bail!(
                "{direct}: a notification sent through DATABASE_URL did not reach the LISTEN connection within {} s — \
                 {direct} most likely goes through a pooler in transaction mode (PgBouncer pool_mode=transaction, \
                 Supabase port 6543), which never delivers notifications, or the two URLs name different databases: \
                 set LISTEN_DATABASE_URL to the direct (session) address of the primary",
                NOTIFY_WAIT.as_secs()
            );
        }
        anyhow::Ok(())
    }
    .await;
    drop(client);
    driver.abort();
    result
}

/// The values of the first row of a simple query, as text.
async fn first_row(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<String>, String> {
    let messages = client.simple_query(sql).await.map_err(|e| {
        e.as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string())
    })?;
    for m in messages {
        if let SimpleQueryMessage::Row(row) = m {
            return Ok((0..row.len())
                .map(|i| row.get(i).unwrap_or("").to_string())
                .collect());
        }
    }
    Err("no row".into())
}

/// One line for a pool error, explained like a connect error.
pub fn explain_pool(err: &deadpool_postgres::PoolError, url: &str) -> String {
    match (err, Target::parse(url)) {
        (deadpool_postgres::PoolError::Backend(e), Ok(t)) => {
            connect::explain(e, &t.config, &t.settings)
        }
        (deadpool_postgres::PoolError::Timeout(_), Ok(t)) => format!(
            "no connection from {} within 5 s: check the host and port in the URL",
            t.address()
        ),
        (_, Err(e)) => e.to_string(),
        (other, _) => other.to_string(),
    }
}
