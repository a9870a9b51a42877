//! The server under test: `ingestwatch-bench serve` (the same server
//! library's `serve`, see `main.rs`) as a child process (its CPU and RSS are
//! its own, and the load generator's CPU is not counted as the server's), or
//! `server::run` in this process (the first benchmark's set-up).
//!
//! Either way authentication stays on: the run signs with a random HS256
//! secret, and every subscriber or REST client has its own viewer token (its
//! own subject). The child gets `DATABASE_URL`, `INGESTWATCH_JWT_SECRET` and
//! `INGESTWATCH_LISTEN` in its environment, plus every other `INGESTWATCH_*`
//! variable of the bench (minus other key sources and `AUTH_DISABLED`), and
//! connection limits raised to the run's subscriber count.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::args::BenchServer;
use ingestwatch_server::config::{ServerOptions, TokenClaims};
use ingestwatch_server::server;

/// Longest wait for `/readyz` after a start.
const READY_LIMIT: Duration = Duration::from_secs(60);

// One value per bench run: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    InProcess {
        stop: CancellationToken,
        task: JoinHandle<Result<()>>,
    },
    Child {
        child: tokio::process::Child,
        log: PathBuf,
        _dir: tempfile::TempDir,
    },
}

/// A running server.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The process whose CPU and RSS are the server's (this one when in-process).
    pub pid: u32,
    inner: Inner,
}

/// A random HS256 secret (hex).
pub fn secret() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Default server options (plus `INGESTWATCH_*` variables) with `secret`.
fn options(secret: &str, max_connections: usize) -> Result<ServerOptions> {
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        o: ServerOptions,
    }
    let mut o = Wrap::try_parse_from(["ingestwatch-bench"])
        .context("server options from the environment")?
        .o;
    let a = &mut o.auth;
    (a.jwt_secret, a.jwt_public_key, a.jwks_url) = (Some(secret.to_string()), None, None);
    a.auth_disabled = false;
    a.max_connections = a.max_connections.max(max_connections);
    a.max_connections_per_token = a.max_connections_per_token.max(max_connections);
    Ok(o)
}

/// `n` viewer tokens signed with `secret`, each with its own subject.
pub fn tokens(secret: &str, n: u32) -> Result<Vec<String>> {
    let o = options(secret, 0)?;
    (0..n)
        .map(|i| {
            ingestwatch_server::auth::mint(&TokenClaims {
                jwt_secret: secret.to_string(),
                role: "viewer".into(),
                ttl: "8h".into(),
                sources: Vec::new(),
                subject: format!("bench-{i}"),
                audience: o.auth.jwt_audience.clone(),
                issuer: o.auth.jwt_issuer.clone(),
                role_claim: o.auth.role_claim.clone(),
            })
        })
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Running {
    /// Starts the server on `url` and waits until `/readyz` answers 200.
    pub async fn start(
        placement: BenchServer,
        url: &str,
        secret: &str,
        max_connections: usize,
    ) -> Result<Running> {
        let mut last_err = None;
        for _ in 0..3 {
            let mut s = match placement {
                BenchServer::InProcess => Self::in_process(url, secret, max_connections).await?,
                BenchServer::Child => Self::child(url, secret, max_connections)?,
            };
            match s.wait_ready().await {
                Ok(()) => return Ok(s),
                Err(e) => {
                    let clash = s.log_tail().contains("Address already in use");
                    let _ = s.stop().await;
                    if !clash {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("server did not start")))
    }

    async fn in_process(url: &str, secret: &str, max_connections: usize) -> Result<Running> {
        let mut o = options(secret, max_connections)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        o.listen = addr;
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (url, stop) = (url.to_string(), stop.clone());
            async move { server::run(listener, &url, o, stop).await }
        });
        Ok(Running {
            addr,
            pid: std::process::id(),
            inner: Inner::InProcess { stop, task },
        })
    }

    fn child(url: &str, secret: &str, max_connections: usize) -> Result<Running> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let dir = tempfile::Builder::new()
            .prefix("ingestwatch-bench-")
            .tempdir()?;
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log)?;
        let exe = std::env::current_exe().context("locating the ingestwatch-bench binary")?;
        let limit = max_connections.max(20_000).to_string();
        // A profiler can wrap the child: INGESTWATCH_BENCH_SERVER_PREFIX="heaptrack -o /tmp/hp"
        // (the figures read from /proc are then the wrapper's, not the server's).
        let prefix: Vec<String> = std::env::var("INGESTWATCH_BENCH_SERVER_PREFIX")
            .map(|p| p.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = tokio::process::Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => tokio::process::Command::new(exe),
        };
        cmd.arg("serve")
            .env("DATABASE_URL", url)
            .env("INGESTWATCH_JWT_SECRET", secret)
            .env("INGESTWATCH_LISTEN", addr.to_string())
            .env("INGESTWATCH_MAX_CONNECTIONS", &limit)
            .env("INGESTWATCH_MAX_CONNECTIONS_PER_TOKEN", &limit)
            .env_remove("INGESTWATCH_JWT_PUBLIC_KEY")
            .env_remove("INGESTWATCH_JWKS_URL")
            .env_remove("INGESTWATCH_AUTH_DISABLED")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        let child = cmd.spawn().context("starting `ingestwatch-bench serve`")?;
        let pid = child.id().context("child pid")?;
        Ok(Running {
            addr,
            pid,
            inner: Inner::Child {
                child,
                log,
                _dir: dir,
            },
        })
    }

    /// True when the server runs in its own process.
    pub fn is_child(&self) -> bool {
        matches!(self.inner, Inner::Child { .. })
    }

    /// The last lines the child logged (empty in-process).
    pub fn log_tail(&self) -> String {
        match &self.inner {
            Inner::Child { log, .. } => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            }
            Inner::InProcess { .. } => String::new(),
        }
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            match &mut self.inner {
                Inner::InProcess { task, .. } if task.is_finished() => {
                    task.await.context("server task")??;
                    bail!("the server stopped before it was ready");
                }
                Inner::Child { child, .. } => {
                    if let Some(status) = child.try_wait()? {
                        bail!(
                            "`ingestwatch-bench serve` exited ({status}) before it was ready:\n{}",
                            self.log_tail()
                        );
                    }
                }
                Inner::InProcess { .. } => {}
            }
            if matches!(get(self.addr, "/readyz", None).await, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server was not ready after {READY_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/metrics` as name → value (first sample of each name).
    pub async fn metrics(&self) -> Result<std::collections::HashMap<String, f64>> {
        let (status, body) = get(self.addr, "/metrics", None).await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        let mut out = std::collections::HashMap::new();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let name = name.split('{').next().unwrap_or(name);
            if let Ok(v) = value.parse::<f64>() {
                out.entry(name.to_string()).or_insert(v);
            }
        }
        Ok(out)
    }

    /// Stops the server: SIGTERM (graceful, at most 10 s) then SIGKILL for a
    /// child; the cancellation token in-process.
    pub async fn stop(self) -> Result<()> {
        match self.inner {
            Inner::InProcess { stop, task } => {
                stop.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
            Inner::Child { mut child, .. } => {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &self.pid.to_string()])
                    .status()
                    .await;
                if tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_err()
                {
                    child.start_kill()?;
                    child.wait().await?;
                }
            }
        }
        Ok(())
    }
}

/// `GET path` over a fresh connection (`Connection: close`): status and body.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP response")?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}
