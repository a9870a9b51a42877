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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use tokio_postgres::{Client, IsolationLevel, NoTls};
use tokio_util::sync::CancellationToken;

use super::{is_hist_metric, minute_rollups_from, rollup_key};
use crate::db;
use crate::live::contribution::Contribution;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::state::Status;

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
/// Backfill chunk (aligned to days, so hour and day buckets never span two).
const CHUNK: i64 = 7 * 86_400;
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

/// Key of the in-memory sum: (source, minute, metric, val).
type Key = (i64, i64, &'static str, i64);
/// Key of one histogram row: (source, bucket, metric).
type HistKey = (i64, i64, &'static str);

/// Contributions summed since the last flush.
#[derive(Debug, Default)]
pub struct Pending {
    sums: HashMap<Key, i64>,
}

impl Pending {
    /// Adds one contribution (gauges are ignored).
    pub fn add(&mut self, c: &Contribution) {
        if let Some((metric, sec, val)) = rollup_key(c) {
            let key = (c.source_id, sec.div_euclid(60) * 60, metric, val);
            *self.sums.entry(key).or_default() += c.n;
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.sums.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// The counter sums folded into `step`-second buckets (from `min_bucket`
    /// on), without zeros.
    fn fold(&self, step: i64, min_bucket: i64) -> HashMap<Key, i64> {
        let mut out: HashMap<Key, i64> = HashMap::new();
        for (&(src, minute, metric, val), &n) in &self.sums {
            let bucket = minute.div_euclid(step) * step;
            if bucket >= min_bucket && !is_hist_metric(metric) {
                *out.entry((src, bucket, metric, val)).or_default() += n;
            }
        }
        out.retain(|_, n| *n != 0);
        out
    }

    /// The histogram samples (lag, run duration) folded into one histogram
    /// per (source, bucket of `step` seconds, metric) from `min_bucket` on:
    /// bin -> count, without zeros.
    fn fold_hists(&self, step: i64, min_bucket: i64) -> HashMap<HistKey, BTreeMap<i64, i64>> {
        let mut out: HashMap<HistKey, BTreeMap<i64, i64>> = HashMap::new();
        for (&(src, minute, metric, bin), &n) in &self.sums {
            let bucket = minute.div_euclid(step) * step;
            if bucket >= min_bucket && is_hist_metric(metric) {
                *out.entry((src, bucket, metric))
                    .or_default()
                    .entry(bin)
                    .or_default() += n;
            }
        }
        for h in out.values_mut() {
            h.retain(|_, n| *n != 0);
        }
        out.retain(|_, h| !h.is_empty());
        out
    }
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
        let mut cfg = db::parse_url(&self.url)?;
        cfg.application_name(name);
        cfg.connect_timeout(Duration::from_secs(5));
        cfg.keepalives_idle(Duration::from_secs(10));
        let (client, conn) = cfg
            .connect(NoTls)
            .await
            .context("connecting the rollup writer")?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "rollup connection closed");
            }
        });
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

    /// Computes the rollups from the base tables (see the module docs).
    async fn backfill(&self, w: &mut Client) -> anyhow::Result<RollupState> {
        let started = Instant::now();
        tracing::info!("rollups missing: backfilling from the base tables");
        // Leftovers of an interrupted backfill (state is written last).
        w.batch_execute(
            "delete from monitor.rollup_minute; delete from monitor.rollup_hour;
             delete from monitor.rollup_day;",
        )
        .await?;
        let mut snap_conn = self.connect("ingestwatch-rollup-backfill").await?;
        snap_conn
            .batch_execute("set statement_timeout = 0; set idle_in_transaction_session_timeout = 0")
            .await?;
        let d0 = db::warm::settle(&snap_conn).await?;
        let snap = snap_conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let snapshot: String = snap
            .query_one("select pg_export_snapshot()", &[])
            .await?
            .get(0);
        anyhow::ensure!(
            snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "unexpected snapshot id"
        );
        let counted: Vec<i64> = snap
            .query(
                "select seq from monitor.events where seq > $1 order by seq",
                &[&d0],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let minute_floor = self.minute_floor();
        // Trends start at 1970; earlier rows (if any) are not rolled up.
        let mut cursor = 0;
        let mut chunks = 0;
        while let Some(next) = next_data_at(&snap, cursor).await? {
            let a = next.div_euclid(86_400) * 86_400;
            let b = a + CHUNK;
            let tx = w
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .start()
                .await?;
            tx.batch_execute(&format!(
                "set transaction snapshot '{snapshot}'; set local statement_timeout = '10min'"
            ))
            .await?;
            let (ta, tb) = (ts(a), ts(b));
            tx.execute(BACKFILL_SQL, &[&ta, &tb, &a, &b, &minute_floor])
                .await
                .with_context(|| format!("backfilling [{a}, {b})"))?;
            tx.commit().await?;
            cursor = b;
            chunks += 1;
        }
        w.execute(
            "insert into monitor.rollup_state (id, seq, counted) values (1, $1, $2)",
            &[&d0, &counted],
        )
        .await?;
        snap.commit().await?;
        tracing::info!(
            d0,
            counted_above = counted.len(),
            chunks,
            took_ms = started.elapsed().as_millis() as u64,
            "rollups backfilled"
        );
        Ok(RollupState {
            seq: d0,
            counted: counted.into_iter().collect(),
        })
    }
}

fn ts(sec: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(sec, 0).unwrap_or_default()
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

/// Earliest bucketed timestamp (epoch seconds) at or after `after` in any
/// base table, through their indexes.
async fn next_data_at(
    tx: &tokio_postgres::Transaction<'_>,
    after: i64,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let after = ts(after);
    let row = tx
        .query_one(
            "select floor(extract(epoch from least(
                (select min(received_at) from ingest.raw_records where received_at >= $1),
                (select min(processed_at) from ingest.raw_records where processed_at >= $1),
                (select min(started_at) from ingest.runs where started_at >= $1),
                (select min(finished_at) from ingest.runs where finished_at >= $1),
                (select min(occurred_at) from ingest.errors where occurred_at >= $1))))::bigint",
            &[&after],
        )
        .await?;
    row.try_get(0)
}

