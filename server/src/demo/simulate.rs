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
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Statement};

use crate::db::Target;

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

/// What the simulator did. Counts cover committed work, except `statements`
/// (which also counts the one statement of each deliberately rolled-back
/// transaction) and `rolled_back`; so `statements - rolled_back` is the
/// number of monitor events the pipeline caused.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SimStats {
    /// Data-changing statements executed on `ingest.*` tables.
    pub statements: u64,
    /// Raw records received (`ingest.raw_records` rows inserted).
    pub records: u64,
    /// Raw records marked `normalized` (each with an `ingest.meetings` row).
    pub normalized: u64,
    /// Raw records marked `rejected`.
    pub rejected: u64,
    /// `ingest.errors` rows with severity `error`.
    pub errors: u64,
    /// `ingest.errors` rows with severity `warning`.
    pub warnings: u64,
    /// Runs started (`ingest.runs` rows inserted).
    pub runs: u64,
    /// Transactions rolled back on purpose.
    pub rolled_back: u64,
}

impl SimStats {
    /// Adds `other` to `self`.
    fn add(&mut self, other: &SimStats) {
        self.statements += other.statements;
        self.records += other.records;
        self.normalized += other.normalized;
        self.rejected += other.rejected;
        self.errors += other.errors;
        self.warnings += other.warnings;
        self.runs += other.runs;
        self.rolled_back += other.rolled_back;
    }
}

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

// ---------------------------------------------------------------------------
// Sources

/// How often the progress line is logged.
const REPORT_EVERY: Duration = Duration::from_secs(30);
/// Share of transactions rolled back on purpose.
const ROLLBACK_RATE: f64 = 0.02;
/// Reject rate of a source during its bad minute.
const BAD_MINUTE_REJECT_RATE: f64 = 0.4;
/// Traffic multiplier during a burst.
const BURST_FACTOR: f64 = 5.0;
/// A run whose rejected share is above this (and at least 2 records) ends `partial`.
const PARTIAL_THRESHOLD: f64 = 0.10;
/// Concurrent (not stalled) runs per writer.
const RUNS_PER_WRITER: usize = 3;
/// More attendees than this is `E_ATTENDEE_LIMIT`.
const ATTENDEE_LIMIT: usize = 200;
/// Longer titles are truncated to this many characters (`W_TRUNCATED_TITLE`).
const TITLE_LIMIT: usize = 200;

/// Payload shape of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Salesforce-like `Event` objects.
    Crm,
    /// Google-Calendar-like events.
    Calendar,
    /// Zoom `meeting.created` webhook bodies.
    Zoom,
    /// Rows of an ERP room-booking CSV, as JSON.
    Erp,
    /// A legacy export with local dates, times and a time-zone name.
    Legacy,
}

/// Why a record is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    /// A required field is missing (validate).
    MissingField,
    /// An unknown time zone or offset (normalize).
    TzInvalid,
    /// A date that does not parse (normalize).
    DateParse,
    /// The external id was ingested before (validate).
    Duplicate,
    /// More than [`ATTENDEE_LIMIT`] attendees (validate).
    AttendeeLimit,
    /// The meeting ends before it starts (validate).
    EndBeforeStart,
}

/// A warning on a record that is still normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quirk {
    /// Title longer than [`TITLE_LIMIT`].
    LongTitle,
    /// No end time or duration: 30 minutes assumed.
    MissingEnd,
    /// An attendee listed twice.
    DuplicateAttendee,
}

/// One simulated source and its behaviour.
#[derive(Debug)]
struct SourceProfile {
    name: &'static str,
    kind: &'static str,
    interval_secs: u64,
    /// Relative share of new runs.
    weight: u32,
    /// Batches per run (inclusive range).
    batches: (usize, usize),
    /// Records per batch (inclusive range, within 1–50).
    batch_size: (usize, usize),
    reject_rate: f64,
    warning_rate: f64,
    /// Chance that a batch fetch fails (the run then ends `failed`).
    fetch_fail_rate: f64,
    /// Chance of a fetch-stage retry warning before a batch.
    retry_warning_rate: f64,
    /// Whether the source stalls now and then.
    stalls: bool,
    format: Format,
    /// Reject reasons and their weights.
    defects: &'static [(Defect, u32)],
    /// `INSERT INTO ingest.meetings … SELECT` from this source's payloads; `$1` = ids.
    normalize_sql: &'static str,
}

/// Builds a source's normalizing `INSERT … SELECT` from its column expressions over `p` (the payload).
macro_rules! normalize_sql {
    ($title:literal, $starts:literal, $ends:literal, $organizer:literal, $attendees:literal) => {
        concat!(
            "insert into ingest.meetings (raw_record_id, source_id, title, starts_at, ends_at, organizer, attendee_count) ",
            "select r.id, r.source_id, ", $title, ", ", $starts, ", ", $ends, ", ", $organizer, ", ", $attendees, " ",
            "from ingest.raw_records r cross join lateral (select r.payload as p) j ",
            "where r.id = any($1::bigint[]) and r.status = 'pending' ",
            "order by r.id on conflict (raw_record_id) do nothing"
        )
    };
}

/// The demo sources.
static SOURCES: [SourceProfile; 5] = [
    SourceProfile {
        name: "crm-meetings",
        kind: "api",
        interval_secs: 30,
        weight: 25,
        batches: (1, 3),
        batch_size: (5, 25),
        reject_rate: 0.04,
        warning_rate: 0.02,
        fetch_fail_rate: 0.01,
        retry_warning_rate: 0.03,
        stalls: false,
        format: Format::Crm,
        defects: &[
            (Defect::MissingField, 4),
            (Defect::TzInvalid, 2),
            (Defect::Duplicate, 3),
            (Defect::AttendeeLimit, 1),
            (Defect::EndBeforeStart, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p->>'Subject', 200)",
            "(p->>'StartDateTime')::timestamptz",
            "coalesce((p->>'EndDateTime')::timestamptz, (p->>'StartDateTime')::timestamptz + interval '30 minutes')",
            "lower(p#>>'{Owner,Email}')",
            "coalesce(jsonb_array_length(p->'Attendees'), 0)"
        ),
    },
    SourceProfile {
        name: "calendar-sync",
        kind: "api",
        interval_secs: 60,
        weight: 15,
        batches: (1, 4),
        batch_size: (10, 40),
        reject_rate: 0.03,
        warning_rate: 0.03,
        fetch_fail_rate: 0.01,
        retry_warning_rate: 0.04,
        stalls: false,
        format: Format::Calendar,
        defects: &[
            (Defect::MissingField, 3),
            (Defect::TzInvalid, 4),
            (Defect::Duplicate, 2),
            (Defect::AttendeeLimit, 1),
            (Defect::EndBeforeStart, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p->>'summary', 200)",
            "(p#>>'{start,dateTime}')::timestamptz",
            "coalesce((p#>>'{end,dateTime}')::timestamptz, (p#>>'{start,dateTime}')::timestamptz + interval '30 minutes')",
            "lower(p#>>'{organizer,email}')",
            "coalesce(jsonb_array_length(p->'attendees'), 0)"
        ),
    },
    SourceProfile {
        name: "erp-bookings",
        kind: "file",
        interval_secs: 300,
        weight: 5,
        batches: (3, 8),
        batch_size: (30, 50),
        reject_rate: 0.06,
        warning_rate: 0.02,
        fetch_fail_rate: 0.01,
        retry_warning_rate: 0.0,
        stalls: false,
        format: Format::Erp,
        defects: &[
            (Defect::MissingField, 4),
            (Defect::DateParse, 3),
            (Defect::Duplicate, 4),
            (Defect::EndBeforeStart, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p->>'SUBJECT', 200)",
            "(p->>'START_UTC')::timestamp at time zone 'UTC'",
            "coalesce(nullif(p->>'END_UTC', '')::timestamp, (p->>'START_UTC')::timestamp + interval '30 minutes') at time zone 'UTC'",
            "lower(p->>'BOOKED_BY')",
            "coalesce(array_length(string_to_array(nullif(p->>'PARTICIPANTS', ''), ';'), 1), 0)"
        ),
    },
    SourceProfile {
        name: "zoom-webhooks",
        kind: "webhook",
        interval_secs: 10,
        weight: 40,
        batches: (1, 1),
        batch_size: (1, 5),
        reject_rate: 0.05,
        warning_rate: 0.01,
        fetch_fail_rate: 0.005,
        retry_warning_rate: 0.0,
        stalls: false,
        format: Format::Zoom,
        defects: &[
            (Defect::MissingField, 2),
            (Defect::TzInvalid, 1),
            (Defect::Duplicate, 5),
            (Defect::AttendeeLimit, 2),
            (Defect::EndBeforeStart, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p#>>'{payload,object,topic}', 200)",
            "(p#>>'{payload,object,start_time}')::timestamptz",
            "(p#>>'{payload,object,start_time}')::timestamptz + make_interval(mins => coalesce((p#>>'{payload,object,duration}')::int, 30))",
            "lower(p#>>'{payload,object,host_email}')",
            "coalesce(jsonb_array_length(p#>'{payload,object,participants}'), 0)"
        ),
    },
    SourceProfile {
        name: "legacy-ftp",
        kind: "sftp",
        interval_secs: 120,
        weight: 15,
        batches: (1, 3),
        batch_size: (10, 30),
        reject_rate: 0.07,
        warning_rate: 0.03,
        fetch_fail_rate: 0.03,
        retry_warning_rate: 0.02,
        stalls: true,
        format: Format::Legacy,
        defects: &[
            (Defect::MissingField, 2),
            (Defect::TzInvalid, 4),
            (Defect::DateParse, 3),
            (Defect::Duplicate, 1),
        ],
        normalize_sql: normalize_sql!(
            "left(p->>'Title', 200)",
            "(to_date(p->>'Date', 'DD.MM.YYYY') + (p->>'StartTime')::time) at time zone (p->>'TZ')",
            "(to_date(p->>'Date', 'DD.MM.YYYY') + coalesce((p->>'EndTime')::time, (p->>'StartTime')::time + interval '30 minutes')) at time zone (p->>'TZ')",
            "lower(p->>'Organiser')",
            "coalesce(jsonb_array_length(p->'AttendeeList'), 0)"
        ),
    },
];

// ---------------------------------------------------------------------------
// Time-based effects

/// A span of time since the simulator started.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Duration,
    to: Duration,
}

