//! Alert condition tests against a real PostgreSQL and the real server:
//! every condition kind fires and resolves from pipeline writes, with `for`
//! and hysteresis honoured (lifecycle, scopes and grants: alerts_lifecycle.rs).

#[path = "common/alerts.rs"]
mod alerts_support;
mod common;

use std::time::{Duration, Instant};

use alerts_support::*;
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_fires_after_for_holds_in_the_band_and_resolves_below_the_hysteresis_level() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let server = start(
        &db,
        &rules(
            r#"
[[rules]]
name = "backlog"
condition = "backlog"
above = 10
sources = "each"
for = "400ms"
hysteresis = 0.5
severity = "critical"
labels = { team = "ingest" }
"#,
        ),
    )
    .await;
    let p = Pipeline::new(&db).await;
    let ids = backlog(&db, &p, src, 15).await;
    let h = wait_states(&server, "backlog", "crm", &["pending", "firing"], T).await;
    let waited = ms_between(&h[0], &h[1]);
    assert!(
        waited >= 400,
        "fired {waited} ms after pending, `for` is 400 ms"
    );
    assert_eq!(h[1]["value"], 15.0);
    assert_eq!(h[1]["from"], "pending");
    // The history is written by the leader; `/api/alerts` serves each
    // replica's view, synced from the tables on the leader's NOTIFY (or by
    // polling): wait for it rather than race it.
    wait_for("/api/alerts shows the firing alert", T, || async {
        server.get("/api/alerts").await.1["alerts"][0]["state"] == "firing"
    })
    .await;
    let (status, active) = server.get("/api/alerts").await;
    assert_eq!(status, 200);
    let a = &active["alerts"][0];
    assert_eq!(a["state"], "firing");
    assert_eq!(a["value"], 15.0, "the value that fired");
    assert_eq!(a["threshold"], 10.0);
    assert_eq!(a["since"], h[1]["at"]);
    assert_eq!(a["source"], "crm");
    assert_eq!(a["labels"]["team"], "ingest");
    assert_eq!(a["severity"], "critical");

    // 8 pending: between the resolve level (5) and the threshold: no change.
    p.process(&ids[..7], "normalized", 5).await;
    server.wait_caught_up(&db).await;
    evaluations(&server, 5.0).await;
    assert_eq!(
        states(&history(&server, "backlog", Some("crm")).await),
        ["pending", "firing"]
    );
    // 11 (above again) then 9 (in the band): still one firing episode.
    backlog(&db, &p, src, 3).await;
    server.wait_caught_up(&db).await;
    evaluations(&server, 3.0).await;
    p.process(&ids[7..9], "normalized", 5).await;
    server.wait_caught_up(&db).await;
    evaluations(&server, 3.0).await;
    assert_eq!(
        states(&history(&server, "backlog", Some("crm")).await),
        ["pending", "firing"]
    );
    // 5 pending: at the resolve level -> resolved.
    let rest: Vec<i64> = db
        .client
        .query(
            "select id from ingest.raw_records where status = 'pending' order by id limit 4",
            &[],
        )
        .await
        .expect("pending")
        .iter()
        .map(|r| r.get(0))
        .collect();
    p.process(&rest, "normalized", 5).await;
    let h = wait_states(
        &server,
        "backlog",
        "crm",
        &["pending", "firing", "resolved"],
        T,
    )
    .await;
    assert_eq!(h[2]["value"], 5.0);
    let (_, active) = server.get("/api/alerts").await;
    assert_eq!(active["alerts"], json!([]));
    assert_eq!(server.metric("ingestwatch_alerts_firing").await, 0.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_rate_and_error_rate_fire_and_resolve() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    db.source("erp").await;
    let server = start(
        &db,
        &rules(
            r#"
[[rules]]
name = "rejects"
condition = "reject_rate"
window = "1m"
above = 0.3
min_records = 5
sources = "each"
hysteresis = 0.5

[[rules]]
name = "errors"
condition = "error_rate"
window = "1m"
above = 0.3
sources = ["crm", "erp"]
for = "300ms"
hysteresis = 0.5
"#,
        ),
    )
    .await;
    let p = Pipeline::new(&db).await;
    let run = p.run(crm).await;
    let ids = p.records(run, crm, 10).await;
    // One statement, so no evaluation tick can see half of it.
    p.client
        .execute(
            "update ingest.raw_records
                set status = case when id = any($1) then 'rejected' else 'normalized' end,
                    processed_at = received_at + interval '20 ms'
              where id = any($2)",
            &[&ids[..5].to_vec(), &ids],
        )
        .await
        .expect("process");
    // One statement again: the error rate jumps straight to its final value.
    p.client
        .execute(
            "insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message)
             select $1::bigint, r, $2::bigint, 'error', 'validate', 'E_SCHEMA', 'field missing' from unnest($3::bigint[]) r
             union all select $1, null, $2, 'warning', 'validate', 'W_ONLY', 'warnings do not count'",
            &[&run, &crm, &ids[..5].to_vec()],
        )
        .await
        .expect("errors");
    let h = wait_states(&server, "rejects", "crm", &["firing"], T).await;
    assert_eq!(h[0]["value"], 0.5);
    let h = wait_states(&server, "errors", "crm,erp", &["pending", "firing"], T).await;
    assert_eq!(h[1]["value"], 0.5);
    assert_eq!(h[1]["sources"], json!(["crm", "erp"]));
    assert_eq!(h[1]["source"], Value::Null);
    assert!(ms_between(&h[0], &h[1]) >= 300);
    // 40 clean records: rejects 5/50 = 0.1 and errors 5/50 = 0.1, below 0.15.
    let ids = p.records(run, crm, 40).await;
    p.process(&ids, "normalized", 20).await;
    wait_states(&server, "rejects", "crm", &["firing", "resolved"], T).await;
    wait_states(
        &server,
        "errors",
        "crm,erp",
        &["pending", "firing", "resolved"],
        T,
    )
    .await;
    assert!(
        history(&server, "rejects", Some("erp")).await.is_empty(),
        "erp had no data"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_p95_fires_and_resolves() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let server = start(
        &db,
        &rules(
            r#"
[[rules]]
name = "lag"
condition = "lag_p95"
window = "1m"
above = "1s"
sources = "each"
hysteresis = 0.5
"#,
        ),
    )
    .await;
    let p = Pipeline::new(&db).await;
    let run = p.run(src).await;
    let slow = p.records(run, src, 10).await;
    p.process(&slow, "normalized", 3_000).await;
    let h = wait_states(&server, "lag", "crm", &["firing"], T).await;
    let v = h[0]["value"].as_f64().expect("value");
    assert!((v - 3_000.0).abs() < 30.0, "p95 {v}");
    assert_eq!(h[0]["unit"], "ms");
    let fast = p.records(run, src, 300).await;
    p.process(&fast, "normalized", 10).await;
    wait_states(&server, "lag", "crm", &["firing", "resolved"], T).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_sources_fire_and_a_new_record_resolves() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    set_interval(&db, "crm", "1 second").await;
    db.source("quiet").await; // expected every minute: never stale here
    let server = start(
        &db,
        &rules(
            r#"
[[rules]]
name = "stale"
condition = "stale"
factor = 1.5
sources = "each"
"#,
        ),
    )
    .await;
    let started = Instant::now();
    // Never received anything: stale 1.5 s after the server first saw it.
    let h = wait_states(&server, "stale", "crm", &["firing"], T).await;
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    assert!(h[0]["value"].as_f64().expect("value") > 1.5);
    assert_eq!(h[0]["threshold"], 1.5);
    let p = Pipeline::new(&db).await;
    let run = p.run(src).await;
    p.records(run, src, 1).await;
    wait_states(&server, "stale", "crm", &["firing", "resolved"], T).await;
    // And stale again once records stop.
    let quiet_since = Instant::now();
    wait_states(
        &server,
        "stale",
        "crm",
        &["firing", "resolved", "firing"],
        T,
    )
    .await;
    assert!(quiet_since.elapsed() >= Duration::from_millis(1_000));
    p.records(run, src, 1).await;
    wait_states(
        &server,
        "stale",
        "crm",
        &["firing", "resolved", "firing", "resolved"],
        T,
    )
    .await;
    assert!(history(&server, "stale", Some("quiet")).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failed_runs_fire_at_the_count_and_a_success_resolves() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let server = start(
        &db,
        &rules(
            r#"
[[rules]]
name = "failing"
condition = "failed_runs"
count = 3
"#,
        ),
    )
    .await;
    let p = Pipeline::new(&db).await;
    for status in ["failed", "partial", "failed", "failed"] {
        let r = p.run(src).await;
        p.finish_run(r, status).await;
    }
    let running = p.run(src).await; // a running run does not break the chain
    evaluations(&server, 5.0).await;
    assert!(
        history(&server, "failing", None).await.is_empty(),
        "2 in a row, not 3"
    );
    let r = p.run(src).await;
    p.finish_run(r, "failed").await;
    let h = wait_states(&server, "failing", "crm", &["firing"], T).await;
    assert_eq!(h[0]["value"], 3.0);
    assert_eq!(h[0]["unit"], "runs");
    p.finish_run(running, "succeeded").await;
    wait_states(&server, "failing", "crm", &["firing", "resolved"], T).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_running_too_long_fires_and_finishing_it_resolves() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    db.source("erp").await;
    let server = start(
        &db,
        &rules(
            r#"
[[rules]]
name = "long"
condition = "long_run"
longer_than = "1s"
sources = { each = ["crm"] }
"#,
        ),
    )
    .await;
    let p = Pipeline::new(&db).await;
    let t0 = Instant::now();
    let run = p.run(src).await;
    let h = wait_states(&server, "long", "crm", &["firing"], T).await;
    assert!(t0.elapsed() >= Duration::from_secs(1));
    assert!(h[0]["value"].as_f64().expect("value") > 1.0);
    p.finish_run(run, "succeeded").await;
    wait_states(&server, "long", "crm", &["firing", "resolved"], T).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notification_queue_filling_fires_and_draining_resolves() {
    let db = TestDb::new().await;
    let server = start(
        &db,
        &rules(
            r#"
[[rules]]
name = "queue"
condition = "notification_queue"
above = 0.0001
hysteresis = 0.5
"#,
        ),
    )
    .await;
    // A listener that sits in a transaction holds the queue's tail back.
    let stuck = ingestwatch_server::db::connect(&db.url)
        .await
        .expect("stuck");
    stuck
        .batch_execute("listen iw_test_stuck")
        .await
        .expect("listen");
    stuck
        .batch_execute("begin; select 1")
        .await
        .expect("stuck listener");
    let writer = ingestwatch_server::db::connect(&db.url)
        .await
        .expect("writer");
    writer
        .batch_execute("select pg_notify('iw_test_fill', repeat('x', 7900) || g) from generate_series(1, 300) g")
        .await
        .expect("fill");
    let h = wait_states(&server, "queue", "", &["firing"], T).await;
    assert!(h[0]["value"].as_f64().expect("value") > 0.0001);
    stuck.batch_execute("commit").await.expect("unstick");
    // The tail advances as further notifications are written.
    let start = Instant::now();
    loop {
        writer
            .batch_execute("select pg_notify('iw_test_fill', repeat('y', 7900) || g) from generate_series(1, 10) g")
            .await
            .expect("nudge");
        if states(&history(&server, "queue", Some("")).await) == ["firing", "resolved"] {
            break;
        }
        assert!(start.elapsed() < T, "the queue never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_disconnected_too_long_fires_and_reconnecting_resolves() {
    let db = TestDb::new().await;
    let server = start(
        &db,
        &rules(
            r#"
[[rules]]
name = "listener"
condition = "listener_disconnected"
longer_than = "700ms"
"#,
        ),
    )
    .await;
    // Keep the listener out: no new connections for non-superusers.
    db.client
        .batch_execute(&format!("alter database {} connection limit 0", db.name))
        .await
        .expect("limit");
    let t0 = Instant::now();
    kill_listener(&db.client).await;
    let h = wait_states(&server, "listener", "", &["firing"], T).await;
    assert!(t0.elapsed() >= Duration::from_millis(700));
    assert!(h[0]["value"].as_f64().expect("value") > 0.7);
    assert_eq!(h[0]["unit"], "seconds");
    db.client
        .batch_execute(&format!("alter database {} connection limit -1", db.name))
        .await
        .expect("unlimit");
    wait_states(&server, "listener", "", &["firing", "resolved"], T).await;
    server.stop().await;
}