/// One backfill chunk `[$1, $2)` (timestamps; `$3`, `$4` the same as epoch
/// seconds): minute sums of every contribution bucketed in it, folded into
/// the three tables (minute rows from `$5` on; lag and run duration as one
/// histogram row per source, bucket and metric). Chunks are day-aligned, so
/// no hour or day bucket is split between two chunks.
const BACKFILL_SQL: &str = "
with c as (
    select k.source_id, k.sec / 60 * 60 as minute, k.metric,
           case when k.metric = 'lag' then monitor.lag_bin(k.val) else 0 end as val,
           count(*)::bigint as n
      from ingest.raw_records r
     cross join lateral monitor.raw_records_contrib(row(r.*)::ingest.raw_records) k
     where ((r.received_at >= $1 and r.received_at < $2) or (r.processed_at >= $1 and r.processed_at < $2))
       and k.sec >= $3 and k.sec < $4
     group by 1, 2, 3, 4
    union all
    select k.source_id, k.sec / 60 * 60, k.metric,
           case when k.metric = 'run_duration' then monitor.lag_bin(k.val) else 0 end,
           count(*)::bigint
      from ingest.runs r
     cross join lateral monitor.runs_contrib(row(r.*)::ingest.runs) k
     where ((r.started_at >= $1 and r.started_at < $2) or (r.finished_at >= $1 and r.finished_at < $2))
       and k.sec >= $3 and k.sec < $4
     group by 1, 2, 3, 4
    union all
    select k.source_id, k.sec / 60 * 60, k.metric, 0, count(*)::bigint
      from ingest.errors r
     cross join lateral monitor.errors_contrib(row(r.*)::ingest.errors) k
     where r.occurred_at >= $1 and r.occurred_at < $2 and k.sec >= $3 and k.sec < $4
     group by 1, 2, 3
),
-- lag and run_duration: one histogram per (source, bucket, metric),
-- flattened (bin, count) pairs
l as (
    select source_id, minute, metric, val as bin, n from c where metric in ('lag', 'run_duration')
),
m as (
    insert into monitor.rollup_minute (source_id, bucket, metric, val, n)
    select source_id, to_timestamp(minute), metric, val, n
      from c where minute >= $5 and metric not in ('lag', 'run_duration')
),
ml as (
    insert into monitor.rollup_minute (source_id, bucket, metric, val, n, hist)
    select source_id, to_timestamp(minute), metric, 0, sum(x) filter (where o = 1), array_agg(x order by bin, o)
      from l cross join lateral (values (0, bin), (1, n)) p(o, x)
     where minute >= $5
     group by source_id, minute, metric
),
h as (
    insert into monitor.rollup_hour (source_id, bucket, metric, val, n)
    select source_id, to_timestamp(minute / 3600 * 3600), metric, val, sum(n)::bigint
      from c where metric not in ('lag', 'run_duration') group by 1, 2, 3, 4
),
hl as (
    insert into monitor.rollup_hour (source_id, bucket, metric, val, n, hist)
    select source_id, to_timestamp(b), metric, 0, sum(x) filter (where o = 1), array_agg(x order by bin, o)
      from (select source_id, minute / 3600 * 3600 as b, metric, bin, sum(n)::bigint as n
              from l group by 1, 2, 3, 4) g
     cross join lateral (values (0, bin), (1, n)) p(o, x)
     group by source_id, b, metric
),
d as (
    insert into monitor.rollup_day (source_id, bucket, metric, val, n)
    select source_id, to_timestamp(minute / 86400 * 86400), metric, val, sum(n)::bigint
      from c where metric not in ('lag', 'run_duration') group by 1, 2, 3, 4
)
insert into monitor.rollup_day (source_id, bucket, metric, val, n, hist)
select source_id, to_timestamp(b), metric, 0, sum(x) filter (where o = 1), array_agg(x order by bin, o)
  from (select source_id, minute / 86400 * 86400 as b, metric, bin, sum(n)::bigint as n
          from l group by 1, 2, 3, 4) g
 cross join lateral (values (0, bin), (1, n)) p(o, x)
 group by source_id, b, metric";

