//! KPI REST latency: `GET /api/kpis?window=W` with a viewer bearer token at
//! a paced rate (open loop: request i is due at `start + i/R`, spread over
//! `--kpi-connections` keep-alive HTTP/1.1 connections; a connection more than
//! 5 ms behind skips the slots it missed, so the achieved rate is what was
//! sent). Latency = the last byte of the response − the request written.
//!
//! Before the server starts, `--kpi-sources` sources get five minutes of
//! history (processed records with spread-out lags, and error rows with a
//! handful of codes), so every 1-second bucket of the 5m window is populated;
//! during the run a writer keeps committing 100 statements/s, so the
//! aggregates change under the readers as in production. The first second is
//! warm-up and not counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::latency::{pct_ms, start_writers};
use super::server::Running;
use super::{procfs, round2};

/// Lateness a connection catches up on before it skips slots.
const SLACK: Duration = Duration::from_millis(5);
/// Not counted at the start of the run.
const WARM_UP: Duration = Duration::from_secs(1);
/// Statements per second written during the run.
pub const WRITE_RATE: u32 = 100;

/// The REST measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Rest {
    pub window: String,
    pub sources: u32,
    pub connections: usize,
    pub target_rps: u32,
    pub achieved_rps: f64,
    pub requests: u64,
    pub errors: u64,
    pub response_bytes: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    pub load_gen_cpu_percent: Option<f64>,
    pub load1: Option<f64>,
}

/// Loads five minutes of history for `sources` sources (before the server starts).
pub async fn preload(client: &tokio_postgres::Client, sources: u32) -> Result<()> {
    for s in 0..sources {
        let id: i64 = client
            .query_one(
                "insert into ingest.sources (name, kind, expected_interval)
                 values ($1, 'api', '1 minute') returning id",
                &[&format!("kpi-{s:02}")],
            )
            .await?
            .try_get(0)?;
        // One statement per 10-second slice: 50 records each, lags 0–5 s
        // (exact bins below 1,024 ms, log-linear above), every 7th rejected,
        // and 5 error rows over 4 codes.
        for slice in 0..30i32 {
            client
                .execute(
                    "insert into ingest.raw_records (source_id, external_id, received_at, status, processed_at, payload)
                     select $1, 'k-' || g, t, case when g % 7 = 0 then 'rejected' else 'normalized' end,
                            t + make_interval(secs => ((g * 97 + $2 * 13) % 5000) / 1000.0), '{}'::jsonb
                       from generate_series(1, 50) g,
                            lateral (select now() - make_interval(secs => $2 * 10 + g % 10)) x(t)",
                    &[&id, &slice],
                )
                .await?;
            client
                .execute(
                    "insert into ingest.errors (source_id, occurred_at, severity, stage, code, message)
                     select $1, now() - make_interval(secs => $2 * 10 + g), case when g % 3 = 0 then 'warning' else 'error' end,
                            'validate', 'E_CODE_' || (g % 4), 'bench'
                       from generate_series(1, 5) g",
                    &[&id, &slice],
                )
                .await?;
        }
    }
    Ok(())
}

/// One keep-alive connection's schedule: latencies (µs) of its counted requests.
async fn connection(
    addr: SocketAddr,
    request: Arc<str>,
    (k, n, rate): (usize, usize, u32),
    (start, end): (Instant, Instant),
) -> Result<(Vec<u32>, u64, u64)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let period = Duration::from_secs_f64(n as f64 / f64::from(rate));
    let mut next = start + Duration::from_secs_f64(k as f64 / f64::from(rate));
    let (mut lat, mut errors, mut bytes) = (Vec::new(), 0u64, 0u64);
    let mut line = String::new();
    let mut body = Vec::new();
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let sent = Instant::now();
        wr.write_all(request.as_bytes()).await?;
        // Status line, headers (Content-Length), body.
        line.clear();
        rd.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("malformed status line")?;
        let mut len = 0usize;
        loop {
            line.clear();
            if rd.read_line(&mut line).await? == 0 {
                bail!("connection closed mid-response");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().context("content-length")?;
                }
            }
        }
        body.resize(len, 0);
        rd.read_exact(&mut body).await?;
        let done = Instant::now();
        if sent >= start + WARM_UP {
            if status == 200 {
                lat.push(u32::try_from(done.duration_since(sent).as_micros()).unwrap_or(u32::MAX));
                bytes += len as u64;
            } else {
                errors += 1;
            }
        }
        next += period;
        if done > next + SLACK {
            let behind = (done - next).as_secs_f64() / period.as_secs_f64();
            next += period.mul_f64(behind.floor());
        }
    }
    Ok((lat, errors, bytes))
}

