//! Alert acceptance tests against a real PostgreSQL and the real server:
//! every condition kind fires and resolves from pipeline writes, with `for`
//! and hysteresis honoured; REST and WS (with scopes); history across a
//! restart; the reader's grants; a malformed rules file fails fast.

#[path = "common/alerts.rs"]
mod alerts_support;
mod common;

use std::time::{Duration, Instant};

use alerts_support::*;
use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

fn rules(body: &str) -> String {
    format!("[settings]\ninterval = \"100ms\"\nsync_interval = \"200ms\"\nleader_retry = \"200ms\"\n\n{body}")
}

async fn set_interval(db: &TestDb, name: &str, every: &str) {
    db.client
        .execute(
            "update ingest.sources set expected_interval = $2::text::interval where name = $1",
            &[&name, &every],
        )
        .await
        .expect("interval");
}

async fn backlog(db: &TestDb, p: &Pipeline, src: i64, n: i64) -> Vec<i64> {
    let _ = db;
    let run = p.run(src).await;
    p.records(run, src, n).await
}

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

const SCOPED_RULES: &str = r#"
[[rules]]
name = "backlog"
condition = "backlog"
above = 2
sources = "each"

[[rules]]
name = "total"
condition = "backlog"
above = 4
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_ws_serve_alerts_within_the_token_scope() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp").await;
    let server = start(&db, &rules(SCOPED_RULES)).await;
    let scoped = token("viewer", &["crm"], "1h");
    let mut all_ws = server.ws().await;
    let hello = all_ws.next_of("hello", T).await.expect("hello");
    assert_eq!(
        hello["topics"],
        json!(["kpis", "events", "errors", "alerts", "exports"])
    );
    all_ws
        .send(json!({"op": "subscribe", "topics": ["alerts"]}))
        .await;
    let snap = all_ws.next_of("snapshot", T).await.expect("snapshot");
    assert_eq!(snap["topic"], "alerts");
    assert_eq!(snap["data"]["active"], json!([]));
    let mut crm_ws = Ws::connect_with(&format!("ws://{}/ws", server.addr), Some(&scoped))
        .await
        .expect("scoped ws");
    crm_ws
        .send(json!({"op": "subscribe", "topics": ["alerts"]}))
        .await;
    crm_ws.next_of("snapshot", T).await.expect("snapshot");

    let p = Pipeline::new(&db).await;
    backlog(&db, &p, crm, 3).await;
    backlog(&db, &p, erp, 3).await;
    wait_states(&server, "backlog", "crm", &["firing"], T).await;
    wait_states(&server, "backlog", "erp", &["firing"], T).await;
    wait_states(&server, "total", "", &["firing"], T).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let f = all_ws.next_of("alert", T).await.expect("alert frame");
        seen.push((
            f["rule"].as_str().unwrap_or("").to_string(),
            f["instance"].as_str().unwrap_or("").to_string(),
        ));
        assert_eq!(f["state"], "firing");
        assert!(f["id"].as_i64().is_some() && f["idempotency_key"].is_string());
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("backlog".into(), "crm".into()),
            ("backlog".into(), "erp".into()),
            ("total".into(), String::new())
        ]
    );
    let f = crm_ws.next_of("alert", T).await.expect("crm frame");
    assert_eq!(
        (f["rule"].as_str(), f["source"].as_str()),
        (Some("backlog"), Some("crm"))
    );
    assert!(
        crm_ws
            .next_of("alert", Duration::from_millis(600))
            .await
            .is_none(),
        "scoped: crm only"
    );

    // A late subscriber's snapshot holds what is active now, within its scope.
    let mut late = Ws::connect_with(&format!("ws://{}/ws", server.addr), Some(&scoped))
        .await
        .expect("late ws");
    late.send(json!({"op": "subscribe", "topics": ["alerts"]}))
        .await;
    let snap = late.next_of("snapshot", T).await.expect("snapshot");
    let active = snap["data"]["active"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["source"], "crm");
    assert_eq!(active[0]["state"], "firing");

    // REST, unscoped and scoped.
    let (_, all) = server.get("/api/alerts").await;
    assert_eq!(all["alerts"].as_array().map(Vec::len), Some(3));
    let (_, mine) = server.get_as("/api/alerts", Some(&scoped)).await;
    assert_eq!(mine["alerts"].as_array().map(Vec::len), Some(1));
    assert_eq!(mine["alerts"][0]["source"], "crm");
    let (_, f) = server.get("/api/alerts?state=firing&source=erp").await;
    assert_eq!(f["alerts"].as_array().map(Vec::len), Some(1));
    let (_, hist) = server.get_as("/api/alerts/history", Some(&scoped)).await;
    let hist = hist["transitions"].as_array().cloned().unwrap_or_default();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0]["source"], "crm");
    let (s, _) = server
        .get_as("/api/alerts/history?source=erp", Some(&scoped))
        .await;
    assert_eq!(s, 403);
    let (s, _) = server.get_as("/api/alerts", None).await;
    assert_eq!(s, 401);

    // Resolve crm: frames for both unscoped and scoped subscribers.
    let pending: Vec<i64> = db
        .client
        .query(
            "select id from ingest.raw_records where source_id = $1",
            &[&crm],
        )
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    p.process(&pending, "normalized", 1).await;
    let f = crm_ws.next_of("alert", T).await.expect("resolved frame");
    assert_eq!(
        (f["state"].as_str(), f["from"].as_str()),
        (Some("resolved"), Some("firing"))
    );

    // History: filters, keyset paging, bad parameters.
    let (_, h) = server.get("/api/alerts/history?state=firing").await;
    assert_eq!(h["transitions"].as_array().map(Vec::len), Some(3));
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/alerts/history?limit=1&cursor={c}"),
            None => "/api/alerts/history?limit=1".to_string(),
        };
        let (s, page) = server.get(&path).await;
        assert_eq!(s, 200, "{page}");
        for t in page["transitions"].as_array().cloned().unwrap_or_default() {
            ids.push(t["id"].as_i64().expect("id"));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted, "newest first, no duplicate");
    assert!(ids.len() >= 4, "{ids:?}");
    let now = chrono::Utc::now();
    let from =
        (now - chrono::Duration::minutes(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, h) = server
        .get(&format!(
            "/api/alerts/history?rule=backlog&source=crm&from={from}"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        states(&h["transitions"].as_array().cloned().unwrap_or_default()),
        ["resolved", "firing"]
    );
    for bad in [
        "limit=0",
        "limit=501",
        "limit=abc",
        "state=bogus",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
        "cursor=-1",
        "cursor=x",
        "rule=",
        "nope=1",
        "limit=5&limit=6",
        "from=2026-11-26T10:00:00Z&to=2026-11-26T09:00:00Z",
    ] {
        let (s, body) = server.get(&format!("/api/alerts/history?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{bad}");
    }
    for bad in ["state=resolved", "severity=urgent", "x=1"] {
        let (s, body) = server.get(&format!("/api/alerts?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    let (s, _) = server
        .get(&format!("/api/alerts?access_token={}", server.token))
        .await;
    assert_eq!(s, 200, "the token may come as a query parameter");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_active_alerts_survive_a_restart_without_refiring() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp").await;
    let server = start(&db, &rules(SCOPED_RULES)).await;
    let p = Pipeline::new(&db).await;
    let crm_ids = backlog(&db, &p, crm, 3).await;
    backlog(&db, &p, erp, 5).await;
    wait_states(&server, "backlog", "crm", &["firing"], T).await;
    wait_states(&server, "backlog", "erp", &["firing"], T).await;
    p.process(&crm_ids, "normalized", 1).await; // total 5: still above 4
    wait_states(&server, "backlog", "crm", &["firing", "resolved"], T).await;
    wait_states(&server, "total", "", &["firing"], T).await;
    let (_, before_hist) = server.get("/api/alerts/history").await;
    let (_, before_active) = server.get("/api/alerts").await;
    server.stop().await;

    let server = start(&db, &rules(SCOPED_RULES)).await;
    wait_for("alerts loaded", T, || async {
        server.get("/api/alerts").await.0 == 200
    })
    .await;
    let (_, after_active) = server.get("/api/alerts").await;
    assert_eq!(
        after_active["alerts"], before_active["alerts"],
        "same active alerts, same since"
    );
    evaluations(&server, 5.0).await;
    let (_, after_hist) = server.get("/api/alerts/history").await;
    assert_eq!(after_hist, before_hist, "history intact, nothing re-fired");
    // The restored firing alert resolves normally.
    let erp_ids: Vec<i64> = db
        .client
        .query(
            "select id from ingest.raw_records where source_id = $1",
            &[&erp],
        )
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    p.process(&erp_ids, "normalized", 1).await;
    wait_states(&server, "backlog", "erp", &["firing", "resolved"], T).await;
    wait_states(&server, "total", "", &["firing", "resolved"], T).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_rule_ends_its_alerts_on_the_next_leadership() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let server = start(&db, &rules(SCOPED_RULES)).await;
    let p = Pipeline::new(&db).await;
    backlog(&db, &p, crm, 5).await;
    wait_states(&server, "total", "", &["firing"], T).await;
    server.stop().await;
    let only_backlog =
        "[[rules]]\nname = \"backlog\"\ncondition = \"backlog\"\nabove = 2\nsources = \"each\"\n";
    let server = start(&db, &rules(only_backlog)).await;
    let h = wait_states(&server, "total", "", &["firing", "resolved"], T).await;
    assert_eq!(h[1]["condition"], "rule_removed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_may_write_the_alert_tables_only_in_read_write_transactions() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let reader = ingestwatch_server::db::connect(&db.reader_url)
        .await
        .expect("reader");
    let insert = "insert into monitor.alert_transitions (rule, instance, condition, from_state, to_state,
                    threshold, unit, severity, at, idempotency_key)
                  values ('r', '', 'backlog', 'inactive', 'firing', 1, 'records', 'info', now(), 'k1')";
    let err = reader
        .batch_execute(insert)
        .await
        .expect_err("read-only by default");
    assert_eq!(err.code().map(|c| c.code()), Some("25006"));
    reader
        .batch_execute(&format!("begin read write; {insert}; commit"))
        .await
        .expect("alert tables are writable in a read-write transaction");
    for sql in [
        format!("insert into ingest.runs (source_id) values ({src})"),
        "update ingest.sources set name = 'x'".to_string(),
        "insert into monitor.events (kind, rows, summary) values ('x', 1, '{}')".to_string(),
        "delete from monitor.alert_transitions".to_string(),
    ] {
        let err = reader
            .batch_execute(&format!("begin read write; {sql}; commit"))
            .await
            .expect_err(&sql);
        assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{sql}: {err}");
        reader.batch_execute("rollback").await.expect("rollback");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_rules_file_fails_start_up_fast_naming_the_line() {
    let bad = rules_file("[[rules]]\nname = \"lag\"\ncondition = \"lag_p95\"\nabove = \"fast\"\n");
    // The library: before any I/O (the database URL is never used).
    let mut o = options();
    o.alerts = Some(bad.path().to_path_buf());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let t0 = Instant::now();
    let err = ingestwatch_server::server::run(
        listener,
        "postgres://nobody@127.0.0.1:1/none",
        o,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("line 4"), "{msg}");
    assert!(msg.contains("`above`") && msg.contains("\"fast\""), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(1));

    // The binary: exits non-zero at once with the message on stderr.
    let bad = rules_file(
        "[settings]\ninterval = \"1s\"\n\n[[rules]]\nname = \"x\"\ncondition = \"backlog\"\nabove = 5\nfor = \"soon\"\n",
    );
    let bin = common::bin::ingestwatch(); // built before the clock starts
    let t0 = Instant::now();
    let out = tokio::process::Command::new(bin)
        .args([
            "serve",
            "--auth-disabled",
            "--listen",
            "127.0.0.1:0",
            "--alerts",
        ])
        .arg(bad.path())
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .await
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        stderr.contains("line 8") && stderr.contains("`for`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&bad.path().display().to_string()),
        "names the file: {stderr}"
    );
}
