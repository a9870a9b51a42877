//! One simulated writer: its own connection, a few concurrent runs, each
//! advancing one statement at a time ([`Writer::step`]); reconnects with
//! backoff and carries on. Choosing a source and fetching live in [`runs`],
//! validating/normalizing and record planning in [`records`].

mod records;
mod runs;

pub(crate) use records::*;

use super::*;

/// The next thing a run does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
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
pub(crate) struct Issue {
    pub(crate) severity: &'static str,
    pub(crate) stage: &'static str,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) details: Value,
}

/// What becomes of a fetched record.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Normalized, possibly with a warning.
    Clean(Option<Issue>),
    /// Rejected at the issue's stage.
    Reject(Issue),
}

/// A fetched record: its `raw_records.id` and fate.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) id: i64,
    pub(crate) outcome: Outcome,
}

/// One run in progress.
#[derive(Debug)]
pub(crate) struct RunState {
    pub(crate) source: usize,
    pub(crate) id: Option<i64>,
    pub(crate) steps: VecDeque<Step>,
    pub(crate) batches: Vec<Option<Vec<Fetched>>>,
    pub(crate) received: u64,
    pub(crate) rejected: u64,
    pub(crate) failed: bool,
}

impl RunState {
    /// A run of `n` batches, processing each batch after fetching the next.
    pub(crate) fn new(source: usize, n: usize) -> RunState {
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
pub(crate) enum StepError {
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
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) start_run: Statement,
    pub(crate) insert_records: Statement,
    pub(crate) insert_issues: Statement,
    pub(crate) set_status: Statement,
    pub(crate) finish_run: Statement,
    pub(crate) normalize: Vec<Statement>,
    /// `ingest.sources.id` of each entry of [`SOURCES`].
    pub(crate) source_ids: Vec<i64>,
}

/// Backoff bounds for reconnects and repeated errors.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One writer task: its own connection, RNG and runs.
pub(crate) struct Writer {
    pub(crate) index: usize,
    pub(crate) rng: StdRng,
    pub(crate) target: Target,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) runs: Vec<RunState>,
    /// Recent external ids per source (for duplicates).
    pub(crate) recent: Vec<VecDeque<String>>,
    /// Counter that keeps generated ids unique within this writer.
    pub(crate) serial: u64,
}

impl Writer {
    pub(crate) fn new(
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

    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d`; false if the simulator stops meanwhile.
    pub(crate) async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => !self.stopping(),
            _ = self.stop.changed() => false,
        }
    }

    /// Waits for the pacer's go for one statement.
    pub(crate) async fn permit(&self) -> Result<(), StepError> {
        match self.shared.permits.acquire().await {
            Ok(p) => {
                p.forget();
                Ok(())
            }
            Err(_) => Err(StepError::Stopped),
        }
    }

    pub(crate) async fn run(mut self) {
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
    pub(crate) async fn connect(&self) -> Result<Conn> {
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
    pub(crate) async fn step(&mut self, conn: &mut Conn) -> Result<(), StepError> {
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
}

/// Whether a failed statement is worth retrying as is (serialization
/// failure, deadlock, shutdown, too many connections…).
pub(crate) fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let c = c.code();
        c.starts_with("40") || c.starts_with("57") || c.starts_with("53") || c.starts_with("08")
    })
}
