//! The end-to-end benchmark (`ingestwatch bench`): commit → WebSocket receipt.
//!
//! Setup: a throwaway cluster (unless `DATABASE_URL` is given), a fresh
//! database `iw_bench_<random>` on it (migrated, dropped `with (force)` at the
//! end), one source row, and the real server (`server::run`, default options
//! plus any `INGESTWATCH_*` variables) on a free port of 127.0.0.1, started in
//! this process and waited for until `/readyz` answers 200. Authentication
//! stays on, as in production: the run signs with a random HS256 secret, and
//! each subscriber connects with its own viewer token (its own subject, so the
//! per-token connection limit does not cap the subscriber count).
//!
//! Each run (target rate R × subscribers S) connects S WebSocket clients, each
//! subscribed to `events` from the current max seq, then drives `--writers`
//! connections for `--seconds`: writer k of W owns the slots
//! `start + (i·W + k)/R`. A slot is one round trip,
//! `begin; insert … select … generate_series(1, rows); select currval(…); commit`
//! (one statement, so one outbox event, whose seq `currval` gives). A writer
//! more than 5 ms behind its schedule skips the missed slots instead of
//! bursting, so the achieved rate is what was really issued. The *commit
//! instant* is when that round trip returned; the *receipt instant* is when the
//! subscriber task got the `event` frame. Latency = receipt − commit (clamped
//! at 0: the frame can overtake the commit's reply).
//!
//! After the writers stop, the run waits (at most 10 s) until every subscriber
//! has seen the last committed seq, then counts per subscriber: lost (committed,
//! never received), duplicates, out-of-order frames and `resync` frames.
//! Latency percentiles are nearest-rank over all (event, subscriber) pairs.
//! CPU is `utime + stime` of this process from `/proc/self/stat`, assuming
//! `CLK_TCK` = 100 (USER_HZ on Linux x86-64 and arm64), over the run's wall
//! time (100 % = one core); RSS is `VmRSS` at the end. The writers and the
//! subscribers share the process with the server, so both include their cost.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_postgres::SimpleQueryMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header::AUTHORIZATION, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::config::{BenchArgs, ServerOptions, TokenArgs};
use crate::demo::pgtemp::TempCluster;
use crate::{db, server};

/// Clock ticks per second assumed for `/proc/self/stat` (USER_HZ).
const CLK_TCK: f64 = 100.0;
/// Longest wait for subscribers to receive the last seq after the writers stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Lateness a writer catches up on before it skips slots.
const SLACK: Duration = Duration::from_millis(5);
/// Run length, first rate and rate ceiling of the `--find-max-p99-ms` search.
const SEARCH_SECONDS: u64 = 5;
const SEARCH_START: u32 = 500;
const SEARCH_CEILING: u32 = 1_024_000;

/// Everything measured, as printed and as written to `--json`.
#[derive(Debug, Serialize)]
struct Report {
    nproc: usize,
    cpu_model: String,
    postgres: String,
    database: &'static str,
    date: String,
    writers: usize,
    runs: Vec<RunResult>,
    search: Option<Search>,
}

/// One measurement (rate × subscribers).
#[derive(Debug, Clone, Serialize)]
struct RunResult {
    target_rate: u32,
    achieved_rate: f64,
    rows_per_statement: u32,
    subscribers: u32,
    events: u64,
    deliveries_per_sec: f64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    lost: u64,
    duplicates: u64,
    out_of_order: u64,
    resyncs: u64,
    closed_early: u64,
    cpu_percent: Option<f64>,
    rss_mb: Option<f64>,
}

/// Result of the `--find-max-p99-ms` search.
#[derive(Debug, Serialize)]
struct Search {
    p99_limit_ms: f64,
    subscribers: u32,
    seconds: u64,
    max_rate: Option<u32>,
    /// Why the lowest failing rate failed.
    limited_by: Option<String>,
    runs: Vec<RunResult>,
}

/// What a run needs to know.
struct Ctx {
    addr: SocketAddr,
    url: String,
    sql: Arc<str>,
    rows: u32,
    writers: usize,
    client: tokio_postgres::Client,
    /// One viewer token (own subject) per subscriber slot.
    tokens: Vec<String>,
}

/// The fields of a server frame the subscribers look at.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    seq: Option<i64>,
}

