//! The rollup writer: keeps `monitor.rollup_minute|hour|day` equal to the
//! sum of every delivered event's contributions.
//!
//! - **One writer.** Every replica runs this task; the one that takes
//!   `pg_try_advisory_lock` on its dedicated connection writes, the others
//!   retry every few seconds (and take over when its session ends). The
//!   server's role is read-only by default: this connection opts into
//!   `read write`, and the role may write the rollup tables only.
//! - **Exactly once.** It reads `monitor.events` in seq order after
//!   `rollup_state.seq`, never past this replica's delivered watermark
//!   (`Live::seq`, below which every seq is final: committed or a dead hole),
//!   sums contributions in memory and flushes every `--rollup-flush-ms`
//!   (and when the sum grows large) in ONE transaction: upsert
//!   `n = n + excluded.n` into the three tables, set `rollup_state.seq`. A
//!   crash loses only the unflushed sum, which is re-read from the outbox.
//! - **Backfill** (no `rollup_state` yet): like the live warm-up (`db::warm`):
//!   settle to `d0` (every seq <= d0 final), open one repeatable-read
//!   read-only snapshot, export it, and compute the rollups from the base
//!   tables through the same `monitor.*_contrib` functions, in week-sized
//!   chunks that each import that snapshot (short write transactions: a long
//!   one would hold back every listener's hole resolution). The state is
//!   written last: `seq = d0` and `counted` = the seqs above d0 the snapshot
//!   already shows, which the writer then skips.
//! - **TRUNCATE** (an event of op `truncate`, sql/0012): it carries no
//!   contributions and removed rows of any age, so the writer deletes
//!   `rollup_state` and backfills again (all of history is the affected
//!   range); the unflushed sum is dropped (the backfill reads it anew).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::minute_rollups_from;
use upsert::{upsert, upsert_hists};

use crate::db;
use crate::listen::Status;
use crate::live::contribution::Contribution;
use crate::live::Live;
use crate::metrics::Metrics;

mod backfill;
mod pending;
mod upsert;

pub use pending::Pending;

/// Advisory lock key held by the writing replica (migrations use 7406913,
/// the alerts leader 7406914).
pub const LOCK_KEY: i64 = 7_406_915;
/// `application_name` of the writer connection.
pub const APPLICATION_NAME: &str = "ingestwatch-rollup";
/// Events read per query.
const READ_BATCH: i64 = 5_000;
/// Flush early when the in-memory sum holds this many keys.
const MAX_PENDING: usize = 200_000;
/// Poll interval for the delivered watermark when caught up.
const POLL: Duration = Duration::from_millis(200);
/// A replica without the lock tries again after this long.
const LOCK_RETRY: Duration = Duration::from_secs(5);
/// How often old minute rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// What the writer task needs.
#[derive(Clone)]
pub struct RollupWriter {
    /// Database URL (the server's role).
    pub url: String,
    /// Live aggregates: their `seq` is the delivered watermark.
    pub live: Arc<Live>,
    /// Readiness flags (the writer starts once the listener is warm).
    pub status: Arc<Status>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Flush interval.
    pub flush_every: Duration,
    /// Days of minute rows kept.
    pub minute_days: i64,
}

/// `rollup_state`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupState {
    /// Every event with seq <= this is in the rollups.
    pub seq: i64,
    /// Seqs above `seq` already in the rollups (from the backfill).
    pub counted: HashSet<i64>,
}

