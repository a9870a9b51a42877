//! The benchmark suite (the `ingestwatch-bench` binary): one command, several
//! modes (`--mode`, see [`args`]), every result printed as Markdown tables
//! (and `--json`).
//!
//! - [`latency`]: commit → WebSocket receipt latency, loss, duplicates, and
//!   the highest sustained rate under a p99 bound;
//! - [`memory`]: server RSS per idle WebSocket subscriber, up to 10,000;
//! - [`triggers`]: insert throughput with and without the capture triggers;
//! - [`rest`]: `GET /api/kpis` latency at a paced request rate;
//! - [`soak`]: a long run at a high rate, sampling memory, holes, queues, tasks.
//!
//! Set-up shared by the server modes: a throwaway cluster (`fsync=off`)
//! unless `DATABASE_URL` is given, a fresh database `iw_bench_<random>` on it
//! (migrated, dropped `with (force)` at the end) with one source `bench`, and
//! the real server (see [`server`]) — a fresh one per mode, so one mode's
//! leftovers (freed but retained memory, queues) never flatter the next.
//! Every table carries the 1-minute load average: the machine is shared.

pub mod args;
mod latency;
mod memory;
mod procfs;
mod rest;
mod server;
mod soak;
mod triggers;

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use args::{BenchArgs, BenchMode, BenchServer};
use ingestwatch_server::db;
use ingestwatch_sim::TempCluster;
use server::Running;

/// Everything measured, as printed and as written to `--json`.
#[derive(Debug, Serialize)]
struct Report {
    nproc: usize,
    cpu_model: String,
    postgres: Option<String>,
    database: &'static str,
    date: String,
    server: BenchServer,
    writers: usize,
    load1_start: Option<f64>,
    load1_end: Option<f64>,
    runs: Vec<latency::RunResult>,
    search: Option<latency::Search>,
    memory: Option<memory::Memory>,
    triggers: Option<Vec<triggers::Overhead>>,
    rest: Option<rest::Rest>,
    soak: Option<soak::Soak>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A figure with two decimals, or `–`.
fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.2}"))
}

/// The modes asked for: `--mode`, plus soak with `--soak`; latency when none.
fn modes(args: &BenchArgs) -> Vec<BenchMode> {
    let mut m = args.mode.clone();
    if args.soak.is_some() && !m.contains(&BenchMode::Soak) {
        m.push(BenchMode::Soak);
    }
    if m.is_empty() {
        m.push(BenchMode::Latency);
    }
    m
}