/// What one subscriber received.
#[derive(Default)]
struct Received {
    frames: Vec<(i64, Instant)>,
    resyncs: u64,
    closed: bool,
}

/// Runs the benchmark and prints the table (and writes `--json`).
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.rates.is_empty() || args.rates.contains(&0) || args.subscribers.is_empty() {
        bail!("--rates and --subscribers need at least one value, rates above 0");
    }
    if args.writers == 0 || args.seconds == 0 || args.rows == 0 {
        bail!("--writers, --seconds and --rows must be at least 1");
    }
    let cluster = match &args.database_url {
        Some(_) => None,
        None => {
            eprintln!("starting a throwaway PostgreSQL cluster…");
            Some(
                TempCluster::start()
                    .await
                    .context("starting throwaway PostgreSQL")?,
            )
        }
    };
    let result = match (&args.database_url, &cluster) {
        (Some(url), _) => with_database(&args, url, "DATABASE_URL").await,
        (None, Some(c)) => with_database(&args, &c.admin_url(), "throwaway cluster").await,
        (None, None) => Err(anyhow::anyhow!("no database to benchmark")),
    };
    if let Some(c) = cluster {
        if let Err(e) = c.stop().await {
            eprintln!("warning: stopping the throwaway cluster: {e:#}");
        }
    }
    let report = result?;
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Creates the bench database, benchmarks on it and drops it.
async fn with_database(args: &BenchArgs, admin: &str, database: &'static str) -> Result<Report> {
    let name = format!("iw_bench_{:08x}", rand::random::<u32>());
    db::connect(admin)
        .await?
        .batch_execute(&format!("create database {name}"))
        .await
        .with_context(|| format!("creating database {name}"))?;
    let result = bench(args, &with_dbname(admin, &name), database).await;
    let dropped = async {
        let c = db::connect(admin).await?;
        c.batch_execute(&format!("drop database if exists {name} with (force)"))
            .await
            .map_err(anyhow::Error::from)
    };
    if let Err(e) = dropped.await {
        eprintln!("warning: dropping database {name}: {e:#}");
    }
    result
}

/// `url` with its database replaced by `db` (URL or key=value form).
fn with_dbname(url: &str, db: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return format!("{url} dbname={db}");
    };
    let (base, query) = url.split_at(
        url[scheme_end..]
            .find('?')
            .map_or(url.len(), |i| scheme_end + i),
    );
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..host_end])
}

/// Default server options (plus `INGESTWATCH_*` variables) on a free port,
/// with authentication on: a random HS256 secret for this run, and `n`
/// viewer tokens signed with it, each with its own subject.
fn server_options(n: u32) -> Result<(ServerOptions, Vec<String>)> {
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        o: ServerOptions,
    }
    let mut o = Wrap::try_parse_from(["ingestwatch-bench"])
        .context("server options from the environment")?
        .o;
    o.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let secret: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let a = &mut o.auth;
    (a.jwt_secret, a.jwt_public_key, a.jwks_url) = (Some(secret.clone()), None, None);
    a.auth_disabled = false;
    let tokens = (0..n)
        .map(|i| {
            crate::auth::mint(&TokenArgs {
                jwt_secret: secret.clone(),
                role: "viewer".into(),
                ttl: "8h".into(),
                sources: Vec::new(),
                subject: format!("bench-{i}"),
                audience: a.jwt_audience.clone(),
                issuer: a.jwt_issuer.clone(),
                role_claim: a.role_claim.clone(),
            })
        })
        .collect::<Result<_>>()?;
    Ok((o, tokens))
}

