//! Soak: a fresh server (child process) under `--soak-rate` statements/s
//! with `--soak-subscribers` subscribers for `--soak` seconds. Every
//! `--soak-interval` seconds a sample: the server's RSS and CPU (from
//! `/proc`), and from its `/metrics` the open holes, buffered events, queued
//! frames (sum and longest queue), ring size, live buckets, runtime tasks and
//! clients. Subscribers only count (seq order, duplicates, last seq) so the
//! load generator stays flat too; the first subscriber records every frame,
//! which gives latency percentiles per interval against the writers' commits.
//!
//! Verdict: the RSS slope (least squares, MB per minute) over the second half
//! of the samples, after the event ring and the 1-second buckets (400 s) have
//! filled; under 1 MB/min counts as flat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::latency::{self, event_seq, pct_ms};
use super::server::Running;
use super::{procfs, round2};

/// One sample.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: u64,
    pub committed: u64,
    pub watermark: f64,
    pub server_rss_mb: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    pub open_holes: f64,
    pub buffered_events: f64,
    pub hub_queued: f64,
    pub hub_queue_max: f64,
    pub ring_events: f64,
    pub live_buckets: f64,
    pub tasks: f64,
    pub ws_clients: f64,
    pub resynced: f64,
    /// Latency of the probe subscriber for the events committed in this interval.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub load1: Option<f64>,
}

/// The soak.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    pub seconds: u64,
    pub rate: u32,
    pub subscribers: u32,
    pub writers: usize,
    pub rows_per_statement: u32,
    pub achieved_rate: f64,
    pub events: u64,
    pub lost: u64,
    pub duplicates_or_out_of_order: u64,
    pub closed_early: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub rss_slope_mb_per_min: Option<f64>,
    pub flat: Option<bool>,
    pub samples: Vec<Sample>,
}

struct Counter {
    last: AtomicI64,
    count: AtomicU64,
    bad: AtomicU64,
}

