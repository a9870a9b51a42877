//! Pipeline trigger overhead: what the capture triggers cost the pipeline.
//! On a scratch database (migrated, one source, one run), `--trigger-connections`
//! connections insert into `ingest.raw_records` as fast as they can for
//! `--seconds`, each statement its own transaction (autocommit, as a pipeline
//! loader does), `--trigger-rows` rows per statement — with the monitor's
//! triggers, and with them disabled (`alter table ingest.raw_records disable
//! trigger user`; constraint triggers stay). Tables are truncated before every
//! run; after one discarded warm-up run, on and off alternate (off, on, on,
//! off, on, off, off, on) and each figure is the mean of its four runs, so a
//! change in the machine's load hits both alike.
//!
//! Without `DATABASE_URL` it runs twice, on a throwaway cluster with
//! `fsync=off` and on one with `fsync=on` (each commit waits for its WAL
//! flush, as on a durable server); with `DATABASE_URL` once, on that server,
//! reporting its `fsync` setting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{procfs, round2, with_dbname};
use ingestwatch_server::db;
use ingestwatch_sim::TempCluster;

/// Triggers off (false) and on (true), in the order run: symmetric, so a
/// linear drift in the machine's speed hits both alike.
const ORDER: [bool; 8] = [false, true, true, false, true, false, false, true];

/// One (fsync, rows per statement) comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    pub database: String,
    pub fsync: String,
    pub rows_per_statement: u32,
    pub connections: usize,
    pub seconds: u64,
    pub off_statements_per_sec: f64,
    pub off_rows_per_sec: f64,
    pub on_statements_per_sec: f64,
    pub on_rows_per_sec: f64,
    /// 1 − on/off, in percent.
    pub overhead_percent: f64,
    pub load1: Option<f64>,
}

/// Runs every comparison (throwaway clusters unless `url` is given).
pub async fn run(
    url: Option<&str>,
    rows: &[u32],
    connections: usize,
    seconds: u64,
) -> Result<Vec<Overhead>> {
    let mut out = Vec::new();
    match url {
        Some(u) => out.extend(on_server(u, "DATABASE_URL", rows, connections, seconds).await?),
        None => {
            for fsync in [false, true] {
                eprintln!(
                    "triggers: throwaway cluster with fsync={}",
                    if fsync { "on" } else { "off" }
                );
                let c = TempCluster::start_with_fsync(fsync)
                    .await
                    .context("starting a throwaway cluster")?;
                let r = on_server(
                    &c.admin_url(),
                    "throwaway cluster",
                    rows,
                    connections,
                    seconds,
                )
                .await;
                if let Err(e) = c.stop().await {
                    eprintln!("warning: stopping the throwaway cluster: {e:#}");
                }
                out.extend(r?);
            }
        }
    }
    Ok(out)
}

async fn on_server(
    admin: &str,
    database: &str,
    rows: &[u32],
    connections: usize,
    seconds: u64,
) -> Result<Vec<Overhead>> {
    let name = format!("iw_trig_{:08x}", rand::random::<u32>());
    db::connect(admin)
        .await?
        .batch_execute(&format!("create database {name}"))
        .await?;
    let url = with_dbname(admin, &name);
    let result = async {
        let mut c = db::connect(&url).await?;
        db::migrate::run(&mut c).await?;
        let fsync: String = c.query_one("show fsync", &[]).await?.try_get(0)?;
        let source: i64 = c
            .query_one(
                "insert into ingest.sources (name) values ('trig') returning id",
                &[],
            )
            .await?
            .try_get(0)?;
        let run: i64 = c
            .query_one(
                "insert into ingest.runs (source_id) values ($1) returning id",
                &[&source],
            )
            .await?
            .try_get(0)?;
        let mut out = Vec::new();
        for &n in rows {
            // Discarded: a fresh cluster creates (rather than recycles) its
            // WAL segments and fills its caches during its first runs, which
            // made the first `off` run 10-20 % slower than the last.
            c.batch_execute("truncate ingest.raw_records, monitor.events cascade; checkpoint")
                .await?;
            insert_load(&url, (source, run, n), connections, seconds).await?;
            let load1 = procfs::load1();
            let mut sums = [0u64; 2]; // off, on
            for triggers_on in ORDER {
                c.batch_execute("truncate ingest.raw_records, monitor.events cascade; checkpoint")
                    .await?;
                c.batch_execute(&format!(
                    "alter table ingest.raw_records {} trigger user",
                    if triggers_on { "enable" } else { "disable" }
                ))
                .await?;
                let st = insert_load(&url, (source, run, n), connections, seconds).await?;
                eprintln!(
                    "triggers: fsync={fsync} rows/st={n} triggers {}: {:.0} st/s",
                    if triggers_on { "on" } else { "off" },
                    st as f64 / seconds as f64
                );
                sums[usize::from(triggers_on)] += st;
            }
            c.batch_execute("alter table ingest.raw_records enable trigger user")
                .await?;
            let per_sec = |s: u64| s as f64 / (ORDER.len() / 2) as f64 / seconds as f64;
            let (off, on) = (per_sec(sums[0]), per_sec(sums[1]));
            out.push(Overhead {
                database: database.to_string(),
                fsync: fsync.clone(),
                rows_per_statement: n,
                connections,
                seconds,
                off_statements_per_sec: round2(off),
                off_rows_per_sec: round2(off * f64::from(n)),
                on_statements_per_sec: round2(on),
                on_rows_per_sec: round2(on * f64::from(n)),
                overhead_percent: round2(if off > 0.0 {
                    (1.0 - on / off) * 100.0
                } else {
                    0.0
                }),
                load1,
            });
        }
        anyhow::Ok(out)
    }
    .await;
    if let Ok(c) = db::connect(admin).await {
        let _ = c
            .batch_execute(&format!("drop database if exists {name} with (force)"))
            .await;
    }
    result
}

/// `connections` connections inserting `n`-row statements for `seconds`;
/// returns the statements committed.
async fn insert_load(
    url: &str,
    (source, run, n): (i64, i64, u32),
    connections: usize,
    seconds: u64,
) -> Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let c = db::connect(url).await?;
        let (done, stop) = (done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let stmt = c
                .prepare(
                    "insert into ingest.raw_records (run_id, source_id, external_id, payload)
                     select $1, $2, 'ext-' || g, jsonb_build_object('title', 'Meeting ' || g, 'n', g)
                       from generate_series(1, $3::int) g",
                )
                .await?;
            let n = n as i32;
            while !stop.load(Ordering::Relaxed) {
                c.execute(&stmt, &[&run, &source, &n]).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let count = done.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.context("insert task")??;
    }
    let _ = started;
    Ok(count)
}

/// Prints the comparisons as a Markdown table.
pub fn print(rows: &[Overhead]) {
    println!("| database | fsync | rows/statement | connections | s | triggers off st/s | off rows/s | triggers on st/s | on rows/s | overhead % | load avg |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {} |",
            r.database,
            r.fsync,
            r.rows_per_statement,
            r.connections,
            r.seconds,
            r.off_statements_per_sec,
            r.off_rows_per_sec,
            r.on_statements_per_sec,
            r.on_rows_per_sec,
            r.overhead_percent,
            super::opt(r.load1)
        );
    }
}
