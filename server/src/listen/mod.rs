//! The listener: one dedicated connection that LISTENs on the outbox channel
//! (NOTIFY is only a doorbell), reads `monitor.events` after the watermark at
//! start, after every doorbell and after every reconnect, and feeds the
//! [`sequencer::Sequencer`]. Events are applied to the live aggregates at first
//! sight and delivered to the hub in seq order.
//!
//! Pooled connections drop notifications, so this connection is opened with
//! `tokio_postgres::connect` and its `Connection` is polled for
//! `AsyncMessage::Notification` by a driver task. When PostgreSQL goes away
//! the loop reconnects with jittered backoff and simply reads on: the outbox
//! holds everything it missed.

pub mod event;
pub mod sequencer;
mod status;

pub use status::Status;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::{oneshot, Notify};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::db;
use crate::hub::Hub;
use crate::live::Live;
use crate::metrics::Metrics;
use event::{Event, COLUMNS};
use sequencer::Sequencer;

/// The NOTIFY channel (see `monitor.channel()` in sql/).
pub const CHANNEL: &str = "ingestwatch_events";
/// `application_name` of the listener connection (tests find its backend by it).
pub const APPLICATION_NAME: &str = "ingestwatch-listener";
/// Events read per query.
const READ_LIMIT: i64 = 2_000;
/// Seen-but-undelivered events kept before reading pauses (memory bound).
const BUFFER_CAP: usize = 100_000;
/// Poll interval while holes are open (rollbacks ring no doorbell).
const HOLE_POLL: Duration = Duration::from_millis(5);
/// Safety poll when idle.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Outbox reads answer doorbells at once up to this many per second (a
/// burst of [`READ_BURST`] allowed); above it a doorbell waits for the
/// next read slot, so one read takes every statement committed meanwhile.
/// Each read is a query on the listener's backend (about 0.17 ms of
/// PostgreSQL CPU on the 2-core bench machine): one read per doorbell at
/// 2,000 notifying statements/s cost a replica's backend 38 % of a core,
/// taken from the writers, while below ~1,000/s no doorbell waits.
const READS_PER_SEC: f64 = 1_000.0;
/// Reads allowed back to back before the rate applies.
const READ_BURST: f64 = 4.0;
/// How long marked holes stay open before the listener looks at the lock
/// table for their writers (and then again at this interval). Holes behind
/// concurrent writers close by themselves within a few milliseconds; the lock
/// look (a `pg_locks` join, which takes every lock-manager partition lock the
/// writers need too) is for holes an unrelated long transaction keeps open
/// by holding `xmin` back.
const LOCK_LOOK_AFTER: Duration = Duration::from_millis(25);

