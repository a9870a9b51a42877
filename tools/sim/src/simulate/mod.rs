//! A simulated meetings-ingestion pipeline, for the demo, load and chaos tests.
//!
//! It writes only to the `ingest.*` tables, the way a real pipeline would, so
//! the monitor sees nothing it would not see in production. Five sources
//! deliver meeting records in their own JSON shapes (a CRM, a calendar sync,
//! ERP room-booking files, Zoom webhooks and a legacy SFTP export). For each
//! source the pipeline runs *runs*: it inserts an `ingest.runs` row, fetches
//! batches of 1–50 `raw_records` (status `pending`), validates them (rejects
//! with `ingest.errors` rows), normalizes the good ones into `ingest.meetings`
//! (with the odd warning), and finishes the run as `succeeded`, `partial` or,
//! after a fetch error, `failed`.
//!
//! What an ops wallboard should get to show:
//! - rejects at 3–8 % per source, and a "bad minute" now and then in which one
//!   source rejects ~40 % of its records;
//! - traffic bursts: 5× the configured rate for ~10 s every few minutes;
//! - `legacy-ftp` stalls: after a few minutes of normal work it writes nothing
//!   for 4–7 minutes (its expected interval is 2 minutes), then resumes;
//! - ~2 % of transactions rolled back on purpose (`BEGIN`, an `INSERT`,
//!   `ROLLBACK`; each is followed by a `W_LOAD_RETRY` warning and a retry).
//!
//! Every step is one set-based statement (`INSERT … SELECT … FROM unnest(…)`,
//! `UPDATE … WHERE id = any($1)`), so one statement is one monitor event.
//! Statements are paced to [`SimOptions::rate`] per second overall by one
//! ticker, and shared by [`SimOptions::writers`] tasks, each with its own
//! connection, whose transactions overlap and commit out of `seq` order.
//! A writer that loses its connection logs a warning, reconnects with backoff
//! and carries on with its runs; nothing here panics on a database error.
//!
//! Given the seed, each writer's choices are reproducible; which writer gets
//! which tick, and the time-based effects (bursts, bad minutes, stalls,
//! meeting dates), depend on timing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{Datelike, NaiveDateTime, NaiveTime, Utc};
use ingestwatch_server::db::Target;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Statement};

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Target statements per second across all sources (each statement = one monitor event).
    pub rate: f64,
    /// Stop after this long (`None` = until shutdown).
    pub duration: Option<Duration>,
    /// Number of concurrent writer connections/tasks (default 4).
    pub writers: usize,
    /// RNG seed for reproducibility.
    pub seed: u64,
}

impl Default for SimOptions {
    /// 20 statements/s, until shutdown, 4 writers, seed 42.
    fn default() -> Self {
        SimOptions {
            rate: 20.0,
            duration: None,
            writers: 4,
            seed: 42,
        }
    }
}

mod issues;
mod payloads;
mod profiles;
mod render;
mod schedule;
mod stats;
mod writer;

use issues::*;
use payloads::*;
use profiles::*;
use render::*;
use schedule::*;
pub use stats::SimStats;
use writer::*;

/// Ensures the demo sources exist (idempotent: `on conflict (name) do nothing`,
/// so existing sources keep their kind and expected interval).
pub async fn ensure_sources(client: &Client) -> Result<()> {
    let names: Vec<&str> = SOURCES.iter().map(|s| s.name).collect();
    let kinds: Vec<&str> = SOURCES.iter().map(|s| s.kind).collect();
    let intervals: Vec<String> = SOURCES
        .iter()
        .map(|s| format!("{} seconds", s.interval_secs))
        .collect();
    client
        .execute(
            "insert into ingest.sources (name, kind, expected_interval)
             select t.name, t.kind, t.every::interval
               from unnest($1::text[], $2::text[], $3::text[]) with ordinality as t(name, kind, every, ord)
              order by t.ord
             on conflict (name) do nothing",
            &[&names, &kinds, &intervals],
        )
        .await
        .context("upserting the demo sources into ingest.sources")?;
    Ok(())
}

