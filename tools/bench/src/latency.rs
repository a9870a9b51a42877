//! Commit → WebSocket receipt: each run (target rate R × subscribers S)
//! connects S WebSocket clients, each subscribed to `events` from the current
//! max seq, then drives `--writers` connections for `--seconds`: writer k of W
//! owns the slots `start + (i·W + k)/R`. A slot is one round trip,
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
//! CPU is `utime + stime` over the run's wall time (100 % = one core), of the
//! server process and, when the server is a child, of the bench process (the
//! writers and subscribers) separately; RSS is the server's `VmRSS` at the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_postgres::SimpleQueryMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header::AUTHORIZATION, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::procfs;
use super::round2;
use ingestwatch_server::db;

/// Longest wait for subscribers to receive the last seq after the writers stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Lateness a writer catches up on before it skips slots.
const SLACK: Duration = Duration::from_millis(5);
/// Run length, first rate and rate ceiling of the `--find-max-p99-ms` search.
pub const SEARCH_SECONDS: u64 = 5;
const SEARCH_START: u32 = 500;
const SEARCH_CEILING: u32 = 1_024_000;

/// One measurement (rate × subscribers).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub target_rate: u32,
    pub achieved_rate: f64,
    pub rows_per_statement: u32,
    pub subscribers: u32,
    /// Subscribers that never read (not counted in the figures).
    pub stalled: u32,
    pub events: u64,
    pub deliveries_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub resyncs: u64,
    pub closed_early: u64,
    /// CPU of the server process (the whole bench when in-process).
    pub cpu_percent: Option<f64>,
    /// CPU of the bench process (writers, subscribers) when the server is a child.
    pub load_gen_cpu_percent: Option<f64>,
    /// Server `VmRSS` at the end of the run.
    pub rss_mb: Option<f64>,
    /// 1-minute load average when the run started.
    pub load1: Option<f64>,
}

/// Result of the `--find-max-p99-ms` search.
#[derive(Debug, Serialize)]
pub struct Search {
    pub p99_limit_ms: f64,
    pub subscribers: u32,
    pub seconds: u64,
    pub max_rate: Option<u32>,
    /// Why the lowest failing rate failed.
    pub limited_by: Option<String>,
    pub runs: Vec<RunResult>,
}

/// What a run needs to know.
pub struct Ctx {
    pub addr: SocketAddr,
    /// The process whose CPU and RSS are the server's.
    pub server_pid: u32,
    pub url: String,
    pub sql: Arc<str>,
    pub rows: u32,
    pub writers: usize,
    pub client: tokio_postgres::Client,
    /// One viewer token (own subject) per subscriber slot.
    pub tokens: Vec<String>,
    /// Tokens of the stalled subscribers (see `--stalled`).
    pub stalled_tokens: Vec<String>,
}

/// What one subscriber received.
#[derive(Default)]
pub struct Received {
    pub frames: Vec<(i64, Instant)>,
    pub resyncs: u64,
    pub closed: bool,
}

/// The seq of an `event` frame, or `None` for other frames. The server
/// writes `{"type":"event","seq":N,…` (field order fixed by `listen::event`):
/// a prefix check instead of a JSON parse keeps the load generator cheap,
/// with a full parse as fallback.
pub fn event_seq(text: &str) -> Option<i64> {
    if let Some(rest) = text.strip_prefix(r#"{"type":"event","seq":"#) {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if let Ok(seq) = rest[..end].parse() {
            return Some(seq);
        }
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    (v.get("type")?.as_str()? == "event")
        .then(|| v.get("seq")?.as_i64())
        .flatten()
}

/// The `type` of a server frame (other than `event`, which [`event_seq`] reads).
pub fn frame_type(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        ty: String,
    }
    serde_json::from_str::<Typed>(text).ok().map(|t| t.ty)
}

/// Client settings: small read chunks (frames are small) and no Nagle.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// Connects one client with `token` and subscribes it to `events` (from
/// `since`, or from the newest event when `None`); returns once `subscribed` came.
pub async fn connect(
    addr: SocketAddr,
    token: &str,
    since: Option<i64>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let mut req = format!("ws://{addr}/ws").into_client_request()?;
    req.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true)
        .await
        .context("connecting a WebSocket subscriber")?;
    let frame = match since {
        Some(s) => serde_json::json!({"op": "subscribe", "topics": ["events"], "since": s}),
        None => serde_json::json!({"op": "subscribe", "topics": ["events"]}),
    };
    ws.send(Message::text(frame.to_string())).await?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no `subscribed` frame within 30 s")?
            .context("WebSocket closed before `subscribed`")??;
        if let Message::Text(t) = msg {
            match frame_type(t.as_str()).as_deref() {
                Some("subscribed") => break,
                Some("error") => bail!("subscribe refused: {}", t.as_str()),
                _ => {}
            }
        }
    }
    Ok(ws)
}