/// Runs the benchmark and prints the tables (and writes `--json`).
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.rates.is_empty() || args.rates.contains(&0) || args.subscribers.is_empty() {
        bail!("--rates and --subscribers need at least one value, rates above 0");
    }
    if args.writers == 0 || args.seconds == 0 || args.rows == 0 {
        bail!("--writers, --seconds and --rows must be at least 1");
    }
    let modes = modes(&args);
    let needs_child = modes.contains(&BenchMode::Memory) || modes.contains(&BenchMode::Soak);
    if needs_child && args.server == BenchServer::InProcess {
        bail!("memory and soak measure the server alone: they need --server child");
    }
    let mut report = Report {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: procfs::cpu_model(),
        postgres: None,
        database: if args.database_url.is_some() {
            "DATABASE_URL"
        } else {
            "throwaway cluster (fsync=off)"
        },
        date: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        server: args.server,
        writers: args.writers,
        load1_start: procfs::load1(),
        load1_end: None,
        runs: Vec::new(),
        search: None,
        memory: None,
        triggers: None,
        rest: None,
        soak: None,
    };
    let server_modes: Vec<BenchMode> = modes
        .iter()
        .copied()
        .filter(|m| *m != BenchMode::Triggers)
        .collect();
    if !server_modes.is_empty() {
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
            (Some(url), _) => with_database(&args, url, &server_modes, &mut report).await,
            (None, Some(c)) => {
                with_database(&args, &c.admin_url(), &server_modes, &mut report).await
            }
            (None, None) => Err(anyhow::anyhow!("no database to benchmark")),
        };
        if let Some(c) = cluster {
            if let Err(e) = c.stop().await {
                eprintln!("warning: stopping the throwaway cluster: {e:#}");
            }
        }
        result?;
    }
    if modes.contains(&BenchMode::Triggers) {
        report.triggers = Some(
            triggers::run(
                args.database_url.as_deref(),
                &args.trigger_rows,
                args.trigger_connections,
                args.seconds,
            )
            .await?,
        );
    }
    report.load1_end = procfs::load1();
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Creates the bench database, runs the server modes on it and drops it.
async fn with_database(
    args: &BenchArgs,
    admin: &str,
    modes: &[BenchMode],
    report: &mut Report,
) -> Result<()> {
    let name = format!("iw_bench_{:08x}", rand::random::<u32>());
    db::connect(admin)
        .await?
        .batch_execute(&format!("create database {name}"))
        .await
        .with_context(|| format!("creating database {name}"))?;
    let result = server_modes(args, &with_dbname(admin, &name), modes, report).await;
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

/// Migrates `url` and runs each server mode on a fresh server.
async fn server_modes(
    args: &BenchArgs,
    url: &str,
    modes: &[BenchMode],
    report: &mut Report,
) -> Result<()> {
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
    report.postgres = Some(
        client
            .query_one("select version()", &[])
            .await?
            .try_get(0)?,
    );
    let sql: Arc<str> = format!(
        "begin; insert into ingest.raw_records (source_id, payload) \
         select {source}, jsonb_build_object('i', g) from generate_series(1, {}) g; \
         select currval(pg_get_serial_sequence('monitor.events', 'seq')); commit",
        args.rows
    )
    .into();
    let most = [
        args.subscribers.iter().copied().max().unwrap_or(0),
        args.idle_subscribers.iter().copied().max().unwrap_or(0),
        args.soak_subscribers,
        1,
    ]
    .into_iter()
    .max()
    .unwrap_or(1);
    let secret = server::secret();
    eprintln!("minting {most} viewer tokens…");
    let mut tokens = server::tokens(&secret, most + args.stalled)?;
    let stalled_tokens = tokens.split_off(most as usize);
    let max_conns = (most + args.stalled) as usize + 100;
    for mode in modes {
        if *mode == BenchMode::Rest {
            eprintln!(
                "rest: loading five minutes of history for {} sources…",
                args.kpi_sources
            );
            rest::preload(&client, args.kpi_sources).await?;
        }
        let srv = Running::start(args.server, url, &secret, max_conns).await?;
        eprintln!("server ready on {} (pid {})", srv.addr, srv.pid);
        let outcome = async {
            match mode {
                BenchMode::Latency => {
                    let ctx = latency::Ctx {
                        addr: srv.addr,
                        server_pid: srv.pid,
                        url: url.to_string(),
                        sql: sql.clone(),
                        rows: args.rows,
                        writers: args.writers,
                        client: db::connect(url).await?,
                        tokens: tokens.clone(),
                        stalled_tokens: stalled_tokens.clone(),
                    };
                    for &rate in &args.rates {
                        for &subs in &args.subscribers {
                            report
                                .runs
                                .push(latency::measure(&ctx, rate, subs, args.seconds).await?);
                        }
                    }
                    if let (Some(limit), Some(&subs)) =
                        (args.find_max_p99_ms, args.subscribers.first())
                    {
                        report.search = Some(latency::search(&ctx, limit, subs).await?);
                    }
                }
                BenchMode::Memory => {
                    report.memory = Some(memory::run(&srv, &tokens, &args.idle_subscribers).await?);
                }
                BenchMode::Rest => {
                    report.rest = Some(
                        rest::run(
                            &srv,
                            url,
                            &sql,
                            &tokens[0],
                            &args.kpi_window,
                            (args.kpi_rps, args.kpi_connections, args.seconds),
                            args.kpi_sources,
                        )
                        .await?,
                    );
                }
                BenchMode::Soak => {
                    report.soak = Some(
                        soak::run(
                            &srv,
                            &client,
                            url,
                            &sql,
                            &tokens,
                            (
                                args.soak.unwrap_or(600),
                                args.soak_rate,
                                args.soak_subscribers,
                                args.soak_interval.max(1),
                            ),
                            (args.writers, args.rows),
                        )
                        .await?,
                    );
                }
                BenchMode::Triggers => {}
            }
            anyhow::Ok(())
        }
        .await;
        let log = srv.log_tail();
        srv.stop().await?;
        if let Err(e) = outcome {
            if !log.is_empty() {
                eprintln!("server log (last lines):\n{log}");
            }
            return Err(e);
        }
    }
    Ok(())
}

fn print_report(rep: &Report) {
    println!("## ingestwatch-bench, {}", rep.date);
    println!();
    println!(
        "- machine: {} CPUs (available_parallelism), {}; load average (1 min) {} at the start, {} at the end",
        rep.nproc,
        rep.cpu_model,
        opt(rep.load1_start),
        opt(rep.load1_end)
    );
    if let Some(pg) = &rep.postgres {
        println!("- PostgreSQL: {pg} ({})", rep.database);
    }
    println!(
        "- server: {}",
        match rep.server {
            BenchServer::Child => "the server (`ingestwatch-bench serve`) in a child process: server cpu % and RSS are its own; load-gen cpu % is the bench process (writers, subscribers, HTTP clients)",
            BenchServer::InProcess => "in the bench process: cpu % and RSS include the writers and subscribers",
        }
    );
    println!("- cpu %: 100 = one core (CLK_TCK assumed 100); load avg: 1-minute load average when the run started");
    if !rep.runs.is_empty() {
        println!();
        println!(
            "### Commit → WebSocket receipt ({} writer connections, one statement per transaction)",
            rep.writers
        );
        println!();
        latency::print_table(&rep.runs);
    }
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
        latency::print_table(&s.runs);
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
    if let Some(m) = &rep.memory {
        println!();
        println!("### Memory per idle WebSocket subscriber (subscribed to events)");
        println!();
        memory::print(m);
    }
    if let Some(t) = &rep.triggers {
        println!();
        println!("### Pipeline trigger overhead (INSERT into ingest.raw_records, autocommit)");
        println!();
        triggers::print(t);
    }
    if let Some(r) = &rep.rest {
        println!();
        println!(
            "### KPI REST latency (GET /api/kpis, paced; a writer at {} st/s meanwhile)",
            rest::WRITE_RATE
        );
        println!();
        rest::print(r);
    }
    if let Some(s) = &rep.soak {
        println!();
        println!("### Soak");
        println!();
        soak::print(s);
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
