//! Computing one trend: the history part in ONE repeatable-read snapshot
//! (rollup state, rollup rows, the events above the rollup state, base rows
//! for minutes older than the minute rollups), then the live edge from memory.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use super::{lag_bin, minute_rollups_from, Bucket, Grid, Trend, TrendMetric};
use crate::live::series::complete_minutes_from;
use crate::live::Live;

/// Why a trend could not be computed (the HTTP layer maps it to its envelope).
#[derive(Debug, thiserror::Error)]
pub enum TrendError {
    /// History was asked for before the rollups were first built.
    #[error("trend history is being built (first start of the rollups); retry shortly")]
    Building,
    /// A source asked for does not exist (its name, cut to 64 characters).
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    /// A source asked for is outside the caller's scope.
    #[error("source {0:?} is outside this token's scope")]
    OutOfScope(String),
    /// Reading the rollups or base tables failed.
    #[error("reading the trend: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// A validated trend request (bounds aligned to the bucket width).
#[derive(Debug, Clone)]
pub struct TrendRequest {
    /// The metric.
    pub metric: TrendMetric,
    /// The bucket width.
    pub bucket: Bucket,
    /// First bucket start (aligned).
    pub from: i64,
    /// End of the last bucket (aligned).
    pub to: i64,
    /// Sources that get their own series, by name, in the order asked.
    pub sources: Vec<String>,
}

/// Where the history part reads from, for one request at one `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// Buckets `[from, full_end)` from the rollup table of the request's width.
    table: Option<(i64, i64)>,
    /// Minutes `[a, b)` from `monitor.rollup_minute`.
    minutes: Option<(i64, i64)>,
    /// Minutes `[a, b)` from the base tables (older than the minute rollups).
    base: Option<(i64, i64)>,
    /// Everything before this comes from PostgreSQL, the rest from memory.
    live_from: i64,
}

fn span(a: i64, b: i64) -> Option<(i64, i64)> {
    (a < b).then_some((a, b))
}

impl Plan {
    fn new(req: &TrendRequest, horizon: i64, minutes_from: i64) -> Plan {
        let step = req.bucket.secs();
        let stored_end = req.to.min(horizon).max(req.from);
        // Whole buckets before the live edge come from the width's own table;
        // a bucket straddling the edge takes its older minutes from minute rollups.
        let full_end = match req.bucket {
            Bucket::Minute => req.from,
            Bucket::Hour | Bucket::Day => stored_end.div_euclid(step) * step,
        }
        .max(req.from);
        let (ma, mb) = (full_end, stored_end);
        Plan {
            table: span(req.from, full_end),
            minutes: span(ma.max(minutes_from), mb),
            base: span(ma, mb.min(minutes_from)),
            live_from: stored_end,
        }
    }
}

fn ts(sec: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(sec, 0).unwrap_or_default()
}

