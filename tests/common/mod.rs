//! The one test harness: a PostgreSQL to talk to (DATABASE_URL, else
//! 127.0.0.1:5432, else a throwaway cluster from the installed binaries), a
//! fresh database per test (NOTIFY is database-wide), the real server on a
//! real port, pipeline-row builders, SQL truth for KPIs, and a WS client.
#![allow(dead_code, missing_docs)]

pub mod bin;
pub mod view;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use ingestwatch_server::config::ServerOptions;
use ingestwatch_sim::pgtemp::TempCluster;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

static ADMIN: OnceLock<String> = OnceLock::new();
static CLUSTER: OnceLock<TempCluster> = OnceLock::new();

/// Waits for `cond` (polled every 20 ms) for at most `limit`; panics with `what`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A URL of a role that may create databases.
pub fn admin_url() -> String {
    ADMIN
        .get_or_init(|| {
            if let Ok(u) = std::env::var("DATABASE_URL") {
                return u;
            }
            let local = "postgres://postgres@127.0.0.1:5432/postgres".to_string();
            let reachable = std::thread::spawn({
                let local = local.clone();
                move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        ingestwatch_server::db::connect(&local)
                            .await
                            .ok()
                            .map(|_| ())
                    })
                }
            })
            .join()
            .ok()
            .flatten()
            .is_some();
            if reachable {
                return local;
            }
            let cluster = std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(TempCluster::start())
                    .expect("starting a throwaway PostgreSQL")
            })
            .join()
            .expect("cluster thread");
            let url = cluster.admin_url();
            let _ = CLUSTER.set(cluster);
            url
        })
        .clone()
}

fn with_db(url: &str, db: &str, user: Option<&str>) -> String {
    let mut cfg: tokio_postgres::Config = url.parse().expect("admin url");
    cfg.dbname(db);
    if let Some(u) = user {
        cfg.user(u);
        cfg.password("");
    }
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "127.0.0.1".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().unwrap_or("postgres").to_string();
    let pw = cfg
        .get_password()
        .filter(|p| !p.is_empty())
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    format!("postgres://{user}{pw}@{host}:{port}/{db}")
}

