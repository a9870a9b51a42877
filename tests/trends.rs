//! Trends against SQL truth: every metric, every bucket width, history from
//! the backfill and from the rollup writer (rows inserted with timestamps
//! months old, updates and deletes of old rows), the unflushed tail read from
//! the outbox, minutes older than the minute rollups read from the base
//! tables, the live edge equal to `/api/kpis`, and rollups that survive
//! restarts without double counting.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

const METRICS: [&str; 15] = [
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

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// One run at `at` (epoch seconds) with `n` records 7 s apart, processed
/// with lags from 40 ms to ~4 s (some rejected), an error and a warning.
async fn history_step(p: &Pipeline, src: i64, at: i64, n: i64, i: i64) {
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
async fn truth(
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
async fn assert_trend(
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
async fn assert_all_trends(server: &TestServer, db: &TestDb) {
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

async fn rollup_seq(db: &TestDb) -> Option<i64> {
    db.client
        .query_opt("select seq from monitor.rollup_state where id = 1", &[])
        .await
        .expect("rollup state")
        .map(|r| r.get(0))
}

async fn wait_rollups_at(db: &TestDb, target: i64) {
    wait_for("rollups flushed", Duration::from_secs(30), || async {
        rollup_seq(db).await.is_some_and(|s| s >= target)
    })
    .await;
}

/// Totals kept in the rollup tables themselves equal SQL (no double counting).
async fn assert_rollup_tables_match(db: &TestDb) {
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

fn opts(flush_ms: u64) -> ingestwatch_server::config::ServerOptions {
    let mut o = options();
    o.rollup_flush_ms = flush_ms;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_equal_sql_through_backfill_writer_and_restarts() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp").await;
    let cal = db.source("cal").await;
    let p = Pipeline::new(&db).await;
    let now = now();
    // History before the first start: the backfill reads it from base tables.
    let ages = [
        300 * DAY,
        200 * DAY,
        100 * DAY,
        45 * DAY,
        36 * DAY,
        34 * DAY,
        20 * DAY,
        3 * DAY,
        30 * HOUR,
        24 * HOUR + 600,
        24 * HOUR - 600,
        23 * HOUR,
        2 * HOUR,
        600,
        0,
    ];
    for (i, age) in ages.iter().enumerate() {
        let src = [crm, erp, cal][i % 3];
        history_step(&p, src, now - age, 3 + i as i64 % 4, i as i64).await;
    }

    // First start: rollups are flushed only every 5 minutes, so everything
    // written below reaches the trend through the outbox tail.
    let server = TestServer::start_with(&db, opts(300_000)).await;
    wait_for("backfill", Duration::from_secs(30), || async {
        rollup_seq(&db).await.is_some()
    })
    .await;
    let backfilled = rollup_seq(&db).await.expect("state");
    for (i, age) in [250 * DAY, 36 * DAY, 24 * HOUR + 300, HOUR, 0]
        .iter()
        .enumerate()
    {
        history_step(&p, [erp, cal, crm][i % 3], now - age, 2, 10 + i as i64).await;
    }
    // Old rows updated and deleted: negative contributions months back.
    p.client
        .batch_execute(
            "update ingest.raw_records set status = 'rejected'
              where id = (select min(id) from ingest.raw_records
                           where received_at < now() - interval '99 days' and status = 'normalized');
             delete from ingest.raw_records
              where id = (select min(id) from ingest.raw_records where received_at < now() - interval '199 days');
             delete from ingest.errors
              where id = (select min(id) from ingest.errors where occurred_at < now() - interval '199 days');",
        )
        .await
        .expect("old updates");
    server.wait_caught_up(&db).await;
    assert_eq!(rollup_seq(&db).await, Some(backfilled), "not flushed yet");
    assert_all_trends(&server, &db).await;
    let (_, body) = server.get("/api/trends?metric=received&bucket=day").await;
    assert_eq!(body["rollup_seq"].as_i64(), Some(backfilled));
    server.stop().await;

    // Writes while no server runs, then a restart that flushes quickly.
    for (i, age) in [150 * DAY, 2 * DAY, 0].iter().enumerate() {
        history_step(&p, [cal, crm, erp][i % 3], now - age, 2, 20 + i as i64).await;
    }
    let server = TestServer::start_with(&db, opts(100)).await;
    server.wait_caught_up(&db).await;
    wait_rollups_at(&db, db.max_seq().await).await;
    assert_rollup_tables_match(&db).await;
    assert_all_trends(&server, &db).await;
    server.stop().await;

    // And once more: a restart re-reads nothing twice.
    history_step(&p, erp, now - 60 * DAY, 2, 30).await;
    let server = TestServer::start_with(&db, opts(100)).await;
    server.wait_caught_up(&db).await;
    wait_rollups_at(&db, db.max_seq().await).await;
    assert_rollup_tables_match(&db).await;
    assert_all_trends(&server, &db).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_edge_equals_kpis() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp").await;
    let p = Pipeline::new(&db).await;
    let now = now();
    for (i, age) in [20 * HOUR, 5 * HOUR, 50 * 60, 10 * 60, 30]
        .iter()
        .enumerate()
    {
        history_step(&p, [crm, erp][i % 2], now - age, 4, i as i64).await;
    }
    let server = TestServer::start_with(&db, opts(100)).await;
    for i in 0..6 {
        history_step(&p, [crm, erp][i % 2], now - 5, 3, i as i64).await;
    }
    server.wait_caught_up(&db).await;
    for window in ["1h", "24h"] {
        let k = server.kpis(window).await;
        let from = chrono::DateTime::parse_from_rfc3339(k["from"].as_str().expect("from"))
            .expect("rfc3339")
            .timestamp();
        let to = chrono::DateTime::parse_from_rfc3339(k["to"].as_str().expect("to"))
            .expect("rfc3339")
            .timestamp();
        for metric in &METRICS[..9] {
            let (status, t) = server
                .get(&format!(
                    "/api/trends?metric={metric}&bucket=minute&from={from}&to={to}&source=crm,erp"
                ))
                .await;
            assert_eq!(status, 200, "{t}");
            assert_eq!(
                (t["from"].as_i64(), t["to"].as_i64()),
                (Some(from), Some(to))
            );
            let sum = |name: &str| -> i64 {
                t["series"][name]
                    .as_array()
                    .expect("series")
                    .iter()
                    .map(|v| v.as_i64().expect("count"))
                    .sum()
            };
            assert_eq!(
                sum("total"),
                k["total"][metric].as_i64().expect("kpi"),
                "{window} {metric}"
            );
            for name in ["crm", "erp"] {
                assert_eq!(
                    sum(name),
                    k["sources"][name][metric].as_i64().expect("kpi"),
                    "{window} {metric} {name}"
                );
            }
        }
    }
    assert_kpis_match_sql(&db.client, &server.kpis("24h").await).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trend_requests_are_400_naming_the_parameter() {
    let db = TestDb::new().await;
    db.source("crm").await;
    let server = TestServer::start(&db).await;
    wait_for("backfill", Duration::from_secs(30), || async {
        rollup_seq(&db).await.is_some()
    })
    .await;
    let cases = [
        ("", "metric"),
        ("metric=nope", "metric"),
        ("metric=received&bucket=week", "bucket"),
        (
            "metric=received&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "from",
        ),
        ("metric=received&from=last-tuesday", "from"),
        ("metric=received&to=99999999999999999", "to"),
        ("metric=received&bucket=minute&from=0&to=691200", "bucket"),
        ("metric=received&bucket=hour&from=0&to=7862400", "bucket"),
        ("metric=received&bucket=day&from=0&to=34646400", "bucket"),
        ("metric=received&limit=5", "limit"),
        ("metric=received&source=nope", "source"),
        ("metric=received&source=crm,erp", "source"), // erp does not exist
    ];
    for (q, param) in cases {
        let (status, body) = server.get(&format!("/api/trends?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{q}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.starts_with(&format!("parameter `{param}`")),
            "{q}: {msg}"
        );
    }
    // Accepted: RFC 3339 with offsets, epoch seconds, the longest ranges.
    for q in [
        "metric=lag_p95&bucket=minute&from=2026-01-01T00:00:00%2B02:00&to=2026-01-08T00:00:00%2B02:00",
        "metric=received&bucket=day&from=0&to=34560000",
        "metric=runs_failed&source=crm",
    ] {
        let (status, body) = server.get(&format!("/api/trends?{q}")).await;
        assert_eq!(status, 200, "{q}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn sql_lag_bins_equal_the_live_histogram_bins_and_the_role_writes_only_rollups() {
    let db = TestDb::new().await;
    let mut values: Vec<i64> = (0..5_000).collect();
    for e in 10..45 {
        let p = 1i64 << e;
        values.extend([p - 1, p, p + 1, p + p / 3]);
    }
    let rows = db
        .client
        .query(
            "select v, monitor.lag_bin(v) from unnest($1::bigint[]) v",
            &[&values],
        )
        .await
        .expect("bins");
    for r in rows {
        let (v, b): (i64, i64) = (r.get(0), r.get(1));
        assert_eq!(
            b,
            i64::from(ingestwatch_server::live::histogram::bin(v as u64)),
            "bin of {v}"
        );
    }
    let src = db.source("crm").await;
    let reader = ingestwatch_server::db::connect(&db.reader_url)
        .await
        .expect("reader");
    reader
        .batch_execute("set session characteristics as transaction read write")
        .await
        .expect("read write");
    reader
        .batch_execute(
            "insert into monitor.rollup_hour (source_id, bucket, metric, n) values (1, now(), 'x', 1);
             delete from monitor.rollup_hour where metric = 'x'",
        )
        .await
        .expect("the reader role may write rollups");
    for sql in [
        format!("insert into ingest.runs (source_id) values ({src})"),
        "delete from ingest.errors".to_string(),
        "insert into monitor.events (kind, rows, summary) values ('x', 1, '{}')".to_string(),
    ] {
        let err = reader.batch_execute(&sql).await.expect_err(&sql);
        let code = err.code().map(|c| c.code().to_string()).unwrap_or_default();
        assert_eq!(code, "42501", "{sql}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_sees_totals_of_its_sources_only() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp").await;
    let p = Pipeline::new(&db).await;
    let now = now();
    for (i, age) in [40 * DAY, 2 * DAY, 600].iter().enumerate() {
        history_step(&p, crm, now - age, 2, i as i64).await;
        history_step(&p, erp, now - age, 5, i as i64).await;
    }
    let server = TestServer::start_with(&db, opts(100)).await;
    server.wait_caught_up(&db).await;
    wait_rollups_at(&db, db.max_seq().await).await;
    let scoped = token("viewer", &["crm"], "1h");
    let q = format!(
        "/api/trends?metric=received&bucket=day&from={}&to={}",
        now - 60 * DAY,
        now + 60
    );
    let (status, body) = server.get_as(&q, Some(&scoped)).await;
    assert_eq!(status, 200, "{body}");
    let total: i64 = body["series"]["total"]
        .as_array()
        .expect("total")
        .iter()
        .map(|v| v.as_i64().expect("count"))
        .sum();
    let crm_only: i64 = db
        .client
        .query_one(
            "select count(*) from ingest.raw_records where source_id = $1",
            &[&crm],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(total, crm_only, "total over the token's sources only");
    let (status, _) = server
        .get_as(&format!("{q}&source=crm"), Some(&scoped))
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .get_as(&format!("{q}&source=erp"), Some(&scoped))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = server.get_as(&q, None).await;
    assert_eq!(status, 401);
    server.stop().await;
}