/// Adds `sums` to `table`; rows that reach 0 are deleted.
async fn upsert(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    sums: &HashMap<Key, i64>,
) -> Result<(), tokio_postgres::Error> {
    if sums.is_empty() {
        return Ok(());
    }
    let len = sums.len();
    let (mut src, mut bucket, mut metric, mut val, mut n) = (
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
    );
    for (&(s, b, m, v), &count) in sums {
        src.push(s);
        bucket.push(b);
        metric.push(m);
        val.push(v);
        n.push(count);
    }
    let sql = format!(
        "insert into {table} as r (source_id, bucket, metric, val, n)
         select s, to_timestamp(b), m, v, n
           from unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) as t(s, b, m, v, n)
         on conflict (metric, bucket, source_id, val) do update set n = r.n + excluded.n"
    );
    tx.execute(&sql, &[&src, &bucket, &metric, &val, &n])
        .await?;
    // Only a negative delta (a row updated away or deleted) can bring a row to 0.
    if n.iter().any(|n| *n < 0) {
        let sql = format!(
            "delete from {table} r
              using unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) as t(s, b, m, v, n)
              where t.n < 0 and r.metric = t.m and r.bucket = to_timestamp(t.b)
                and r.source_id = t.s and r.val = t.v and r.n = 0"
        );
        tx.execute(&sql, &[&src, &bucket, &metric, &val, &n])
            .await?;
    }
    Ok(())
}