/// Migrates `url`, starts the server and performs all runs.
async fn bench(args: &BenchArgs, url: &str, database: &'static str) -> Result<Report> {
    let mut client = db::connect(url).await?;
    db::migrate::run(&mut client)
        .await
        .context("migrating the bench database")?;
    let source: i64 = client
        .query_one(
            "insert into ingest.sources (name, kind) values ('bench', 'bench') returning id",
            &[],
        )
        .await?
        .try_get(0)?;
    let postgres: String = client
        .query_one("select version()", &[])
        .await?
        .try_get(0)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let token = CancellationToken::new();
    let max_subs = args.subscribers.iter().copied().max().unwrap_or(0);
    let (options, tokens) = server_options(max_subs)?;
    let mut server_task = tokio::spawn({
        let (url, token) = (url.to_string(), token.clone());
        async move { server::run(listener, &url, options, token).await }
    });
    let sql = format!(
        "begin; insert into ingest.raw_records (source_id, payload) \
         select {source}, jsonb_build_object('i', g) from generate_series(1, {}) g; \
         select currval(pg_get_serial_sequence('monitor.events', 'seq')); commit",
        args.rows
    );
    let ctx = Ctx {
        addr,
        url: url.to_string(),
        sql: sql.into(),
        rows: args.rows,
        writers: args.writers,
        client,
        tokens,
    };
    let outcome = async {
        wait_ready(addr, &mut server_task).await?;
        let mut runs = Vec::new();
        for &rate in &args.rates {
            for &subs in &args.subscribers {
                runs.push(measure(&ctx, rate, subs, args.seconds).await?);
            }
        }
        let search = match (args.find_max_p99_ms, args.subscribers.first()) {
            (Some(limit), Some(&subs)) => Some(search(&ctx, limit, subs).await?),
            _ => None,
        };
        anyhow::Ok((runs, search))
    }
    .await;
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server_task).await;
    let (runs, search) = outcome?;
    Ok(Report {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpu_model(),
        postgres,
        database,
        date: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        writers: args.writers,
        runs,
        search,
    })
}

/// Status code of `GET path` (a minimal HTTP/1.1 client).
async fn http_status(addr: SocketAddr, path: &str) -> Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await??;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP response")
}

/// Waits (at most 30 s) for `/readyz` to answer 200.
async fn wait_ready(addr: SocketAddr, server: &mut JoinHandle<Result<()>>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if server.is_finished() {
            server.await.context("server task")??;
            bail!("the server stopped before it was ready");
        }
        if matches!(http_status(addr, "/readyz").await, Ok(200)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server was not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connects one subscriber to `events` from `since`; its task records frames until `stop`.
async fn subscribe(
    addr: SocketAddr,
    token: &str,
    since: i64,
    stop: CancellationToken,
) -> Result<(Arc<AtomicI64>, JoinHandle<Received>)> {
    let mut req = format!("ws://{addr}/ws").into_client_request()?;
    req.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("connecting a WebSocket subscriber")?;
    let frame = serde_json::json!({"op": "subscribe", "topics": ["events"], "since": since});
    ws.send(Message::text(frame.to_string())).await?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no `subscribed` frame within 10 s")?
            .context("WebSocket closed before `subscribed`")??;
        if let Message::Text(t) = msg {
            let f: Frame = serde_json::from_str(t.as_str())?;
            match f.ty.as_ref() {
                "subscribed" => break,
                "error" => bail!("subscribe refused: {}", t.as_str()),
                _ => {}
            }
        }
    }
    let max_seen = Arc::new(AtomicI64::new(since));
    let seen = max_seen.clone();
    let task = tokio::spawn(async move {
        let mut got = Received::default();
        loop {
            let msg = tokio::select! {
                m = ws.next() => m,
                () = stop.cancelled() => break,
            };
            let now = Instant::now();
            match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<Frame>(t.as_str()) {
                    Ok(Frame { ty, seq: Some(seq) }) if ty == "event" => {
                        got.frames.push((seq, now));
                        seen.fetch_max(seq, Ordering::Relaxed);
                    }
                    Ok(Frame { ty, .. }) if ty == "resync" => got.resyncs += 1,
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    got.closed = true;
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        got
    });
    Ok((max_seen, task))
}

/// One writer's schedule; returns (seq, commit instant) per statement.
async fn writer(
    client: tokio_postgres::Client,
    sql: Arc<str>,
    (k, n, rate): (usize, usize, u32),
    (start, end): (Instant, Instant),
) -> Result<Vec<(i64, Instant)>> {
    let period = Duration::from_secs_f64(n as f64 / f64::from(rate));
    let mut next = start + Duration::from_secs_f64(k as f64 / f64::from(rate));
    let mut commits = Vec::new();
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let msgs = client
            .simple_query(&sql)
            .await
            .context("writer transaction")?;
        let done = Instant::now();
        let seq = msgs
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0)?.parse::<i64>().ok(),
                _ => None,
            })
            .context("currval returned no row")?;
        commits.push((seq, done));
        next += period;
        if done > next + SLACK {
            let behind = (done - next).as_secs_f64() / period.as_secs_f64();
            next += period.mul_f64(behind.floor());
        }
    }
    Ok(commits)
}

