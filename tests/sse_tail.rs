//! The SSE stream (`/api/stream`): resume with `Last-Event-ID` gets exactly
//! the missed events (also through the outbox when the ring lost them), the
//! `errors` topic, bad parameters, a slow SSE client resynced without loss,
//! and scoped tokens (the `tail` subscriber: tail.rs).

mod common;
#[path = "common/stream.rs"]
mod stream_support;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use stream_support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_with_last_event_id_and_gets_exactly_the_missed_events() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let mut opts = options();
    opts.event_ring = 16; // the resume below must come from the outbox
    let server = TestServer::start_with(&db, opts).await;
    let p = Pipeline::new(&db).await;
    for i in 0..10 {
        step(&p, src, i, i % 4 == 3).await;
    }
    let mut sse = Sse::open(&server, "topics=events,kpis&since=0", None).await;
    let hello = sse.next(Duration::from_secs(5)).await.expect("hello");
    assert_eq!(hello.event, "hello");
    assert_eq!(hello.data["protocol"], 1);
    let mut others = Vec::new();
    let seen = sse.events_until(db.max_seq().await, &mut others).await;
    assert_eq!(seen, db.all_seqs().await, "since=0 replays everything once");
    // The KPI snapshot follows the catch-up; deltas carry no id.
    while !others.iter().any(|m| m.event == "snapshot") {
        others.push(sse.next(Duration::from_secs(5)).await.expect("snapshot"));
    }
    assert!(others.iter().all(|m| m.id.is_none()));
    let last = *seen.last().expect("events");
    drop(sse);

    // Missed while disconnected: more than the ring holds, with rollbacks (holes).
    for i in 10..40 {
        step(&p, src, i, i % 5 == 0).await;
    }
    // Last-Event-ID (what a reconnecting EventSource sends) wins over ?since.
    let mut sse = Sse::open(&server, "topics=events&since=0", Some(last)).await;
    let missed = seqs_where(&db, &format!("seq > {last}")).await;
    let got = sse
        .events_until(*missed.last().expect("missed"), &mut others)
        .await;
    assert_eq!(got, missed, "exactly the missed events");
    // And then live.
    step(&p, src, 99, false).await;
    let live = seqs_where(&db, &format!("seq > {}", missed.last().expect("m"))).await;
    assert_eq!(
        sse.events_until(*live.last().expect("live"), &mut others)
            .await,
        live
    );

    // The errors topic: the errors.* events only, same seqs.
    let mut errs = Sse::open(&server, "topics=errors&since=0", None).await;
    let want = seqs_where(&db, "kind like 'errors.%'").await;
    assert!(want.len() >= 10);
    assert_eq!(
        errs.events_until(*want.last().expect("errors"), &mut others)
            .await,
        want
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stream_requests_are_400() {
    let db = TestDb::new().await;
    let server = TestServer::start(&db).await;
    for (q, header, param) in [
        ("topics=nope", None, "topics"),
        ("topics=events,bogus", None, "topics"),
        ("since=-1", None, "since"),
        ("since=abc", None, "since"),
        ("since=1&since=2", None, "since"),
        ("topic=events", None, "topic"),
        ("topics=events", Some("x7"), "Last-Event-ID"),
    ] {
        let mut req = server
            .http
            .get(format!("http://{}/api/stream?{q}", server.addr))
            .bearer_auth(&server.token);
        if let Some(h) = header {
            req = req.header("Last-Event-ID", h);
        }
        let resp = req.send().await.expect("get");
        assert_eq!(resp.status(), 400, "{q}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], "invalid_parameter");
        let msg = body["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.starts_with(&format!("parameter `{param}`")),
            "{q}: {msg}"
        );
    }
    server.stop().await;
}

/// Reads an HTTP/1.1 chunked response body from a raw socket.
struct Chunked<R> {
    r: BufReader<R>,
}

impl<R: tokio::io::AsyncRead + Unpin> Chunked<R> {
    async fn head(&mut self) -> String {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).await.expect("head");
            if line == "\r\n" || line.is_empty() {
                return head;
            }
            head.push_str(&line);
        }
    }

    async fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut size = String::new();
        self.r.read_line(&mut size).await.ok()?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        let mut data = vec![0; n + 2];
        self.r.read_exact(&mut data).await.ok()?;
        data.truncate(n);
        (n > 0).then_some(data)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sse_client_is_resynced_and_loses_nothing() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let mut opts = options();
    opts.ws_queue = 4;
    let server = TestServer::start_with(&db, opts).await;
    let start = db.max_seq().await;

    // A client with a tiny receive buffer that stops reading after the head.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = sock.connect(server.addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "GET /api/stream?topics=events&since={start} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
                server.addr, server.token
            )
            .as_bytes(),
        )
        .await
        .expect("request");
    let mut body = Chunked {
        r: BufReader::new(stream),
    };
    let head = body.head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let writer = ingestwatch_server::db::connect(&db.url)
        .await
        .expect("writer");
    for round in 0..4 {
        writer
            .batch_execute(&format!(
                "do $$ begin for i in 1..5000 loop
                   insert into ingest.raw_records (source_id, payload)
                   values ({src}, jsonb_build_object('round', {round}, 'i', i, 'pad', repeat('x', 200)));
                 end loop; end $$"
            ))
            .await
            .expect("burst");
    }
    wait_for(
        "the slow client overflows",
        Duration::from_secs(30),
        || async { server.metric("ingestwatch_ws_resynced_total").await >= 1.0 },
    )
    .await;

    // Now read everything: a resync, then every event after `start` once.
    let want = seqs_where(&db, &format!("seq > {start}")).await;
    let upto = *want.last().expect("events");
    let (mut buf, mut seqs, mut resyncs) = (String::new(), Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seqs.last().copied().unwrap_or(0) < upto && Instant::now() < deadline {
        let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(10), body.chunk()).await
        else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        for m in parse_sse(&mut buf) {
            match m.event.as_str() {
                "event" => seqs.push(m.data["seq"].as_i64().expect("seq")),
                "resync" => {
                    resyncs += 1;
                    assert_eq!(
                        m.data["since"].as_i64(),
                        seqs.last().copied().or(Some(start))
                    );
                }
                "error" => panic!("stream ended: {}", m.data),
                _ => {}
            }
        }
    }
    assert!(resyncs >= 1, "told to resync");
    assert_eq!(seqs.len(), want.len(), "no gap, no duplicate");
    assert_eq!(seqs, want);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_needs_a_token_and_a_scoped_token_sees_only_its_sources() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp").await;
    let server = TestServer::start(&db).await;
    let resp = server
        .http
        .get(format!("http://{}/api/stream?topics=events", server.addr))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));

    let start = db.max_seq().await;
    let scoped = token("viewer", &["crm"], "1h");
    // EventSource passes the token in the query string.
    let mut sse = Sse::open_as(
        &server,
        &format!("topics=events&since={start}&access_token={scoped}"),
        None,
        "", // no header: the query token is used
    )
    .await;
    let p = Pipeline::new(&db).await;
    for i in 0..6 {
        step(&p, [crm, erp][i % 2], i as i64, false).await;
    }
    let want = seqs_where(
        &db,
        &format!("seq > {start} and summary->'sources' = jsonb_build_array({crm})"),
    )
    .await;
    assert!(!want.is_empty());
    let mut others = Vec::new();
    let got = sse
        .events_until(*want.last().expect("crm events"), &mut others)
        .await;
    assert_eq!(got, want, "only the events of crm");
    server.stop().await;
}