/// One test's own database, migrated. Dropped (forcefully) at the end.
pub struct TestDb {
    pub name: String,
    /// Owner URL: the "pipeline" writes with it.
    pub url: String,
    /// Read-only role URL: the server connects with it.
    pub reader_url: String,
    pub client: tokio_postgres::Client,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = admin_url();
        let name = format!("iw_test_{}_{}", std::process::id(), rand::random::<u32>());
        let c = ingestwatch_server::db::connect(&admin)
            .await
            .expect("admin connection");
        c.batch_execute(&format!("create database {name}"))
            .await
            .expect("create database");
        let url = with_db(&admin, &name, None);
        let mut client = ingestwatch_server::db::connect(&url)
            .await
            .expect("test db connection");
        ingestwatch_server::db::migrate::run(&mut client)
            .await
            .expect("migrations");
        let reader = with_db(&admin, &name, Some("ingestwatch_reader"));
        // The suite exercises the server as the read-only role it runs as in
        // production: a cluster where that role cannot log in fails loudly.
        if let Err(e) = ingestwatch_server::db::connect(&reader).await {
            panic!(
                "the reader role ingestwatch_reader cannot log in to {name} ({e}); \
                 the tests need a PostgreSQL that lets it in (trust auth for local roles)"
            );
        }
        let reader_url = reader;
        TestDb {
            name,
            url,
            reader_url,
            client,
        }
    }

    pub async fn max_seq(&self) -> i64 {
        self.client
            .query_one("select coalesce(max(seq), 0) from monitor.events", &[])
            .await
            .expect("max seq")
            .get(0)
    }

    pub async fn all_seqs(&self) -> Vec<i64> {
        self.client
            .query("select seq from monitor.events order by seq", &[])
            .await
            .expect("seqs")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Committed seqs above `start`, in order (what a subscriber from `start` must get).
    pub async fn seqs_after(&self, start: i64) -> Vec<i64> {
        self.client
            .query(
                "select seq from monitor.events where seq > $1 order by seq",
                &[&start],
            )
            .await
            .expect("seqs")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub async fn source(&self, name: &str) -> i64 {
        self.client
            .query_one(
                "insert into ingest.sources (name, kind, expected_interval) values ($1, 'api', '1 minute')
                 on conflict (name) do update set name = excluded.name returning id",
                &[&name],
            )
            .await
            .expect("source")
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let c = ingestwatch_server::db::connect(&admin).await.ok()?;
                c.batch_execute(&format!("drop database if exists {name} with (force)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A connection writing like a pipeline does.
pub struct Pipeline {
    pub client: tokio_postgres::Client,
}

impl Pipeline {
    pub async fn new(db: &TestDb) -> Pipeline {
        Pipeline {
            client: ingestwatch_server::db::connect(&db.url)
                .await
                .expect("pipeline connection"),
        }
    }

    pub async fn run(&self, source: i64) -> i64 {
        self.client
            .query_one(
                "insert into ingest.runs (source_id) values ($1) returning id",
                &[&source],
            )
            .await
            .expect("run")
            .get(0)
    }

    pub async fn finish_run(&self, run: i64, status: &str) {
        self.client
            .execute(
                "update ingest.runs set status = $2, finished_at = now() where id = $1",
                &[&run, &status],
            )
            .await
            .expect("finish run");
    }

    /// Inserts `n` pending records; returns their ids.
    pub async fn records(&self, run: i64, source: i64, n: i64) -> Vec<i64> {
        self.client
            .query(
                "insert into ingest.raw_records (run_id, source_id, external_id, payload)
                 select $1, $2, 'ext-' || g, jsonb_build_object('title', 'Meeting ' || g, 'n', g)
                   from generate_series(1::bigint, $3) g returning id",
                &[&run, &source, &n],
            )
            .await
            .expect("records")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Marks records processed with a lag of `lag_ms`.
    pub async fn process(&self, ids: &[i64], status: &str, lag_ms: i64) {
        self.client
            .execute(
                "update ingest.raw_records set status = $2,
                        processed_at = received_at + make_interval(secs => $3::float8 / 1000)
                  where id = any($1)",
                &[&ids, &status, &(lag_ms as f64)],
            )
            .await
            .expect("process");
    }

    pub async fn error(
        &self,
        run: i64,
        source: i64,
        record: Option<i64>,
        severity: &str,
        code: &str,
    ) {
        self.client
            .execute(
                "insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message, details)
                 values ($1, $2, $3, $4, 'validate', $5, 'field missing', '{\"field\":\"start\"}')",
                &[&run, &record, &source, &severity, &code],
            )
            .await
            .expect("error row");
    }
}

impl Pipeline {
    /// One pending record with a payload given as JSON text; returns its id.
    pub async fn record_with(
        &self,
        run: i64,
        source: i64,
        external_id: Option<&str>,
        payload_json: &str,
    ) -> i64 {
        self.client
            .query_one(
                "insert into ingest.raw_records (run_id, source_id, external_id, payload)
                 values ($1, $2, $3, $4::text::jsonb) returning id",
                &[&run, &source, &external_id, &payload_json],
            )
            .await
            .expect("record")
            .get(0)
    }

    /// One error-log row with every field chosen; returns its id.
    #[allow(clippy::too_many_arguments)]
    pub async fn error_with(
        &self,
        run: Option<i64>,
        source: i64,
        record: Option<i64>,
        severity: &str,
        stage: &str,
        code: &str,
        message: &str,
        details_json: Option<&str>,
    ) -> i64 {
        self.client
            .query_one(
                "insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message, details)
                 values ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb) returning id",
                &[&run, &record, &source, &severity, &stage, &code, &message, &details_json],
            )
            .await
            .expect("error row")
            .get(0)
    }

    /// The meeting normalized from `record`; returns its id.
    pub async fn meeting(&self, record: i64, source: i64, title: &str, attendees: i32) -> i64 {
        self.client
            .query_one(
                "insert into ingest.meetings (raw_record_id, source_id, title, starts_at, ends_at, organizer, attendee_count)
                 values ($1, $2, $3, now() + interval '1 day', now() + interval '1 day 1 hour', 'Zoë', $4) returning id",
                &[&record, &source, &title, &attendees],
            )
            .await
            .expect("meeting")
            .get(0)
    }
}

/// KPI figures computed by SQL over the base tables, per the definitions in
/// docs/data-model.md, for `[from, to)`; keyed by source name plus "total".
pub async fn sql_truth(
    c: &tokio_postgres::Client,
    from: &str,
    to: &str,
) -> BTreeMap<String, Value> {
    let sql = "
      with s as (select id, name from ingest.sources union all select null, 'total'),
      r as (select * from ingest.raw_records), b as (select $1::text::timestamptz f, $2::text::timestamptz t)
      select s.name,
        (select count(*) from r, b where (s.id is null or r.source_id = s.id) and received_at >= f and received_at < t),
        (select count(*) from r, b where (s.id is null or r.source_id = s.id) and status = 'normalized' and processed_at >= f and processed_at < t),
        (select count(*) from r, b where (s.id is null or r.source_id = s.id) and status = 'rejected' and processed_at >= f and processed_at < t),
        (select count(*) from ingest.errors e, b where (s.id is null or e.source_id = s.id) and severity = 'error' and occurred_at >= f and occurred_at < t),
        (select count(*) from ingest.errors e, b where (s.id is null or e.source_id = s.id) and severity = 'warning' and occurred_at >= f and occurred_at < t),
        (select count(*) from ingest.runs u, b where (s.id is null or u.source_id = s.id) and started_at >= f and started_at < t),
        (select count(*) from ingest.runs u, b where (s.id is null or u.source_id = s.id) and status = 'succeeded' and finished_at >= f and finished_at < t),
        (select count(*) from ingest.runs u, b where (s.id is null or u.source_id = s.id) and status = 'failed' and finished_at >= f and finished_at < t),
        (select count(*) from ingest.runs u where (s.id is null or u.source_id = s.id) and status = 'running'),
        (select count(*) from r where (s.id is null or r.source_id = s.id) and status = 'pending'),
        (select percentile_disc(array[0.5, 0.95, 0.99]) within group (order by greatest(0, round(extract(epoch from processed_at - received_at) * 1000))::float8)
           from r, b where (s.id is null or r.source_id = s.id) and status in ('normalized', 'rejected') and processed_at >= f and processed_at < t),
        (select percentile_disc(array[0.5, 0.95, 0.99]) within group (order by greatest(0, round(extract(epoch from finished_at - started_at) * 1000))::float8)
           from ingest.runs u, b where (s.id is null or u.source_id = s.id) and status in ('succeeded', 'failed', 'partial') and finished_at >= f and finished_at < t),
        (select count(*) from ingest.runs u, b where (s.id is null or u.source_id = s.id) and status = 'partial' and finished_at >= f and finished_at < t),
        (select coalesce(jsonb_agg(jsonb_build_object('code', code, 'count', n) order by n desc, code), '[]')::text
           from (select code, count(*) as n from ingest.errors e, b
                  where (s.id is null or e.source_id = s.id) and occurred_at >= f and occurred_at < t
                  group by code order by n desc, code limit 5) c),
        (select floor(extract(epoch from max(received_at)) * 1000)::bigint from r where s.id is null or r.source_id = s.id)
      from s";
    let rows = c.query(sql, &[&from, &to]).await.expect("sql truth");
    rows.iter()
        .map(|r| {
            let lag: Option<Vec<f64>> = r.get(11);
            let p = |i: usize| lag.as_ref().map(|v| v[i]);
            let dur: Option<Vec<f64>> = r.get(12);
            let d = |i: usize| dur.as_ref().map(|v| v[i]);
            (
                r.get::<_, String>(0),
                json!({
                    "received": r.get::<_, i64>(1), "normalized": r.get::<_, i64>(2), "rejected": r.get::<_, i64>(3),
                    "errors": r.get::<_, i64>(4), "warnings": r.get::<_, i64>(5), "runs_started": r.get::<_, i64>(6),
                    "runs_succeeded": r.get::<_, i64>(7), "runs_failed": r.get::<_, i64>(8),
                    "runs_running": r.get::<_, i64>(9), "backlog": r.get::<_, i64>(10),
                    "lag_ms": {"p50": p(0), "p95": p(1), "p99": p(2)},
                    "run_duration_ms": {"p50": d(0), "p95": d(1), "p99": d(2)},
                    "runs_partial": r.get::<_, i64>(13),
                    "top_codes": serde_json::from_str::<Value>(r.get::<_, &str>(14)).expect("top codes"),
                    "last_received_ms": r.get::<_, Option<i64>>(15),
                }),
            )
        })
        .collect()
}

const EXACT_KEYS: [&str; 12] = [
    "received",
    "normalized",
    "rejected",
    "errors",
    "warnings",
    "runs_started",
    "runs_succeeded",
    "runs_failed",
    "runs_partial",
    "runs_running",
    "backlog",
    "top_codes",
];

/// Asserts one `/api/kpis` body equals SQL over its stated interval: every
/// counter, `top_codes` and `last_received_at` exactly, lag and run duration
/// percentiles within the histogram's 0.8 % + 1 ms.
pub async fn assert_kpis_match_sql(c: &tokio_postgres::Client, kpis: &Value) {
    let from = kpis["from"].as_str().expect("from");
    let to = kpis["to"].as_str().expect("to");
    let truth = sql_truth(c, from, to).await;
    let window = &kpis["window"];
    for (name, want) in &truth {
        let got = if name == "total" {
            &kpis["total"]
        } else {
            &kpis["sources"][name]
        };
        assert!(
            got.is_object(),
            "window {window}: source {name} missing from {kpis}"
        );
        for k in EXACT_KEYS {
            assert_eq!(
                got[k], want[k],
                "window {window} [{from}, {to}) source {name}: {k}"
            );
        }
        let last_ms = got["last_received_at"].as_str().map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap_or_else(|e| panic!("last_received_at {t}: {e}"))
                .timestamp_millis()
        });
        assert_eq!(
            last_ms,
            want["last_received_ms"].as_i64(),
            "window {window} source {name}: last_received_at {}",
            got["last_received_at"]
        );
        for figure in ["lag_ms", "run_duration_ms"] {
            for p in ["p50", "p95", "p99"] {
                let (g, w) = (&got[figure][p], &want[figure][p]);
                match (g.as_f64(), w.as_f64()) {
                    (Some(g), Some(w)) => assert!(
                        (g - w).abs() <= w * 0.008 + 1.0,
                        "window {window} {name} {figure} {p}: {g} vs {w}"
                    ),
                    (None, None) => {}
                    _ => panic!("window {window} {name} {figure} {p}: {g} vs {w}"),
                }
            }
        }
    }
}

/// The HS256 secret test servers verify with.
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// A token from [`SECRET`] for `role`, limited to `sources` if not empty.
pub fn token(role: &str, sources: &[&str], ttl: &str) -> String {
    ingestwatch_server::auth::mint(&ingestwatch_server::config::TokenClaims {
        jwt_secret: SECRET.into(),
        role: role.into(),
        ttl: ttl.into(),
        sources: sources.iter().map(|s| s.to_string()).collect(),
        subject: format!("test-{role}"),
        audience: None,
        issuer: None,
        role_claim: "role".into(),
    })
    .expect("mint")
}

/// Server options as the CLI defaults give them, for a test server.
pub fn options() -> ServerOptions {
    #[derive(Parser)]
    struct W {
        #[command(flatten)]
        o: ServerOptions,
    }
    let mut o = W::parse_from(["test"]).o;
    o.listen = "127.0.0.1:0".parse().expect("addr");
    o.auth.jwt_secret = Some(SECRET.into());
    o
}

/// The real server on a real port.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Operator token used by the helpers below.
    pub token: String,
    pub shutdown: CancellationToken,
    join: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with(db, options()).await
    }

    pub async fn start_with(db: &TestDb, opts: ServerOptions) -> TestServer {
        Self::start_at(&db.reader_url, opts, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// Starts on `addr` (e.g. the address of a server just stopped).
    pub async fn start_at(url: &str, opts: ServerOptions, addr: SocketAddr) -> TestServer {
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let url = url.to_string();
        let stop = shutdown.clone();
        let join = tokio::spawn(async move {
            ingestwatch_server::server::run(listener, &url, opts, stop).await
        });
        let s = TestServer {
            addr,
            token: token("operator", &[], "1h"),
            shutdown,
            join: Some(join),
            http: reqwest::Client::new(),
        };
        s.wait_ready().await;
        s
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.addr);
        let http = self.http.clone();
        wait_for("server ready", Duration::from_secs(30), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .await;
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(j) = self.join.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), j).await;
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(path, Some(&self.token)).await
    }

    /// GET with `token` (or none).
    pub async fn get_as(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("http://{}{}", self.addr, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("http");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// Any method; returns the status and the body (JSON when it parses, else a string).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("http://{}{}", self.addr, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("http");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// GET returning the status, the content type and the raw body.
    pub async fn get_raw(&self, path: &str) -> (u16, String, String) {
        let r = self
            .http
            .get(format!("http://{}{}", self.addr, path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("http");
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ct, r.text().await.unwrap_or_default())
    }

    pub async fn kpis(&self, window: &str) -> Value {
        let (status, body) = self.get(&format!("/api/kpis?window={window}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the server has delivered everything up to the outbox's max seq.
    pub async fn wait_caught_up(&self, db: &TestDb) {
        let target = db.max_seq().await;
        wait_for("server caught up", Duration::from_secs(30), || async {
            self.kpis("1m").await["seq"].as_i64().unwrap_or(0) >= target
        })
        .await;
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} is not on /metrics"))
    }

    pub async fn ws(&self) -> Ws {
        Ws::connect_with(&format!("ws://{}/ws", self.addr), Some(&self.token))
            .await
            .expect("ws connect")
    }

    pub async fn ws_as(
        &self,
        token: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        Ws::connect_with(&format!("ws://{}/ws", self.addr), token).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A WebSocket test client.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    /// Connects with `Authorization: Bearer <token>` when given.
    pub async fn connect_with(
        url: &str,
        token: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request()?;
        if let Some(t) = token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header value"),
            );
        }
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Ws { stream })
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .expect("ws send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.stream.send(m).await.expect("ws send");
    }

    /// Next JSON text frame (skipping pings), or None on close/timeout.
    pub async fn next(&mut self, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.stream.next())
                .await
                .ok()??
            {
                Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Next frame of `type` (skipping others).
    /// Subscribes to `topics` from `since` and waits for `subscribed`.
    pub async fn subscribe(&mut self, topics: &[&str], since: i64) {
        self.send(serde_json::json!({"op": "subscribe", "topics": topics, "since": since}))
            .await;
        self.next_of("subscribed", Duration::from_secs(5))
            .await
            .expect("subscribed");
    }

    pub async fn next_of(&mut self, kind: &str, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let v = self.next(left).await?;
            if v["type"] == kind {
                return Some(v);
            }
        }
    }

    /// Collects event seqs until `upto` is seen.
    pub async fn events_until(&mut self, upto: i64, limit: Duration) -> Vec<i64> {
        let deadline = Instant::now() + limit;
        let mut seqs = Vec::new();
        while seqs.last().copied().unwrap_or(0) < upto {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let Some(v) = self.next(left).await else {
                break;
            };
            if v["type"] == "event" {
                seqs.push(v["seq"].as_i64().expect("seq"));
            }
        }
        seqs
    }
}

/// Asserts `got` is exactly `want`, saying what is missing, extra or repeated.
pub fn assert_same_seqs(got: &[i64], want: &[i64], what: &str) {
    if got == want {
        return;
    }
    let g: std::collections::BTreeSet<i64> = got.iter().copied().collect();
    let w: std::collections::BTreeSet<i64> = want.iter().copied().collect();
    let missing: Vec<_> = w.difference(&g).take(20).collect();
    let extra: Vec<_> = g.difference(&w).take(20).collect();
    let dups = got.len() - g.len();
    let unordered = got.windows(2).filter(|p| p[0] >= p[1]).count();
    panic!(
        "{what}: got {} want {}; missing {missing:?}; extra {extra:?}; duplicates {dups}; out of order {unordered}",
        got.len(),
        want.len()
    );
}

/// Terminates the listener's backend(s) in `client`'s database; returns the
/// pids signalled. A backend that is slow to exit can be signalled again by
/// the next call: count distinct pids.
pub async fn kill_listener(client: &tokio_postgres::Client) -> Vec<i32> {
    client
        .query(
            "with l as materialized (
               select pid from pg_stat_activity
                where application_name = $1 and datname = current_database())
             select pid from l where pg_terminate_backend(pid)",
            &[&ingestwatch_server::listen::APPLICATION_NAME],
        )
        .await
        .expect("terminate the listener")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

impl Pipeline {
    /// Step `i` of a varied workload: a run, 1–4 records processed (every
    /// fifth step rejected), an error every third step, every seventh run
    /// failed. Autocommit: several events per step.
    pub async fn varied_step(&self, src: i64, i: i64) {
        let run = self.run(src).await;
        let ids = self.records(run, src, 1 + i % 4).await;
        let status = if i % 5 == 0 { "rejected" } else { "normalized" };
        self.process(&ids, status, 20 + i).await;
        if i % 3 == 0 {
            self.error(run, src, ids.first().copied(), "error", "E_SCHEMA")
                .await;
        }
        self.finish_run(run, if i % 7 == 0 { "failed" } else { "succeeded" })
            .await;
    }
}
