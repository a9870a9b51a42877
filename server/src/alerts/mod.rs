//! Alerts: rules over the live figures, evaluated continuously; pending →
//! firing → resolved with `for` and hysteresis; pushed live (WS topic
//! `alerts`), served over REST, delivered to signed webhooks, and recorded in
//! the server's own tables so history survives restarts and replicas agree.
//!
//! The room:
//!
//! - [`rules`] — the TOML rules file, validated (errors name the line).
//! - [`engine`] — the pure state machine (time passed in).
//! - [`conditions`] — reading the figures a rule compares.
//! - [`record`] — the one alert record (a recorded transition) and its
//!   active-alert shape.
//! - [`store`] — the alert tables (history, state, deliveries).
//! - [`notify`] — one webhook worker per receiver.
//! - [`view`] — what every replica shows, built from the tables.
//!
//! Tasks (started by [`spawn`]):
//!
//! - **sync** (every replica): keeps the [`view::AlertView`] current from the
//!   tables — on the leader's NOTIFY on `ingestwatch_alerts`, and polling
//!   every `sync_interval` — and publishes each transition to the hub.
//! - **coordinator** (replicas with rules): one dedicated connection that
//!   LISTENs, and tries `pg_try_advisory_lock` every `leader_retry`. Holding
//!   it makes the replica the leader: it restores the engine from
//!   `alert_state`, runs the **evaluator** (every `interval`) and one
//!   **webhook worker** per receiver, and executes their writes on this very
//!   session (explicit read-write transactions). When the session ends (the
//!   leader stops, crashes or loses PostgreSQL) the lock is released and
//!   another replica takes over within `leader_retry`, resuming undelivered
//!   webhooks from `alert_deliveries`.
//!
//! Evaluation never waits on a receiver: it only writes rows and rings the
//! workers' doorbells.

pub mod conditions;
pub mod engine;
pub mod notify;
pub mod record;
pub mod rules;
pub mod store;
pub mod view;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use deadpool_postgres::Pool;

use crate::db;
use crate::hub::Hub;
use crate::listen::Status;
use crate::live::Live;
use crate::metrics::Metrics;
use engine::{Change, Engine};
use rules::RuleSet;
use store::{Attempt, NewTransition};

/// `application_name` of the coordinator's connection (tests find it by this).
pub const APPLICATION_NAME: &str = "ingestwatch-alerts";
/// The advisory lock key of alerts leadership (per database).
pub const LEADER_LOCK: i64 = 7_406_914;
/// Transitions read per sync query.
const SYNC_BATCH: i64 = 500;

/// The alerts handle (in the application state, and in [`Deps`]).
#[derive(Debug)]
pub struct Alerts {
    /// The loaded rules (empty: this replica evaluates nothing).
    pub rules: Arc<RuleSet>,
    /// What this replica shows.
    pub view: view::AlertView,
    /// Rung when transitions may be waiting in the tables.
    sync_bell: Notify,
    /// This replica is the leader now.
    leader: AtomicBool,
}

impl Alerts {
    /// A handle for `rules`.
    pub fn new(rules: RuleSet) -> Self {
        Alerts {
            rules: Arc::new(rules),
            view: view::AlertView::default(),
            sync_bell: Notify::new(),
            leader: AtomicBool::new(false),
        }
    }

