//! The machine-readable protocol contract: `/asyncapi.json` serves
//! `docs/asyncapi.json`, the document validates with `@asyncapi/parser` (the
//! reference AsyncAPI parser, npm), every example in it matches its own
//! schema, and every frame a real WebSocket and SSE session exchanges with the
//! server — client operations included — validates against the message of
//! its `type` (or `op`). A frame the document does not describe fails.
#![allow(missing_docs)]

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use tools::{deps, root};

/// Reads frames into `seen` until `done(seen)` holds.
async fn read_until(
    ws: &mut Ws,
    seen: &mut Vec<Value>,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) {
    while !done(seen) {
        let f = ws
            .next(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("timed out waiting for {what}; frames so far: {seen:?}"));
        seen.push(f);
    }
}

/// Records a client frame with the frames seen, and returns it to send.
fn sent(frame: Value, seen: &mut Vec<Value>) -> Value {
    seen.push(frame.clone());
    frame
}

fn has(seen: &[Value], pred: impl Fn(&Value) -> bool) -> bool {
    seen.iter().any(pred)
}

/// One WebSocket session through every operation and the frames they cause.
async fn ws_frames(server: &TestServer, db: &TestDb, src: i64) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut ws = server.ws().await;
    read_until(&mut ws, &mut seen, "hello", |s| {
        has(s, |f| f["type"] == "hello")
    })
    .await;

    let sub = sent(
        json!({"op": "subscribe", "topics": ["events", "kpis", "alerts", "exports"], "since": db.max_seq().await}),
        &mut seen,
    );
    ws.send(sub).await;
    read_until(&mut ws, &mut seen, "the snapshots", |s| {
        has(s, |f| f["type"] == "subscribed")
            && has(s, |f| f["type"] == "snapshot" && f["topic"] == "kpis")
            && has(s, |f| f["type"] == "snapshot" && f["topic"] == "alerts")
    })
    .await;

    let p = Pipeline::new(db).await;
    for i in 0..6 {
        p.varied_step(src, i).await;
    }
    let last = db.max_seq().await;
    read_until(&mut ws, &mut seen, "events and a delta", |s| {
        has(s, |f| f["type"] == "event" && f["seq"] == last) && has(s, |f| f["type"] == "delta")
    })
    .await;

    let (status, job) = server
        .send(Method::POST, "/api/exports", Some(json!({"kind": "runs"})))
        .await;
    assert_eq!(status, 202, "export started: {job}");
    read_until(&mut ws, &mut seen, "the export's frames", |s| {
        has(s, |f| f["type"] == "export" && f["status"] == "finished")
    })
    .await;

    // A refused request (not recorded: the document rightly rejects it) for
    // the `error` frame it causes.
    ws.send(json!({"op": "subscribe", "topics": ["nope"]}))
        .await;
    for frame in [
        json!({"op": "ping", "id": "x"}),
        json!({"op": "auth", "token": token("operator", &[], "1h")}),
        json!({"op": "unsubscribe", "topics": ["kpis"]}),
    ] {
        let f = sent(frame, &mut seen);
        ws.send(f).await;
    }
    read_until(
        &mut ws,
        &mut seen,
        "pong, error, authenticated, unsubscribed",
        |s| {
            ["pong", "error", "authenticated", "unsubscribed"]
                .iter()
                .all(|t| has(s, |f| f["type"] == *t))
        },
    )
    .await;
    seen
}

/// The SSE stream's frames (each `data:` line is a frame) up to `last`.
async fn sse_frames(server: &TestServer, since: i64, last: i64) -> Vec<Value> {
    let mut r = server
        .http
        .get(format!(
            "http://{}/api/stream?topics=events,kpis&since={since}",
            server.addr
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status(), 200);
    let (mut buf, mut frames) = (String::new(), Vec::<Value>::new());
    while !(frames
        .iter()
        .any(|f| f["type"] == "event" && f["seq"] == last)
        && frames.iter().any(|f| f["type"] == "snapshot"))
    {
        let chunk = tokio::time::timeout(Duration::from_secs(20), r.chunk())
            .await
            .expect("SSE frames in time")
            .expect("read")
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(end) = buf.find('\n') {
            let line: String = buf.drain(..=end).collect();
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                frames.push(serde_json::from_str(data).expect("an SSE data line is JSON"));
            }
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_of_a_real_session_matches_the_asyncapi_document() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let server = TestServer::start(&db).await;

    // Served as shipped.
    let (status, served) = server.get("/asyncapi.json").await;
    assert_eq!(status, 200);
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/asyncapi.json")).expect("docs/asyncapi.json"),
    )
    .expect("docs/asyncapi.json is JSON");
    assert_eq!(served, shipped, "/asyncapi.json serves docs/asyncapi.json");

    let start = db.max_seq().await;
    let mut frames = ws_frames(&server, &db, src).await;
    frames.extend(sse_frames(&server, start, db.max_seq().await).await);
    let types: std::collections::BTreeSet<String> = frames
        .iter()
        .map(|f| {
            f["type"]
                .as_str()
                .or(f["op"].as_str())
                .unwrap_or("?")
                .to_string()
        })
        .collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("frames.jsonl");
    let lines: Vec<String> = frames.iter().map(Value::to_string).collect();
    std::fs::write(&path, lines.join("\n")).expect("write frames");
    let _ = deps();
    let out = std::process::Command::new("node")
        .arg(root().join("tests/contracts/validate.mjs"))
        .arg(root().join("docs/asyncapi.json"))
        .arg(&path)
        .output()
        .expect("run node");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the AsyncAPI document or a real frame does not validate:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(&format!("ok: {} frames", frames.len())),
        "every frame was checked: {report}"
    );
    for t in [
        "hello",
        "subscribe",
        "subscribed",
        "snapshot",
        "event",
        "delta",
        "export",
        "ping",
        "pong",
        "error",
        "auth",
        "authenticated",
        "unsubscribe",
        "unsubscribed",
    ] {
        assert!(types.contains(t), "the session exercised `{t}`: {types:?}");
    }
    server.stop().await;
}
