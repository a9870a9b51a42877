//! Stream test helpers shared by the SSE and `tail` tests: a pipeline step
//! committed or rolled back, the event seqs SQL says were published, and an
//! SSE reader (`Sse`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::*;

pub async fn step(p: &Pipeline, src: i64, i: i64, rollback: bool) {
    p.client.batch_execute("begin").await.expect("begin");
    let run = p.run(src).await;
    let ids = p.records(run, src, 1 + i % 3).await;
    p.process(&ids, "normalized", 10 + i).await;
    if i % 2 == 0 {
        p.error(run, src, ids.first().copied(), "error", "E_X")
            .await;
    }
    p.finish_run(run, "succeeded").await;
    p.client
        .batch_execute(if rollback { "rollback" } else { "commit" })
        .await
        .expect("end");
}

pub async fn seqs_where(db: &TestDb, cond: &str) -> Vec<i64> {
    db.client
        .query(
            &format!("select seq from monitor.events where {cond} order by seq"),
            &[],
        )
        .await
        .expect("seqs")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// One SSE message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// Parses complete SSE messages out of `buf`, leaving a partial one.
pub fn parse_sse(buf: &mut String) -> Vec<Msg> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = value.to_string(),
                "id" => id = Some(value.to_string()),
                "data" => data.push_str(value),
                _ => {} // comments (keep-alive), retry
            }
        }
        if !data.is_empty() {
            out.push(Msg {
                event,
                id,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            });
        }
    }
    out
}

/// An SSE subscriber over reqwest.
pub struct Sse {
    pub resp: reqwest::Response,
    pub buf: String,
    pub queue: std::collections::VecDeque<Msg>,
}

impl Sse {
    pub async fn open(server: &TestServer, query: &str, last_event_id: Option<i64>) -> Sse {
        Sse::open_as(server, query, last_event_id, &server.token).await
    }

    pub async fn open_as(
        server: &TestServer,
        query: &str,
        last_event_id: Option<i64>,
        token: &str,
    ) -> Sse {
        let mut req = server
            .http
            .get(format!("http://{}/api/stream?{query}", server.addr));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.expect("sse");
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse {
            resp,
            buf: String::new(),
            queue: Default::default(),
        }
    }

    pub async fn next(&mut self, limit: Duration) -> Option<Msg> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Some(m);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
            self.queue.extend(parse_sse(&mut self.buf));
        }
    }

    /// Event seqs (checking `id` = `data.seq`) until `upto`; other messages are kept.
    pub async fn events_until(&mut self, upto: i64, others: &mut Vec<Msg>) -> Vec<i64> {
        let mut seqs = Vec::new();
        while seqs.last().copied().unwrap_or(i64::MIN) < upto {
            let Some(m) = self.next(Duration::from_secs(20)).await else {
                break;
            };
            if m.event == "event" {
                let seq = m.data["seq"].as_i64().expect("seq");
                assert_eq!(m.id.as_deref(), Some(seq.to_string().as_str()));
                seqs.push(seq);
            } else {
                others.push(m);
            }
        }
        seqs
    }
}
