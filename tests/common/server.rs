//! The real server on a real port: tokens, default options, and the
//! helpers tests call it through (HTTP with the operator token, WS).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use ingestwatch_server::config::ServerOptions;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{wait_for, TestDb, Ws};

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
