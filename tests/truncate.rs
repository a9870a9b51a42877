//! TRUNCATE of monitored tables (issue 16, item 1): the row-change triggers
//! never fire on TRUNCATE, so the capture has its own statement trigger
//! (sql/0012). After `truncate ... cascade` under concurrent writers, the
//! KPIs of every window, the trend rollups and `/api/trends`, and a live
//! subscriber's figures all equal SQL over the base tables, the subscriber
//! got a fresh snapshot, and its event stream (truncate events included)
//! still has every committed event once, in seq order.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::view::follow;
use common::*;

const WINDOWS: [&str; 4] = ["1m", "5m", "1h", "24h"];

/// One pipeline step in its own transaction: a run, records (half
/// processed, the rest left pending), an error, the run finished (some
/// partial, some failed). A step that collides with a TRUNCATE (lock
/// timeout, deadlock, a foreign key to a row just truncated) rolls back:
/// returns false.
async fn step(p: &Pipeline, src: i64, i: i64) -> bool {
    let c = &p.client;
    let body = async {
        c.batch_execute("begin").await?;
        let run: i64 = c
            .query_one(
                "insert into ingest.runs (source_id) values ($1) returning id",
                &[&src],
            )
            .await?
            .get(0);
        let ids: Vec<i64> = c
            .query(
                "insert into ingest.raw_records (run_id, source_id, payload)
                 select $1, $2, jsonb_build_object('g', g) from generate_series(1, $3::int) g returning id",
                &[&run, &src, &(2 + (i % 4) as i32)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let done = &ids[..ids.len() / 2 + 1];
        c.execute(
            "update ingest.raw_records set status = case when id % 3 = 0 then 'rejected' else 'normalized' end,
                    processed_at = received_at + (id % 11) * interval '37 ms'
              where id = any($1)",
            &[&done],
        )
        .await?;
        c.execute(
            "insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message)
             values ($1, $2, $3, $4, 'validate', $5, 'x')",
            &[
                &run,
                &ids[0],
                &src,
                &(if i % 2 == 0 { "error" } else { "warning" }),
                &format!("E_{}", i % 3),
            ],
        )
        .await?;
        let status = ["succeeded", "partial", "failed", "running"][(i % 4) as usize];
        if status != "running" {
            c.execute(
                "update ingest.runs set status = $2, finished_at = now() where id = $1",
                &[&run, &status],
            )
            .await?;
        }
        c.batch_execute("commit").await
    };
    match body.await {
        Ok(()) => true,
        Err(_) => {
            let _ = c.batch_execute("rollback").await;
            false
        }
    }
}

/// Rows days old, so the trend rollups hold history the truncate removes.
async fn history(db: &TestDb) {
    db.client
        .batch_execute(
            "insert into ingest.runs (source_id, started_at, finished_at, status)
               select s.id, now() - g * interval '1 day', now() - g * interval '1 day' + interval '5 minutes',
                      case when g % 2 = 0 then 'succeeded' else 'partial' end
                 from ingest.sources s, generate_series(1, 6) g;
             insert into ingest.raw_records (run_id, source_id, payload, received_at, status, processed_at)
               select r.id, r.source_id, '{}', r.started_at + g * interval '1 second', 'normalized',
                      r.started_at + g * interval '1 second' + interval '250 ms'
                 from ingest.runs r, generate_series(1, 3) g;
             insert into ingest.errors (run_id, source_id, occurred_at, severity, stage, code, message)
               select r.id, r.source_id, r.started_at, 'error', 'load', 'E_OLD', 'x' from ingest.runs r;",
        )
        .await
        .expect("history");
}

async fn rollup_seq(db: &TestDb) -> Option<i64> {
    db.client
        .query_opt("select seq from monitor.rollup_state where id = 1", &[])
        .await
        .expect("rollup state")
        .map(|r| r.get(0))
}

/// The rollup tables' totals and the day trends of the last 10 days equal SQL.
async fn assert_trends_match_sql(server: &TestServer, db: &TestDb) {
    for (metric, sql) in [
        ("received", "select count(*) from ingest.raw_records"),
        ("errors", "select count(*) from ingest.errors where severity = 'error'"),
        ("runs_started", "select count(*) from ingest.runs"),
        ("runs_partial", "select count(*) from ingest.runs where status = 'partial' and finished_at is not null"),
        ("lag", "select count(*) from ingest.raw_records where status <> 'pending' and processed_at is not null"),
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
            assert_eq!(got, want, "{table} {metric} after truncate");
        }
    }
    let now = chrono::Utc::now().timestamp();
    for (metric, table, col, cond) in [
        ("received", "ingest.raw_records", "received_at", "true"),
        (
            "errors",
            "ingest.errors",
            "occurred_at",
            "severity = 'error'",
        ),
        ("runs_started", "ingest.runs", "started_at", "true"),
    ] {
        let (status, t) = server
            .get(&format!(
                "/api/trends?metric={metric}&bucket=day&from={}&to={}",
                now - 10 * 86_400,
                now + 60
            ))
            .await;
        assert_eq!(status, 200, "{t}");
        let (from, to) = (
            t["from"].as_i64().expect("from"),
            t["to"].as_i64().expect("to"),
        );
        let want: Vec<i64> = db
            .client
            .query(
                &format!(
                    "select (select count(*) from {table}
                              where {cond} and {col} >= to_timestamp(b) and {col} < to_timestamp(b + 86400))
                       from generate_series($1::bigint, $2::bigint - 1, 86400) b order by b"
                ),
                &[&from, &to],
            )
            .await
            .expect("trend truth")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let got: Vec<i64> = t["series"]["total"]
            .as_array()
            .expect("total series")
            .iter()
            .map(|v| v.as_i64().expect("count"))
            .collect();
        assert_eq!(got, want, "day trend of {metric} after truncate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpis_trends_and_a_subscriber_equal_sql_after_truncates_under_concurrent_writes() {
    let db = TestDb::new().await;
    let sources = [db.source("crm").await, db.source("erp").await];
    history(&db).await;
    let warm = Pipeline::new(&db).await;
    for i in 0..6 {
        assert!(step(&warm, sources[(i % 2) as usize], i).await);
    }
    let mut opts = options();
    opts.rollup_flush_ms = 100;
    let server = TestServer::start_with(&db, opts).await;
    wait_for("rollups backfilled", Duration::from_secs(30), || async {
        rollup_seq(&db).await.is_some()
    })
    .await;
    let start = db.max_seq().await;
    let mut ws = server.ws().await;
    ws.next_of("hello", Duration::from_secs(5))
        .await
        .expect("hello");
    ws.subscribe(&["events", "kpis"], start).await;
    let view = follow(ws);

    // Concurrent writers until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3i64 {
        let p = Pipeline::new(&db).await;
        p.client
            .batch_execute("set lock_timeout = '2s'")
            .await
            .expect("lock timeout");
        let src = sources[(w % 2) as usize];
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let (mut i, mut ok) = (w * 1_000, 0);
            while !stop.load(Ordering::Relaxed) {
                ok += i64::from(step(&p, src, i).await);
                i += 1;
            }
            ok
        }));
    }
    let progress = |n: i64| {
        let db = &db;
        async move {
            let target = db.max_seq().await + n;
            wait_for("writers progress", Duration::from_secs(60), || async {
                db.max_seq().await >= target
            })
            .await;
        }
    };
    progress(40).await;
    // The probed case: records (and, by cascade, meetings and errors) gone.
    db.client
        .batch_execute("truncate ingest.raw_records cascade")
        .await
        .expect("truncate raw_records");
    progress(40).await;
    // Runs too: their records and errors go with them.
    db.client
        .batch_execute("truncate ingest.runs cascade")
        .await
        .expect("truncate runs");
    progress(40).await;
    stop.store(true, Ordering::Relaxed);
    let mut committed = 0;
    for w in writers {
        committed += w.await.expect("writer");
    }
    assert!(committed > 10, "writers committed {committed} steps");
    let kinds: Vec<String> = db
        .client
        .query(
            "select kind from monitor.events where kind like '%.truncate' order by seq",
            &[],
        )
        .await
        .expect("truncate events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for k in [
        "raw_records.truncate",
        "errors.truncate",
        "meetings.truncate",
        "runs.truncate",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} captured: {kinds:?}");
    }

    // REST: every window equals SQL.
    server.wait_caught_up(&db).await;
    for w in WINDOWS {
        assert_kpis_match_sql(&db.client, &server.kpis(w).await).await;
    }
    // Trends: the rollups were rebuilt, history and live edge equal SQL.
    let last = db.max_seq().await;
    wait_for("rollups flushed", Duration::from_secs(60), || async {
        rollup_seq(&db).await.is_some_and(|s| s >= last)
    })
    .await;
    assert_trends_match_sql(&server, &db).await;

    // The subscriber: every committed event once (the truncates too), a
    // fresh snapshot after the truncates, figures equal to SQL.
    let expected = db.seqs_after(start).await;
    wait_for("subscriber caught up", Duration::from_secs(30), || async {
        let v = view.lock().unwrap_or_else(|e| e.into_inner());
        v.kpi_seq >= last && v.events.last().copied() == expected.last().copied()
    })
    .await;
    let v = view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_same_seqs(&v.events, &expected, "subscriber events through truncates");
    assert!(
        v.snapshots >= 2,
        "a fresh kpis snapshot after the truncates: {} snapshot(s), frames {:?}",
        v.snapshots,
        v.frames
    );
    for w in WINDOWS {
        let mut k = v.kpis[w].clone();
        assert!(k.is_object(), "subscriber holds window {w}: {}", v.kpis);
        k["window"] = w.into();
        assert_kpis_match_sql(&db.client, &k).await;
    }
    server.stop().await;
}