impl RollupWriter {
    /// Runs until `shutdown`; reconnects with jittered backoff on errors.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut attempt: u32 = 0;
        loop {
            let result = tokio::select! {
                r = self.session(&shutdown) => r,
                () = shutdown.cancelled() => return,
            };
            self.metrics.rollup_writer.set(0);
            if shutdown.is_cancelled() {
                return;
            }
            match result {
                Ok(()) => attempt = 0,
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %format!("{e:#}"), attempt, "rollup writer failed; retrying");
                }
            }
            let base = 250u64.saturating_mul(1 << attempt.min(7)).min(30_000);
            let jitter = rand::rng().random_range(0..=base / 2);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(base / 2 + jitter)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn connect(&self, name: &str) -> anyhow::Result<Client> {
        let (client, conn) = db::connect_raw(&self.url, |cfg| {
            cfg.application_name(name);
            cfg.keepalives_idle(Duration::from_secs(10));
        })
        .await
        .context("connecting the rollup writer")?;
        tokio::spawn(
            async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "rollup connection closed");
                }
            }
            .in_current_span(),
        );
        client
            .batch_execute(
                "set statement_timeout = '60s'; set lock_timeout = '5s';
                 set idle_in_transaction_session_timeout = '15min';
                 set session characteristics as transaction read write",
            )
            .await
            .context("configuring the rollup connection")?;
        Ok(client)
    }

    /// One connection's life: wait for the lock, backfill if needed, apply.
    async fn session(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut client = self.connect(APPLICATION_NAME).await?;
        loop {
            let got: bool = client
                .query_one("select pg_try_advisory_lock($1)", &[&LOCK_KEY])
                .await?
                .get(0);
            if got {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(LOCK_RETRY) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
        self.metrics.rollup_writer.set(1);
        while !self.status.warm.load(Ordering::Acquire) {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
        loop {
            let state = match read_state(&client).await? {
                Some(s) => s,
                None => self.backfill(&mut client).await.context("backfill")?,
            };
            self.metrics.rollup_seq.set(state.seq);
            tracing::info!(seq = state.seq, "rollup writer started");
            // A TRUNCATE (no contributions; rows of any age gone) forgets the
            // state: rebuild everything from the base tables, then go on.
            if !self.apply(&mut client, state, shutdown).await? {
                return Ok(());
            }
        }
    }

    /// Reads delivered events after the state, sums, flushes. Returns true
    /// when a TRUNCATE was read: the state is deleted, rebuild (backfill).
    async fn apply(
        &self,
        client: &mut Client,
        mut state: RollupState,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let read = client
            .prepare(
                "select seq, summary->'d', kind like '%.truncate' from monitor.events
                  where seq > $1 and seq <= $2 order by seq limit $3",
            )
            .await?;
        let mut pending = Pending::default();
        let mut read_upto = state.seq;
        let mut last_flush = Instant::now();
        let mut last_prune: Option<Instant> = None;
        loop {
            let target = self.live.seq();
            let mut full = false;
            if target > read_upto {
                let rows = client
                    .query(&read, &[&read_upto, &target, &READ_BATCH])
                    .await?;
                full = rows.len() as i64 >= READ_BATCH;
                for r in &rows {
                    let seq: i64 = r.get(0);
                    if state.counted.contains(&seq) {
                        continue;
                    }
                    if r.get::<_, bool>(2) {
                        tracing::info!(seq, "truncate in the outbox: rebuilding the rollups");
                        client
                            .execute(
                                "delete from monitor.rollup_state where id = 1 and seq = $1",
                                &[&state.seq],
                            )
                            .await?;
                        return Ok(true);
                    }
                    let d: Option<serde_json::Value> = r.get(1);
                    for c in Contribution::parse_all(d.as_ref()) {
                        pending.add(&c);
                    }
                }
                read_upto = match rows.last() {
                    Some(r) if full => r.get(0),
                    _ => target,
                };
            }
            let due = last_flush.elapsed() >= self.flush_every || pending.len() >= MAX_PENDING;
            if read_upto > state.seq && due {
                self.flush(client, &mut state, &pending, read_upto).await?;
                pending = Pending::default();
                last_flush = Instant::now();
            }
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                self.prune(client).await?;
                last_prune = Some(Instant::now());
            }
            if !full {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = shutdown.cancelled() => return Ok(false),
                }
            }
        }
    }

    /// First minute bucket written (one day before what trends read).
    fn minute_floor(&self) -> i64 {
        minute_rollups_from(chrono::Utc::now().timestamp(), self.minute_days) - 86_400
    }

    /// Writes the sums and the new state in one transaction.
    async fn flush(
        &self,
        client: &mut Client,
        state: &mut RollupState,
        pending: &Pending,
        upto: i64,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let minute_floor = self.minute_floor();
        let tx = client.transaction().await?;
        let mut rows = 0usize;
        for (table, step, floor) in [
            ("monitor.rollup_minute", 60, minute_floor),
            ("monitor.rollup_hour", 3_600, i64::MIN),
            ("monitor.rollup_day", 86_400, i64::MIN),
        ] {
            let sums = pending.fold(step, floor);
            let hists = pending.fold_hists(step, floor);
            rows += sums.len() + hists.len();
            upsert(&tx, table, &sums).await?;
            upsert_hists(&tx, table, &hists).await?;
        }
        let left: Vec<i64> = state
            .counted
            .iter()
            .copied()
            .filter(|s| *s > upto)
            .collect();
        let n = tx
            .execute(
                "update monitor.rollup_state set seq = $1, counted = $2, updated_at = now()
                  where id = 1 and seq = $3",
                &[&upto, &left, &state.seq],
            )
            .await?;
        anyhow::ensure!(n == 1, "rollup_state moved under the writer");
        tx.commit().await?;
        state.seq = upto;
        state.counted.retain(|s| *s > upto);
        self.metrics.rollup_seq.set(upto);
        self.metrics.rollup_flushes.inc();
        self.metrics.rollup_rows.inc_by(rows as u64);
        tracing::debug!(
            seq = upto,
            rows,
            took_ms = started.elapsed().as_millis() as u64,
            "rollups flushed"
        );
        Ok(())
    }

    /// Deletes minute rows older than the retention.
    async fn prune(&self, client: &Client) -> anyhow::Result<()> {
        let floor = chrono::DateTime::from_timestamp(self.minute_floor(), 0).unwrap_or_default();
        let n = client
            .execute(
                "delete from monitor.rollup_minute where bucket < $1",
                &[&floor],
            )
            .await?;
        if n > 0 {
            tracing::info!(rows = n, "old minute rollups pruned");
        }
        Ok(())
    }
}

/// Reads `rollup_state`; None when the rollups were never built.
pub async fn read_state(client: &Client) -> anyhow::Result<Option<RollupState>> {
    let row = client
        .query_opt(
            "select seq, counted from monitor.rollup_state where id = 1",
            &[],
        )
        .await?;
    Ok(row.map(|r| RollupState {
        seq: r.get(0),
        counted: r.get::<_, Vec<i64>>(1).into_iter().collect(),
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn advisory_lock_keys_are_distinct() {
        // 7406913: migrations (db::migrate); the alerts leader; the rollup writer.
        let keys = [7_406_913, crate::alerts::LEADER_LOCK, LOCK_KEY];
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
    }
}