impl Window {
    fn contains(&self, t: Duration) -> bool {
        self.from <= t && t < self.to
    }
}

/// Bursts, bad minutes and stalls, drawn from the seed for 24 hours (then repeating).
#[derive(Debug)]
struct Schedule {
    start: Instant,
    /// Traffic ×[`BURST_FACTOR`].
    bursts: Vec<Window>,
    /// One source rejects ~40 %.
    bad_minutes: Vec<(Window, usize)>,
    /// Sources with `stalls` write nothing.
    stalls: Vec<Window>,
}

/// Length of the drawn schedule; it repeats after that.
const HORIZON: Duration = Duration::from_secs(24 * 3600);

impl Schedule {
    fn new(seed: u64, start: Instant) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5c4e_d01e_5eed_0001);
        let secs =
            |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_secs(rng.random_range(lo..=hi));
        let mut bursts = Vec::new();
        let mut t = secs(&mut rng, 20, 40);
        while t < HORIZON {
            let len = secs(&mut rng, 8, 12);
            bursts.push(Window {
                from: t,
                to: t + len,
            });
            t += len + secs(&mut rng, 90, 240);
        }
        let mut bad_minutes = Vec::new();
        let mut t = secs(&mut rng, 60, 120);
        while t < HORIZON {
            let source = rng.random_range(0..SOURCES.len());
            bad_minutes.push((
                Window {
                    from: t,
                    to: t + Duration::from_secs(60),
                },
                source,
            ));
            t += secs(&mut rng, 180, 420);
        }
        let mut stalls = Vec::new();
        let mut t = secs(&mut rng, 150, 210);
        while t < HORIZON {
            let len = secs(&mut rng, 240, 420);
            stalls.push(Window {
                from: t,
                to: t + len,
            });
            t += len + secs(&mut rng, 180, 300);
        }
        Schedule {
            start,
            bursts,
            bad_minutes,
            stalls,
        }
    }

    /// Time since start, folded into the horizon.
    fn offset(&self, now: Instant) -> Duration {
        let t = now.saturating_duration_since(self.start);
        Duration::from_nanos((t.as_nanos() % HORIZON.as_nanos()) as u64)
    }

    fn in_burst(&self, now: Instant) -> bool {
        let t = self.offset(now);
        self.bursts.iter().any(|w| w.contains(t))
    }

    fn bad_minute(&self, source: usize, now: Instant) -> bool {
        let t = self.offset(now);
        self.bad_minutes
            .iter()
            .any(|(w, s)| *s == source && w.contains(t))
    }

    fn stalled(&self, source: usize, now: Instant) -> bool {
        SOURCES[source].stalls && {
            let t = self.offset(now);
            self.stalls.iter().any(|w| w.contains(t))
        }
    }
}

// ---------------------------------------------------------------------------
// Pacing

/// State shared by the pacer and the writers.
#[derive(Debug)]
struct Shared {
    /// One permit per statement; closed on stop.
    permits: Semaphore,
    schedule: Schedule,
    /// When each source last started a run (to keep every source fresh).
    last_start: Mutex<Vec<Option<Instant>>>,
    stats: Mutex<SimStats>,
}

impl Shared {
    fn stats_snapshot(&self) -> SimStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, delta: &SimStats) {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(delta);
    }
}

/// Hands out `rate` statement permits per second (×5 in bursts) until stop,
/// then closes the semaphore so that waiting writers wake up and stop.
async fn pace(shared: Arc<Shared>, rate: f64, writers: usize, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs_f64((1.0 / rate).clamp(0.001, 0.1));
    // Unused permits pile up to at most this (a slow writer must not cause a stampede later).
    let cap = (writers * 2).max((rate * BURST_FACTOR * period.as_secs_f64() * 2.0).ceil() as usize);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut credit = 0.0_f64;
    let mut bursting = false;
    let mut effects = Effects::default();
    while !*stop.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let now = Instant::now();
        let burst = shared.schedule.in_burst(now);
        if burst != bursting {
            bursting = burst;
            tracing::info!(
                burst,
                "simulated traffic {}",
                if burst {
                    "burst begins"
                } else {
                    "back to normal"
                }
            );
        }
        effects.log_changes(&shared.schedule, now);
        let current = if burst { rate * BURST_FACTOR } else { rate };
        credit += current * now.duration_since(last).as_secs_f64();
        last = now;
        let whole = credit.floor();
        credit -= whole;
        let room = cap.saturating_sub(shared.permits.available_permits());
        let add = (whole as usize).min(room);
        if add > 0 {
            shared.permits.add_permits(add);
        }
    }
    shared.permits.close();
}

/// Which sources are stalled or in a bad minute, to log when that changes.
#[derive(Debug, Default)]
struct Effects {
    stalled: Vec<bool>,
    bad: Vec<bool>,
}