/// Runs the simulated pipeline against `database_url` until `opts.duration`
/// elapses or `shutdown` resolves, and returns what it did.
///
/// Fails only on bad options or an unparsable URL: an unreachable database or
/// a failing statement is logged (`tracing::warn`) and retried with backoff.
pub async fn run(
    database_url: &str,
    opts: SimOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<SimStats> {
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        bail!(
            "simulator rate must be a positive number of statements per second, not {}",
            opts.rate
        );
    }
    let target = Target::parse(database_url).context("the simulator's database URL")?;
    let writers = opts.writers.max(1);
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        permits: Semaphore::new(0),
        schedule: Schedule::new(opts.seed, started),
        last_start: Mutex::new(vec![None; SOURCES.len()]),
        stats: Mutex::new(SimStats::default()),
    });
    tracing::info!(
        rate = opts.rate,
        writers,
        seed = opts.seed,
        "simulated pipeline starting"
    );

    let pacer = tokio::spawn(pace(shared.clone(), opts.rate, writers, stop_rx.clone()));
    let tasks: Vec<_> = (0..writers)
        .map(|index| {
            let mut target = target.clone();
            target
                .config
                .application_name(format!("ingestwatch-sim-{index}"));
            let writer = Writer::new(index, opts.seed, target, shared.clone(), stop_rx.clone());
            tokio::spawn(writer.run())
        })
        .collect();

    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut deadline = std::pin::pin!(deadline);
    let mut report = tokio::time::interval_at(started + REPORT_EVERY, REPORT_EVERY);
    report.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.as_mut() => break,
            () = deadline.as_mut() => break,
            _ = report.tick() => {
                let s = shared.stats_snapshot();
                tracing::info!(
                    statements = s.statements, records = s.records, rejected = s.rejected,
                    runs = s.runs, rolled_back = s.rolled_back,
                    per_sec = format!("{:.1}", s.statements as f64 / started.elapsed().as_secs_f64()),
                    "simulated pipeline progress"
                );
            }
        }
    }
    // Receivers only go away when their tasks are done; nothing to do then.
    let _ = stop_tx.send(true);
    if let Err(e) = pacer.await {
        tracing::warn!(error = %e, "simulator pacer task failed");
    }
    for task in tasks {
        task.await.context("a simulator writer task failed")?;
    }
    let stats = shared.stats_snapshot();
    tracing::info!(
        statements = stats.statements,
        per_sec = format!(
            "{:.1}",
            stats.statements as f64 / started.elapsed().as_secs_f64()
        ),
        records = stats.records,
        rolled_back = stats.rolled_back,
        "simulated pipeline stopped"
    );
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_seeded_and_legacy_stalls_longer_than_its_interval() {
        let start = Instant::now();
        let a = Schedule::new(7, start);
        let b = Schedule::new(7, start);
        assert_eq!(format!("{:?}", a.bursts), format!("{:?}", b.bursts));
        assert!(!a.stalls.is_empty());
        let legacy = SOURCES
            .iter()
            .position(|s| s.stalls)
            .expect("a stalling source");
        for w in &a.stalls {
            assert!(w.to - w.from >= Duration::from_secs(SOURCES[legacy].interval_secs * 2));
        }
        assert!(a.stalled(legacy, start + a.stalls[0].from + Duration::from_secs(1)));
        assert!(!a.stalled(0, start + a.stalls[0].from + Duration::from_secs(1)));
        assert!(a.in_burst(start + a.bursts[0].from));
    }

    #[test]
    fn every_defect_and_quirk_renders_with_a_matching_issue() {
        let mut rng = StdRng::seed_from_u64(1);
        let defects = [
            Defect::MissingField,
            Defect::TzInvalid,
            Defect::DateParse,
            Defect::Duplicate,
            Defect::AttendeeLimit,
            Defect::EndBeforeStart,
        ];
        let quirks = [
            Quirk::LongTitle,
            Quirk::MissingEnd,
            Quirk::DuplicateAttendee,
        ];
        for p in &SOURCES {
            for d in defects {
                let m = Meeting::generate(&mut rng, Some(d), None);
                let (v, outcome) = render(p.format, &m, "X-1", Some(d), None, &mut rng);
                assert!(v.is_object());
                match outcome {
                    Outcome::Reject(i) => {
                        assert!(i.code.starts_with("E_") && i.details.get("field").is_some())
                    }
                    Outcome::Clean(_) => panic!("{d:?} must reject"),
                }
            }
            for q in quirks {
                let m = Meeting::generate(&mut rng, None, Some(q));
                let (_, outcome) = render(p.format, &m, "X-2", None, Some(q), &mut rng);
                assert!(matches!(outcome, Outcome::Clean(Some(ref w)) if w.code.starts_with("W_")));
            }
        }
    }

    #[test]
    fn runs_fetch_ahead_and_finish_last() {
        let r = RunState::new(0, 3);
        let steps = format!("{:?}", r.steps);
        assert_eq!(
            steps,
            "[Start, Fetch(0), Fetch(1), Validate(0), Normalize(0), Fetch(2), Validate(1), Normalize(1), Validate(2), Normalize(2), Finish]"
        );
    }
}
