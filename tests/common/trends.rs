//! Trend test helpers: the metrics and bucket widths under test, a varied
//! history written with old timestamps, SQL truth per bucket, and the
//! comparisons of `/api/trends` and the rollup tables against it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::common::*;

pub const DAY: i64 = 86_400;

pub const HOUR: i64 = 3_600;

pub const METRICS: [&str; 15] = [
    "received",
    "normalized",
    "rejected",
    "errors",
    "warnings",
    "runs_started",
    "runs_succeeded",
    "runs_failed",
    "runs_partial",
    "lag_p50",
    "lag_p95",
    "lag_p99",
    "run_duration_p50",
    "run_duration_p95",
    "run_duration_p99",
];

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// One run at `at` (epoch seconds) with `n` records 7 s apart, processed
/// with lags from 40 ms to ~4 s (some rejected), an error and a warning.
pub async fn history_step(p: &Pipeline, src: i64, at: i64, n: i64, i: i64) {
    let c = &p.client;
    let at = at as f64;
    let run: i64 = c
        .query_one(
            "insert into ingest.runs (source_id, started_at) values ($1, to_timestamp($2)) returning id",
            &[&src, &at],
        )
        .await
        .expect("run")
        .get(0);
    let ids: Vec<i64> = c
        .query(
            "insert into ingest.raw_records (run_id, source_id, external_id, payload, received_at)
             select $1, $2, 'h-' || g, jsonb_build_object('g', g), to_timestamp($3) + g * interval '7 seconds'
               from generate_series(1::bigint, $4) g returning id",
            &[&run, &src, &at, &n],
        )
        .await
        .expect("records")
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Leave one record pending (it counts as received, not processed).
    let processed = &ids[..ids.len().saturating_sub(1)];
    c.execute(
        "update ingest.raw_records
            set status = case when id % 4 = 0 then 'rejected' else 'normalized' end,
                processed_at = received_at + (id % 13) * interval '317 ms' + interval '40 ms'
          where id = any($1)",
        &[&processed],
    )
    .await
    .expect("process");
    for severity in ["error", "warning"] {
        c.execute(
            "insert into ingest.errors (run_id, source_id, occurred_at, severity, stage, code, message)
             values ($1, $2, to_timestamp($3) + interval '30 seconds', $4, 'validate', 'E_FIELD', 'x')",
            &[&run, &src, &at, &severity],
        )
        .await
        .expect("error row");
    }
    let status = ["failed", "succeeded", "partial", "running"][(i % 4) as usize];
    if status != "running" {
        c.execute(
            "update ingest.runs set status = $2,
                    finished_at = started_at + interval '5 minutes' + (id % 7) * interval '23.5 seconds'
              where id = $1",
            &[&run, &status],
        )
        .await
        .expect("finish");
    }
}

/// SQL truth per (series, bucket start): count and lag percentile.
pub async fn truth(
    c: &tokio_postgres::Client,
    metric: &str,
    step: i64,
    from: i64,
    to: i64,
    q: f64,
) -> BTreeMap<(String, i64), (i64, Option<f64>)> {
    let lag = "greatest(0, round(extract(epoch from processed_at - received_at) * 1000))::float8";
    let rows = match metric {
        "received" => {
            "select source_id, received_at as ts, 0::float8 as lag from ingest.raw_records"
                .to_string()
        }
        "normalized" | "rejected" => format!(
            "select source_id, processed_at, 0::float8 from ingest.raw_records
              where status = '{metric}' and processed_at is not null"
        ),
        m if m.starts_with("run_duration_") => {
            "select source_id, finished_at,
                    greatest(0, round(extract(epoch from finished_at - started_at) * 1000))::float8
               from ingest.runs where status in ('succeeded', 'failed', 'partial') and finished_at is not null"
                .to_string()
        }
        m if m.starts_with("lag_") => format!(
            "select source_id, processed_at, {lag} from ingest.raw_records
              where status in ('normalized', 'rejected') and processed_at is not null"
        ),
        "errors" | "warnings" => format!(
            "select source_id, occurred_at, 0::float8 from ingest.errors where severity = '{}'",
            &metric[..metric.len() - 1]
        ),
        "runs_started" => "select source_id, started_at, 0::float8 from ingest.runs".to_string(),
        m => format!(
            "select source_id, finished_at, 0::float8 from ingest.runs
              where status = '{}' and finished_at is not null",
            &m[5..]
        ),
    };
    let sql = format!(
        "select coalesce(s.name, 'total'), x.b, x.n, x.p from (
           select source_id, b, count(*)::bigint n, percentile_disc($4::float8) within group (order by lag) p
             from (select r.source_id, (floor(extract(epoch from r.ts) / $3::bigint) * $3::bigint)::bigint b, r.lag
                     from ({rows}) r(source_id, ts, lag)
                    where r.ts >= to_timestamp($1::bigint) and r.ts < to_timestamp($2::bigint)) y
            group by grouping sets ((source_id, b), (b))) x
         left join ingest.sources s on s.id = x.source_id"
    );
    c.query(&sql, &[&from, &to, &step, &q])
        .await
        .expect("truth")
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect()
}

