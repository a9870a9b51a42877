//! Memory per idle connection: a fresh server in a child process (so its RSS
//! is the server's alone); its `VmRSS` is read from `/proc/<pid>/status`
//! before any client connects and after each step of idle subscribers
//! (connected with their own viewer tokens, subscribed to `events`, reading
//! but receiving nothing: no writer runs). Steps are cumulative (1,000 then
//! 4,000 more, …); each is read 2 s after its last client subscribed.
//!
//! KB per connection = (RSS − baseline RSS) / subscribers; the marginal figure
//! (between two steps) leaves out one-time costs such as the runtime's and
//! the registries' growth. The kernel's socket buffers are not in any RSS;
//! the machine-wide TCP socket memory (`/proc/net/sockstat`, both ends of every
//! connection) is reported beside it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::server::Running;
use super::{latency, procfs, round2};

/// Clients connecting at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Wait after a step before reading RSS.
const SETTLE: Duration = Duration::from_secs(2);

/// One step of the memory measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub subscribers: u32,
    pub connect_seconds: f64,
    pub server_rss_mb: f64,
    pub server_rss_anon_mb: Option<f64>,
    pub kb_per_connection: f64,
    /// (RSS − previous step's RSS) / (subscribers − previous subscribers).
    pub marginal_kb_per_connection: f64,
    pub server_fds: Option<u64>,
    pub server_threads: Option<u64>,
    /// Machine-wide TCP socket memory (both ends of every socket).
    pub tcp_mem_mb: Option<f64>,
    pub load1: Option<f64>,
}

/// The memory measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub baseline_rss_mb: f64,
    pub baseline_tcp_mem_mb: Option<f64>,
    pub nofile_limit: Option<u64>,
    pub steps: Vec<Step>,
    /// Server RSS 2 s after every client closed.
    pub after_close_rss_mb: Option<f64>,
}

fn rss_kb(pid: u32) -> Result<u64> {
    procfs::status_kb(pid, "VmRSS").context("reading the server's VmRSS from /proc")
}

/// Connects the steps' subscribers to `server`, reading RSS at each step.
pub async fn run(server: &Running, tokens: &[String], steps: &[u32]) -> Result<Memory> {
    if !server.is_child() {
        bail!("memory mode needs the server in a child process (--server child)");
    }
    let pid = server.pid;
    tokio::time::sleep(SETTLE).await;
    let baseline = rss_kb(pid)?;
    let tcp0 = procfs::tcp_mem_kb();
    eprintln!(
        "memory: baseline server RSS {:.1} MB",
        baseline as f64 / 1024.0
    );
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let (mut out, mut prev_n, mut prev_kb) = (Vec::new(), 0u32, baseline);
    for &n in steps {
        if n <= prev_n {
            bail!("--idle-subscribers must be ascending");
        }
        let started = Instant::now();
        let addr = server.addr;
        let mut conns = futures_util::stream::iter(&tokens[prev_n as usize..n as usize])
            .map(|t| latency::connect(addr, t, None))
            .buffer_unordered(CONNECT_CONCURRENCY);
        while let Some(ws) = conns.next().await {
            let mut ws = ws?;
            let stop = stop.clone();
            // Idle: read (answering the server's pings) until told to stop.
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        m = ws.next() => if !matches!(m, Some(Ok(_))) { break },
                        () = stop.cancelled() => break,
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
            }));
        }
        let connect_seconds = round2(started.elapsed().as_secs_f64());
        tokio::time::sleep(SETTLE).await;
        let m = server.metrics().await?;
        let clients = m.get("ingestwatch_ws_clients").copied().unwrap_or(0.0);
        if clients < f64::from(n) {
            bail!("the server counts {clients} WebSocket clients, expected {n}");
        }
        let kb = rss_kb(pid)?;
        let step = Step {
            subscribers: n,
            connect_seconds,
            server_rss_mb: round2(kb as f64 / 1024.0),
            server_rss_anon_mb: procfs::status_kb(pid, "RssAnon")
                .map(|k| round2(k as f64 / 1024.0)),
            kb_per_connection: round2(kb.saturating_sub(baseline) as f64 / f64::from(n)),
            marginal_kb_per_connection: round2(
                (kb as f64 - prev_kb as f64) / f64::from(n - prev_n),
            ),
            server_fds: procfs::fds(pid),
            server_threads: procfs::status_num(pid, "Threads"),
            tcp_mem_mb: procfs::tcp_mem_kb().map(|k| round2(k as f64 / 1024.0)),
            load1: procfs::load1(),
        };
        eprintln!(
            "memory: {n} idle subscribers, server RSS {:.1} MB, {:.2} KB each",
            step.server_rss_mb, step.kb_per_connection
        );
        out.push(step);
        (prev_n, prev_kb) = (n, kb);
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(SETTLE).await;
    Ok(Memory {
        baseline_rss_mb: round2(baseline as f64 / 1024.0),
        baseline_tcp_mem_mb: tcp0.map(|k| round2(k as f64 / 1024.0)),
        nofile_limit: procfs::nofile_limit(),
        steps: out,
        after_close_rss_mb: procfs::rss_mb(pid).map(round2),
    })
}

/// Prints the measurement as a Markdown table.
pub fn print(m: &Memory) {
    let opt = super::opt;
    println!(
        "baseline server RSS {:.2} MB; open-files limit (ulimit -n) {}; server RSS after every client closed: {} MB",
        m.baseline_rss_mb,
        m.nofile_limit.map_or("?".into(), |n| n.to_string()),
        opt(m.after_close_rss_mb)
    );
    println!();
    println!("| idle subscribers | connect s | server RSS MB | of which anon MB | KB per connection | marginal KB per connection | server fds | server threads | TCP socket mem MB (machine) | load avg |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &m.steps {
        println!(
            "| {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} | {} | {} | {} |",
            s.subscribers,
            s.connect_seconds,
            s.server_rss_mb,
            opt(s.server_rss_anon_mb),
            s.kb_per_connection,
            s.marginal_kb_per_connection,
            s.server_fds.map_or("–".into(), |n| n.to_string()),
            s.server_threads.map_or("–".into(), |n| n.to_string()),
            opt(s.tcp_mem_mb),
            opt(s.load1)
        );
    }
}
