//! Scale-out: two replicas (two servers, each with its own LISTEN connection
//! and pool) on one database. They deliver the identical event stream (same
//! seqs, same frames) and, once both are caught up, identical KPIs for every
//! window (same `from`/`to` → same figures, and equal to SQL). A client that
//! loses its replica reconnects to the other and resumes with `since`: no
//! gap, no duplicate.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// One pipeline step: a run, 1–4 records, processed, the run finished; every
/// tenth step also a transaction that is rolled back (a hole in the seqs).
async fn step(p: &Pipeline, src: i64, i: i64) {
    p.varied_step(src, i).await;
    if i % 10 == 0 {
        p.client
            .batch_execute(&format!(
                "begin; insert into ingest.raw_records (source_id, payload) values ({src}, '{{}}'); rollback"
            ))
            .await
            .expect("rolled-back insert");
    }
}

/// Event frames (whole) after `since` until `upto`.
async fn frames_until(ws: &mut Ws, upto: i64) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    while out.last().and_then(|v| v["seq"].as_i64()).unwrap_or(0) < upto {
        let Some(v) = ws.next(Duration::from_secs(30)).await else {
            break;
        };
        if v["type"] == "event" {
            out.push(v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_identical_streams_and_kpis() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp").await;
    let a = TestServer::start(&db).await;
    let b = TestServer::start(&db).await;
    let start = db.max_seq().await;
    let mut ws_a = a.ws().await;
    let mut ws_b = b.ws().await;
    for ws in [&mut ws_a, &mut ws_b] {
        ws.send(json!({"op": "subscribe", "topics": ["events"], "since": start}))
            .await;
    }
    // Two writers at once: seqs commit out of order, and rollbacks leave holes.
    let (p1, p2) = (Pipeline::new(&db).await, Pipeline::new(&db).await);
    tokio::join!(
        async {
            for i in 0..30 {
                step(&p1, crm, i).await;
            }
        },
        async {
            for i in 0..30 {
                step(&p2, erp, i + 1).await;
            }
        }
    );
    let expected: Vec<i64> = db.seqs_after(start).await;
    let last = *expected.last().expect("events");
    let got_a = frames_until(&mut ws_a, last).await;
    let got_b = frames_until(&mut ws_b, last).await;
    let seqs = |f: &[Value]| -> Vec<i64> { f.iter().filter_map(|v| v["seq"].as_i64()).collect() };
    assert_same_seqs(&seqs(&got_a), &expected, "replica A");
    assert_same_seqs(&seqs(&got_b), &expected, "replica B");
    assert_eq!(got_a, got_b, "both replicas send the same event frames");

    a.wait_caught_up(&db).await;
    b.wait_caught_up(&db).await;
    for w in ["1m", "5m", "1h", "24h"] {
        // The two reads can straddle a bucket edge: retry until both state
        // the same interval, then the figures must be equal.
        let mut compared = false;
        for _ in 0..50 {
            let (ka, kb) = (a.kpis(w).await, b.kpis(w).await);
            if ka["from"] == kb["from"] && ka["to"] == kb["to"] {
                assert_eq!(ka, kb, "window {w}: replicas disagree");
                assert_kpis_match_sql(&db.client, &ka).await;
                compared = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            compared,
            "window {w}: never read the same interval from both"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_loses_its_replica_resumes_on_the_other() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let a = TestServer::start(&db).await;
    let b = TestServer::start(&db).await;
    let start = db.max_seq().await;
    let (addr_a, addr_b, token) = (a.addr, b.addr, a.token.clone());

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let p = Pipeline::new(&db).await;
        let done = done.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Acquire) {
                step(&p, src, i).await;
                i += 1;
            }
            i
        })
    };

    // The client reads from A, and on losing it, resumes on B with `since`.
    let mut seqs: Vec<i64> = Vec::new();
    let mut ws = Ws::connect_with(&format!("ws://{addr_a}/ws"), Some(&token))
        .await
        .expect("connect A");
    ws.send(json!({"op": "subscribe", "topics": ["events"], "since": start}))
        .await;
    while seqs.len() < 40 {
        let v = ws
            .next(Duration::from_secs(30))
            .await
            .expect("events from A");
        if v["type"] == "event" {
            seqs.push(v["seq"].as_i64().expect("seq"));
        }
    }
    a.stop().await; // replica A goes away mid-stream (close 1001)
                    // What A wrote before its close still counts; then the socket ends.
    while let Some(v) = ws.next(Duration::from_secs(10)).await {
        if v["type"] == "event" {
            seqs.push(v["seq"].as_i64().expect("seq"));
        }
    }
    let mut ws = Ws::connect_with(&format!("ws://{addr_b}/ws"), Some(&token))
        .await
        .expect("connect B");
    let since = seqs.last().copied().unwrap_or(start);
    ws.send(json!({"op": "subscribe", "topics": ["events"], "since": since}))
        .await;
    // Let the pipeline commit more after the failover before stopping it.
    let after_failover = db.max_seq().await;
    wait_for(
        "writes after the failover",
        Duration::from_secs(10),
        || async { db.max_seq().await >= after_failover + 20 },
    )
    .await;
    done.store(true, Ordering::Release);
    let steps = writer.await.expect("writer");
    assert!(steps > 10, "the pipeline kept writing ({steps} steps)");
    let expected: Vec<i64> = db.seqs_after(start).await;
    let last = *expected.last().expect("events");
    seqs.extend(ws.events_until(last, Duration::from_secs(30)).await);
    assert_same_seqs(&seqs, &expected, "events across the failover");
    b.wait_caught_up(&db).await;
    for w in ["1m", "5m", "1h", "24h"] {
        assert_kpis_match_sql(&db.client, &b.kpis(w).await).await;
    }
    b.stop().await;
}