/// One run: `rate` statements/s for `seconds` with `subs` subscribers.
async fn measure(ctx: &Ctx, rate: u32, subs: u32, seconds: u64) -> Result<RunResult> {
    eprintln!("run: {rate} st/s, {subs} subscribers, {seconds} s");
    let since: i64 = ctx
        .client
        .query_one("select coalesce(max(seq), 0) from monitor.events", &[])
        .await?
        .try_get(0)?;
    let mut clients = Vec::new();
    for _ in 0..ctx.writers {
        clients.push(db::connect(&ctx.url).await?);
    }
    let stop = CancellationToken::new();
    let mut subscribers = Vec::new();
    for token in ctx.tokens.iter().take(subs as usize) {
        subscribers.push(subscribe(ctx.addr, token, since, stop.clone()).await?);
    }
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let writers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(k, c)| {
            tokio::spawn(writer(
                c,
                ctx.sql.clone(),
                (k, ctx.writers, rate),
                (start, end),
            ))
        })
        .collect();
    let mut commits = HashMap::new();
    for w in writers {
        commits.extend(w.await.context("writer task")??);
    }
    let target = commits.keys().copied().max().unwrap_or(since);
    let drain = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < drain
        && subscribers
            .iter()
            .any(|(seen, _)| seen.load(Ordering::Relaxed) < target)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_percent = cpu0
        .zip(cpu_seconds())
        .map(|(a, b)| round2((b - a) / wall * 100.0));
    let rss_mb = rss_mb();
    stop.cancel();
    let (mut lat, mut r) = (
        Vec::with_capacity(commits.len() * subs as usize),
        RunResult {
            target_rate: rate,
            achieved_rate: round2(commits.len() as f64 / seconds as f64),
            rows_per_statement: ctx.rows,
            subscribers: subs,
            events: commits.len() as u64,
            deliveries_per_sec: 0.0,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            max_ms: None,
            lost: 0,
            duplicates: 0,
            out_of_order: 0,
            resyncs: 0,
            closed_early: 0,
            cpu_percent,
            rss_mb,
        },
    );
    for (_, task) in subscribers {
        let got = task.await.context("subscriber task")?;
        r.resyncs += got.resyncs;
        r.closed_early += u64::from(got.closed);
        r.out_of_order += got.frames.windows(2).filter(|w| w[1].0 < w[0].0).count() as u64;
        let mut first: HashMap<i64, Instant> = HashMap::with_capacity(got.frames.len());
        for &(seq, at) in &got.frames {
            if first.insert(seq, at).is_some() {
                r.duplicates += 1;
            }
        }
        for (seq, commit) in &commits {
            match first.get(seq) {
                Some(at) => lat.push(
                    u32::try_from(at.saturating_duration_since(*commit).as_micros())
                        .unwrap_or(u32::MAX),
                ),
                None => r.lost += 1,
            }
        }
    }
    lat.sort_unstable();
    r.deliveries_per_sec = round2(lat.len() as f64 / seconds as f64);
    let pct = |q: f64| {
        let i = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len().max(1)) - 1;
        lat.get(i).map(|&us| round2(f64::from(us) / 1000.0))
    };
    (r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms) = (pct(0.50), pct(0.95), pct(0.99), pct(1.0));
    Ok(r)
}