/// Runs the paced load against `server`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    server: &Running,
    url: &str,
    writer_sql: &Arc<str>,
    token: &str,
    window: &str,
    (rps, connections, seconds): (u32, usize, u64),
    sources: u32,
) -> Result<Rest> {
    if rps == 0 || connections == 0 {
        bail!("--kpi-rps and --kpi-connections must be at least 1");
    }
    eprintln!("rest: GET /api/kpis?window={window} at {rps}/s over {connections} connections, {seconds} s");
    let (status, body) = super::server::get(
        server.addr,
        &format!("/api/kpis?window={window}"),
        Some(token),
    )
    .await?;
    if status != 200 {
        bail!("GET /api/kpis answered {status}: {body}");
    }
    let request: Arc<str> = format!(
        "GET /api/kpis?window={window} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
        server.addr
    )
    .into();
    let load1 = procfs::load1();
    let me = std::process::id();
    let cpu0 = (procfs::cpu_seconds(server.pid), procfs::cpu_seconds(me));
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs(seconds);
    let writers = start_writers(url, writer_sql, 1, WRITE_RATE, (start, end)).await?;
    let tasks: Vec<_> = (0..connections)
        .map(|k| {
            tokio::spawn(connection(
                server.addr,
                request.clone(),
                (k, connections, rps),
                (start, end),
            ))
        })
        .collect();
    let (mut lat, mut errors, mut bytes) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, e, b) = t.await.context("REST connection task")??;
        lat.extend(l);
        errors += e;
        bytes += b;
    }
    for w in writers {
        w.await.context("writer task")??;
    }
    let wall = start.elapsed().as_secs_f64();
    let pct =
        |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round2((b - a) / wall * 100.0));
    let server_cpu_percent = pct(cpu0.0, procfs::cpu_seconds(server.pid));
    let load_gen_cpu_percent = server
        .is_child()
        .then(|| pct(cpu0.1, procfs::cpu_seconds(me)))
        .flatten();
    lat.sort_unstable();
    let counted = (seconds as f64 - WARM_UP.as_secs_f64()).max(1.0);
    Ok(Rest {
        window: window.to_string(),
        sources,
        connections,
        target_rps: rps,
        achieved_rps: round2(lat.len() as f64 / counted),
        requests: lat.len() as u64,
        errors,
        response_bytes: bytes / (lat.len() as u64).max(1),
        p50_ms: pct_ms(&lat, 0.50),
        p90_ms: pct_ms(&lat, 0.90),
        p99_ms: pct_ms(&lat, 0.99),
        p999_ms: pct_ms(&lat, 0.999),
        max_ms: pct_ms(&lat, 1.0),
        server_cpu_percent,
        load_gen_cpu_percent,
        load1,
    })
}

/// Prints the measurement as a Markdown table.
pub fn print(r: &Rest) {
    let opt = super::opt;
    println!("| window | sources | connections | target req/s | achieved req/s | requests | non-200 | bytes/response | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | server cpu % | load-gen cpu % | load avg |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.window,
        r.sources,
        r.connections,
        r.target_rps,
        r.achieved_rps,
        r.requests,
        r.errors,
        r.response_bytes,
        opt(r.p50_ms),
        opt(r.p90_ms),
        opt(r.p99_ms),
        opt(r.p999_ms),
        opt(r.max_ms),
        opt(r.server_cpu_percent),
        opt(r.load_gen_cpu_percent),
        opt(r.load1)
    );
}
