//! Start-up reads: the warm-up that fills the live aggregates from the base
//! tables, consistent with the watermark the listener starts from, and the
//! sources list.
//!
//! Procedure (see `listen`): read `d0 = max(seq)` and a marker
//! (`pg_current_xact_id()`); wait until the snapshot xmin passes the marker,
//! or no transaction older than it holds a lock on `monitor.events`, so every
//! transaction that could still add a seq <= d0 has ended; then, in
//! ONE repeatable-read snapshot, read the base tables (the aggregates) and the
//! seqs above d0 that this snapshot already sees (counted by the warm-up, so
//! delivered later but not applied twice).

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::{Client, GenericClient};

use crate::live::contribution::{Contribution, Metric};
use crate::live::series::{KEEP_MINUTES, KEEP_SECONDS};
use crate::live::SourceInfo;

/// The warm-up result.
#[derive(Debug, Default)]
pub struct Warm {
    /// The watermark to start from: every seq <= d0 is resolved and counted.
    pub d0: i64,
    /// Seqs above d0 already counted by the warm-up.
    pub counted: HashSet<i64>,
    /// Sources.
    pub sources: Vec<SourceInfo>,
    /// Contributions of every row inside the kept windows, plus the gauges.
    pub contributions: Vec<Contribution>,
}

/// Reads all sources.
pub async fn sources<C: GenericClient>(
    client: &C,
) -> Result<Vec<SourceInfo>, tokio_postgres::Error> {
    let rows = client
        .query(
            "select id, name, kind, extract(epoch from expected_interval)::float8
               from ingest.sources order by id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SourceInfo {
            id: r.get(0),
            name: r.get(1),
            kind: r.get(2),
            expected_interval_secs: r.get(3),
        })
        .collect())
}

/// The newest `received_at` (epoch ms, floored like `monitor.epoch_ms`) of
/// each source in `ids` (every source when None), by index. A maximum cannot
/// be kept from contributions alone when the newest record is deleted or
/// moved: the listener re-reads it then.
pub async fn last_received<C: GenericClient>(
    client: &C,
    ids: Option<&[i64]>,
) -> Result<Vec<(i64, Option<i64>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "select s.id, (select floor(extract(epoch from max(received_at)) * 1000)::bigint
                             from ingest.raw_records where source_id = s.id)
               from ingest.sources s where $1::bigint[] is null or s.id = any($1)",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Checks that the outbox's seq sequence hands out one value at a time
/// (`cache 1`, the default). With a larger cache every session takes a block
/// of seqs and uses them later, possibly long after the listener passed them
/// as dead holes (no running transaction holds a lock for a cached value):
/// events would be lost without a trace. Errors name the fix.
pub async fn check_outbox_sequence<C: GenericClient>(client: &C) -> anyhow::Result<()> {
    let row = client
        .query_opt(
            "select s.seqcache, pg_get_serial_sequence('monitor.events', 'seq')
               from pg_sequence s
              where s.seqrelid = pg_get_serial_sequence('monitor.events', 'seq')::regclass",
            &[],
        )
        .await?;
    if let Some(r) = row {
        let cache: i64 = r.get(0);
        let name: String = r.get(1);
        anyhow::ensure!(
            cache == 1,
            "the outbox sequence {name} has cache {cache}: seqs handed out ahead by one \
             session would be used after the server passed them, and their events lost; \
             run `alter sequence {name} cache 1` (as the schema owner) and start again"
        );
    }
    Ok(())
}