/// Least-squares slope of (t seconds, y) in y per minute.
fn slope_per_min(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 3 {
        return None;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    (den > 0.0).then(|| num / den * 60.0)
}

/// Runs the soak against `server`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    server: &Running,
    client: &tokio_postgres::Client,
    url: &str,
    sql: &Arc<str>,
    tokens: &[String],
    (seconds, rate, subs, interval): (u64, u32, u32, u64),
    (writers, rows): (usize, u32),
) -> Result<Soak> {
    eprintln!("soak: {rate} st/s, {subs} subscribers, {seconds} s, a sample every {interval} s");
    let since: i64 = client
        .query_one("select coalesce(max(seq), 0) from monitor.events", &[])
        .await?
        .try_get(0)?;
    let stop = CancellationToken::new();
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    let probe_frames = Arc::new(std::sync::Mutex::new(Vec::<(i64, Instant)>::new()));
    let closed = Arc::new(AtomicU64::new(0));
    for (i, token) in tokens.iter().take(subs as usize).enumerate() {
        let mut ws = latency::connect(server.addr, token, Some(since)).await?;
        let c = Arc::new(Counter {
            last: AtomicI64::new(since),
            count: AtomicU64::new(0),
            bad: AtomicU64::new(0),
        });
        counters.push(c.clone());
        let (stop, probe, closed) = (
            stop.clone(),
            (i == 0).then(|| probe_frames.clone()),
            closed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    m = ws.next() => m,
                    () = stop.cancelled() => break,
                };
                let now = Instant::now();
                match m {
                    Some(Ok(Message::Text(t))) => {
                        if let Some(seq) = event_seq(t.as_str()) {
                            if seq <= c.last.load(Ordering::Relaxed) {
                                c.bad.fetch_add(1, Ordering::Relaxed);
                            }
                            c.last.fetch_max(seq, Ordering::Relaxed);
                            c.count.fetch_add(1, Ordering::Relaxed);
                            if let Some(p) = &probe {
                                p.lock().unwrap_or_else(|e| e.into_inner()).push((seq, now));
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }));
    }
    let me = std::process::id();
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs(seconds);
    let writer_tasks = latency::start_writers(url, sql, writers, rate, (start, end)).await?;
    let mut samples = Vec::new();
    let mut cpu_prev = (procfs::cpu_seconds(server.pid), Instant::now());
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(interval)).into(),
        Duration::from_secs(interval),
    );
    let watermark0 = since as f64;
    while Instant::now() + Duration::from_millis(100) < end {
        tick.tick().await;
        let t_s = start.elapsed().as_secs();
        let m = server.metrics().await.unwrap_or_default();
        let g = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
        let cpu = procfs::cpu_seconds(server.pid);
        let now = Instant::now();
        let server_cpu_percent = cpu
            .zip(cpu_prev.0)
            .map(|(b, a)| round2((b - a) / now.duration_since(cpu_prev.1).as_secs_f64() * 100.0));
        cpu_prev = (cpu, now);
        let wm = g("ingestwatch_watermark");
        let s = Sample {
            t_s,
            committed: (wm - watermark0).max(0.0) as u64,
            watermark: wm,
            server_rss_mb: procfs::rss_mb(server.pid).map(round2),
            server_cpu_percent,
            open_holes: g("ingestwatch_open_holes"),
            buffered_events: g("ingestwatch_buffered_events"),
            hub_queued: g("ingestwatch_hub_queued"),
            hub_queue_max: g("ingestwatch_hub_queue_max"),
            ring_events: g("ingestwatch_hub_ring_events"),
            live_buckets: g("ingestwatch_live_buckets"),
            tasks: g("ingestwatch_runtime_tasks"),
            ws_clients: g("ingestwatch_ws_clients"),
            resynced: g("ingestwatch_ws_resynced_total"),
            p50_ms: None,
            p99_ms: None,
            load1: procfs::load1(),
        };
        eprintln!(
            "soak t={t_s}s rss={:?} MB holes={} buffered={} queued={} tasks={} load={:?}",
            s.server_rss_mb, s.open_holes, s.buffered_events, s.hub_queued, s.tasks, s.load1
        );
        samples.push(s);
    }
    let mut commits: HashMap<i64, Instant> = HashMap::new();
    for w in writer_tasks {
        commits.extend(w.await.context("writer task")??);
    }
    let target = commits.keys().copied().max().unwrap_or(since);
    let drain = Instant::now() + Duration::from_secs(10);
    while Instant::now() < drain
        && counters
            .iter()
            .any(|c| c.last.load(Ordering::Relaxed) < target)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let n = commits.len() as u64;
    let (mut lost, mut bad) = (0, 0);
    for c in &counters {
        let bad_c = c.bad.load(Ordering::Relaxed);
        bad += bad_c;
        lost += n.saturating_sub(c.count.load(Ordering::Relaxed) - bad_c);
    }
    // Probe latency: per interval (by commit time) and overall.
    let frames = std::mem::take(&mut *probe_frames.lock().unwrap_or_else(|e| e.into_inner()));
    let mut per: Vec<Vec<u32>> = vec![Vec::new(); samples.len() + 1];
    let mut all = Vec::with_capacity(frames.len());
    for (seq, at) in frames {
        if let Some(c) = commits.get(&seq) {
            let us =
                u32::try_from(at.saturating_duration_since(*c).as_micros()).unwrap_or(u32::MAX);
            let i = (c.saturating_duration_since(start).as_secs() / interval.max(1)) as usize;
            per[i.min(samples.len())].push(us);
            all.push(us);
        }
    }
    for (s, l) in samples.iter_mut().zip(per.iter_mut()) {
        l.sort_unstable();
        (s.p50_ms, s.p99_ms) = (pct_ms(l, 0.5), pct_ms(l, 0.99));
    }
    all.sort_unstable();
    let half: Vec<(f64, f64)> = samples
        .iter()
        .skip(samples.len() / 2)
        .filter_map(|s| Some((s.t_s as f64, s.server_rss_mb?)))
        .collect();
    let slope = slope_per_min(&half).map(round2);
    let _ = me;
    Ok(Soak {
        seconds,
        rate,
        subscribers: subs,
        writers,
        rows_per_statement: rows,
        achieved_rate: round2(n as f64 / seconds as f64),
        events: n,
        lost,
        duplicates_or_out_of_order: bad,
        closed_early: closed.load(Ordering::Relaxed),
        p50_ms: pct_ms(&all, 0.5),
        p99_ms: pct_ms(&all, 0.99),
        max_ms: pct_ms(&all, 1.0),
        rss_slope_mb_per_min: slope,
        flat: slope.map(|s| s.abs() < 1.0),
        samples,
    })
}

/// Prints the soak as a summary line and a Markdown table of samples.
pub fn print(s: &Soak) {
    let opt = super::opt;
    println!(
        "{} s at {} st/s target ({} achieved, {} rows/st, {} writers), {} subscribers: {} events, lost {}, duplicates/out of order {}, closed early {}; probe latency p50 {} / p99 {} / max {} ms; RSS slope over the second half {} MB/min → {}",
        s.seconds, s.rate, s.achieved_rate, s.rows_per_statement, s.writers, s.subscribers, s.events, s.lost,
        s.duplicates_or_out_of_order, s.closed_early, opt(s.p50_ms), opt(s.p99_ms), opt(s.max_ms),
        opt(s.rss_slope_mb_per_min),
        match s.flat { Some(true) => "flat", Some(false) => "NOT flat", None => "unknown" }
    );
    println!();
    println!("| t s | delivered | server RSS MB | server cpu % | open holes | buffered | queued (sum) | longest queue | ring | live buckets | tasks | ws clients | resyncs | p50 ms | p99 ms | load avg |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for x in &s.samples {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.t_s,
            x.committed,
            opt(x.server_rss_mb),
            opt(x.server_cpu_percent),
            x.open_holes,
            x.buffered_events,
            x.hub_queued,
            x.hub_queue_max,
            x.ring_events,
            x.live_buckets,
            x.tasks,
            x.ws_clients,
            x.resynced,
            opt(x.p50_ms),
            opt(x.p99_ms),
            opt(x.load1)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_per_minute() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i) * 10.0, 100.0 + f64::from(i)))
            .collect();
        let s = slope_per_min(&pts).expect("slope");
        assert!((s - 6.0).abs() < 1e-9, "{s}");
        assert_eq!(slope_per_min(&pts[..2]), None);
    }
}