/// Doubles the rate from 500 until a run fails, then bisects three times.
async fn search(ctx: &Ctx, limit: f64, subs: u32) -> Result<Search> {
    let (mut runs, mut good, mut rate, mut limited_by) = (Vec::new(), None, SEARCH_START, None);
    let mut bad = None;
    while bad.is_none() && rate <= SEARCH_CEILING {
        let r = measure(ctx, rate, subs, SEARCH_SECONDS).await?;
        match failure(&r, limit) {
            None => good = Some(rate),
            Some(why) => (bad, limited_by) = (Some(rate), Some(why)),
        }
        runs.push(r);
        rate *= 2;
    }
    if let Some(mut hi) = bad {
        let mut lo = good.unwrap_or(0);
        for _ in 0..3 {
            let mid = lo + (hi - lo) / 2;
            if mid <= lo {
                break;
            }
            let r = measure(ctx, mid, subs, SEARCH_SECONDS).await?;
            match failure(&r, limit) {
                None => (lo, good) = (mid, Some(mid)),
                Some(why) => (hi, limited_by) = (mid, Some(why)),
            }
            runs.push(r);
        }
    }
    Ok(Search {
        p99_limit_ms: limit,
        subscribers: subs,
        seconds: SEARCH_SECONDS,
        max_rate: good,
        limited_by,
        runs,
    })
}

/// Why a search run fails the bar (`None`: it passes).
fn failure(r: &RunResult, limit: f64) -> Option<String> {
    if r.lost > 0 || r.duplicates > 0 {
        Some(format!(
            "{} lost, {} duplicates at {} st/s",
            r.lost, r.duplicates, r.target_rate
        ))
    } else if r.achieved_rate < 0.9 * f64::from(r.target_rate) {
        Some(format!(
            "writers achieved {} of {} st/s (< 90 %)",
            r.achieved_rate, r.target_rate
        ))
    } else if !r.p99_ms.is_some_and(|p| p <= limit) {
        Some(format!(
            "p99 {} ms > {limit} ms at {} st/s",
            r.p99_ms.unwrap_or(f64::NAN),
            r.target_rate
        ))
    } else {
        None
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// CPU seconds (user + system) this process used so far, if `/proc` is there.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / CLK_TCK)
}

/// Resident set size of this process in MB, if `/proc` is there.
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(round2(kb / 1024.0))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn print_report(rep: &Report) {
    println!("## ingestwatch bench, {}", rep.date);
    println!();
    println!(
        "- machine: {} CPUs (available_parallelism), {}",
        rep.nproc, rep.cpu_model
    );
    println!("- PostgreSQL: {} ({})", rep.postgres, rep.database);
    println!("- {} writer connections; one statement per transaction; latency = commit returned → frame received", rep.writers);
    println!("- server, writers and subscribers share one process: cpu % (100 = one core, CLK_TCK assumed 100) and RSS include all of them");
    println!();
    print_table(&rep.runs);
    if let Some(s) = &rep.search {
        println!();
        let best = s.max_rate.map_or("none".into(), |r| format!("{r} st/s"));
        println!(
            "### highest rate with p99 ≤ {} ms and no loss ({} subscribers, {} s runs): {best}",
            s.p99_limit_ms, s.subscribers, s.seconds
        );
        if let Some(why) = &s.limited_by {
            println!();
            println!("limited by: {why}");
        }
        println!();
        print_table(&s.runs);
    }
    let closed: u64 = rep
        .runs
        .iter()
        .chain(rep.search.iter().flat_map(|s| &s.runs))
        .map(|r| r.closed_early)
        .sum();
    if closed > 0 {
        println!();
        println!("warning: the server closed {closed} subscriber connection(s) during the runs");
    }
}

fn print_table(runs: &[RunResult]) {
    let opt = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |x| format!("{x:.2}"));
    println!("| rate target | achieved st/s | rows/st | subscribers | events | deliveries/s | p50 ms | p95 ms | p99 ms | max ms | lost | dup | out of order | resyncs | cpu % | rss MB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {:.2} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.target_rate, r.achieved_rate, r.rows_per_statement, r.subscribers, r.events, r.deliveries_per_sec,
            opt(r.p50_ms), opt(r.p95_ms), opt(r.p99_ms), opt(r.max_ms),
            r.lost, r.duplicates, r.out_of_order, r.resyncs, opt(r.cpu_percent), opt(r.rss_mb)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbname_is_replaced_in_urls_and_appended_to_key_values() {
        let f = with_dbname;
        assert_eq!(
            f("postgres://u@h:5432/postgres", "b"),
            "postgres://u@h:5432/b"
        );
        assert_eq!(
            f("postgres://u:p@h/db?sslmode=disable", "b"),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(f("postgresql://h", "b"), "postgresql://h/b");
        assert_eq!(f("host=h user=u", "b"), "host=h user=u dbname=b");
    }
}