    /// The active alerts `scope` may see, oldest first, and the newest
    /// transition applied; refused until the view is loaded.
    pub fn active(
        &self,
        scope: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<(Vec<record::Active>, i64), AlertsError> {
        if !self.view.loaded() {
            return Err(AlertsError::Loading);
        }
        Ok(self.view.active(scope))
    }

    /// This replica evaluates rules and delivers webhooks now.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }
}

/// What the alert tasks use: narrow handles, not the whole application state.
#[derive(Clone)]
pub struct Deps {
    /// Read pool (the alert tables, the evaluator's database reads).
    pub pool: Pool,
    /// Live aggregates the conditions read.
    pub live: Arc<Live>,
    /// Where transitions are published (WS topic `alerts`).
    pub hub: Arc<Hub>,
    /// Listener status (readiness, disconnection time).
    pub status: Arc<Status>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The rules, the view and leadership.
    pub alerts: Arc<Alerts>,
}

/// Why the alerts room could not answer (the HTTP layer maps it to its
/// error envelope).
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The view has not been loaded from the tables yet.
    #[error("alerts are loading")]
    Loading,
    /// Reading the alert tables failed.
    #[error("reading the alert tables: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// One page of the alert history (see [`store::history`]).
pub async fn history(
    client: &impl tokio_postgres::GenericClient,
    q: &store::HistoryQuery,
) -> Result<Vec<record::Transition>, AlertsError> {
    Ok(store::history(client, q).await?)
}

enum WriteCmd {
    Record(
        Vec<NewTransition>,
        oneshot::Sender<Result<Vec<i64>, String>>,
    ),
    Attempt(Attempt, oneshot::Sender<Result<(), String>>),
}

/// Handle to the leader session's writes (the only writes the server makes).
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<WriteCmd>,
}

impl Writer {
    /// Records transitions; returns the ids recorded.
    pub async fn record(&self, batch: Vec<NewTransition>) -> anyhow::Result<Vec<i64>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(WriteCmd::Record(batch, tx))
            .await
            .map_err(|_| anyhow::anyhow!("not the leader any more"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("not the leader any more"))?
            .map_err(anyhow::Error::msg)
    }

    /// Records a delivery attempt.
    pub async fn attempt(&self, a: Attempt) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(WriteCmd::Attempt(a, tx))
            .await
            .map_err(|_| anyhow::anyhow!("not the leader any more"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("not the leader any more"))?
            .map_err(anyhow::Error::msg)
    }
}

/// Starts the sync task and, with rules, the coordinator.
pub fn spawn(st: &Deps, url: &str, cancel: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(
        sync(st.clone(), cancel.clone()).instrument(tracing::info_span!("alerts_sync")),
    )];
    if !st.alerts.rules.is_empty() {
        tasks.push(tokio::spawn(
            coordinator(st.clone(), url.to_string(), cancel.clone())
                .instrument(tracing::info_span!("alerts_leader")),
        ));
    }
    tasks
}

/// Keeps the view current from the tables.
async fn sync(st: Deps, cancel: CancellationToken) {
    let every = st.alerts.rules.settings.sync_interval;
    let mut warned = false;
    loop {
        let step = async {
            let mut client = st.pool.get().await.context("pool")?;
            if !st.alerts.view.loaded() {
                let (active, last) = store::active(&mut client).await?;
                st.alerts.view.load(active, last, &st.hub, &st.metrics);
                return anyhow::Ok(false);
            }
            let list = store::after(&**client, st.alerts.view.last_id(), SYNC_BATCH).await?;
            st.alerts.view.apply(&list, &st.hub, &st.metrics);
            anyhow::Ok(list.len() as i64 == SYNC_BATCH)
        };
        match step.await {
            Ok(true) => continue,
            Ok(false) => warned = false,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %format!("{e:#}"), "reading the alert tables failed (is migration 0007 applied?)");
                    warned = true;
                }
            }
        }
        tokio::select! {
            () = st.alerts.sync_bell.notified() => {}
            () = tokio::time::sleep(every) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Competes for leadership forever; leads while it holds the lock.
async fn coordinator(st: Deps, url: String, cancel: CancellationToken) {
    let mut attempt: u32 = 0;
    loop {
        let result = session(&st, &url, &cancel).await;
        st.alerts.leader.store(false, Ordering::Release);
        st.metrics.alerts_leader.set(0);
        if cancel.is_cancelled() {
            return;
        }
        match result {
            Ok(()) => attempt = 0,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), attempt, "alerts session lost; reconnecting")
            }
        }
        attempt = attempt.saturating_add(1);
        let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
        let jitter = rand::rng().random_range(0..=base / 2);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(base / 2 + jitter)) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// One connection's life: LISTEN, wait for the lock, then lead until the
