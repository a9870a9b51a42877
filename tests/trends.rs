//! Trends against SQL truth: every metric, every bucket width, history from
//! the backfill and from the rollup writer (rows inserted with timestamps
//! months old, updates and deletes of old rows), the unflushed tail read from
//! the outbox, minutes older than the minute rollups read from the base
//! tables, the live edge equal to `/api/kpis`, and rollups that survive
//! restarts without double counting.

mod common;
#[path = "common/trends.rs"]
mod trends_support;

use std::time::Duration;

use common::*;
use trends_support::*;

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