/// Computes the trend at `now_sec` for a caller who may see the sources
/// `can_see` accepts: history from `client` (minute rollups kept
/// `minute_days`), the live edge from `live`.
pub async fn run(
    client: &mut tokio_postgres::Client,
    live: &Live,
    minute_days: i64,
    can_see: &(dyn Fn(&str) -> bool + Sync),
    req: &TrendRequest,
    now_sec: i64,
) -> Result<Trend, TrendError> {
    let plan = Plan::new(
        req,
        complete_minutes_from(now_sec),
        minute_rollups_from(now_sec, minute_days),
    );
    let tx = crate::db::snapshot(client).await?;
    let state = tx
        .query_opt(
            "select seq, counted from monitor.rollup_state where id = 1",
            &[],
        )
        .await?;
    let history = req.from < plan.live_from;
    let (rollup_seq, counted): (Option<i64>, Vec<i64>) = match state {
        Some(r) => (Some(r.get(0)), r.get(1)),
        None if history => return Err(TrendError::Building),
        None => (None, Vec::new()), // the live edge alone needs no rollups
    };
    let sources: Vec<(i64, String)> = tx
        .query("select id, name from ingest.sources order by id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let by_name: HashMap<&str, i64> = sources.iter().map(|(id, n)| (n.as_str(), *id)).collect();
    let mut asked = Vec::with_capacity(req.sources.len());
    for name in &req.sources {
        let Some(id) = by_name.get(name.as_str()) else {
            return Err(TrendError::UnknownSource(name.chars().take(64).collect()));
        };
        if !can_see(name) {
            return Err(TrendError::OutOfScope(name.clone()));
        }
        asked.push(*id);
    }
    let visible: HashSet<i64> = sources
        .iter()
        .filter(|(_, n)| can_see(n))
        .map(|(id, _)| *id)
        .collect();
    let step = req.bucket.secs();
    let mut grid = Grid::new(req.metric, req.from, req.to, step, visible, &asked);
    let metric = req.metric;

    if let Some((a, b)) = plan.table {
        read_rollups(&tx, &mut grid, req.bucket.table(), metric, a, b).await?;
    }
    if let Some((a, b)) = plan.minutes {
        read_rollups(&tx, &mut grid, Bucket::Minute.table(), metric, a, b).await?;
    }
    if let Some((a, b)) = plan.base {
        read_base(&tx, &mut grid, metric, a, b).await?;
    }
    if let Some(rollup_seq) = rollup_seq.filter(|_| history) {
        // Events above the rollup state, not yet flushed: their contributions
        // to the buckets read from rollups (not those read from base tables).
        let rows = tx
            .query(
                "select (d->>0)::bigint, (d->>2)::bigint, (d->>3)::bigint, (d->>4)::bigint
                   from monitor.events e cross join lateral jsonb_array_elements(e.summary->'d') d
                  where e.seq > $1 and e.seq <> all($2) and d->>1 = $3
                    and (d->>2)::bigint >= $4 and (d->>2)::bigint < $5",
                &[
                    &rollup_seq,
                    &counted,
                    &metric.stored(),
                    &req.from,
                    &plan.live_from,
                ],
            )
            .await?;
        for r in &rows {
            let (src, sec, val, n): (Option<i64>, i64, Option<i64>, Option<i64>) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if plan.base.is_some_and(|(a, b)| sec >= a && sec < b) {
                continue;
            }
            let val = if metric.is_hist() { lag_bin(val) } else { 0 };
            grid.add(src.unwrap_or(0), sec, val, n.unwrap_or(0));
        }
    }
    tx.commit().await?;

    if plan.live_from < req.to {
        live.for_each_minute(plan.live_from, req.to, |src, minute, slot| {
            grid.add_slot(src, minute, slot)
        });
    }
    let names: Vec<String> = req.sources.clone();
    let (t, columns) = grid.finish(&names);
    Ok(Trend {
        metric: metric.name,
        bucket: req.bucket,
        from: req.from,
        to: req.to,
        step,
        seq: live.seq(),
        rollup_seq,
        t,
        series: columns
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::Array(v)))
            .collect(),
    })
}

async fn read_rollups(
    tx: &Transaction<'_>,
    grid: &mut Grid,
    table: &str,
    metric: TrendMetric,
    a: i64,
    b: i64,
) -> Result<(), tokio_postgres::Error> {
    if metric.is_hist() {
        // One histogram row per source and bucket: the total and the asked
        // sources' series are merged here.
        let sql = format!(
            "select source_id, extract(epoch from bucket)::bigint, hist from {table}
              where metric = $4 and bucket >= $1 and bucket < $2 and source_id = any($3)"
        );
        for r in tx
            .query(
                &sql,
                &[&ts(a), &ts(b), &grid.visible_ids(), &metric.stored()],
            )
            .await?
        {
            let (src, sec): (i64, i64) = (r.get(0), r.get(1));
            let hist: Vec<i64> = r.get::<_, Option<Vec<i64>>>(2).unwrap_or_default();
            grid.add_hist(src, sec, &hist);
        }
        return Ok(());
    }
    // Counters: the total summed across visible sources by PostgreSQL (one
    // row per bucket), then the asked sources' own rows.
    let visible = grid.visible_ids();
    let sql = format!(
        "select extract(epoch from bucket)::bigint, val, sum(n)::bigint from {table}
          where metric = $1 and bucket >= $2 and bucket < $3 and source_id = any($4)
          group by 1, 2"
    );
    for r in tx
        .query(&sql, &[&metric.stored(), &ts(a), &ts(b), &visible])
        .await?
    {
        grid.add_total(r.get(0), r.get(1), r.get(2));
    }
    let asked = grid.asked_ids();
    if asked.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "select source_id, extract(epoch from bucket)::bigint, val, n from {table}
          where metric = $1 and bucket >= $2 and bucket < $3 and source_id = any($4)"
    );
    for r in tx
        .query(&sql, &[&metric.stored(), &ts(a), &ts(b), &asked])
        .await?
    {
        grid.add_own(r.get(0), r.get(1), r.get(2), r.get(3));
    }
    Ok(())
}