/// Adds histograms (lag, run duration) to `table` (`n` = samples; `hist`
/// merged by `monitor.hist_add`); rows left without samples are deleted.
async fn upsert_hists(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    hists: &HashMap<HistKey, BTreeMap<i64, i64>>,
) -> Result<(), tokio_postgres::Error> {
    if hists.is_empty() {
        return Ok(());
    }
    let len = hists.len();
    let (mut src, mut bucket, mut metric, mut n, mut hist) = (
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
    );
    let mut removes = false;
    for (&(s, b, m), h) in hists {
        src.push(s);
        bucket.push(b);
        metric.push(m);
        n.push(h.values().sum::<i64>());
        removes |= h.values().any(|c| *c < 0);
        let pairs: Vec<String> = h.iter().map(|(bin, c)| format!("{bin},{c}")).collect();
        hist.push(format!("{{{}}}", pairs.join(",")));
    }
    let sql = format!(
        "insert into {table} as r (source_id, bucket, metric, val, n, hist)
         select s, to_timestamp(b), m, 0, n, h::bigint[]
           from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) as t(s, b, n, h, m)
         on conflict (metric, bucket, source_id, val)
         do update set n = r.n + excluded.n, hist = monitor.hist_add(r.hist, excluded.hist)"
    );
    tx.execute(&sql, &[&src, &bucket, &n, &hist, &metric])
        .await?;
    if removes {
        let sql = format!(
            "delete from {table} r using unnest($1::bigint[], $2::bigint[], $3::text[]) as t(s, b, m)
              where r.metric = t.m and r.bucket = to_timestamp(t.b) and r.source_id = t.s
                and r.val = 0 and r.n = 0"
        );
        tx.execute(&sql, &[&src, &bucket, &metric]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::contribution::{Counter, Metric};

    fn c(metric: Metric, sec: i64, val: Option<i64>, n: i64) -> Contribution {
        Contribution {
            source_id: 1,
            metric,
            sec: Some(sec),
            val,
            n,
            label: None,
        }
    }

    #[test]
    fn advisory_lock_keys_are_distinct() {
        // 7406913: migrations (db::migrate); the alerts leader; the rollup writer.
        let keys = [7_406_913, crate::alerts::LEADER_LOCK, LOCK_KEY];
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
    }

    #[test]
    fn pending_sums_fold_into_buckets_and_drop_zeros() {
        let mut p = Pending::default();
        let received = Metric::Counter(Counter::Received);
        p.add(&c(received, 3_600 + 5, None, 2));
        p.add(&c(received, 3_600 + 65, None, 3));
        p.add(&c(received, 7_200 + 1, None, 1));
        p.add(&c(received, 7_200 + 2, None, -1));
        p.add(&c(Metric::Backlog, 0, None, 9));
        p.add(&c(Metric::Lag, 10, Some(5_000), 1));
        let hours = p.fold(3_600, i64::MIN);
        assert_eq!(hours.get(&(1, 3_600, "received", 0)), Some(&5));
        assert_eq!(hours.get(&(1, 7_200, "received", 0)), None, "zero dropped");
        assert!(hours.keys().all(|k| k.2 != "lag"), "lag is folded apart");
        p.add(&c(Metric::RunDuration, 50, Some(90_000), 1));
        assert!(
            p.fold(3_600, i64::MIN)
                .keys()
                .all(|k| k.2 != "run_duration"),
            "run duration is folded apart"
        );
        let bin = i64::from(crate::live::histogram::bin(5_000));
        p.add(&c(Metric::Lag, 20, Some(5_001), 1));
        p.add(&c(Metric::Lag, 30, Some(7), 2));
        p.add(&c(Metric::Lag, 40, Some(7), -2));
        let hists = p.fold_hists(3_600, i64::MIN);
        assert_eq!(hists.len(), 2);
        assert_eq!(
            hists[&(1, 0, "run_duration")],
            BTreeMap::from([(i64::from(crate::live::histogram::bin(90_000)), 1)])
        );
        assert_eq!(
            hists[&(1, 0, "lag")],
            BTreeMap::from([(bin, 2)]),
            "7 ms cancelled out"
        );
        let minutes = p.fold(60, 3_600);
        assert_eq!(
            minutes.len(),
            2,
            "minutes before the floor are skipped: {minutes:?}"
        );
    }
}