/// connection ends or the server stops.
async fn session(st: &Deps, url: &str, cancel: &CancellationToken) -> anyhow::Result<()> {
    let mut cfg = db::parse_url(url)?;
    cfg.application_name(APPLICATION_NAME);
    cfg.connect_timeout(Duration::from_secs(5));
    cfg.keepalives_idle(Duration::from_secs(10));
    cfg.options("-c statement_timeout=10000 -c lock_timeout=2000 -c idle_in_transaction_session_timeout=30000");
    let (mut client, mut connection) = cfg
        .connect(NoTls)
        .await
        .context("connecting the alerts session")?;
    let (closed_tx, mut closed) = oneshot::channel::<()>();
    let bell = st.clone();
    tokio::spawn(
        async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(msg) = messages.next().await {
                match msg {
                    Ok(AsyncMessage::Notification(_)) => bell.alerts.sync_bell.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "alerts connection error");
                        break;
                    }
                }
            }
            let _ = closed_tx.send(());
        }
        .in_current_span(),
    );
    client
        .batch_execute(&format!("listen {}", store::CHANNEL))
        .await
        .context("LISTEN")?;
    st.alerts.sync_bell.notify_one(); // catch up on what happened while disconnected
    let retry = st.alerts.rules.settings.leader_retry;
    loop {
        let got: bool = client
            .query_one("select pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await?
            .get(0);
        if got {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            _ = &mut closed => anyhow::bail!("alerts connection closed"),
            () = cancel.cancelled() => return Ok(()),
        }
    }
    tracing::info!("alerts leadership acquired");
    st.alerts.leader.store(true, Ordering::Release);
    st.metrics.alerts_leader.set(1);
    let lead = cancel.child_token();
    let (tx, mut rx) = mpsc::channel::<WriteCmd>(256);
    let writer = Writer { tx };
    let bells: Vec<Arc<Notify>> = st
        .alerts
        .rules
        .receivers
        .iter()
        .map(|r| {
            let bell = Arc::new(Notify::new());
            tokio::spawn(
                notify::worker(
                    st.pool.clone(),
                    writer.clone(),
                    r.clone(),
                    bell.clone(),
                    st.metrics.clone(),
                    lead.clone(),
                )
                .instrument(tracing::info_span!("webhook", receiver = %r.name)),
            );
            bell
        })
        .collect();
    tokio::spawn(
        evaluator(st.clone(), writer, bells, lead.clone())
            .instrument(tracing::info_span!("alerts_evaluator")),
    );
    let result = loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(WriteCmd::Record(batch, reply)) => {
                    let r = store::record(&mut client, &batch).await;
                    let failed = r.as_ref().err().map(|e| e.is_closed());
                    let _ = reply.send(r.map_err(|e| format!("{e}")));
                    if failed == Some(true) {
                        break Err(anyhow::anyhow!("alerts connection closed"));
                    }
                }
                Some(WriteCmd::Attempt(a, reply)) => {
                    let r = store::record_attempt(&mut client, &a).await;
                    let failed = r.as_ref().err().map(|e| e.is_closed());
                    let _ = reply.send(r.map_err(|e| format!("{e}")));
                    if failed == Some(true) {
                        break Err(anyhow::anyhow!("alerts connection closed"));
                    }
                }
                None => break Ok(()),
            },
            _ = &mut closed => break Err(anyhow::anyhow!("alerts connection closed")),
            () = cancel.cancelled() => break Ok(()),
        }
    };
    lead.cancel();
    tracing::info!("alerts leadership released");
    result
}