/// Minutes older than the minute rollups, from the base tables.
async fn read_base(
    tx: &Transaction<'_>,
    grid: &mut Grid,
    metric: TrendMetric,
    a: i64,
    b: i64,
) -> Result<(), tokio_postgres::Error> {
    let stored = metric.stored();
    let (table, contrib, column) = match stored {
        "received" => ("raw_records", "monitor.raw_records_contrib", "received_at"),
        "normalized" | "rejected" | "lag" => {
            ("raw_records", "monitor.raw_records_contrib", "processed_at")
        }
        "runs_started" => ("runs", "monitor.runs_contrib", "started_at"),
        "runs_succeeded" | "runs_failed" | "runs_partial" | "run_duration" => {
            ("runs", "monitor.runs_contrib", "finished_at")
        }
        _ => ("errors", "monitor.errors_contrib", "occurred_at"),
    };
    let sql = format!(
        "select k.source_id, k.sec / 60 * 60, coalesce(k.val, 0), count(*)::bigint
           from ingest.{table} r cross join lateral {contrib}(row(r.*)::ingest.{table}) k
          where r.{column} >= $1 and r.{column} < $2 and k.metric = $3
            and k.sec >= $4 and k.sec < $5
          group by 1, 2, 3"
    );
    for r in tx.query(&sql, &[&ts(a), &ts(b), &stored, &a, &b]).await? {
        let val: i64 = r.get(2);
        let val = if metric.is_hist() {
            lag_bin(Some(val))
        } else {
            0
        };
        grid.add(r.get(0), r.get(1), val, r.get(3));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bucket: Bucket, from: i64, to: i64) -> TrendRequest {
        TrendRequest {
            metric: TrendMetric::ALL[0],
            bucket,
            from,
            to,
            sources: vec![],
        }
    }

    const D: i64 = 86_400;

    #[test]
    fn plans_split_history_straddle_and_live_edge() {
        // day buckets over 10 days; live edge in the middle of day 9
        let p = Plan::new(&req(Bucket::Day, 0, 10 * D), 9 * D + 3_600, 5 * D);
        assert_eq!(p.table, Some((0, 9 * D)));
        assert_eq!(p.minutes, Some((9 * D, 9 * D + 3_600)));
        assert_eq!(p.base, None);
        assert_eq!(p.live_from, 9 * D + 3_600);
        // all history: no straddle, no live part
        let p = Plan::new(&req(Bucket::Hour, 0, 2 * D), 9 * D, 5 * D);
        assert_eq!(p.table, Some((0, 2 * D)));
        assert_eq!((p.minutes, p.base, p.live_from), (None, None, 2 * D));
        // minutes partly older than the minute rollups
        let p = Plan::new(&req(Bucket::Minute, 4 * D, 6 * D), 9 * D, 5 * D);
        assert_eq!(p.table, None);
        assert_eq!(p.base, Some((4 * D, 5 * D)));
        assert_eq!(p.minutes, Some((5 * D, 6 * D)));
        // entirely live
        let p = Plan::new(&req(Bucket::Minute, 9 * D, 10 * D), 9 * D, 5 * D);
        assert_eq!((p.table, p.minutes, p.base), (None, None, None));
        assert_eq!(p.live_from, 9 * D);
    }
}
