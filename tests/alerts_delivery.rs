//! Webhook delivery and replicas against a real PostgreSQL, the real server
//! and local receivers: retries until success then never again, with a
//! valid signature; a hanging receiver delays neither evaluation nor other
//! receivers; two replicas show the same alerts and deliver each transition
//! once, also when the leader stops mid-way.

#[path = "common/alerts.rs"]
mod alerts_support;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use alerts_support::*;
use common::*;

const T: Duration = Duration::from_secs(30);
const SECRET: &str = "webhook-secret-123";

fn rules(receivers: &str) -> String {
    format!(
        r#"[settings]
interval = "100ms"
sync_interval = "200ms"
leader_retry = "200ms"

{receivers}

[[rules]]
name = "backlog"
condition = "backlog"
above = 2
sources = "each"
severity = "critical"
"#
    )
}

fn receiver(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[receivers]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nbackoff = \"100ms\"\nmax_backoff = \"400ms\"\n{extra}\n"
    )
}

async fn pending_ids(db: &TestDb, src: i64) -> Vec<i64> {
    db.client
        .query(
            "select id from ingest.raw_records where source_id = $1 and status = 'pending'",
            &[&src],
        )
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Makes `src` fire (3 pending) or resolve (none pending).
async fn fire(p: &Pipeline, src: i64) {
    let run = p.run(src).await;
    p.records(run, src, 3).await;
}

async fn resolve(db: &TestDb, p: &Pipeline, src: i64) {
    let ids = pending_ids(db, src).await;
    p.process(&ids, "normalized", 1).await;
}

/// Idempotency keys of transitions that have a delivery row.
async fn delivered_keys(db: &TestDb) -> (BTreeSet<String>, i64) {
    let rows = db
        .client
        .query(
            "select idempotency_key, delivered_at is not null from monitor.alert_deliveries",
            &[],
        )
        .await
        .expect("deliveries");
    let keys = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let undelivered = rows.iter().filter(|r| !r.get::<_, bool>(1)).count() as i64;
    (keys, undelivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_the_transition_once_more_then_never_again() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let hook = Receiver::start(Mode::FailFirst(2)).await;
    let slack = Receiver::start(Mode::Ok).await;
    let text = rules(&format!(
        "{}{}",
        receiver("hook", &hook.url(), ""),
        receiver("chat", &slack.url(), "format = \"slack\"")
    ));
    let server = start(&db, &text).await;
    let p = Pipeline::new(&db).await;
    fire(&p, src).await;
    let h = wait_states(&server, "backlog", "crm", &["firing"], T).await;
    let key = h[0]["idempotency_key"].as_str().expect("key").to_string();
    wait_for("delivered after two failures", T, || async {
        hook.accepted().get(&key) == Some(&1)
    })
    .await;
    // Long enough for several more backoff periods: counted evaluation ticks.
    evaluations(&server, 20.0).await;
    let log: Vec<Received> = hook.log().into_iter().filter(|r| r.key == key).collect();
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [500, 500, 200],
        "two failures, one success, nothing after"
    );
    for r in &log {
        assert!(signature_ok(r, SECRET), "valid signature on every attempt");
        assert_eq!(r.body, log[0].body, "the same body every attempt");
    }
    let gap1 = log[1].at.duration_since(log[0].at);
    let gap2 = log[2].at.duration_since(log[1].at);
    assert!(
        gap1 >= Duration::from_millis(80) && gap2 >= Duration::from_millis(160),
        "backoff {gap1:?} {gap2:?}"
    );
    let body = log[2].json();
    assert_eq!(body["state"], "firing");
    assert_eq!(body["rule"], "backlog");
    assert_eq!(body["source"], "crm");
    assert_eq!(body["value"], 3.0);
    assert_eq!(body["idempotency_key"], key.as_str());
    let mut tampered = log[2].clone();
    tampered.body = axum::body::Bytes::from(log[2].body.to_vec().repeat(2));
    assert!(!signature_ok(&tampered, SECRET));
    let row = db
        .client
        .query_one(
            "select attempts, last_status, delivered_at is not null from monitor.alert_deliveries
              where receiver = 'hook' and idempotency_key = $1",
            &[&key],
        )
        .await
        .expect("delivery row");
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, Option<i32>>(1),
            row.get::<_, bool>(2)
        ),
        (3, Some(200), true)
    );
    // The Slack-format receiver got a Slack message for the same transition.
    wait_for("slack message", T, || async {
        slack.accepted().get(&key) == Some(&1)
    })
    .await;
    let s = slack.log()[0].json();
    assert!(
        s["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("[FIRING] backlog on crm"),
        "{s}"
    );
    // Resolution is delivered too, in order.
    resolve(&db, &p, src).await;
    let h = wait_states(&server, "backlog", "crm", &["firing", "resolved"], T).await;
    let rkey = h[1]["idempotency_key"].as_str().expect("key").to_string();
    wait_for("resolved delivered", T, || async {
        hook.accepted().get(&rkey) == Some(&1)
    })
    .await;
    assert_eq!(
        server.metric("ingestwatch_webhook_deliveries_total").await,
        4.0
    );
    assert!(server.metric("ingestwatch_webhook_failures_total").await >= 4.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_delays_neither_evaluation_nor_other_receivers() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let hang = Receiver::start(Mode::Hang).await;
    let ok = Receiver::start(Mode::Ok).await;
    let text = rules(&format!(
        "{}{}",
        receiver("hang", &hang.url(), "timeout = \"30s\""),
        receiver("ok", &ok.url(), "")
    ));
    let server = start(&db, &text).await;
    let p = Pipeline::new(&db).await;
    let mut latencies = Vec::new();
    let mut want = Vec::new();
    for round in 0..3 {
        for (kind, state) in [(0, "firing"), (1, "resolved")] {
            let t0 = Instant::now();
            if kind == 0 {
                fire(&p, src).await;
            } else {
                resolve(&db, &p, src).await;
            }
            want.push(state);
            let h = wait_states(&server, "backlog", "crm", &want, T).await;
            let recorded = t0.elapsed();
            let key = h.last().expect("last")["idempotency_key"]
                .as_str()
                .expect("key")
                .to_string();
            wait_for("the other receiver got it", T, || async {
                ok.accepted().contains_key(&key)
            })
            .await;
            let delivered = t0.elapsed();
            latencies.push((recorded, delivered));
            assert!(
                recorded < Duration::from_secs(2),
                "round {round} {state}: recorded after {recorded:?}"
            );
            assert!(
                delivered < Duration::from_secs(3),
                "round {round} {state}: delivered after {delivered:?}"
            );
        }
    }
    eprintln!("commit -> recorded / -> delivered to the healthy receiver, while another hangs: {latencies:?}");
    assert!(hang.log().is_empty(), "the hanging receiver never answered");
    assert_eq!(ok.accepted().len(), 6);
    server.stop().await;
}

async fn leader_of(a: &TestServer, b: &TestServer) -> Option<usize> {
    let la = a.metric("ingestwatch_alerts_leader").await;
    let lb = b.metric("ingestwatch_alerts_leader").await;
    match (la, lb) {
        (x, y) if x == 1.0 && y == 0.0 => Some(0),
        (x, y) if x == 0.0 && y == 1.0 => Some(1),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_show_the_same_alerts_and_deliver_each_transition_once_across_a_failover() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp").await;
    let hook = Receiver::start(Mode::Ok).await;
    let text = rules(&receiver("hook", &hook.url(), "max_attempts = 100"));
    let a = start(&db, &text).await;
    wait_for("a leads", T, || async {
        a.metric("ingestwatch_alerts_leader").await == 1.0
    })
    .await;
    let b = start(&db, &text).await;
    wait_for("exactly one leader", T, || async {
        leader_of(&a, &b).await == Some(0)
    })
    .await;

    let p = Pipeline::new(&db).await;
    // Delivered normally while a leads.
    fire(&p, crm).await;
    wait_states(&a, "backlog", "crm", &["firing"], T).await;
    wait_for("delivered", T, || async { hook.accepted().len() == 1 }).await;
    // The receiver fails now: the next transitions wait in a's retry loop.
    hook.set(Mode::Fail);
    resolve(&db, &p, crm).await;
    fire(&p, erp).await;
    wait_states(&a, "backlog", "crm", &["firing", "resolved"], T).await;
    wait_states(&a, "backlog", "erp", &["firing"], T).await;
    wait_for("a retrying", T, || async {
        hook.log().iter().filter(|r| r.status == 503).count() >= 2
    })
    .await;
    // Both replicas show the same thing.
    wait_for("b shows the same alerts", T, || async {
        let (_, x) = a.get("/api/alerts").await;
        let (_, y) = b.get("/api/alerts").await;
        x == y && x["alerts"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    let (_, ha) = a.get("/api/alerts/history").await;
    let (_, hb) = b.get("/api/alerts/history").await;
    assert_eq!(ha, hb);

    // The leader stops mid-way: b takes over and resumes the deliveries.
    let t0 = Instant::now();
    a.stop().await;
    wait_for("b leads", T, || async {
        b.metric("ingestwatch_alerts_leader").await == 1.0
    })
    .await;
    let takeover = t0.elapsed();
    hook.set(Mode::Ok);
    // Transitions after the failover are evaluated and delivered by b.
    resolve(&db, &p, erp).await;
    fire(&p, crm).await;
    wait_states(&b, "backlog", "erp", &["firing", "resolved"], T).await;
    wait_states(&b, "backlog", "crm", &["firing", "resolved", "firing"], T).await;
    wait_for("every delivery done", T, || async {
        delivered_keys(&db).await.1 == 0
    })
    .await;
    let (keys, _) = delivered_keys(&db).await;
    assert_eq!(
        keys.len(),
        5,
        "five transitions: crm firing/resolved/firing, erp firing/resolved"
    );
    let accepted = hook.accepted();
    assert_eq!(
        accepted.keys().cloned().collect::<BTreeSet<_>>(),
        keys,
        "every transition delivered"
    );
    assert!(
        accepted.values().all(|&n| n == 1),
        "each exactly once: {accepted:?}"
    );
    let (_, hist) = b.get("/api/alerts/history").await;
    assert_eq!(
        hist["transitions"].as_array().map(Vec::len),
        Some(5),
        "no transition recorded twice"
    );
    eprintln!("failover: b became leader {takeover:?} after a stopped");
    assert!(
        takeover < Duration::from_secs(5),
        "takeover took {takeover:?}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_session_is_killed_hands_over() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let hook = Receiver::start(Mode::Ok).await;
    let text = rules(&receiver("hook", &hook.url(), ""));
    let a = start(&db, &text).await;
    wait_for("a leads", T, || async {
        a.metric("ingestwatch_alerts_leader").await == 1.0
    })
    .await;
    let b = start(&db, &text).await;
    wait_for("one leader", T, || async {
        leader_of(&a, &b).await.is_some()
    })
    .await;
    // Kill every alerts session: whoever leads loses the lock with its session.
    let killed: Vec<i32> = db
        .client
        .query(
            "select pg_terminate_backend(pid)::int from pg_stat_activity
              where application_name = $1 and datname = current_database()",
            &[&ingestwatch_server::alerts::APPLICATION_NAME],
        )
        .await
        .expect("terminate")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(killed.len(), 2);
    wait_for("a leader again", T, || async {
        leader_of(&a, &b).await.is_some()
    })
    .await;
    let p = Pipeline::new(&db).await;
    fire(&p, crm).await;
    wait_states(&b, "backlog", "crm", &["firing"], T).await;
    wait_for("delivered once", T, || async {
        hook.accepted().values().sum::<usize>() == 1
    })
    .await;
    evaluations(
        if leader_of(&a, &b).await == Some(0) {
            &a
        } else {
            &b
        },
        5.0,
    )
    .await;
    assert_eq!(hook.accepted().values().sum::<usize>(), 1);
    assert_eq!(history(&a, "backlog", None).await.len(), 1);
    a.stop().await;
    b.stop().await;
}
