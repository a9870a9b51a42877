//! Alert test helpers: servers with a rules file, waiting for transitions,
//! and a local webhook receiver (axum) that records what it is sent.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

use super::common::*;

/// A server with `rules` (TOML) written to a temp file kept alive alongside.
pub struct AlertServer {
    pub server: TestServer,
    pub rules: tempfile::NamedTempFile,
}

impl std::ops::Deref for AlertServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

pub fn rules_file(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), text).expect("write rules");
    f
}

pub async fn start(db: &TestDb, rules: &str) -> AlertServer {
    let file = rules_file(rules);
    let mut o = options();
    o.alerts = Some(file.path().to_path_buf());
    o.pool_size = 4;
    AlertServer {
        server: TestServer::start_with(db, o).await,
        rules: file,
    }
}

impl AlertServer {
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Transitions of `rule` (and `instance` when given), oldest first.
pub async fn history(server: &TestServer, rule: &str, instance: Option<&str>) -> Vec<Value> {
    let (status, body) = server
        .get(&format!("/api/alerts/history?rule={rule}&limit=500"))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut list: Vec<Value> = body["transitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| instance.is_none_or(|i| t["instance"] == i))
        .collect();
    list.reverse();
    list
}

pub fn states(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|t| t["state"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits until the instance's transitions are exactly `want` (to-states, oldest first).
pub async fn wait_states(
    server: &TestServer,
    rule: &str,
    instance: &str,
    want: &[&str],
    limit: Duration,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let h = history(server, rule, Some(instance)).await;
        let got = states(&h);
        if got == want {
            return h;
        }
        assert!(
            got.len() <= want.len() && want[..got.len()] == got[..],
            "rule {rule}/{instance:?}: transitions {got:?}, expected to reach {want:?}"
        );
        assert!(
            start.elapsed() < limit,
            "rule {rule}/{instance:?}: transitions {got:?} after {limit:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the (leader) server has run `n` more evaluation ticks.
pub async fn evaluations(server: &TestServer, n: f64) {
    let base = server.metric("ingestwatch_alert_evaluations_total").await;
    wait_for("evaluation ticks", Duration::from_secs(20), || async {
        server.metric("ingestwatch_alert_evaluations_total").await >= base + n
    })
    .await;
}

/// Milliseconds between two transitions' `at`.
pub fn ms_between(a: &Value, b: &Value) -> i64 {
    let t = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["at"].as_str().expect("at"))
            .expect("rfc3339")
            .timestamp_millis()
    };
    t(b) - t(a)
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Bytes,
    pub status: u16,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// How a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200.
    Ok,
    /// 503 always.
    Fail,
    /// 500 for the first N requests of each idempotency key, then 200.
    FailFirst(usize),
    /// Never answers.
    Hang,
}

#[derive(Clone)]
struct ReceiverState {
    mode: Arc<Mutex<Mode>>,
    log: Arc<Mutex<Vec<Received>>>,
}

/// A local webhook receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    log: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn hook(State(s): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let key = h("idempotency-key");
    let mode = *s.mode.lock().expect("mode");
    if mode == Mode::Hang {
        std::future::pending::<()>().await;
    }
    let mut log = s.log.lock().expect("log");
    let status = match mode {
        Mode::Ok => 200,
        Mode::Fail => 503,
        Mode::FailFirst(n) => {
            if log.iter().filter(|r| r.key == key).count() < n {
                500
            } else {
                200
            }
        }
        Mode::Hang => unreachable!("pending above"),
    };
    log.push(Received {
        key,
        timestamp: h("x-ingestwatch-timestamp"),
        signature: h("x-ingestwatch-signature"),
        body,
        status,
        at: Instant::now(),
    });
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = ReceiverState {
            mode: Arc::new(Mutex::new(mode)),
            log: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            mode: state.mode,
            log: state.log,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    pub fn log(&self) -> Vec<Received> {
        self.log.lock().expect("log").clone()
    }

    /// Requests answered 2xx, per idempotency key.
    pub fn accepted(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.log() {
            if (200..300).contains(&r.status) {
                *m.entry(r.key).or_insert(0) += 1;
            }
        }
        m
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Verifies `X-Ingestwatch-Signature` of a request with `secret`.
pub fn signature_ok(r: &Received, secret: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(hex) = r.signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(r.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    bytes.is_some_and(|b| mac.verify_slice(&b).is_ok())
}

pub const T: Duration = Duration::from_secs(20);

pub fn rules(body: &str) -> String {
    format!("[settings]\ninterval = \"100ms\"\nsync_interval = \"200ms\"\nleader_retry = \"200ms\"\n\n{body}")
}

pub async fn set_interval(db: &TestDb, name: &str, every: &str) {
    db.client
        .execute(
            "update ingest.sources set expected_interval = $2::text::interval where name = $1",
            &[&name, &every],
        )
        .await
        .expect("interval");
}

pub async fn backlog(db: &TestDb, p: &Pipeline, src: i64, n: i64) -> Vec<i64> {
    let _ = db;
    let run = p.run(src).await;
    p.records(run, src, n).await
}