/// What the listener task needs.
#[derive(Clone)]
pub struct Listener {
    /// Database URL (read-only role is enough).
    pub url: String,
    /// Live aggregates to apply to.
    pub live: Arc<Live>,
    /// Hub to deliver to.
    pub hub: Arc<Hub>,
    /// Status flags for readiness.
    pub status: Arc<Status>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

struct Conn {
    client: tokio_postgres::Client,
    doorbell: Arc<Notify>,
    closed: oneshot::Receiver<()>,
}

const READ_SQL: &str = "select s.xmin, e.* from
    (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint as xmin) s
    left join lateral (
        (select COLS from monitor.events where seq > $1 order by seq limit $2)
        union all
        (select COLS from monitor.events where seq = any($3))
    ) e on true";

pub use crate::db::xact::LOCK_HOLDERS_SQL;

impl Listener {
    /// Runs until `shutdown`; reconnects forever.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut seq: Option<Sequencer> = None;
        let mut attempt: u32 = 0;
        loop {
            let result = tokio::select! {
                r = self.session(&mut seq, &shutdown) => r,
                () = shutdown.cancelled() => return,
            };
            // A session that got connected starts the backoff afresh: a killed
            // backend is replaced within tens of milliseconds.
            if self.status.connected.load(Ordering::Acquire) {
                attempt = 0;
            }
            self.status.set_connected(false);
            self.metrics.listener_connected.set(0);
            if shutdown.is_cancelled() {
                return;
            }
            match result {
                Ok(()) => attempt = 0,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), attempt, "listener connection lost; reconnecting");
                }
            }
            let base = 25u64.saturating_mul(1 << attempt.min(8)).min(5_000);
            attempt = attempt.saturating_add(1);
            let jitter = rand::rng().random_range(0..=base / 2);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(base / 2 + jitter)) => {}
                () = shutdown.cancelled() => return,
            }
            self.metrics.listener_reconnects.inc();
        }
    }

    async fn connect(&self) -> anyhow::Result<Conn> {
        let (client, mut connection) = db::connect_raw(&self.url, |cfg| {
            cfg.application_name(APPLICATION_NAME);
            cfg.keepalives_idle(Duration::from_secs(10));
        })
        .await
        .context("connecting the listener")?;
        let doorbell = Arc::new(Notify::new());
        let (closed_tx, closed) = oneshot::channel();
        let bell = doorbell.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(
            async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(msg) = messages.next().await {
                    match msg {
                        Ok(AsyncMessage::Notification(_)) => {
                            metrics.notifications.inc();
                            bell.notify_one();
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "listener connection error");
                            break;
                        }
                    }
                }
                let _ = closed_tx.send(());
            }
            .in_current_span(),
        );
        // `synchronous_commit = off`: this session's only transactions that
        // commit anything are the hole markers (`pg_current_xact_id()` takes
        // an xid, so each commits a WAL record). They change no data, so
        // there is nothing to lose by not waiting for the flush; waiting cost
        // one WAL flush per hole (several hundred per second with concurrent
        // writers, all on the writers' disk).
        client
            .batch_execute(&format!("listen {CHANNEL}; set synchronous_commit = off"))
            .await
            .context("LISTEN")?;
        Ok(Conn {
            client,
            doorbell,
            closed,
        })
    }

    /// One connection's life: connect, LISTEN, warm up once, then read on
    /// every doorbell until the connection drops.
    async fn session(
        &self,
        seq: &mut Option<Sequencer>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut conn = self.connect().await?;
        if let Err(e) = db::warm::check_outbox_sequence(&conn.client).await {
            tracing::error!(error = %format!("{e:#}"), "outbox sequence unusable; not reading");
            return Err(e);
        }
        self.status.set_connected(true);
        self.metrics.listener_connected.set(1);
        if seq.is_none() {
            *seq = Some(self.warm_up(&mut conn.client).await?);
        }
        let Some(seq) = seq.as_mut() else {
            return Ok(());
        };
        // A source change seen just before a previous connection dropped may
        // not have been loaded: reload on every (re)connect.
        self.live
            .set_sources(db::warm::sources(&conn.client).await?);
        // Likewise a newest record deleted just before: re-read the maxima.
        self.live
            .set_last_received(&db::warm::last_received(&conn.client, None).await?);
        let read = conn
            .client
            .prepare(&READ_SQL.replace("COLS", COLUMNS))
            .await?;
        let mut catching_up = true;
        let mut lock_look_due = None;
        let mut pacer = ReadPacer::new(READS_PER_SEC, READ_BURST);
        loop {
            let stepped = self
                .step(&conn.client, &read, seq, catching_up, &mut lock_look_due)
                .await?;
            if stepped.rewarm {
                self.rewarm(&mut conn.client, seq).await?;
            }
            if stepped.full {
                continue;
            }
            catching_up = false;
            let wait = if seq.open_holes() > 0 {
                HOLE_POLL
            } else {
                IDLE_POLL
            };
            tokio::select! {
                () = conn.doorbell.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = &mut conn.closed => anyhow::bail!("listener connection closed"),
                () = shutdown.cancelled() => return Ok(()),
            }
            tokio::select! {
                () = pacer.wait() => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn warm_up(&self, client: &mut tokio_postgres::Client) -> anyhow::Result<Sequencer> {
        let started = std::time::Instant::now();
        let d0 = db::warm::settle(client)
            .await
            .context("warm-up: settling")?;
        let now_sec = chrono::Utc::now().timestamp();
        let warm = db::warm::load(client, d0, now_sec)
            .await
            .context("warm-up: loading")?;
        let rows = warm.contributions.len();
        self.live
            .reset(warm.sources, &warm.contributions, d0, now_sec);
        self.hub.start_at(d0);
        self.status.warm.store(true, Ordering::Release);
        tracing::info!(
            d0,
            counted_above = warm.counted.len(),
            contributions = rows,
            took_ms = started.elapsed().as_millis() as u64,
            "live aggregates warm"
        );
        Ok(Sequencer::new(d0, warm.counted, BUFFER_CAP))
    }

    /// Re-reads the live aggregates from the base tables while running (a
    /// TRUNCATE was seen: it carries no contributions). Same procedure as the
    /// warm-up: settle to `d0` (every seq <= d0 final), read the base tables
    /// and the seqs above d0 in one snapshot; the sequencer then applies only
    /// what that snapshot did not see, and delivers the event stream on from
    /// its watermark unchanged. KPI subscribers get a fresh snapshot.
    async fn rewarm(
        &self,
        client: &mut tokio_postgres::Client,
        seq: &mut Sequencer,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let d0 = db::warm::settle(client)
            .await
            .context("re-warm: settling")?;
        let now_sec = chrono::Utc::now().timestamp();
        let warm = db::warm::load(client, d0, now_sec)
            .await
            .context("re-warm: loading")?;
        let rows = warm.contributions.len();
        self.live.rewarm(warm.sources, &warm.contributions, now_sec);
        let counted = warm.counted.len();
        seq.rebase(d0, warm.counted);
        self.hub.resnapshot_kpis();
        self.metrics.rewarms.inc();
        tracing::info!(
            d0,
            counted_above = counted,
            contributions = rows,
            took_ms = started.elapsed().as_millis() as u64,
            "live aggregates re-read from the base tables (truncate)"
        );
        Ok(())
    }

    /// One read: feed, apply, mark, deliver.
    async fn step(
        &self,
        client: &tokio_postgres::Client,
        read: &tokio_postgres::Statement,
        seq: &mut Sequencer,
        catching_up: bool,
        lock_look_due: &mut Option<tokio::time::Instant>,
    ) -> anyhow::Result<Stepped> {
        let plan = seq.plan();
        let after = plan.after.unwrap_or(i64::MAX);
        let rows = client
            .query(read, &[&after, &READ_LIMIT, &plan.holes])
            .await?;
        let xmin: i64 = rows.first().map_or(0, |r| r.get(0));
        let mut events = Vec::with_capacity(rows.len());
        for r in &rows {
            if r.try_get::<_, Option<i64>>(1)?.is_some() {
                events.push(Event::from_row(r, 1)?);
            }
        }
        let new_rows = events.iter().filter(|e| e.seq > after).count();
        if catching_up {
            self.metrics.catchup_events.inc_by(events.len() as u64);
        }
        let fed = seq.feed(&plan, events, xmin);
        let rewarm = fed.apply.iter().any(Event::is_truncate);
        // Apply before any further I/O: the sequencer now counts these events
        // as seen, so a connection lost below must not skip their KPIs.
        let mut stale = Vec::new();
        if !fed.apply.is_empty() {
            let now_sec = chrono::Utc::now().timestamp();
            for e in &fed.apply {
                let contributions = e.contributions();
                self.live.apply(&contributions, now_sec);
                stale.extend(self.live.stale_last_received(&contributions));
            }
            self.metrics.events_applied.inc_by(fed.apply.len() as u64);
        }
        // A newest record deleted or moved away: re-read that maximum (a
        // snapshot newer than the events applied is fine for a maximum: the
        // inserts it already shows only raise it again when applied, and
        // deletions it shows trigger another re-read).
        if !stale.is_empty() && !rewarm {
            stale.sort_unstable();
            stale.dedup();
            let newest = db::warm::last_received(client, Some(&stale)).await?;
            self.live.set_last_received(&newest);
        }
        // Holes without a marker (new ones, or ones whose marker read was cut
        // off by a lost connection) get one now.
        if fed.needs_marker || seq.unmarked_holes() {
            let marker: i64 = client
                .query_one("select pg_current_xact_id()::text::bigint", &[])
                .await?
                .get(0);
            seq.set_marker(marker);
        }
        if !seq.uncleared_holes() {
            *lock_look_due = None;
        } else if lock_look_due.is_none() {
            *lock_look_due = Some(tokio::time::Instant::now() + LOCK_LOOK_AFTER);
        }
        if lock_look_due.is_some_and(|due| tokio::time::Instant::now() >= due) {
            *lock_look_due = Some(tokio::time::Instant::now() + LOCK_LOOK_AFTER);
            let holders: Vec<u32> = client
                .query(LOCK_HOLDERS_SQL, &[])
                .await?
                .iter()
                .map(|r| r.get::<_, i64>(0) as u32)
                .collect();
            seq.clear(&holders);
        }
        if fed.apply.iter().any(Event::touches_sources) {
            self.live.set_sources(db::warm::sources(client).await?);
        }
        let ready = seq.drain();
        self.live.set_seq(seq.watermark());
        if !ready.is_empty() {
            self.hub.publish_events(&ready, &self.live.source_names());
            self.metrics.events_delivered.inc_by(ready.len() as u64);
        }
        self.metrics.watermark.set(seq.watermark());
        self.metrics.open_holes.set(seq.open_holes() as i64);
        self.metrics.buffered_events.set(seq.buffered() as i64);
        Ok(Stepped {
            full: new_rows as i64 >= READ_LIMIT,
            rewarm,
        })
    }
}

/// What one read found.
struct Stepped {
    /// The read was full: more to read right away.
    full: bool,
    /// A TRUNCATE was seen: re-read the aggregates from the base tables.
    rewarm: bool,
}

/// A token bucket for outbox reads: [`ReadPacer::wait`] returns at once
/// while reads stay under the rate (bursts included) and otherwise sleeps
/// until the next read is due.
struct ReadPacer {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl ReadPacer {
    fn new(per_sec: f64, burst: f64) -> Self {
        ReadPacer {
            per_sec,
            burst,
            tokens: burst,
            at: tokio::time::Instant::now(),
        }
    }

    /// Takes one read slot, waiting for it when the bucket is empty.
    async fn wait(&mut self) {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens < 1.0 {
            let short = Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec);
            tokio::time::sleep(short).await;
            self.tokens = 1.0;
            self.at = now + short;
        }
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_under_the_rate_never_wait_and_bursts_above_it_are_paced() {
        let mut p = ReadPacer::new(1_000.0, 4.0);
        let t0 = tokio::time::Instant::now();
        for _ in 0..4 {
            p.wait().await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "a burst of 4 goes at once");
        for _ in 0..10 {
            p.wait().await;
        }
        let paced = t0.elapsed();
        assert!(
            paced >= Duration::from_millis(9) && paced <= Duration::from_millis(11),
            "10 more reads take ~10 ms, took {paced:?}"
        );
        // Slower than the rate (one read every 2 ms): no read waits.
        tokio::time::sleep(Duration::from_millis(10)).await;
        for _ in 0..20 {
            let before = tokio::time::Instant::now();
            p.wait().await;
            assert_eq!(before.elapsed(), Duration::ZERO);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