/// Asserts every bucket of every series of one trend equals SQL.
pub async fn assert_trend(
    server: &TestServer,
    db: &TestDb,
    metric: &str,
    bucket: &str,
    from: i64,
    to: i64,
    sources: &[&str],
) -> Value {
    let src = if sources.is_empty() {
        String::new()
    } else {
        format!("&source={}", sources.join(","))
    };
    let (status, mut body) = server
        .get(&format!(
            "/api/trends?metric={metric}&bucket={bucket}&from={from}&to={to}{src}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let (from, to, step) = (
        body["from"].as_i64().expect("from"),
        body["to"].as_i64().expect("to"),
        body["step"].as_i64().expect("step"),
    );
    let q = match metric {
        "lag_p50" | "run_duration_p50" => 0.5,
        "lag_p99" | "run_duration_p99" => 0.99,
        _ => 0.95,
    };
    let want = truth(&db.client, metric, step, from, to, q).await;
    let t: Vec<i64> = body["t"]
        .as_array()
        .expect("t")
        .iter()
        .map(|v| v.as_i64().expect("t int"))
        .collect();
    assert_eq!(t.len() as i64, (to - from) / step, "{metric} {bucket}");
    let series = body["series"].as_object().expect("series");
    assert_eq!(series.len(), sources.len() + 1, "{metric}: {series:?}");
    let mut nonzero = 0;
    for name in std::iter::once("total").chain(sources.iter().copied()) {
        let col = series[name].as_array().expect("column");
        assert_eq!(col.len(), t.len());
        for (i, b) in t.iter().enumerate() {
            let w = want
                .get(&(name.to_string(), *b))
                .copied()
                .unwrap_or((0, None));
            let got = &col[i];
            if metric.starts_with("lag_") || metric.starts_with("run_duration_") {
                match (got.as_f64(), w.1) {
                    (Some(g), Some(w)) => {
                        nonzero += 1;
                        assert!(
                            (g - w).abs() <= w * 0.008 + 1.0,
                            "{metric} {bucket} {name} @{b}: {g} vs SQL {w}"
                        )
                    }
                    (None, None) => {}
                    (g, w) => panic!("{metric} {bucket} {name} @{b}: {g:?} vs SQL {w:?}"),
                }
            } else {
                assert_eq!(
                    got.as_i64(),
                    Some(w.0),
                    "{metric} {bucket} {name} @{b} [{from}, {to}) rollup_seq {} seq {}",
                    body["rollup_seq"],
                    body["seq"]
                );
                nonzero += i64::from(w.0 != 0);
            }
        }
    }
    // Every SQL bucket was in the answer (none fell outside `t`).
    for ((name, b), (n, _)) in &want {
        if name == "total" || sources.contains(&name.as_str()) {
            assert!(*n == 0 || t.binary_search(b).is_ok(), "{name} @{b}");
        }
    }
    body["nonzero"] = nonzero.into();
    body
}

/// Every metric over: 400 days of days, 90 days of hours, the last 7 days of
/// minutes (live edge included), and a week of minutes ~5 weeks ago that
/// crosses the minute rollups' retention (base tables, then rollups).
pub async fn assert_all_trends(server: &TestServer, db: &TestDb) {
    let now = now();
    for metric in METRICS {
        let r = assert_trend(
            server,
            db,
            metric,
            "day",
            now - 399 * DAY,
            now + 60,
            &["crm", "erp"],
        )
        .await;
        assert!(
            r["nonzero"].as_i64() > Some(5),
            "{metric}: history is exercised"
        );
        assert_trend(
            server,
            db,
            metric,
            "hour",
            now - 89 * DAY,
            now + 60,
            &["cal"],
        )
        .await;
        assert_trend(
            server,
            db,
            metric,
            "minute",
            now - 7 * DAY + 60,
            now + 60,
            &[],
        )
        .await;
        assert_trend(
            server,
            db,
            metric,
            "minute",
            now - 38 * DAY,
            now - 31 * DAY,
            &["crm"],
        )
        .await;
    }
}

pub async fn rollup_seq(db: &TestDb) -> Option<i64> {
    db.client
        .query_opt("select seq from monitor.rollup_state where id = 1", &[])
        .await
        .expect("rollup state")
        .map(|r| r.get(0))
}

pub async fn wait_rollups_at(db: &TestDb, target: i64) {
    wait_for("rollups flushed", Duration::from_secs(30), || async {
        rollup_seq(db).await.is_some_and(|s| s >= target)
    })
    .await;
}

/// Totals kept in the rollup tables themselves equal SQL (no double counting).
pub async fn assert_rollup_tables_match(db: &TestDb) {
    for (metric, sql) in [
        ("received", "select count(*) from ingest.raw_records where received_at >= '1970-01-01'"),
        ("errors", "select count(*) from ingest.errors where severity = 'error'"),
        ("runs_failed", "select count(*) from ingest.runs where status = 'failed' and finished_at is not null"),
        ("lag", "select count(*) from ingest.raw_records where status <> 'pending' and processed_at is not null"),
        ("run_duration", "select count(*) from ingest.runs where status <> 'running' and finished_at is not null"),
    ] {
        let want: i64 = db.client.query_one(sql, &[]).await.expect("count").get(0);
        for table in ["monitor.rollup_hour", "monitor.rollup_day"] {
            let got: i64 = db
                .client
                .query_one(
                    &format!("select coalesce(sum(n), 0)::bigint from {table} where metric = $1"),
                    &[&metric],
                )
                .await
                .expect("sum")
                .get(0);
            assert_eq!(got, want, "{table} {metric}");
        }
    }
}

pub fn opts(flush_ms: u64) -> ingestwatch_server::config::ServerOptions {
    let mut o = options();
    o.rollup_flush_ms = flush_ms;
    o
}
