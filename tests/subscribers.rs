//! The subscriber examples in other languages (`examples/python`,
//! `examples/node`) against the real server: each authenticates, subscribes
//! to events and KPIs, and — through a forced disconnect (the server stops,
//! the pipeline keeps writing, the server comes back on the same address) —
//! must print every committed event exactly once, in seq order, and end with
//! the KPI figures the server reports.
#![allow(missing_docs)]

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tools::{deps, root};

/// A running example: its stdout lines as JSON values.
struct Example {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<Value>,
    events: Vec<i64>,
    connects: usize,
    received_24h: Option<f64>,
}

impl Example {
    fn start(lang: &str, server: &TestServer, since: i64) -> Example {
        let mut cmd = match lang {
            "python" => {
                let mut c = tokio::process::Command::new(deps());
                c.arg(root().join("examples/python/subscriber.py"));
                c
            }
            _ => {
                let mut c = tokio::process::Command::new("node");
                c.arg(root().join("examples/node/subscriber.mjs"));
                c
            }
        };
        let _ = deps(); // the node packages are installed by the same script
        cmd.env("INGESTWATCH_WS_URL", format!("ws://{}/ws", server.addr))
            .env("INGESTWATCH_TOKEN", &server.token)
            .env("INGESTWATCH_TOPICS", "events,kpis")
            .env("INGESTWATCH_SINCE", since.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the example");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = r.next_line().await {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("example printed non-JSON {line:?}: {e}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Example {
            child,
            lines,
            events: Vec::new(),
            connects: 0,
            received_24h: None,
        }
    }

    /// Reads lines until `done(self)` holds (or panics after `limit`).
    async fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&Example) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
                .unwrap_or_else(|| panic!("the example exited while waiting for {what}"));
            match line["type"].as_str() {
                Some("event") => self.events.push(line["seq"].as_i64().expect("seq")),
                Some("connected") => self.connects += 1,
                Some("kpis") => self.received_24h = line["received_24h"].as_f64(),
                other => panic!("unexpected line type {other:?}: {line}"),
            }
        }
    }
}

async fn through_a_forced_disconnect(lang: &str) {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let server = TestServer::start(&db).await;
    let start = db.max_seq().await;
    let mut ex = Example::start(lang, &server, start);
    ex.until("the first connection", Duration::from_secs(30), |e| {
        e.connects == 1
    })
    .await;

    let p = Pipeline::new(&db).await;
    for i in 0..10 {
        p.varied_step(src, i).await;
    }
    let seq = db.max_seq().await;
    ex.until("the live events", Duration::from_secs(30), |e| {
        e.events.last() == Some(&seq)
    })
    .await;

    // Forced disconnect: the server goes away; the pipeline keeps writing.
    let addr = server.addr;
    server.stop().await;
    for i in 10..20 {
        p.varied_step(src, i).await;
    }
    let server = TestServer::start_at(&db.reader_url, options(), addr).await;
    ex.until("the reconnection", Duration::from_secs(30), |e| {
        e.connects >= 2
    })
    .await;
    for i in 20..30 {
        p.varied_step(src, i).await;
    }
    server.wait_caught_up(&db).await;
    let seq = db.max_seq().await;
    ex.until("every event", Duration::from_secs(30), |e| {
        e.events.last() == Some(&seq)
    })
    .await;
    assert_same_seqs(
        &ex.events,
        &db.seqs_after(start).await,
        &format!("{lang} subscriber: every event once, in order"),
    );

    // Its KPI figures (snapshot + merge-patch deltas) end where the server's are.
    let want = server.kpis("24h").await["total"]["received"]
        .as_f64()
        .expect("received");
    ex.until("the KPI figures", Duration::from_secs(30), |e| {
        e.received_24h == Some(want)
    })
    .await;
    ex.child.kill().await.expect("stop the example");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_subscriber_sees_every_event_once_through_a_forced_disconnect() {
    through_a_forced_disconnect("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_subscriber_sees_every_event_once_through_a_forced_disconnect() {
    through_a_forced_disconnect("node").await;
}
