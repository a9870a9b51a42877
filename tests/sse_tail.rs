//! The SSE stream (`/api/stream`) and the `ingestwatch tail` subscriber:
//! resume with `Last-Event-ID` gets exactly the missed events (also through
//! the outbox when the ring lost them), the `errors` topic, bad parameters,
//! a slow SSE client resynced without loss, and `tail` (the real binary)
//! printing every seq once across a server SIGKILL and restart on the same
//! port, and exiting non-zero on protocol and auth errors.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One SSE message.
#[derive(Debug, Clone)]
struct Msg {
    event: String,
    id: Option<String>,
    data: Value,
}

/// Parses complete SSE messages out of `buf`, leaving a partial one.
fn parse_sse(buf: &mut String) -> Vec<Msg> {
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
struct Sse {
    resp: reqwest::Response,
    buf: String,
    queue: std::collections::VecDeque<Msg>,
}

impl Sse {
    async fn open(server: &TestServer, query: &str, last_event_id: Option<i64>) -> Sse {
        Sse::open_as(server, query, last_event_id, &server.token).await
    }

    async fn open_as(
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

    async fn next(&mut self, limit: Duration) -> Option<Msg> {
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
    async fn events_until(&mut self, upto: i64, others: &mut Vec<Msg>) -> Vec<i64> {
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

async fn step(p: &Pipeline, src: i64, i: i64, rollback: bool) {
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

async fn seqs_where(db: &TestDb, cond: &str) -> Vec<i64> {
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

/// A server process (the real binary) on a fixed port.
struct ServerProc {
    child: tokio::process::Child,
}

impl ServerProc {
    async fn start(db: &TestDb, port: u16) -> ServerProc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!("iw-sse-tail-{port}.log")))
            .expect("log file");
        let child = tokio::process::Command::new(common::bin::ingestwatch())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", &db.reader_url)
            .env("INGESTWATCH_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn server");
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/readyz");
        wait_for("server process ready", Duration::from_secs(30), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        ServerProc { child }
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("kill server");
    }
}

/// A `tail` process whose stdout seqs and stderr are collected.
struct TailProc {
    child: tokio::process::Child,
    seqs: Arc<Mutex<Vec<i64>>>,
    /// Every stdout line that is not an event (snapshot, delta, resync).
    others: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl TailProc {
    fn spawn(args: &[&str]) -> TailProc {
        let mut child = tokio::process::Command::new(common::bin::ingestwatch())
            .arg("tail")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn tail");
        let seqs = Arc::new(Mutex::new(Vec::new()));
        let others = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let (s, o) = (seqs.clone(), others.clone());
        let out_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).expect("one JSON object per line");
                if v["type"] == "event" {
                    s.lock()
                        .expect("seqs")
                        .push(v["seq"].as_i64().expect("seq"));
                } else {
                    o.lock().expect("others").push(v);
                }
            }
        });
        let err = child.stderr.take().expect("stderr");
        let e = stderr.clone();
        let err_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut e = e.lock().expect("stderr");
                e.push_str(&line);
                e.push('\n');
            }
        });
        TailProc {
            child,
            seqs,
            others,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    fn seqs(&self) -> Vec<i64> {
        self.seqs.lock().expect("seqs").clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// Waits for the process to exit on its own and its output to be read;
    /// returns its exit code.
    async fn exit_code(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("tail exits")
            .expect("wait");
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        status.code()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_every_seq_once_across_server_kills_and_restarts() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let port = free_port();
    let mut server = ServerProc::start(&db, port).await;
    let start = db.max_seq().await;
    let url = format!("ws://127.0.0.1:{port}/ws");
    let since = start.to_string();
    let viewer = token("viewer", &[], "1h");
    let mut tail = TailProc::spawn(&[
        "--url",
        &url,
        "--topics",
        "events,errors",
        "--since",
        &since,
        "--format",
        "json",
        "--token",
        &viewer,
    ]);

    let writer = {
        let p = Pipeline::new(&db).await;
        tokio::spawn(async move {
            for i in 0..120i64 {
                step(&p, src, i, i % 9 == 4).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    for kill in 1..=2usize {
        wait_for("tail prints events", Duration::from_secs(30), || async {
            tail.seqs().len() >= kill * 20
        })
        .await;
        server.kill().await; // SIGKILL mid-stream; writes go on
        server = ServerProc::start(&db, port).await;
    }
    writer.await.expect("writer");
    let want = seqs_where(&db, &format!("seq > {start}")).await;
    let upto = *want.last().expect("events");
    wait_for("tail catches up", Duration::from_secs(30), || async {
        tail.seqs().last().copied().unwrap_or(0) >= upto
    })
    .await;
    let got = tail.seqs();
    let missing: Vec<i64> = want.iter().filter(|s| !got.contains(s)).copied().collect();
    let extra: Vec<i64> = got.iter().filter(|s| !want.contains(s)).copied().collect();
    assert_eq!(
        got,
        want,
        "every seq once, in order; missing {missing:?}, extra {extra:?}\n{}",
        tail.stderr()
    );
    assert!(
        tail.stderr().matches("reconnecting").count() >= 2,
        "{}",
        tail.stderr()
    );
    tail.child.kill().await.expect("kill tail");
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_exits_non_zero_on_protocol_and_auth_errors() {
    let db = TestDb::new().await;
    let server = TestServer::start(&db).await;

    // An error frame (unknown topic): exit 2 with the server's message.
    let url = format!("ws://{}/ws", server.addr);
    let viewer = token("viewer", &[], "1h");
    let mut t = TailProc::spawn(&["--url", &url, "--topics", "events,nope", "--token", &viewer]);
    assert_eq!(t.exit_code().await, Some(2));
    assert!(t.stderr().contains("unknown_topic"), "{}", t.stderr());

    // The real server refuses a bad token at the handshake (HTTP 401): exit 3.
    let mut t = TailProc::spawn(&["--url", &url, "--token", "not-a-jwt"]);
    assert_eq!(t.exit_code().await, Some(3));
    assert!(t.stderr().contains("401"), "{}", t.stderr());

    // Not a WebSocket endpoint: exit 2.
    let url = format!("ws://{}/nope", server.addr);
    let mut t = TailProc::spawn(&["--url", &url]);
    assert_eq!(t.exit_code().await, Some(2));
    assert!(t.stderr().contains("404"), "{}", t.stderr());
    server.stop().await;

    // Close code 4401 after the handshake: exit 3.
    let ws_srv = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = ws_srv.local_addr().expect("addr");
    tokio::spawn(async move {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        use tokio_tungstenite::tungstenite::Message;
        while let Ok((s, _)) = ws_srv.accept().await {
            if let Ok(mut ws) = tokio_tungstenite::accept_async(s).await {
                let frame = CloseFrame {
                    code: CloseCode::from(4401),
                    reason: "token expired".into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
                let _ = ws.close(None).await;
            }
        }
    });
    let url = format!("ws://{addr}/ws");
    let mut t = TailProc::spawn(&["--url", &url, "--token", "expired"]);
    assert_eq!(t.exit_code().await, Some(3));
    assert!(t.stderr().contains("4401"), "{}", t.stderr());

    // HTTP 401 at the handshake: exit 3.
    let http_srv = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = http_srv.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = http_srv.accept().await {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let url = format!("ws://{addr}/ws");
    let mut t = TailProc::spawn(&["--url", &url]);
    assert_eq!(t.exit_code().await, Some(3));
    assert!(t.stderr().contains("401"), "{}", t.stderr());
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

/// Resuming from a seq older than the oldest kept outbox row (issue 16, item
/// 4): the events in between were pruned, so WS, SSE and `tail` get an
/// explicit `resync` (`skipped: true`, the horizon, the current KPI figures)
/// before the events still kept, never a silent gap; a resume at or above
/// the horizon gets no such frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_past_the_outbox_retention_is_an_explicit_resync_on_ws_sse_and_tail() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let mut opts = options();
    opts.event_ring = 8; // resumes below go to the outbox
    let server = TestServer::start_with(&db, opts).await;
    let start = db.max_seq().await;
    let p = Pipeline::new(&db).await;
    let run = p.run(src).await;
    for _ in 0..40 {
        p.records(run, src, 1).await;
    }
    server.wait_caught_up(&db).await;
    // The retention job prunes the oldest half (as the schema owner).
    let cut = start + 20;
    db.client
        .execute("delete from monitor.events where seq <= $1", &[&cut])
        .await
        .expect("prune");
    let since = start + 5;
    let kept = db.seqs_after(since).await;
    let last = *kept.last().expect("events");
    assert!(kept.first().is_some_and(|&s| s > cut));
    let check = |r: &Value, what: &str| {
        assert_eq!(r["type"], "resync", "{what}: {r}");
        assert_eq!(r["reason"], "events_pruned", "{what}: {r}");
        assert_eq!(r["skipped"], true, "{what}: {r}");
        assert_eq!(r["since"].as_i64(), Some(since), "{what}: {r}");
        assert_eq!(r["pruned_upto"].as_i64(), Some(cut), "{what}: {r}");
        assert!(
            r["kpis"]["5m"]["total"]["received"].is_i64(),
            "{what}: KPI snapshot in {r}"
        );
    };

    // WebSocket: the resync comes before any event.
    let mut ws = server.ws().await;
    ws.next_of("hello", Duration::from_secs(5))
        .await
        .expect("hello");
    ws.send(serde_json::json!({"op": "subscribe", "topics": ["events"], "since": since}))
        .await;
    let mut resync = None;
    let mut seqs = Vec::new();
    while seqs.last().copied().unwrap_or(0) < last {
        let f = ws.next(Duration::from_secs(20)).await.expect("ws frame");
        match f["type"].as_str() {
            Some("resync") => resync = Some(f),
            Some("event") => {
                assert!(resync.is_some(), "an event before the resync: {f}");
                seqs.push(f["seq"].as_i64().expect("seq"));
            }
            _ => {}
        }
    }
    check(&resync.expect("ws resync"), "ws");
    assert_same_seqs(&seqs, &kept, "ws events after the resync");
    // At the horizon: nothing was skipped, no resync.
    let mut ws = server.ws().await;
    ws.next_of("hello", Duration::from_secs(5))
        .await
        .expect("hello");
    ws.send(serde_json::json!({"op": "subscribe", "topics": ["events"], "since": cut}))
        .await;
    let mut frames = Vec::new();
    while frames
        .last()
        .map_or(0, |f: &Value| f["seq"].as_i64().unwrap_or(0))
        < last
    {
        let f = ws.next(Duration::from_secs(20)).await.expect("ws frame");
        assert_ne!(f["type"], "resync", "resume at the horizon: {f}");
        if f["type"] == "event" {
            frames.push(f);
        }
    }

    // SSE (Last-Event-ID): `event: resync` first.
    let mut sse = Sse::open(&server, "topics=events", Some(since)).await;
    let mut others = Vec::new();
    let got = sse.events_until(last, &mut others).await;
    assert_same_seqs(&got, &kept, "sse events after the resync");
    let r = others
        .iter()
        .find(|m| m.event == "resync")
        .unwrap_or_else(|| panic!("sse resync in {others:?}"));
    check(&r.data, "sse");

    // tail: prints the resync (stdout) and warns (stderr), then the events.
    let url = format!("ws://{}/ws", server.addr);
    let since_arg = since.to_string();
    let mut tail = TailProc::spawn(&[
        "--url",
        &url,
        "--topics",
        "events",
        "--since",
        &since_arg,
        "--format",
        "json",
        "--token",
        &server.token,
    ]);
    wait_for(
        "tail prints the kept events",
        Duration::from_secs(30),
        || async { tail.seqs().last().copied().unwrap_or(0) >= last },
    )
    .await;
    assert_eq!(tail.seqs(), kept, "tail events");
    let printed = tail.others.lock().expect("others").clone();
    let r = printed
        .iter()
        .find(|v| v["type"] == "resync")
        .unwrap_or_else(|| panic!("tail printed no resync: {printed:?}"));
    check(r, "tail");
    assert!(
        tail.stderr().contains("may be missing"),
        "{}",
        tail.stderr()
    );
    tail.child.kill().await.expect("kill tail");
    assert!(server.metric("ingestwatch_resyncs_pruned_total").await >= 3.0);
    server.stop().await;
}