/// Waits until no transaction that could hold a seq <= the current max is
/// running; returns that max (`d0`).
pub async fn settle(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "select coalesce(max(seq), 0), pg_current_xact_id()::text::bigint from monitor.events",
            &[],
        )
        .await?;
    let (d0, marker): (i64, i64) = (row.get(0), row.get(1));
    let mut waited = Duration::ZERO;
    loop {
        let xmin: i64 = client
            .query_one(
                "select pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                &[],
            )
            .await?
            .get(0);
        if xmin > marker {
            return Ok(d0);
        }
        // xmin is cluster-wide; the narrower proof: no transaction older than
        // the marker holds a lock on monitor.events (see db::xact).
        let holders = client.query(super::xact::LOCK_HOLDERS_SQL, &[]).await?;
        if !holders
            .iter()
            .any(|r| super::xact::older_than(r.get::<_, i64>(0) as u32, marker))
        {
            return Ok(d0);
        }
        if waited.as_secs() > 0 && waited.as_millis() % 5_000 < 20 {
            tracing::info!(
                waited_ms = waited.as_millis() as u64,
                "warm-up waiting for in-flight transactions to end"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
}

/// Per-table warm-up: the contribution function, the row filter for the
/// recent (second-bucket) part, and the filter for the older (minute) part.
const TABLES: [(&str, &str, &str, &str); 3] = [
    (
        "raw_records",
        "monitor.raw_records_contrib",
        "r.received_at >= to_timestamp($1) or r.processed_at >= to_timestamp($1) or r.status = 'pending'",
        "(r.received_at >= to_timestamp($2) and r.received_at < to_timestamp($1))
         or (r.processed_at >= to_timestamp($2) and r.processed_at < to_timestamp($1))",
    ),
    (
        "runs",
        "monitor.runs_contrib",
        "r.started_at >= to_timestamp($1) or r.finished_at >= to_timestamp($1) or r.status = 'running'",
        "(r.started_at >= to_timestamp($2) and r.started_at < to_timestamp($1))
         or (r.finished_at >= to_timestamp($2) and r.finished_at < to_timestamp($1))",
    ),
    (
        "errors",
        "monitor.errors_contrib",
        "r.occurred_at >= to_timestamp($1)",
        "r.occurred_at >= to_timestamp($2) and r.occurred_at < to_timestamp($1)",
    ),
];

/// Reads the warm-up snapshot (one repeatable-read transaction) for `now_sec`.
pub async fn load(
    client: &mut Client,
    d0: i64,
    now_sec: i64,
) -> Result<Warm, tokio_postgres::Error> {
    // Second buckets from `recent` on; minute buckets from `oldest` to `recent`.
    let recent = (now_sec - KEEP_SECONDS).div_euclid(60) * 60;
    let oldest = (now_sec.div_euclid(60) - KEEP_MINUTES) * 60;
    let tx = super::snapshot(client).await?;
    let sources = sources(&tx).await?;
    let counted = tx
        .query("select seq from monitor.events where seq > $1", &[&d0])
        .await?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect();
    let mut contributions = Vec::new();
    for (table, contrib, recent_filter, older_filter) in TABLES {
        let sql = format!(
            "select k.source_id, k.metric, k.sec, k.val, k.label, count(*)::bigint
               from ingest.{table} r cross join lateral {contrib}(row(r.*)::ingest.{table}) k
              where ({recent_filter}) and k.metric <> 'last_received' and (k.sec is null or k.sec >= $3)
              group by 1, 2, 3, 4, 5
             union all
             select k.source_id, k.metric, k.sec / 60 * 60, k.val, k.label, count(*)::bigint
               from ingest.{table} r cross join lateral {contrib}(row(r.*)::ingest.{table}) k
              where ({older_filter}) and k.sec >= $4 and k.sec < $3
              group by 1, 2, 3, 4, 5"
        );
        for r in tx
            .query(
                &sql,
                &[&(recent as f64), &(oldest as f64), &recent, &oldest],
            )
            .await?
        {
            let metric: String = r.get(1);
            let Some(metric) = Metric::parse(&metric) else {
                continue;
            };
            contributions.push(Contribution {
                source_id: r.get(0),
                metric,
                sec: r.get(2),
                val: r.get(3),
                n: r.get(5),
                label: r.get(4),
            });
        }
    }
    // Newest record per source, by index, regardless of windows.
    for (source_id, ms) in last_received(&tx, None).await? {
        if let Some(ms) = ms {
            contributions.push(Contribution {
                source_id,
                metric: Metric::LastReceived,
                sec: None,
                val: Some(ms),
                n: 1,
                label: None,
            });
        }
    }
    tx.commit().await?;
    Ok(Warm {
        d0,
        counted,
        sources,
        contributions,
    })
}
