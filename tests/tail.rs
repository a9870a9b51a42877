//! The `ingestwatch tail` subscriber (the real binary) against the real
//! server: it prints every seq once across a server SIGKILL and restart on
//! the same port, and exits non-zero on protocol and auth errors.

mod common;
#[path = "common/stream.rs"]
mod stream_support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use stream_support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
    /// Every stdout line that is not an event (snapshot, delta, resync).
    others: Arc<Mutex<Vec<Value>>>,
    child: tokio::process::Child,
    seqs: Arc<Mutex<Vec<i64>>>,
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
        let stderr = Arc::new(Mutex::new(String::new()));
        let others = Arc::new(Mutex::new(Vec::new()));
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
            others,
            child,
            seqs,
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
