//! Backfill: computes the rollups from the base tables when `rollup_state`
//! is missing (see the module docs of [`super`]): settle to `d0`, export one
//! repeatable-read snapshot, and fill week-sized, day-aligned chunks that
//! each import it.

use std::time::Instant;

use anyhow::Context;
use tokio_postgres::{Client, IsolationLevel};

use super::{RollupState, RollupWriter};
use crate::db;

/// Backfill chunk (aligned to days, so hour and day buckets never span two).
const CHUNK: i64 = 7 * 86_400;

impl RollupWriter {
    /// Computes the rollups from the base tables (see the module docs).
    pub(super) async fn backfill(&self, w: &mut Client) -> anyhow::Result<RollupState> {
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
        let snap = db::snapshot(&mut snap_conn).await?;
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