/// The transition to record for an engine change.
fn describe(rules: &RuleSet, c: Change) -> NewTransition {
    match rules.rule(&c.rule) {
        Some(rule) => NewTransition {
            condition: rule.condition.kind().to_string(),
            unit: rule.condition.unit().to_string(),
            severity: rule.severity,
            labels: rule.labels.clone(),
            summary: rule.summary.clone(),
            receivers: rules
                .receivers_for(rule, c.to)
                .into_iter()
                .map(|r| r.name.clone())
                .collect(),
            change: c,
        },
        None => NewTransition {
            condition: "rule_removed".into(),
            unit: String::new(),
            severity: rules::Severity::Info,
            labels: Default::default(),
            summary: Some("the rule was removed from the rules file".into()),
            receivers: Vec::new(),
            change: c,
        },
    }
}

/// Restores the engine from the tables; records the end of alerts whose
/// rule is gone.
async fn restore(st: &Deps, engine: &mut Engine, writer: &Writer) -> anyhow::Result<()> {
    let client = st.pool.get().await?;
    let rows = store::load_state(&**client).await?;
    drop(client);
    let orphans = engine.restore(rows, chrono::Utc::now().timestamp_millis());
    if !orphans.is_empty() {
        let batch = orphans
            .into_iter()
            .map(|c| describe(&st.alerts.rules, c))
            .collect();
        writer.record(batch).await?;
        st.alerts.sync_bell.notify_one();
    }
    Ok(())
}

/// The leader's evaluation loop.
async fn evaluator(st: Deps, writer: Writer, bells: Vec<Arc<Notify>>, cancel: CancellationToken) {
    let rules = st.alerts.rules.clone();
    let mut engine = Engine::new(&rules);
    let mut attempt = 0u32;
    loop {
        match restore(&st, &mut engine, &writer).await {
            Ok(()) => break,
            Err(e) => {
                if attempt.is_multiple_of(30) {
                    tracing::warn!(error = %format!("{e:#}"), attempt, "restoring alert state failed (is migration 0007 applied?); retrying");
                }
                attempt += 1;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = cancel.cancelled() => return,
                }
            }
        }
    }
    let needs_db = conditions::needs_db(&rules);
    let db_timeout = rules.settings.interval.max(Duration::from_secs(2));
    let mut first_seen = HashMap::new();
    let mut tick = tokio::time::interval(rules.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut db_warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        let started = Instant::now();
        let db = if needs_db {
            let read = async {
                let client = st.pool.get().await?;
                anyhow::Ok(conditions::read_db(&**client, &rules).await?)
            };
            match tokio::time::timeout(db_timeout, read).await {
                Ok(Ok(f)) => {
                    db_warned = false;
                    Some(f)
                }
                Ok(Err(e)) => {
                    if !db_warned {
                        tracing::warn!(error = %format!("{e:#}"), "alert rules: database read failed; those rules wait");
                        db_warned = true;
                    }
                    None
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let now = chrono::Utc::now().timestamp_millis();
        let mut reading = conditions::Reading::new(
            &st.live,
            st.status.ready(),
            st.status.disconnected_ms(now),
            db.as_ref(),
            now,
            &mut first_seen,
        );
        let mut changes = Vec::new();
        for (i, rule) in rules.rules.iter().enumerate() {
            changes.extend(engine.step(i, reading.observe(rule), now));
        }
        st.metrics.alert_evaluations.inc();
        st.metrics
            .alert_evaluation_seconds
            .set(started.elapsed().as_secs_f64());
        if changes.is_empty() {
            continue;
        }
        let n = changes.len();
        let batch = changes.into_iter().map(|c| describe(&rules, c)).collect();
        match writer.record(batch).await {
            Ok(ids) => {
                st.metrics.alert_transitions.inc_by(ids.len() as u64);
                tracing::info!(
                    transitions = n,
                    recorded = ids.len(),
                    "alert transitions recorded"
                );
                st.alerts.sync_bell.notify_one();
                for b in &bells {
                    b.notify_one();
                }
            }
            Err(e) => {
                if cancel.is_cancelled() {
                    return;
                }
                tracing::warn!(error = %format!("{e:#}"), "recording alert transitions failed; reloading state");
                if let Err(e) = restore(&st, &mut engine, &writer).await {
                    tracing::warn!(error = %format!("{e:#}"), "reloading alert state failed");
                }
            }
        }
    }
}