impl Effects {
    fn log_changes(&mut self, schedule: &Schedule, now: Instant) {
        self.stalled.resize(SOURCES.len(), false);
        self.bad.resize(SOURCES.len(), false);
        for (i, source) in SOURCES.iter().enumerate() {
            let stalled = schedule.stalled(i, now);
            if stalled != self.stalled[i] {
                self.stalled[i] = stalled;
                tracing::info!(
                    source = source.name,
                    expected_interval_s = source.interval_secs,
                    "simulated source {}",
                    if stalled { "stalls" } else { "resumes" }
                );
            }
            let bad = schedule.bad_minute(i, now);
            if bad != self.bad[i] {
                self.bad[i] = bad;
                tracing::info!(
                    source = source.name,
                    "simulated bad minute {}",
                    if bad {
                        "begins (~40 % rejects)"
                    } else {
                        "ends"
                    }
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Runs

/// The next thing a run does.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Insert the `ingest.runs` row.
    Start,
    /// Fetch batch `n` into `raw_records`.
    Fetch(usize),
    /// Reject batch `n`'s invalid records.
    Validate(usize),
    /// Normalize batch `n`'s valid records (and reject the unparsable).
    Normalize(usize),
    /// Set the run's final status.
    Finish,
}

/// An `ingest.errors` row to write.
#[derive(Debug, Clone)]
struct Issue {
    severity: &'static str,
    stage: &'static str,
    code: &'static str,
    message: String,
    details: Value,
}

/// What becomes of a fetched record.
#[derive(Debug, Clone)]
enum Outcome {
    /// Normalized, possibly with a warning.
    Clean(Option<Issue>),
    /// Rejected at the issue's stage.
    Reject(Issue),
}

/// A fetched record: its `raw_records.id` and fate.
#[derive(Debug)]
struct Fetched {
    id: i64,
    outcome: Outcome,
}

/// One run in progress.
#[derive(Debug)]
struct RunState {
    source: usize,
    id: Option<i64>,
    steps: VecDeque<Step>,
    batches: Vec<Option<Vec<Fetched>>>,
    received: u64,
    rejected: u64,
    failed: bool,
}

impl RunState {
    /// A run of `n` batches, processing each batch after fetching the next.
    fn new(source: usize, n: usize) -> RunState {
        let mut steps = VecDeque::from([Step::Start, Step::Fetch(0)]);
        for b in 0..n {
            if b + 1 < n {
                steps.push_back(Step::Fetch(b + 1));
            }
            steps.push_back(Step::Validate(b));
            steps.push_back(Step::Normalize(b));
        }
        steps.push_back(Step::Finish);
        RunState {
            source,
            id: None,
            steps,
            batches: (0..n).map(|_| None).collect(),
            received: 0,
            rejected: 0,
            failed: false,
        }
    }
}

/// Why a step did not complete.
#[derive(Debug)]
enum StepError {
    /// The simulator is stopping.
    Stopped,
    /// The database said no, or the connection went away.
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for StepError {
    fn from(e: tokio_postgres::Error) -> Self {
        StepError::Db(e)
    }
}

/// A writer's connection and its prepared statements.
struct Conn {
    client: Client,
    start_run: Statement,
    insert_records: Statement,
    insert_issues: Statement,
    set_status: Statement,
    finish_run: Statement,
    normalize: Vec<Statement>,
    /// `ingest.sources.id` of each entry of [`SOURCES`].
    source_ids: Vec<i64>,
}

/// Backoff bounds for reconnects and repeated errors.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One writer task: its own connection, RNG and runs.
struct Writer {
    index: usize,
    rng: StdRng,
    target: Target,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    runs: Vec<RunState>,
    /// Recent external ids per source (for duplicates).
    recent: Vec<VecDeque<String>>,
    /// Counter that keeps generated ids unique within this writer.
    serial: u64,
}

impl Writer {
    fn new(
        index: usize,
        seed: u64,
        target: Target,
        shared: Arc<Shared>,
        stop: watch::Receiver<bool>,
    ) -> Writer {
        let stream = seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Writer {
            index,
            rng: StdRng::seed_from_u64(stream),
            target,
            shared,
            stop,
            runs: Vec::new(),
            recent: vec![VecDeque::new(); SOURCES.len()],
            serial: 0,
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d`; false if the simulator stops meanwhile.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => !self.stopping(),
            _ = self.stop.changed() => false,
        }
    }

    /// Waits for the pacer's go for one statement.
    async fn permit(&self) -> Result<(), StepError> {
        match self.shared.permits.acquire().await {
            Ok(p) => {
                p.forget();
                Ok(())
            }
            Err(_) => Err(StepError::Stopped),
        }
    }

    async fn run(mut self) {
        let mut conn: Option<Conn> = None;
        let mut backoff = BACKOFF_MIN;
        while !self.stopping() {
            let c = match conn.as_mut() {
                Some(c) if !c.client.is_closed() => c,
                _ => {
                    conn = None;
                    let mut stop = self.stop.clone();
                    let connected = tokio::select! {
                        r = self.connect() => r,
                        _ = stop.changed() => break,
                    };
                    match connected {
                        Ok(c) => {
                            tracing::debug!(writer = self.index, "simulator writer connected");
                            conn = Some(c);
                            backoff = BACKOFF_MIN;
                        }
                        Err(e) => {
                            tracing::warn!(writer = self.index, error = %format!("{e:#}"), retry_in = ?backoff,
                                "simulator cannot reach the database");
                            if !self.sleep(backoff).await {
                                break;
                            }
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                    continue;
                }
            };
            match self.step(c).await {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(StepError::Stopped) => break,
                Err(StepError::Db(e)) => {
                    if e.is_closed() || c.client.is_closed() {
                        tracing::warn!(writer = self.index, error = %e, "simulator lost its connection; reconnecting");
                    } else {
                        tracing::warn!(writer = self.index, error = %e, retry_in = ?backoff, "simulator statement failed");
                    }
                    if !self.sleep(backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        tracing::debug!(
            writer = self.index,
            open_runs = self.runs.len(),
            "simulator writer stopped"
        );
    }

    /// Connects, makes sure the sources exist and prepares the statements.
    async fn connect(&self) -> Result<Conn> {
        let (client, connection) = self.target.connect().await.context("connecting")?;
        let index = self.index;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(writer = index, error = %e, "simulator connection ended");
            }
        });
        ensure_sources(&client).await?;
        let names: Vec<&str> = SOURCES.iter().map(|s| s.name).collect();
        let rows = client
            .query(
                "select name, id from ingest.sources where name = any($1::text[])",
                &[&names],
            )
            .await
            .context("reading source ids")?;
        let by_name: HashMap<String, i64> = rows
            .iter()
            .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, i64>(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        let source_ids = SOURCES
            .iter()
            .map(|s| {
                by_name
                    .get(s.name)
                    .copied()
                    .with_context(|| format!("source {} is missing", s.name))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut normalize = Vec::with_capacity(SOURCES.len());
        for s in &SOURCES {
            normalize.push(
                client
                    .prepare(s.normalize_sql)
                    .await
                    .with_context(|| format!("preparing {}'s normalizer", s.name))?,
            );
        }
        Ok(Conn {
            start_run: client.prepare("insert into ingest.runs (source_id) values ($1::bigint) returning id").await?,
            insert_records: client
                .prepare(
                    "insert into ingest.raw_records (run_id, source_id, external_id, payload)
                     select $1::bigint, $2::bigint, t.external_id, t.payload
                       from unnest($3::text[], $4::jsonb[]) with ordinality as t(external_id, payload, ord)
                      order by t.ord
                     returning id, external_id",
                )
                .await?,
            insert_issues: client
                .prepare(
                    "insert into ingest.errors (run_id, raw_record_id, source_id, severity, stage, code, message, details)
                     select $1::bigint, t.raw_record_id, $2::bigint, t.severity, t.stage, t.code, t.message, t.details
                       from unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
                            with ordinality as t(raw_record_id, severity, stage, code, message, details, ord)
                      order by t.ord",
                )
                .await?,
            set_status: client
                .prepare(
                    "update ingest.raw_records
                        set status = case when id = any($1::bigint[]) then 'normalized' else 'rejected' end,
                            processed_at = now()
                      where id = any($1::bigint[] || $2::bigint[]) and status = 'pending'",
                )
                .await?,
            finish_run: client
                .prepare(
                    "update ingest.runs set status = $2::text, finished_at = now()
                      where id = $1::bigint and status = 'running'",
                )
                .await?,
            normalize,
            source_ids,
            client,
        })
    }

    /// Does the next step of one run (starting runs as needed).
    async fn step(&mut self, conn: &mut Conn) -> Result<(), StepError> {
        let now = Instant::now();
        let shared = Arc::clone(&self.shared);
        let schedule = &shared.schedule;
        let active = self
            .runs
            .iter()
            .filter(|r| !schedule.stalled(r.source, now))
            .count();
        if active < RUNS_PER_WRITER {
            if let Some(source) = self.choose_source(now) {
                let p = &SOURCES[source];
                let n = self.rng.random_range(p.batches.0..=p.batches.1);
                self.runs.push(RunState::new(source, n));
            }
        }
        let runnable: Vec<usize> = (0..self.runs.len())
            .filter(|&i| !schedule.stalled(self.runs[i].source, now))
            .collect();
        if runnable.is_empty() {
            // Everything here is stalled: idle a little without spinning.
            return if self.sleep(Duration::from_millis(100)).await {
                Ok(())
            } else {
                Err(StepError::Stopped)
            };
        }
        let pick = runnable[self.rng.random_range(0..runnable.len())];
        let mut run = self.runs.swap_remove(pick);
        let Some(step) = run.steps.pop_front() else {
            return Ok(());
        };
        let result = self.exec(conn, &mut run, step).await;
        match &result {
            Err(StepError::Db(e))
                if !(e.is_closed() || conn.client.is_closed() || retryable(e)) =>
            {
                // A statement the database refuses (schema changed, source deleted…): give the run up.
                tracing::debug!(writer = self.index, run = ?run.id, "abandoning simulated run");
                return result;
            }
            Err(_) => run.steps.push_front(step),
            Ok(()) => {}
        }
        if !run.steps.is_empty() {
            self.runs.push(run);
        }
        result
    }

    /// Picks the source of a new run: the most overdue one, else by weight.
    fn choose_source(&mut self, now: Instant) -> Option<usize> {
        let schedule = &self.shared.schedule;
        let mut last = self
            .shared
            .last_start
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let candidates: Vec<usize> = (0..SOURCES.len())
            .filter(|&s| !schedule.stalled(s, now))
            .collect();
        let overdue = candidates
            .iter()
            .map(|&s| {
                let due = Duration::from_secs(SOURCES[s].interval_secs) / 2;
                let ratio = last[s].map_or(f64::INFINITY, |t| {
                    now.duration_since(t).as_secs_f64() / due.as_secs_f64()
                });
                (s, ratio)
            })
            .filter(|&(_, ratio)| ratio >= 1.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s);
        let chosen = overdue.or_else(|| {
            let total: u32 = candidates.iter().map(|&s| SOURCES[s].weight).sum();
            if total == 0 {
                return None;
            }
            let mut x = self.rng.random_range(0..total);
            candidates.iter().copied().find(|&s| {
                let w = SOURCES[s].weight;
                if x < w {
                    true
                } else {
                    x -= w;
                    false
                }
            })
        })?;
        last[chosen] = Some(now);
        Some(chosen)
    }

    async fn exec(
        &mut self,
        conn: &mut Conn,
        run: &mut RunState,
        step: Step,
    ) -> Result<(), StepError> {
        match step {
            Step::Start => {
                self.permit().await?;
                let row = conn
                    .client
                    .query_one(&conn.start_run, &[&conn.source_ids[run.source]])
                    .await?;
                run.id = Some(row.try_get(0)?);
                self.shared.record(&SimStats {
                    statements: 1,
                    runs: 1,
                    ..SimStats::default()
                });
                Ok(())
            }
            Step::Fetch(b) => self.fetch(conn, run, b).await,
            Step::Validate(b) => self.process(conn, run, b, false).await,
            Step::Normalize(b) => self.process(conn, run, b, true).await,
            Step::Finish => {
                let Some(run_id) = run.id else { return Ok(()) };
                let status = if run.failed {
                    "failed"
                } else if run.rejected >= 2
                    && run.rejected as f64 / run.received.max(1) as f64 > PARTIAL_THRESHOLD
                {
                    "partial"
                } else {
                    "succeeded"
                };
                self.permit().await?;
                conn.client
                    .execute(&conn.finish_run, &[&run_id, &status])
                    .await?;
                self.shared.record(&SimStats {
                    statements: 1,
                    ..SimStats::default()
                });
                Ok(())
            }
        }
    }

    /// Fetches one batch: maybe a retry warning, then the records — or a
    /// fetch error that fails the run.
    async fn fetch(
        &mut self,
        conn: &mut Conn,
        run: &mut RunState,
        batch: usize,
    ) -> Result<(), StepError> {
        let Some(run_id) = run.id else { return Ok(()) };
        let p = &SOURCES[run.source];
        let source_id = conn.source_ids[run.source];
        if self.rng.random_bool(p.fetch_fail_rate) {
            let issue = fetch_error(p.format, &mut self.rng, batch);
            self.permit().await?;
            insert_issues(
                &conn.client,
                &conn.insert_issues,
                run_id,
                source_id,
                &[(None, &issue)],
            )
            .await?;
            self.shared.record(&SimStats {
                statements: 1,
                errors: 1,
                ..SimStats::default()
            });
            run.failed = true;
            run.steps.retain(|s| !matches!(s, Step::Fetch(_)));
            return Ok(());
        }
        if self.rng.random_bool(p.retry_warning_rate) {
            let issue = fetch_retry_warning(p.format, &mut self.rng, batch);
            self.permit().await?;
            insert_issues(
                &conn.client,
                &conn.insert_issues,
                run_id,
                source_id,
                &[(None, &issue)],
            )
            .await?;
            self.shared.record(&SimStats {
                statements: 1,
                warnings: 1,
                ..SimStats::default()
            });
        }
        let now = Instant::now();
        let reject_rate = if self.shared.schedule.bad_minute(run.source, now) {
            BAD_MINUTE_REJECT_RATE
        } else {
            p.reject_rate
        };
        let size = self.rng.random_range(p.batch_size.0..=p.batch_size.1);
        let planned = self.plan_batch(run.source, size, reject_rate);
        let ext_ids: Vec<&str> = planned.iter().map(|r| r.external_id.as_str()).collect();
        let payloads: Vec<&Value> = planned.iter().map(|r| &r.payload).collect();
        self.permit().await?;
        let rows = conn
            .client
            .query(
                &conn.insert_records,
                &[&run_id, &source_id, &ext_ids, &payloads],
            )
            .await?;
        let mut ids: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        for row in &rows {
            ids.insert(row.try_get(1)?, row.try_get(0)?);
        }
        let recent = &mut self.recent[run.source];
        let mut fetched = Vec::with_capacity(planned.len());
        for r in planned {
            if let Some(&id) = ids.get(&r.external_id) {
                fetched.push(Fetched {
                    id,
                    outcome: r.outcome,
                });
            }
            if recent.len() >= 256 {
                recent.pop_front();
            }
            recent.push_back(r.external_id);
        }
        run.received += fetched.len() as u64;
        self.shared.record(&SimStats {
            statements: 1,
            records: rows.len() as u64,
            ..SimStats::default()
        });
        if let Some(slot) = run.batches.get_mut(batch) {
            *slot = Some(fetched);
        }
        Ok(())
    }

    /// Validates (rejects the invalid) or normalizes (writes meetings for the
    /// valid, rejects the unparsable) one batch, in one transaction — which
    /// is, now and then, rolled back on purpose and retried later.
    async fn process(
        &mut self,
        conn: &mut Conn,
        run: &mut RunState,
        batch: usize,
        normalize: bool,
    ) -> Result<(), StepError> {
        let Some(run_id) = run.id else { return Ok(()) };
        let Some(Some(records)) = run.batches.get(batch) else {
            return Ok(());
        };
        let source_id = conn.source_ids[run.source];
        let mut good: Vec<i64> = Vec::new();
        let mut bad: Vec<i64> = Vec::new();
        let mut owned: Vec<(Option<i64>, Issue)> = Vec::new();
        for r in records {
            match (&r.outcome, normalize) {
                (Outcome::Reject(issue), _) if (issue.stage == "validate") != normalize => {
                    bad.push(r.id);
                    owned.push((Some(r.id), issue.clone()));
                }
                (Outcome::Clean(warning), true) => {
                    good.push(r.id);
                    if let Some(w) = warning {
                        owned.push((Some(r.id), w.clone()));
                    }
                }
                _ => {}
            }
        }
        let issues: Vec<(Option<i64>, &Issue)> = owned.iter().map(|(id, i)| (*id, i)).collect();
        if good.is_empty() && bad.is_empty() {
            return Ok(());
        }
        let roll_back = self.rng.random_bool(ROLLBACK_RATE);
        let errors = issues.iter().filter(|(_, i)| i.severity == "error").count() as u64;
        let warnings = issues.len() as u64 - errors;

        self.permit().await?;
        let tx = conn.client.transaction().await?;
        let mut statements = 1;
        let meetings = if good.is_empty() {
            insert_issues(&tx, &conn.insert_issues, run_id, source_id, &issues).await?;
            None
        } else {
            Some(tx.execute(&conn.normalize[run.source], &[&good]).await?)
        };
        if roll_back {
            tx.rollback().await?;
            self.shared.record(&SimStats {
                statements: 1,
                rolled_back: 1,
                ..SimStats::default()
            });
            let warning = load_retry_warning(&mut self.rng, batch, good.len() + bad.len());
            self.permit().await?;
            insert_issues(
                &conn.client,
                &conn.insert_issues,
                run_id,
                source_id,
                &[(None, &warning)],
            )
            .await?;
            self.shared.record(&SimStats {
                statements: 1,
                warnings: 1,
                ..SimStats::default()
            });
            // The caller keeps the step: push it back so it is retried.
            run.steps.push_front(if normalize {
                Step::Normalize(batch)
            } else {
                Step::Validate(batch)
            });
            return Ok(());
        }
        if meetings.is_some() && !issues.is_empty() {
            self.permit().await?;
            insert_issues(&tx, &conn.insert_issues, run_id, source_id, &issues).await?;
            statements += 1;
        }
        self.permit().await?;
        tx.execute(&conn.set_status, &[&good, &bad]).await?;
        statements += 1;
        tx.commit().await?;
        if let Some(m) = meetings.filter(|&m| m != good.len() as u64) {
            tracing::debug!(
                writer = self.index,
                expected = good.len(),
                inserted = m,
                "meetings insert count differs"
            );
        }
        run.rejected += bad.len() as u64;
        self.shared.record(&SimStats {
            statements,
            normalized: good.len() as u64,
            rejected: bad.len() as u64,
            errors,
            warnings,
            ..SimStats::default()
        });
        Ok(())
    }

    /// Plans `size` records of `source`: payload, external id and fate.
    fn plan_batch(&mut self, source: usize, size: usize, reject_rate: f64) -> Vec<Planned> {
        let p = &SOURCES[source];
        let mut used: HashSet<String> = HashSet::with_capacity(size);
        let mut out = Vec::with_capacity(size);
        for _ in 0..size {
            let defect = self
                .rng
                .random_bool(reject_rate)
                .then(|| pick_weighted(&mut self.rng, p.defects));
            let quirk = (defect.is_none() && self.rng.random_bool(p.warning_rate)).then(|| {
                match self.rng.random_range(0..3) {
                    0 => Quirk::LongTitle,
                    1 => Quirk::MissingEnd,
                    _ => Quirk::DuplicateAttendee,
                }
            });
            // A duplicate reuses an id from an earlier batch; none yet → a missing field instead.
            let mut defect = defect;
            let mut external_id = None;
            if defect == Some(Defect::Duplicate) {
                let recent = &self.recent[source];
                let candidates: Vec<&String> =
                    recent.iter().filter(|id| !used.contains(*id)).collect();
                if candidates.is_empty() {
                    defect = Some(Defect::MissingField);
                } else {
                    external_id =
                        Some(candidates[self.rng.random_range(0..candidates.len())].clone());
                }
            }
            let external_id = match external_id {
                Some(id) => id,
                None => loop {
                    let id = self.new_external_id(p.format);
                    if !used.contains(&id) {
                        break id;
                    }
                },
            };
            used.insert(external_id.clone());
            let meeting = Meeting::generate(&mut self.rng, defect, quirk);
            let (payload, outcome) = render(
                p.format,
                &meeting,
                &external_id,
                defect,
                quirk,
                &mut self.rng,
            );
            out.push(Planned {
                external_id,
                payload,
                outcome,
            });
        }
        out
    }

    /// A fresh external id in the source's style.
    fn new_external_id(&mut self, format: Format) -> String {
        self.serial += 1;
        let rng = &mut self.rng;
        match format {
            Format::Crm => format!(
                "00U{}",
                random_chars(
                    rng,
                    15,
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                )
            ),
            Format::Calendar => random_chars(rng, 26, b"0123456789abcdefghijklmnopqrstuv"),
            Format::Zoom => format!("{}", rng.random_range(10_000_000_000_u64..99_999_999_999)),
            Format::Erp => format!(
                "BK-{}-{}{:06}",
                Utc::now().year(),
                self.index,
                self.serial % 1_000_000
            ),
            Format::Legacy => format!("LGC-{}{:07}", self.index, self.serial % 10_000_000),
        }
    }
}

/// Whether a failed statement is worth retrying as is (serialization
/// failure, deadlock, shutdown, too many connections…).
fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let c = c.code();
        c.starts_with("40") || c.starts_with("57") || c.starts_with("53") || c.starts_with("08")
    })
}

/// Writes `issues` (each with its raw record id, if any) in one statement.
async fn insert_issues<C: GenericClient>(
    client: &C,
    statement: &Statement,
    run_id: i64,
    source_id: i64,
    issues: &[(Option<i64>, &Issue)],
) -> Result<u64, tokio_postgres::Error> {
    let raw_ids: Vec<Option<i64>> = issues.iter().map(|(id, _)| *id).collect();
    let severities: Vec<&str> = issues.iter().map(|(_, i)| i.severity).collect();
    let stages: Vec<&str> = issues.iter().map(|(_, i)| i.stage).collect();
    let codes: Vec<&str> = issues.iter().map(|(_, i)| i.code).collect();
    let messages: Vec<&str> = issues.iter().map(|(_, i)| i.message.as_str()).collect();
    let details: Vec<&Value> = issues.iter().map(|(_, i)| &i.details).collect();
    let params: [&(dyn ToSql + Sync); 8] = [
        &run_id,
        &source_id,
        &raw_ids,
        &severities,
        &stages,
        &codes,
        &messages,
        &details,
    ];
    client.execute(statement, &params).await
}

// ---------------------------------------------------------------------------
// Payloads

/// A record about to be fetched.
#[derive(Debug)]
struct Planned {
    external_id: String,
    payload: Value,
    outcome: Outcome,
}

/// (display name, mailbox) of the people who organize and attend.
const PEOPLE: [(&str, &str); 16] = [
    ("Ana García", "ana.garcia"),
    ("Jürgen Weiß", "juergen.weiss"),
    ("Zoë Dubois", "zoe.dubois"),
    ("Søren Madsen", "soren.madsen"),
    ("Priya Natarajan", "priya.natarajan"),
    ("Kenji Watanabe (渡辺健二)", "kenji.watanabe"),
    ("Siobhán O'Connor", "siobhan.oconnor"),
    ("Mateus Araújo", "mateus.araujo"),
    ("Olamide Adeyemi", "olamide.adeyemi"),
    ("Li Wei (李伟)", "li.wei"),
    ("Fatma Yılmaz", "fatma.yilmaz"),
    ("Dmitri Ivanov", "dmitri.ivanov"),
    ("Chloé Martin", "chloe.martin"),
    ("Tomás Novák", "tomas.novak"),
    ("Aroha Ngata", "aroha.ngata"),
    ("Nguyễn Thị Mai", "mai.nguyen"),
];
const DOMAINS: [&str; 5] = [
    "acme.example",
    "globex.example",
    "initech.example",
    "umbrella-corp.example",
    "hooli.example",
];
const TITLES: [&str; 18] = [
    "Weekly sync, platform team",
    "Q4 planning — budget & headcount",
    "1:1 Ana / Jürgen",
    "Kundentermin: Müller & Söhne GmbH",
    "\"Ask me anything\" with the CTO",
    "Réunion d'équipe – Paris",
    "会議: 予算レビュー",
    "Sprint 48 retro 🚀",
    "Interview: Senior Data Engineer (round 2)",
    "Board prep, part 3 of 4",
    "Offsite logistics; hotel, travel, dinner",
    "Renewal call — O'Brien & Sons, Ltd.",
    "Design review: \"ingest v2\" schema",
    "Incident review INC-2291 (ingest lag)",
    "Стендап команды",
    "Café ☕ chat",
    "Onboarding: new hires, cohort 11/26",
    "Pricing workshop \"EMEA\", day 2",
];
const DESCRIPTIONS: [&str; 8] = [
    "Agenda:\n1. Status\n2. Risks, blockers\n3. \"Next steps\"",
    "Dial-in: +1 555 0100, PIN 4711#\nPlease join 5 min early.",
    "Notes from last time: see doc \"Q4 plan, v3\".",
    "",
    "Bitte Unterlagen mitbringen.\nDanke!",
    "Lunch provided 🍕 — tell us about dietary needs, allergies, etc.",
    "Follow-up to thread: \"Re: Re: contract, rev. 2\"",
    "Ordre du jour :\n- bilan T3\n- « feuille de route »",
];
const LOCATIONS: [&str; 7] = [
    "Room 4.12, Building B",
    "Zoom",
    "Microsoft Teams",
    "Konferenzraum „Alpen“",
    "HQ / Floor 3 / \"Fishbowl\"",
    "Café Central, Wien",
    "東京オフィス 5F",
];
/// Time zones with their November UTC offsets in minutes.
const ZONES: [(&str, i64); 9] = [
    ("Europe/Berlin", 60),
    ("Europe/London", 0),
    ("America/New_York", -300),
    ("America/Los_Angeles", -480),
    ("Asia/Tokyo", 540),
    ("Asia/Kolkata", 330),
    ("Europe/Vienna", 60),
    ("America/Sao_Paulo", -180),
    ("Australia/Sydney", 660),
];
const BAD_ZONES: [&str; 5] = [
    "Mars/Olympus_Mons",
    "W. Europe Standard Time",
    "GMT+25",
    "CEST+1",
    "Europe/Berln",
];

/// A meeting before it is rendered in a source's shape.
#[derive(Debug)]
struct Meeting {
    title: String,
    description: &'static str,
    /// Local start time in `zone`.
    local_start: NaiveDateTime,
    /// Length; negative for "ends before it starts".
    minutes: i64,
    zone: (&'static str, i64),
    organizer: (&'static str, String),
    attendees: Vec<String>,
    location: &'static str,
}

impl Meeting {
    fn generate(rng: &mut StdRng, defect: Option<Defect>, quirk: Option<Quirk>) -> Meeting {
        let zone = ZONES[rng.random_range(0..ZONES.len())];
        let day = Utc::now().date_naive() + chrono::Days::new(rng.random_range(0..21));
        let minute_of_day = rng.random_range(8 * 4..18 * 4) * 15;
        let local_start = day.and_time(NaiveTime::MIN) + chrono::Duration::minutes(minute_of_day);
        let mut minutes = [15, 30, 30, 45, 60, 60, 90, 120][rng.random_range(0..8)];
        if defect == Some(Defect::EndBeforeStart) {
            minutes = -minutes;
        }
        let (name, mailbox) = PEOPLE[rng.random_range(0..PEOPLE.len())];
        let organizer = (
            name,
            format!("{mailbox}@{}", DOMAINS[rng.random_range(0..2)]),
        );
        let count = match defect {
            Some(Defect::AttendeeLimit) => {
                rng.random_range(ATTENDEE_LIMIT + 1..=ATTENDEE_LIMIT + 60)
            }
            _ => rng.random_range(1..=12),
        };
        let mut attendees: Vec<String> = (0..count)
            .map(|i| {
                let (_, mailbox) = PEOPLE[rng.random_range(0..PEOPLE.len())];
                let domain = DOMAINS[rng.random_range(0..DOMAINS.len())];
                if count > 16 {
                    format!("guest{i}@{domain}")
                } else {
                    format!("{mailbox}@{domain}")
                }
            })
            .collect();
        attendees.sort();
        attendees.dedup();
        if quirk == Some(Quirk::DuplicateAttendee) {
            if let Some(first) = attendees.first().cloned() {
                attendees.push(first);
            }
        }
        let mut title = TITLES[rng.random_range(0..TITLES.len())].to_string();
        if quirk == Some(Quirk::LongTitle) {
            title.push_str(" — pasted agenda: ");
            while title.chars().count() <= TITLE_LIMIT + 20 {
                title.push_str(
                    &DESCRIPTIONS[rng.random_range(0..DESCRIPTIONS.len())].replace('\n', " "),
                );
                title.push_str("; ");
            }
        }
        Meeting {
            title,
            description: DESCRIPTIONS[rng.random_range(0..DESCRIPTIONS.len())],
            local_start,
            minutes,
            zone,
            organizer,
            attendees,
            location: LOCATIONS[rng.random_range(0..LOCATIONS.len())],
        }
    }

    fn utc_start(&self) -> NaiveDateTime {
        self.local_start - chrono::Duration::minutes(self.zone.1)
    }

    fn utc_end(&self) -> NaiveDateTime {
        self.utc_start() + chrono::Duration::minutes(self.minutes)
    }

    fn local_end(&self) -> NaiveDateTime {
        self.local_start + chrono::Duration::minutes(self.minutes)
    }

    /// `2026-11-26T10:00:00+01:00`
    fn local_rfc3339(&self, t: NaiveDateTime) -> String {
        let off = self.zone.1;
        let sign = if off < 0 { '-' } else { '+' };
        format!(
            "{}{sign}{:02}:{:02}",
            t.format("%Y-%m-%dT%H:%M:%S"),
            off.abs() / 60,
            off.abs() % 60
        )
    }
}

/// Field names of a source's shape: (JSON pointer of the parent, key).
struct Fields {
    title: (&'static str, &'static str),
    start: (&'static str, &'static str),
    end: (&'static str, &'static str),
    organizer: (&'static str, &'static str),
    zone: (&'static str, &'static str),
    schema: &'static str,
}

fn fields(format: Format) -> Fields {
    match format {
        Format::Crm => Fields {
            title: ("", "Subject"),
            start: ("", "StartDateTime"),
            end: ("", "EndDateTime"),
            organizer: ("/Owner", "Email"),
            zone: ("", "StartDateTime"),
            schema: "crm.event.v3",
        },
        Format::Calendar => Fields {
            title: ("", "summary"),
            start: ("/start", "dateTime"),
            end: ("/end", "dateTime"),
            organizer: ("/organizer", "email"),
            zone: ("/start", "timeZone"),
            schema: "calendar#event",
        },
        Format::Zoom => Fields {
            title: ("/payload/object", "topic"),
            start: ("/payload/object", "start_time"),
            end: ("/payload/object", "duration"),
            organizer: ("/payload/object", "host_email"),
            zone: ("/payload/object", "timezone"),
            schema: "zoom.meeting.created",
        },
        Format::Erp => Fields {
            title: ("", "SUBJECT"),
            start: ("", "START_UTC"),
            end: ("", "END_UTC"),
            organizer: ("", "BOOKED_BY"),
            zone: ("", "START_UTC"),
            schema: "erp.bookings.csv.v2",
        },
        Format::Legacy => Fields {
            title: ("", "Title"),
            start: ("", "Date"),
            end: ("", "EndTime"),
            organizer: ("", "Organiser"),
            zone: ("", "TZ"),
            schema: "legacy.export.v1",
        },
    }
}

/// "Owner.Email" for ("/Owner", "Email").
fn field_name((parent, key): (&str, &str)) -> String {
    let parent = parent.trim_start_matches('/').replace('/', ".");
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn get_field<'a>(v: &'a Value, (parent, key): (&str, &str)) -> Option<&'a Value> {
    v.pointer(parent).and_then(|o| o.get(key))
}

fn set_field(v: &mut Value, (parent, key): (&str, &str), value: Value) {
    if let Some(Value::Object(o)) = v.pointer_mut(parent) {
        o.insert(key.to_string(), value);
    }
}

fn remove_field(v: &mut Value, (parent, key): (&str, &str)) -> Option<Value> {
    match v.pointer_mut(parent) {
        Some(Value::Object(o)) => o.remove(key),
        _ => None,
    }
}

/// Renders `m` in `format`'s shape, applies the defect or quirk, and says
/// what becomes of the record.
fn render(
    format: Format,
    m: &Meeting,
    external_id: &str,
    defect: Option<Defect>,
    quirk: Option<Quirk>,
    rng: &mut StdRng,
) -> (Value, Outcome) {
    let mut v = render_clean(format, m, external_id, rng);
    let f = fields(format);
    if let Some(defect) = defect {
        let issue = apply_defect(format, &f, &mut v, m, external_id, defect, rng);
        return (v, Outcome::Reject(issue));
    }
    let warning = quirk.map(|q| match q {
        Quirk::LongTitle => {
            let length = m.title.chars().count();
            Issue {
                severity: "warning",
                stage: "normalize",
                code: "W_TRUNCATED_TITLE",
                message: format!("title truncated from {length} to {TITLE_LIMIT} characters"),
                details: json!({ "field": field_name(f.title), "value": m.title.chars().take(40).collect::<String>() + "…", "length": length }),
            }
        }
        Quirk::MissingEnd => {
            remove_field(&mut v, f.end);
            Issue {
                severity: "warning",
                stage: "normalize",
                code: "W_MISSING_END_TIME",
                message: format!("no {}; assumed a 30-minute meeting", field_name(f.end)),
                details: json!({ "field": field_name(f.end), "value": null, "assumed_minutes": 30 }),
            }
        }
        Quirk::DuplicateAttendee => {
            let who = m.attendees.last().cloned().unwrap_or_default();
            Issue {
                severity: "warning",
                stage: "normalize",
                code: "W_DUPLICATE_ATTENDEE",
                message: format!("attendee {who} is listed twice"),
                details: json!({ "field": "attendees", "value": who }),
            }
        }
    });
    (v, Outcome::Clean(warning))
}

fn render_clean(format: Format, m: &Meeting, external_id: &str, rng: &mut StdRng) -> Value {
    let start_utc = m.utc_start();
    let end_utc = m.utc_end();
    match format {
        Format::Crm => json!({
            "attributes": { "type": "Event", "url": format!("/services/data/v59.0/sobjects/Event/{external_id}") },
            "Id": external_id,
            "Subject": m.title,
            "StartDateTime": format!("{}+0000", start_utc.format("%Y-%m-%dT%H:%M:%S%.3f")),
            "EndDateTime": format!("{}+0000", end_utc.format("%Y-%m-%dT%H:%M:%S%.3f")),
            "Location": m.location,
            "Description": m.description,
            "Owner": { "Name": m.organizer.0, "Email": m.organizer.1 },
            "Attendees": m.attendees.iter().map(|a| json!({ "Email": a, "Status": pick(rng, &["Accepted", "New", "Declined"]) })).collect::<Vec<_>>(),
            "AccountName": pick(rng, &["Müller & Söhne GmbH", "O'Brien & Sons, Ltd.", "Globex, Inc.", "株式会社サンプル"]),
            "IsPrivate": rng.random_bool(0.1),
        }),
        Format::Calendar => json!({
            "kind": "calendar#event",
            "id": external_id,
            "iCalUID": format!("{external_id}@google.com"),
            "status": "confirmed",
            "summary": m.title,
            "description": m.description,
            "location": m.location,
            "start": { "dateTime": m.local_rfc3339(m.local_start), "timeZone": m.zone.0 },
            "end": { "dateTime": m.local_rfc3339(m.local_end()), "timeZone": m.zone.0 },
            "organizer": { "email": m.organizer.1, "displayName": m.organizer.0 },
            "attendees": m.attendees.iter().map(|a| json!({ "email": a, "responseStatus": pick(rng, &["accepted", "needsAction", "tentative"]) })).collect::<Vec<_>>(),
            "hangoutLink": format!("https://meet.example/{}", &external_id[..10.min(external_id.len())]),
            "sequence": rng.random_range(0..4),
        }),
        Format::Zoom => json!({
            "event": "meeting.created",
            "event_ts": Utc::now().timestamp_millis(),
            "payload": {
                "account_id": "AbCdEfGhIjKlMnOpQr_stu",
                "operator": m.organizer.1,
                "object": {
                    "id": external_id.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(external_id)),
                    "uuid": format!("{}==", random_chars(rng, 22, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")),
                    "topic": m.title,
                    "type": 2,
                    "start_time": format!("{}Z", start_utc.format("%Y-%m-%dT%H:%M:%S")),
                    "duration": m.minutes,
                    "timezone": m.zone.0,
                    "host_email": m.organizer.1,
                    "agenda": m.description,
                    "participants": m.attendees.iter().map(|a| json!({ "email": a })).collect::<Vec<_>>(),
                    "settings": { "join_before_host": rng.random_bool(0.3), "waiting_room": rng.random_bool(0.6) },
                },
            },
        }),
        Format::Erp => json!({
            "BOOKING_NO": external_id,
            "ROOM": pick(rng, &["MUC-3.14", "BER-1.02", "VIE-EG-07", "NYC-22A", "TYO-5F-B"]),
            "SUBJECT": m.title,
            "START_UTC": start_utc.format("%Y-%m-%d %H:%M:%S").to_string(),
            "END_UTC": end_utc.format("%Y-%m-%d %H:%M:%S").to_string(),
            "BOOKED_BY": m.organizer.1,
            "PARTICIPANTS": m.attendees.join(";"),
            "COST_CENTER": format!("{}", rng.random_range(4000..4999)),
            "REMARK": m.description,
            "file": format!("bookings_{}.csv", Utc::now().format("%Y%m%d_%H00")),
            "line": rng.random_range(2..5000),
        }),
        Format::Legacy => json!({
            "MeetingID": external_id,
            "Title": m.title,
            "Date": m.local_start.format("%d.%m.%Y").to_string(),
            "StartTime": m.local_start.format("%H:%M").to_string(),
            "EndTime": m.local_end().format("%H:%M").to_string(),
            "TZ": m.zone.0,
            "Organiser": m.organizer.1,
            "OrganiserName": m.organizer.0,
            "AttendeeList": m.attendees,
            "Room": m.location,
            "Notes": m.description,
        }),
    }
}

/// Breaks `v` as `defect` says and returns the `ingest.errors` row for it.
fn apply_defect(
    format: Format,
    f: &Fields,
    v: &mut Value,
    m: &Meeting,
    external_id: &str,
    defect: Defect,
    rng: &mut StdRng,
) -> Issue {
    let error = |stage, code, message: String, details: Value| Issue {
        severity: "error",
        stage,
        code,
        message,
        details,
    };
    match defect {
        Defect::MissingField => {
            let field = [f.title, f.start, f.organizer][rng.random_range(0..3)];
            remove_field(v, field);
            let name = field_name(field);
            error(
                "validate",
                "E_SCHEMA_MISSING_FIELD",
                format!("required field \"{name}\" is missing ({})", f.schema),
                json!({ "field": name, "value": null, "schema": f.schema }),
            )
        }
        Defect::TzInvalid => {
            let bad = BAD_ZONES[rng.random_range(0..BAD_ZONES.len())];
            let value = if format == Format::Crm {
                // No zone field: the offset is broken instead.
                format!("{}+2500", m.utc_start().format("%Y-%m-%dT%H:%M:%S%.3f"))
            } else {
                bad.to_string()
            };
            set_field(v, f.zone, Value::from(value.clone()));
            let name = field_name(f.zone);
            error(
                "normalize",
                "E_TZ_INVALID",
                format!("unknown time zone or offset in {name}: \"{value}\""),
                json!({ "field": name, "value": value }),
            )
        }
        Defect::DateParse => {
            let value = match format {
                Format::Legacy => ["31.02.2026", "2026-11-26", "26.11.26", "TBD"]
                    [rng.random_range(0..4)]
                .to_string(),
                _ => [
                    format!("{}-11-31 09:00:00", Utc::now().year()),
                    m.utc_start().format("%d/%m/%Y %H:%M").to_string(),
                    "0000-00-00 00:00:00".to_string(),
                ][rng.random_range(0..3)]
                .clone(),
            };
            set_field(v, f.start, Value::from(value.clone()));
            let name = field_name(f.start);
            error(
                "normalize",
                "E_DATE_PARSE",
                format!("cannot parse {name} \"{value}\" as a date"),
                json!({ "field": name, "value": value }),
            )
        }
        Defect::Duplicate => error(
            "validate",
            "E_DUPLICATE_EXTERNAL_ID",
            format!("external_id {external_id} was already ingested; record skipped"),
            json!({ "field": "external_id", "value": external_id }),
        ),
        Defect::AttendeeLimit => error(
            "validate",
            "E_ATTENDEE_LIMIT",
            format!(
                "meeting has {} attendees, the limit is {ATTENDEE_LIMIT}",
                m.attendees.len()
            ),
            json!({ "field": "attendees", "value": m.attendees.len(), "limit": ATTENDEE_LIMIT }),
        ),
        Defect::EndBeforeStart => {
            let end = get_field(v, f.end).cloned().unwrap_or(Value::Null);
            let start = get_field(v, f.start).cloned().unwrap_or(Value::Null);
            let name = field_name(f.end);
            let message = if format == Format::Zoom {
                format!("{name} is {end} minutes: the meeting ends before it starts")
            } else {
                format!("{name} {end} is before the start {start}")
            };
            error(
                "validate",
                "E_END_BEFORE_START",
                message,
                json!({ "field": name, "value": end, "start": start }),
            )
        }
    }
}

/// The error that fails a run at fetch time.
fn fetch_error(format: Format, rng: &mut StdRng, batch: usize) -> Issue {
    let page = batch + 1;
    let (code, message, details) = match (format, rng.random_range(0..2)) {
        (Format::Crm, 0) => (
            "E_FETCH_TIMEOUT",
            format!("GET /services/data/v59.0/query?q=SELECT+…+FROM+Event (page {page}) timed out after 30s"),
            json!({ "page": page, "timeout_s": 30 }),
        ),
        (Format::Crm, _) | (Format::Calendar, 0) => (
            "E_HTTP_503",
            format!("GET page {page} answered 503 Service Unavailable after 3 attempts"),
            json!({ "page": page, "status": 503, "attempts": 3 }),
        ),
        (Format::Calendar, _) => (
            "E_HTTP_401",
            "calendar API rejected the OAuth token (invalid_grant: token expired or revoked)".to_string(),
            json!({ "status": 401, "error": "invalid_grant" }),
        ),
        (Format::Zoom, _) => (
            "E_WEBHOOK_SIGNATURE",
            "x-zm-signature does not match the request body; delivery dropped".to_string(),
            json!({ "header": "x-zm-signature", "delivery": random_chars(rng, 12, b"0123456789abcdef") }),
        ),
        (Format::Erp, 0) => (
            "E_FILE_CHECKSUM",
            format!("bookings_{}.csv: sha256 mismatch, file rejected", Utc::now().format("%Y%m%d_%H00")),
            json!({ "file": format!("bookings_{}.csv", Utc::now().format("%Y%m%d_%H00")), "part": page }),
        ),
        (Format::Erp, _) => (
            "E_FILE_TRUNCATED",
            format!("unexpected end of file in part {page}, line {}", rng.random_range(100..5000)),
            json!({ "part": page }),
        ),
        (Format::Legacy, 0) => (
            "E_SFTP_CONN_RESET",
            "sftp://legacy-ftp.example:22/export/meetings: connection reset by peer".to_string(),
            json!({ "host": "legacy-ftp.example", "port": 22 }),
        ),
        (Format::Legacy, _) => (
            "E_SFTP_AUTH",
            "sftp: authentication failed for user \"ingest\" (publickey)".to_string(),
            json!({ "user": "ingest", "method": "publickey" }),
        ),
    };
    Issue {
        severity: "error",
        stage: "fetch",
        code,
        message,
        details,
    }
}

/// A transient fetch problem that was retried.
fn fetch_retry_warning(format: Format, rng: &mut StdRng, batch: usize) -> Issue {
    let wait = rng.random_range(1..=8);
    let (code, message, details) = match format {
        Format::Legacy => (
            "W_SLOW_TRANSFER",
            format!("export part {} transferred at 12 KiB/s", batch + 1),
            json!({ "part": batch + 1, "kib_per_s": 12 }),
        ),
        _ => (
            "W_HTTP_RETRY",
            format!(
                "429 Too Many Requests on page {}; retried after {wait}s",
                batch + 1
            ),
            json!({ "page": batch + 1, "status": 429, "retry_after_s": wait }),
        ),
    };
    Issue {
        severity: "warning",
        stage: "fetch",
        code,
        message,
        details,
    }
}

/// Logged after a deliberately rolled-back load transaction.
fn load_retry_warning(rng: &mut StdRng, batch: usize, rows: usize) -> Issue {
    let (sqlstate, what) = if rng.random_bool(0.5) {
        ("40P01", "deadlock detected")
    } else {
        ("40001", "could not serialize access")
    };
    Issue {
        severity: "warning",
        stage: "load",
        code: "W_LOAD_RETRY",
        message: format!(
            "{what} while loading batch {}; transaction rolled back, batch will be retried",
            batch + 1
        ),
        details: json!({ "batch": batch + 1, "rows": rows, "sqlstate": sqlstate }),
    }
}

fn pick_weighted(rng: &mut StdRng, items: &[(Defect, u32)]) -> Defect {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total.max(1));
    for &(d, w) in items {
        if x < w {
            return d;
        }
        x -= w;
    }
    Defect::MissingField
}

/// A random element of a non-empty slice.
fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn random_chars(rng: &mut StdRng, n: usize, alphabet: &[u8]) -> String {
    (0..n)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
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