/// Connects one subscriber to `events` from `since`; its task records every
/// event frame (seq, receipt instant) until `stop`.
pub async fn subscribe(
    addr: SocketAddr,
    token: &str,
    since: i64,
    stop: CancellationToken,
) -> Result<(Arc<AtomicI64>, JoinHandle<Received>)> {
    let mut ws = connect(addr, token, Some(since)).await?;
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
                Some(Ok(Message::Text(t))) => match event_seq(t.as_str()) {
                    Some(seq) => {
                        got.frames.push((seq, now));
                        seen.fetch_max(seq, Ordering::Relaxed);
                    }
                    None if frame_type(t.as_str()).as_deref() == Some("resync") => got.resyncs += 1,
                    None => {}
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
pub async fn writer(
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

/// Starts `writers` writers at `rate` for `seconds`; their results come from the handles.
pub async fn start_writers(
    url: &str,
    sql: &Arc<str>,
    writers: usize,
    rate: u32,
    (start, end): (Instant, Instant),
) -> Result<Vec<JoinHandle<Result<Vec<(i64, Instant)>>>>> {
    let mut clients = Vec::new();
    for _ in 0..writers {
        clients.push(db::connect(url).await?);
    }
    Ok(clients
        .into_iter()
        .enumerate()
        .map(|(k, c)| tokio::spawn(writer(c, sql.clone(), (k, writers, rate), (start, end))))
        .collect())
}

/// Nearest-rank percentile of sorted microsecond samples, in ms.
pub fn pct_ms(sorted_us: &[u32], q: f64) -> Option<f64> {
    let i = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len().max(1)) - 1;
    sorted_us.get(i).map(|&us| round2(f64::from(us) / 1000.0))
}

/// One run: `rate` statements/s for `seconds` with `subs` subscribers.
pub async fn measure(ctx: &Ctx, rate: u32, subs: u32, seconds: u64) -> Result<RunResult> {
    eprintln!("latency run: {rate} st/s, {subs} subscribers, {seconds} s");
    let since: i64 = ctx
        .client
        .query_one("select coalesce(max(seq), 0) from monitor.events", &[])
        .await?
        .try_get(0)?;
    let stop = CancellationToken::new();
    let mut subscribers = Vec::new();
    for token in ctx.tokens.iter().take(subs as usize) {
        subscribers.push(subscribe(ctx.addr, token, since, stop.clone()).await?);
    }
    // Connected, subscribed, then never read: the server must keep them from
    // delaying the others and bound what it holds for them.
    let mut stalled = Vec::with_capacity(ctx.stalled_tokens.len());
    for token in &ctx.stalled_tokens {
        stalled.push(connect(ctx.addr, token, Some(since)).await?);
    }
    let load1 = procfs::load1();
    let me = std::process::id();
    let child = ctx.server_pid != me;
    let cpu0 = (procfs::cpu_seconds(ctx.server_pid), procfs::cpu_seconds(me));
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs(seconds);
    let writers = start_writers(&ctx.url, &ctx.sql, ctx.writers, rate, (start, end)).await?;
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
    let pct =
        |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round2((b - a) / wall * 100.0));
    let cpu_percent = pct(cpu0.0, procfs::cpu_seconds(ctx.server_pid));
    let load_gen_cpu_percent = if child {
        pct(cpu0.1, procfs::cpu_seconds(me))
    } else {
        None
    };
    let rss_mb = procfs::rss_mb(ctx.server_pid).map(round2);
    stop.cancel();
    drop(stalled);
    let (mut lat, mut r) = (
        Vec::with_capacity(commits.len() * subs as usize),
        RunResult {
            target_rate: rate,
            achieved_rate: round2(commits.len() as f64 / seconds as f64),
            rows_per_statement: ctx.rows,
            subscribers: subs,
            stalled: ctx.stalled_tokens.len() as u32,
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
            load_gen_cpu_percent,
            rss_mb,
            load1,
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
    (r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms) = (
        pct_ms(&lat, 0.50),
        pct_ms(&lat, 0.95),
        pct_ms(&lat, 0.99),
        pct_ms(&lat, 1.0),
    );
    Ok(r)
}

/// Doubles the rate from 500 until a run fails, then bisects three times.
pub async fn search(ctx: &Ctx, limit: f64, subs: u32) -> Result<Search> {
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

/// Prints runs as a Markdown table.
pub fn print_table(runs: &[RunResult]) {
    let opt = super::opt;
    println!("| rate target | achieved st/s | rows/st | subscribers | stalled | events | deliveries/s | p50 ms | p95 ms | p99 ms | max ms | lost | dup | out of order | resyncs | server cpu % | load-gen cpu % | server rss MB | load avg |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {:.2} | {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.target_rate, r.achieved_rate, r.rows_per_statement, r.subscribers, r.stalled, r.events, r.deliveries_per_sec,
            opt(r.p50_ms), opt(r.p95_ms), opt(r.p99_ms), opt(r.max_ms),
            r.lost, r.duplicates, r.out_of_order, r.resyncs, opt(r.cpu_percent),
            opt(r.load_gen_cpu_percent), opt(r.rss_mb), opt(r.load1)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_seq_reads_the_prefix_and_falls_back_to_json() {
        assert_eq!(
            event_seq(r#"{"type":"event","seq":1042,"kind":"x"}"#),
            Some(1042)
        );
        assert_eq!(event_seq(r#"{"seq":7,"type":"event"}"#), Some(7));
        assert_eq!(event_seq(r#"{"type":"resync","since":3}"#), None);
        assert_eq!(event_seq("not json"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(pct_ms(&v, 0.5), Some(50.0));
        assert_eq!(pct_ms(&v, 0.99), Some(99.0));
        assert_eq!(pct_ms(&v, 1.0), Some(100.0));
        assert_eq!(pct_ms(&[], 0.5), None);
    }
}
