//! Chaos, bounded: a PostgreSQL restart mid-stream, a hundred kills of the
//! listener's backend under load, and a reconnect storm of 1,000 WebSocket
//! clients across a server restart. After each: nothing lost, nothing
//! duplicated, every KPI equal to SQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::Rng;
use serde_json::json;

async fn writes(p: &Pipeline, src: i64, n: i64) {
    for i in 0..n {
        p.varied_step(src, i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_stream_loses_and_duplicates_nothing() {
    let cluster = ingestwatch_sim::pgtemp::TempCluster::start()
        .await
        .expect("throwaway cluster");
    let owner = cluster.admin_url();
    let mut c = ingestwatch_server::db::connect(&owner)
        .await
        .expect("connect");
    ingestwatch_server::db::migrate::run(&mut c)
        .await
        .expect("migrate");
    let src: i64 = c
        .query_one(
            "insert into ingest.sources (name) values ('crm') returning id",
            &[],
        )
        .await
        .expect("source")
        .get(0);
    let reader = owner.replace("postgres://postgres@", "postgres://ingestwatch_reader@");
    let server =
        TestServer::start_at(&reader, options(), "127.0.0.1:0".parse().expect("addr")).await;
    let mut ws = server.ws().await;
    ws.send(json!({"op": "subscribe", "topics": ["events"], "since": 0}))
        .await;

    let p = Pipeline {
        client: ingestwatch_server::db::connect(&owner)
            .await
            .expect("pipeline"),
    };
    writes(&p, src, 20).await;
    cluster.restart().await.expect("restart PostgreSQL");
    // New connections after the restart; the listener reconnects on its own.
    let p = Pipeline {
        client: ingestwatch_server::db::connect(&owner)
            .await
            .expect("pipeline"),
    };
    writes(&p, src, 20).await;

    let c = ingestwatch_server::db::connect(&owner)
        .await
        .expect("connect");
    let all: Vec<i64> = c
        .query("select seq from monitor.events order by seq", &[])
        .await
        .expect("seqs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let got = ws
        .events_until(*all.last().expect("events"), Duration::from_secs(30))
        .await;
    assert_eq!(
        got, all,
        "the WS client (reconnected by nobody: the server kept its socket) got every event once"
    );
    let target = *all.last().expect("events");
    wait_for("caught up", Duration::from_secs(30), || async {
        server.kpis("1m").await["seq"].as_i64().unwrap_or(0) >= target
    })
    .await;
    for w in ["1m", "5m", "1h", "24h"] {
        assert_kpis_match_sql(&c, &server.kpis(w).await).await;
    }
    assert!(server.metric("ingestwatch_listener_reconnects_total").await >= 1.0);
    server.stop().await;
    cluster.stop().await.expect("stop cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_listener_kills_under_load() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let server = TestServer::start(&db).await;
    let start = db.max_seq().await;
    // A client that keeps reading (and would resume on a reconnect).
    let (until_tx, until_rx) = tokio::sync::watch::channel(0i64);
    let collector = tokio::spawn(storm_client(
        server.addr,
        server.token.clone(),
        start,
        until_rx,
    ));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let p = Pipeline::new(&db).await;
        let done = done.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                writes(&p, src, 1).await;
                i += 1;
            }
            i
        })
    };
    let killer = ingestwatch_server::db::connect(&db.url)
        .await
        .expect("killer");
    let mut killed = std::collections::HashSet::new();
    while killed.len() < 100 {
        let pids = kill_listener(&killer).await;
        let n = pids.len();
        killed.extend(pids);
        tokio::time::sleep(Duration::from_millis(if n > 0 { 30 } else { 5 })).await;
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let steps = writer.await.expect("writer");
    assert!(steps > 10, "the pipeline kept writing ({steps} steps)");
    let expected: Vec<i64> = db.seqs_after(start).await;
    until_tx
        .send(*expected.last().expect("events"))
        .expect("until");
    let got = tokio::time::timeout(Duration::from_secs(60), collector)
        .await
        .expect("collector finished")
        .expect("collector");
    assert_same_seqs(&got, &expected, "events after 100 listener kills");
    server.wait_caught_up(&db).await;
    for w in ["1m", "5m", "1h", "24h"] {
        assert_kpis_match_sql(&db.client, &server.kpis(w).await).await;
    }
    // The counter ticks when a reconnect starts; the last one may still be
    // under way when the stream has caught up.
    wait_for("a reconnect per kill", Duration::from_secs(30), || async {
        server.metric("ingestwatch_listener_reconnects_total").await >= killed.len() as f64
    })
    .await;
    server.stop().await;
}

/// One storm client: connects (retrying with jittered backoff), resumes from
/// its last seq, collects event seqs until `stop` has been reached.
async fn storm_client(
    addr: std::net::SocketAddr,
    token: String,
    since: i64,
    mut until: tokio::sync::watch::Receiver<i64>,
) -> Vec<i64> {
    let mut seqs: Vec<i64> = Vec::new();
    let mut attempt = 0u32;
    loop {
        let last = seqs.last().copied().unwrap_or(since);
        let target = *until.borrow();
        if target > 0 && last >= target {
            return seqs;
        }
        let url = format!("ws://{addr}/ws?access_token={token}");
        let Ok(mut ws) = Ws::connect_with(&url, None).await else {
            attempt += 1;
            let backoff = 50u64 * (1 << attempt.min(5));
            let jitter = rand::rng().random_range(0..=backoff);
            tokio::time::sleep(Duration::from_millis(backoff / 2 + jitter)).await;
            continue;
        };
        attempt = 0;
        ws.send(json!({"op": "subscribe", "topics": ["events"], "since": last}))
            .await;
        loop {
            // The stop point may be set after the last event arrived.
            let v = tokio::select! {
                v = ws.next(Duration::from_secs(60)) => v,
                _ = until.changed() => {
                    let target = *until.borrow();
                    if seqs.last().copied().unwrap_or(since) >= target {
                        return seqs;
                    }
                    continue;
                }
            };
            let Some(v) = v else { break };
            if v["type"] == "event" {
                seqs.push(v["seq"].as_i64().expect("seq"));
                let target = *until.borrow();
                if target > 0 && seqs.last().copied().unwrap_or(0) >= target {
                    return seqs;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_of_1000_clients_resumes_with_no_gap_and_no_duplicate() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let mut opts = options();
    opts.auth.max_connections_per_token = 2_000;
    let server = TestServer::start_with(&db, opts.clone()).await;
    let addr = server.addr;
    let start = db.max_seq().await;
    let (until_tx, until_rx) = tokio::sync::watch::channel(0i64);
    let mut clients = Vec::new();
    for _ in 0..1_000 {
        clients.push(tokio::spawn(storm_client(
            addr,
            server.token.clone(),
            start,
            until_rx.clone(),
        )));
    }
    wait_for(
        "1,000 clients connected",
        Duration::from_secs(60),
        || async { server.metric("ingestwatch_ws_clients").await >= 1_000.0 },
    )
    .await;
    let p = Pipeline::new(&db).await;
    writes(&p, src, 5).await;
    server.stop().await; // every client loses its socket at once
    writes(&p, src, 5).await;
    let server = TestServer::start_at(&db.reader_url, opts, addr).await;
    writes(&p, src, 5).await;
    let expected: Vec<i64> = db.seqs_after(start).await;
    until_tx
        .send(*expected.last().expect("events"))
        .expect("until");
    for (i, c) in clients.into_iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("client finished")
            .expect("client");
        assert_same_seqs(&got, &expected, &format!("storm client {i}"));
    }
    server.stop().await;
}
