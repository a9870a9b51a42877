//! Topics, subscribers and the fan-out policy.
//!
//! - `events`: every outbox event in seq order. A ring of recent frames lets a
//!   subscriber resume from `since` without touching PostgreSQL; older gaps
//!   are read from the outbox ([`catchup`], shared by `/ws` and SSE).
//! - `errors`: the same stream filtered to `errors.*` events (same seqs). A
//!   subscriber registers on the event feed with an [`EventFilter`]; the
//!   filtered batch is built once per publish, so an errors-only subscriber's
//!   queue holds only what it will write.
//! - `kpis`: a snapshot on subscribe, then one merge-patch delta per tick.
//! - `alerts`: a snapshot of the active alerts on subscribe, then one frame
//!   per transition (see `crate::alerts::view`, which publishes and
//!   subscribes under its own lock so snapshot and frames never overlap).
//! - `exports`: progress frames of the subscriber's own export jobs, as they
//!   happen (no snapshot: `GET /api/exports/{id}` has the current state).
//!
//! Frames are serialized once and shared (`Utf8Bytes` clones are cheap).
//! Fan-out never waits: each subscriber has a bounded queue and `try_send`;
//! a full queue marks the subscriber overflowed and removes it from every
//! topic, so a stalled client costs at most its queue and slows no one. Its
//! connection then tells it to resync and resubscribes it (see `http::ws`).
//! Publish and subscribe take the same per-topic lock, so a new subscriber
//! gets exactly the frames after what it was given — no gap, no duplicate.

pub mod catchup;
pub mod mergepatch;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::listen::event::Event;
use crate::metrics::Metrics;

/// A topic a client can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// KPI snapshot then deltas.
    Kpis,
    /// Every outbox event, in seq order.
    Events,
    /// The `errors.*` events only (a filtered view of `events`, same seqs).
    Errors,
    /// Active alerts snapshot, then alert transitions.
    Alerts,
    /// Progress of the subscriber's own export jobs.
    Exports,
}

impl Topic {
    /// Parses a topic name.
    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The topic names, comma-separated (for error messages).
    pub fn available() -> String {
        Topic::ALL.map(Topic::name).join(", ")
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Kpis => "kpis",
            Topic::Events => "events",
            Topic::Errors => "errors",
            Topic::Alerts => "alerts",
            Topic::Exports => "exports",
        }
    }

    /// Every topic, in the order `hello` lists them.
    pub const ALL: [Topic; 5] = [
        Topic::Kpis,
        Topic::Events,
        Topic::Errors,
        Topic::Alerts,
        Topic::Exports,
    ];
}

/// Which events an event-feed subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFilter {
    /// Every event (`events`; also `events` + `errors`, which is the same set).
    All,
    /// Only `errors.*` events (`errors` alone).
    Errors,
}

impl EventFilter {
    /// The filter for a set of subscribed topics; None when no event topic is in it.
    pub fn for_topics<'a>(topics: impl IntoIterator<Item = &'a Topic>) -> Option<EventFilter> {
        let mut out = None;
        for t in topics {
            match t {
                Topic::Events => return Some(EventFilter::All),
                Topic::Errors => out = Some(EventFilter::Errors),
                Topic::Kpis | Topic::Alerts | Topic::Exports => {}
            }
        }
        out
    }

    /// Does `frame` pass?
    pub fn passes(self, frame: &EventFrame) -> bool {
        self == EventFilter::All || frame.errors
    }
}

/// True for events of `ingest.errors` (the `errors` topic).
pub fn is_errors_kind(kind: &str) -> bool {
    kind.starts_with("errors.")
}

/// The `type` of a KPI frame from the hub (`snapshot` or `delta`), without
/// parsing it: the hub writes `type` either first (insertion-ordered maps) or
/// last (sorted maps: `data`, `seq`, `topic`, `type`).
pub fn kpi_frame_type(text: &str) -> &'static str {
    if text.starts_with(r#"{"type":"snapshot""#) || text.ends_with(r#""type":"snapshot"}"#) {
        "snapshot"
    } else {
        "delta"
    }
}

/// Resyncs a subscriber may need per minute before it is dropped as too slow.
pub const MAX_RESYNCS_PER_MINUTE: usize = 5;

/// Counts a subscriber's resyncs over the last minute (shared by `/ws` and SSE).
#[derive(Debug, Default)]
pub struct ResyncBudget {
    recent: Vec<Instant>,
}

impl ResyncBudget {
    /// Records one resync at `now`; false when the budget is exhausted.
    pub fn spend(&mut self, now: Instant) -> bool {
        self.recent
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        self.recent.push(now);
        self.recent.len() <= MAX_RESYNCS_PER_MINUTE
    }
}

/// Which sources a subscriber may see (`None` = all).
pub type Scope = Option<BTreeSet<String>>;

/// One serialized event, with the ids of the sources it touches (for scoping).
#[derive(Debug, Clone)]
pub struct EventFrame {
    /// Outbox seq.
    pub seq: i64,
    /// The `event` frame, JSON text.
    pub text: Utf8Bytes,
    /// Ids of every source the event touches.
    pub sources: Arc<[i64]>,
    /// True for `errors.*` events (the `errors` topic).
    pub errors: bool,
}

impl EventFrame {
    /// Serializes an event once.
    pub fn new(e: &Event, names: &HashMap<i64, String>) -> Self {
        EventFrame {
            seq: e.seq,
            text: Utf8Bytes::from(e.frame(names)),
            sources: e.source_ids().into(),
            errors: is_errors_kind(&e.kind),
        }
    }
}

/// An item in a subscriber's queue.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A KPI snapshot or delta frame.
    Kpis(Utf8Bytes),
    /// A batch of event frames, shared by every subscriber.
    Events(Arc<[EventFrame]>),
    /// An alerts snapshot or transition frame.
    Alerts(Utf8Bytes),
    /// An export progress frame.
    Exports(Utf8Bytes),
}

/// One serialized alert frame and the sources it covers (for scoping).
#[derive(Debug, Clone)]
pub struct AlertFrame {
    /// The frame, JSON text.
    pub text: Utf8Bytes,
    /// Sources the alert covers (empty: all sources, or a system alert).
    pub sources: Arc<[String]>,
}

/// One subscriber's side of the hub.
#[derive(Debug)]
pub struct Subscriber {
    /// Connection id.
    pub id: u64,
    tx: mpsc::Sender<Outgoing>,
    overflowed: AtomicBool,
}

impl Subscriber {
    /// True once its queue overflowed (until [`Subscriber::clear_overflow`]).
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Resets the overflow flag before resubscribing.
    pub fn clear_overflow(&self) {
        self.overflowed.store(false, Ordering::Release);
    }
}

#[derive(Debug, Default)]
struct EventLog {
    ring: VecDeque<EventFrame>,
    /// Highest seq evicted from the ring (everything above it is in the ring).
    evicted_upto: i64,
    /// Highest seq published.
    last: i64,
}

#[derive(Debug, Default)]
struct KpiFeed {
    data: Value,
    seq: i64,
    /// The next publish sends a full snapshot (the aggregates were re-read).
    fresh: bool,
}

/// Where a resuming events subscriber stands.
#[derive(Debug)]
pub enum Resume {
    /// Registered; the ring frames after `since` were queued.
    Registered,
    /// Events in `(since, upto]` left the ring: read them from the outbox first.
    NeedOutbox {
        /// Read events with seq <= this.
        upto: i64,
    },
}

/// The hub.
#[derive(Debug)]
pub struct Hub {
    next_id: AtomicU64,
    ring_cap: usize,
    events: Mutex<EventLog>,
    event_subs: DashMap<u64, (Arc<Subscriber>, EventFilter)>,
    kpis: Mutex<HashMap<Scope, KpiFeed>>,
    kpi_subs: DashMap<u64, (Arc<Subscriber>, Scope)>,
    alert_subs: DashMap<u64, (Arc<Subscriber>, Scope)>,
    /// Export subscribers and the token subject whose jobs they may follow.
    export_subs: DashMap<u64, (Arc<Subscriber>, String)>,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A hub keeping `ring_cap` recent events; `start_seq` is the watermark
    /// the listener starts from (resumes at or after it need no outbox read).
    pub fn new(ring_cap: usize, metrics: Arc<Metrics>) -> Self {
        Hub {
            next_id: AtomicU64::new(1),
            ring_cap: ring_cap.max(16),
            events: Mutex::new(EventLog::default()),
            event_subs: DashMap::new(),
            kpis: Mutex::new(HashMap::new()),
            kpi_subs: DashMap::new(),
            alert_subs: DashMap::new(),
            export_subs: DashMap::new(),
            metrics,
        }
    }

    /// Sets where the event log starts (after warm-up): resumes from before
    /// it are served from the outbox.
    pub fn start_at(&self, seq: i64) {
        let mut log = lock(&self.events);
        if log.ring.is_empty() {
            log.evicted_upto = seq;
            log.last = seq;
        }
    }

    /// A new subscriber with a queue of `cap` items, and its receiving end.
    pub fn subscriber(&self, cap: usize) -> (Arc<Subscriber>, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(cap.max(1));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        (
            Arc::new(Subscriber {
                id,
                tx,
                overflowed: AtomicBool::new(false),
            }),
            rx,
        )
    }

    /// Highest seq published on `events`.
    pub fn last_seq(&self) -> i64 {
        lock(&self.events).last
    }

    fn send(&self, sub: &Arc<Subscriber>, item: Outgoing) -> bool {
        match sub.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                sub.overflowed.store(true, Ordering::Release);
                self.event_subs.remove(&sub.id);
                self.kpi_subs.remove(&sub.id);
                self.alert_subs.remove(&sub.id);
                self.export_subs.remove(&sub.id);
                self.metrics.ws_resynced.inc();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.remove(sub.id);
                false
            }
        }
    }

    /// Publishes delivered events (in seq order) to `events` subscribers.
    pub fn publish_events(&self, events: &[Event], names: &HashMap<i64, String>) {
        if events.is_empty() {
            return;
        }
        let frames: Arc<[EventFrame]> = events.iter().map(|e| EventFrame::new(e, names)).collect();
        let mut log = lock(&self.events);
        for f in frames.iter() {
            log.ring.push_back(f.clone());
            log.last = f.seq;
        }
        while log.ring.len() > self.ring_cap {
            if let Some(f) = log.ring.pop_front() {
                log.evicted_upto = f.seq;
            }
        }
        let subs: Vec<(Arc<Subscriber>, EventFilter)> =
            self.event_subs.iter().map(|s| s.value().clone()).collect();
        let mut errors_only: Option<Arc<[EventFrame]>> = None;
        for (sub, filter) in subs {
            let batch = match filter {
                EventFilter::All => frames.clone(),
                EventFilter::Errors => errors_only
                    .get_or_insert_with(|| frames.iter().filter(|f| f.errors).cloned().collect())
                    .clone(),
            };
            if !batch.is_empty() {
                self.send(&sub, Outgoing::Events(batch));
            }
        }
    }

    /// Registers `sub` on the event feed (with `filter`) after `since` if the
    /// ring still holds everything after it (queueing those frames), else
    /// says what to read from the outbox first. Replaces any earlier
    /// registration of `sub` on the feed.
    pub fn resume_events(&self, sub: &Arc<Subscriber>, since: i64, filter: EventFilter) -> Resume {
        let log = lock(&self.events);
        if since < log.evicted_upto {
            return Resume::NeedOutbox {
                upto: log.evicted_upto,
            };
        }
        let backlog: Arc<[EventFrame]> = log
            .ring
            .iter()
            .filter(|f| f.seq > since && filter.passes(f))
            .cloned()
            .collect();
        if !backlog.is_empty() && !self.send(sub, Outgoing::Events(backlog)) {
            return Resume::Registered; // overflowed already: the connection resyncs it
        }
        self.event_subs.insert(sub.id, (sub.clone(), filter));
        Resume::Registered
    }

    /// The scopes KPI payloads must be computed for this tick (all sources,
    /// plus each distinct scope of a subscriber); forgets unused scopes.
    pub fn kpi_scopes(&self) -> Vec<Scope> {
        let mut scopes: HashSet<Scope> =
            self.kpi_subs.iter().map(|s| s.value().1.clone()).collect();
        scopes.insert(None);
        lock(&self.kpis).retain(|k, _| scopes.contains(k));
        scopes.into_iter().collect()
    }

    /// Makes the next publish of every KPI feed a full `snapshot` frame
    /// (the live aggregates were re-read from the base tables: subscribers
    /// start again from fresh figures rather than from a patch).
    pub fn resnapshot_kpis(&self) {
        for feed in lock(&self.kpis).values_mut() {
            feed.fresh = true;
        }
    }

    /// Publishes this tick's KPI payload for `scope` as a delta to its
    /// subscribers (a snapshot after [`Hub::resnapshot_kpis`]).
    pub fn publish_kpis(&self, scope: &Scope, data: Value, seq: i64) {
        let mut feeds = lock(&self.kpis);
        let feed = feeds.entry(scope.clone()).or_default();
        let frame = if std::mem::take(&mut feed.fresh) {
            json!({"type": "snapshot", "topic": "kpis", "seq": seq, "data": data})
        } else {
            let Some(patch) = mergepatch::diff(&feed.data, &data) else {
                return;
            };
            json!({"type": "delta", "topic": "kpis", "seq": seq, "data": patch})
        };
        feed.data = data;
        feed.seq = seq;
        let frame = Utf8Bytes::from(frame.to_string());
        let subs: Vec<Arc<Subscriber>> = self
            .kpi_subs
            .iter()
            .filter(|s| &s.value().1 == scope)
            .map(|s| s.value().0.clone())
            .collect();
        for sub in subs {
            self.send(&sub, Outgoing::Kpis(frame.clone()));
        }
    }

    /// Registers `sub` on `kpis` for `scope`, queueing the current snapshot
    /// first (`initial` computes it when the scope has no feed yet).
    pub fn subscribe_kpis(
        &self,
        sub: &Arc<Subscriber>,
        scope: Scope,
        initial: impl FnOnce() -> (Value, i64),
    ) {
        let mut feeds = lock(&self.kpis);
        let feed = feeds.entry(scope.clone()).or_insert_with(|| {
            let (data, seq) = initial();
            KpiFeed {
                data,
                seq,
                fresh: false,
            }
        });
        let frame = Utf8Bytes::from(
            json!({"type": "snapshot", "topic": "kpis", "seq": feed.seq, "data": feed.data})
                .to_string(),
        );
        if self.send(sub, Outgoing::Kpis(frame)) {
            self.kpi_subs.insert(sub.id, (sub.clone(), scope));
        }
    }

    /// Publishes one alert frame to the `alerts` subscribers whose scope
    /// covers every source it is about (alerts over all sources and system
    /// alerts go to unscoped subscribers only). The caller serializes
    /// publishing and [`Hub::subscribe_alerts`] (the alerts view's lock).
    pub fn publish_alert(&self, frame: &AlertFrame) {
        let subs: Vec<Arc<Subscriber>> = self
            .alert_subs
            .iter()
            .filter(|s| crate::alerts::store::visible(&frame.sources, s.value().1.as_ref()))
            .map(|s| s.value().0.clone())
            .collect();
        for sub in subs {
            self.send(&sub, Outgoing::Alerts(frame.text.clone()));
        }
    }

    /// Registers `sub` on `alerts` for `scope` after queueing `snapshot`
    /// (`None`: the snapshot follows later, see [`Hub::alert_subscribers`]).
    pub fn subscribe_alerts(
        &self,
        sub: &Arc<Subscriber>,
        scope: Scope,
        snapshot: Option<Utf8Bytes>,
    ) {
        if snapshot.is_none_or(|s| self.send(sub, Outgoing::Alerts(s))) {
            self.alert_subs.insert(sub.id, (sub.clone(), scope));
        }
    }

    /// The `alerts` subscribers and their scopes.
    pub fn alert_subscribers(&self) -> Vec<(Arc<Subscriber>, Scope)> {
        self.alert_subs
            .iter()
            .map(|s| (s.value().0.clone(), s.value().1.clone()))
            .collect()
    }

    /// Queues one alerts frame for one subscriber.
    pub fn send_alert(&self, sub: &Arc<Subscriber>, frame: Utf8Bytes) {
        self.send(sub, Outgoing::Alerts(frame));
    }

    /// Sends one export progress frame to the `exports` subscribers of
    /// `owner` (the token subject that started the job).
    pub fn publish_export(&self, owner: &str, frame: &Value) {
        if self.export_subs.is_empty() {
            return;
        }
        let frame = Utf8Bytes::from(frame.to_string());
        let subs: Vec<Arc<Subscriber>> = self
            .export_subs
            .iter()
            .filter(|s| s.value().1 == owner)
            .map(|s| s.value().0.clone())
            .collect();
        for sub in subs {
            self.send(&sub, Outgoing::Exports(frame.clone()));
        }
    }

    /// Registers `sub` on `exports` for the jobs of `subject`.
    pub fn subscribe_exports(&self, sub: &Arc<Subscriber>, subject: &str) {
        self.export_subs
            .insert(sub.id, (sub.clone(), subject.to_string()));
    }

    /// Removes `id` from one topic (`events` and `errors` share the event
    /// feed: removing either removes the registration; the connection
    /// re-registers with the filter of what it still has).
    pub fn unsubscribe(&self, id: u64, topic: Topic) {
        match topic {
            Topic::Kpis => {
                self.kpi_subs.remove(&id);
            }
            Topic::Events | Topic::Errors => {
                self.event_subs.remove(&id);
            }
            Topic::Alerts => {
                self.alert_subs.remove(&id);
            }
            Topic::Exports => {
                self.export_subs.remove(&id);
            }
        }
    }

    /// Removes `id` from every topic.
    pub fn remove(&self, id: u64) {
        self.event_subs.remove(&id);
        self.kpi_subs.remove(&id);
        self.alert_subs.remove(&id);
        self.export_subs.remove(&id);
    }

    /// Subscribers per feed (kpis, events including errors-only).
    pub fn counts(&self) -> (usize, usize) {
        (self.kpi_subs.len(), self.event_subs.len())
    }

    /// Items queued for subscribers now: the sum over every registered
    /// subscriber and the longest single queue (for `/metrics`; a soak checks
    /// that neither grows). Walks the registries: call it per scrape, not per event.
    pub fn queued(&self) -> (usize, usize) {
        let mut seen = HashSet::new();
        let (mut total, mut longest) = (0, 0);
        let subs = self
            .event_subs
            .iter()
            .map(|s| s.value().0.clone())
            .chain(self.kpi_subs.iter().map(|s| s.value().0.clone()))
            .chain(self.alert_subs.iter().map(|s| s.value().0.clone()))
            .chain(self.export_subs.iter().map(|s| s.value().0.clone()));
        for sub in subs {
            if seen.insert(sub.id) {
                let n = sub.tx.max_capacity() - sub.tx.capacity();
                total += n;
                longest = longest.max(n);
            }
        }
        (total, longest)
    }

    /// Events held in the resume ring.
    pub fn ring_len(&self) -> usize {
        lock(&self.events).ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: i64) -> Event {
        ev_of(seq, "errors.insert")
    }

    fn ev_of(seq: i64, kind: &str) -> Event {
        Event {
            seq,
            xid: 1,
            at: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
            kind: kind.into(),
            source_id: None,
            rows: 1,
            summary: json!({}),
        }
    }

    fn seqs(item: Outgoing) -> Vec<i64> {
        match item {
            Outgoing::Events(b) => b.iter().map(|f| f.seq).collect(),
            Outgoing::Kpis(_) | Outgoing::Alerts(_) | Outgoing::Exports(_) => vec![],
        }
    }

    #[test]
    fn resume_from_ring_has_no_gap_or_duplicate() {
        let hub = Hub::new(16, Arc::default());
        hub.start_at(0);
        hub.publish_events(&[ev(1), ev(2), ev(3)], &HashMap::new());
        let (sub, mut rx) = hub.subscriber(8);
        assert!(matches!(
            hub.resume_events(&sub, 1, EventFilter::All),
            Resume::Registered
        ));
        hub.publish_events(&[ev(4)], &HashMap::new());
        assert_eq!(seqs(rx.try_recv().expect("backlog")), vec![2, 3]);
        assert_eq!(seqs(rx.try_recv().expect("live")), vec![4]);
    }

    #[test]
    fn resume_before_the_ring_asks_for_the_outbox() {
        let hub = Hub::new(16, Arc::default());
        hub.start_at(0);
        let many: Vec<Event> = (1..=40).map(ev).collect();
        hub.publish_events(&many, &HashMap::new());
        let (sub, _rx) = hub.subscriber(8);
        match hub.resume_events(&sub, 3, EventFilter::All) {
            Resume::NeedOutbox { upto } => assert_eq!(upto, 24),
            Resume::Registered => panic!("ring does not hold seq 4"),
        }
    }

    #[test]
    fn a_full_queue_marks_overflow_and_unsubscribes_without_blocking_others() {
        let hub = Hub::new(64, Arc::default());
        hub.start_at(0);
        let (slow, _slow_rx) = hub.subscriber(2);
        let (fast, mut fast_rx) = hub.subscriber(64);
        hub.resume_events(&slow, 0, EventFilter::All);
        hub.resume_events(&fast, 0, EventFilter::All);
        for i in 1..=10 {
            hub.publish_events(&[ev(i)], &HashMap::new());
            fast_rx.try_recv().expect("fast gets every event");
        }
        assert!(slow.overflowed());
        assert_eq!(hub.counts().1, 1);
    }

    #[test]
    fn export_frames_reach_only_their_owners_exports_subscribers() {
        let hub = Hub::new(16, Arc::default());
        let (sub, mut rx) = hub.subscriber(8);
        let (other, mut other_rx) = hub.subscriber(8);
        hub.subscribe_exports(&sub, "alice");
        hub.subscribe_exports(&other, "bob");
        hub.publish_export(
            "alice",
            &json!({"type": "export", "id": "x", "status": "running", "rows": 5}),
        );
        match rx.try_recv() {
            Ok(Outgoing::Exports(f)) => assert!(f.as_str().contains("\"rows\":5")),
            other => panic!("expected an export frame, got {other:?}"),
        }
        assert!(other_rx.try_recv().is_err(), "bob does not see alice's job");
        hub.unsubscribe(sub.id, Topic::Exports);
        hub.publish_export("alice", &json!({"type": "export"}));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn alert_frames_go_to_subscribers_whose_scope_covers_them() {
        let hub = Hub::new(16, Arc::default());
        let (all, mut all_rx) = hub.subscriber(8);
        let (crm, mut crm_rx) = hub.subscriber(8);
        hub.subscribe_alerts(&all, None, Some(Utf8Bytes::from_static("s")));
        let scope: Scope = Some(BTreeSet::from(["crm".to_string()]));
        hub.subscribe_alerts(&crm, scope, Some(Utf8Bytes::from_static("s")));
        for sources in [vec!["crm"], vec!["erp"], vec!["crm", "erp"], vec![]] {
            hub.publish_alert(&AlertFrame {
                text: Utf8Bytes::from(sources.join(",")),
                sources: sources.iter().map(|s| s.to_string()).collect(),
            });
        }
        let texts = |rx: &mut mpsc::Receiver<Outgoing>| -> Vec<String> {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|o| match o {
                    Outgoing::Alerts(t) => t.as_str().to_string(),
                    _ => String::new(),
                })
                .collect()
        };
        assert_eq!(texts(&mut all_rx), ["s", "crm", "erp", "crm,erp", ""]);
        assert_eq!(texts(&mut crm_rx), ["s", "crm"]);
    }

    #[test]
    fn errors_subscribers_get_only_errors_events_with_the_same_seqs() {
        let hub = Hub::new(16, Arc::default());
        hub.start_at(0);
        hub.publish_events(
            &[ev_of(1, "raw_records.insert"), ev_of(2, "errors.insert")],
            &HashMap::new(),
        );
        let (sub, mut rx) = hub.subscriber(8);
        hub.resume_events(&sub, 0, EventFilter::Errors);
        hub.publish_events(&[ev_of(3, "runs.update")], &HashMap::new());
        hub.publish_events(
            &[ev_of(4, "errors.insert"), ev_of(5, "raw_records.update")],
            &HashMap::new(),
        );
        assert_eq!(seqs(rx.try_recv().expect("ring")), vec![2]);
        assert_eq!(seqs(rx.try_recv().expect("live")), vec![4]);
        assert!(rx.try_recv().is_err(), "no empty batches");
        assert_eq!(
            EventFilter::for_topics(&[Topic::Errors, Topic::Events]),
            Some(EventFilter::All)
        );
        assert_eq!(EventFilter::for_topics(&[Topic::Kpis, Topic::Alerts]), None);
        assert_eq!(Topic::parse("errors"), Some(Topic::Errors));
        assert_eq!(
            kpi_frame_type(r#"{"data":{},"type":"snapshot"}"#),
            "snapshot"
        );
        assert_eq!(kpi_frame_type(r#"{"type":"delta","data":{}}"#), "delta");
    }

    #[test]
    fn resync_budget_allows_five_a_minute() {
        let mut b = ResyncBudget::default();
        let t = Instant::now();
        for _ in 0..MAX_RESYNCS_PER_MINUTE {
            assert!(b.spend(t));
        }
        assert!(!b.spend(t));
        assert!(b.spend(t + Duration::from_secs(61)));
    }

    #[test]
    fn kpi_subscribers_get_snapshot_then_deltas() {
        let hub = Hub::new(16, Arc::default());
        hub.publish_kpis(&None, json!({"a": 1}), 1);
        let (sub, mut rx) = hub.subscriber(8);
        hub.subscribe_kpis(&sub, None, || (Value::Null, 0));
        let (scoped, mut scoped_rx) = hub.subscriber(8);
        let scope: Scope = Some(BTreeSet::from(["crm".to_string()]));
        hub.subscribe_kpis(&scoped, scope.clone(), || (json!({"b": 1}), 1));
        assert_eq!(hub.kpi_scopes().len(), 2);
        hub.publish_kpis(&None, json!({"a": 2}), 2);
        hub.publish_kpis(&None, json!({"a": 2}), 3); // unchanged: no frame
        hub.publish_kpis(&scope, json!({"b": 5}), 3);
        let scoped_frames: Vec<Outgoing> =
            std::iter::from_fn(|| scoped_rx.try_recv().ok()).collect();
        assert_eq!(
            scoped_frames.len(),
            2,
            "scoped snapshot + its own delta only"
        );
        let frames: Vec<Value> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|o| match o {
                Outgoing::Kpis(f) => serde_json::from_str(f.as_str()).unwrap_or_default(),
                Outgoing::Events(_) | Outgoing::Alerts(_) | Outgoing::Exports(_) => Value::Null,
            })
            .collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["type"], "snapshot");
        assert_eq!(frames[0]["data"], json!({"a": 1}));
        assert_eq!(frames[1]["type"], "delta");
        assert_eq!(frames[1]["data"], json!({"a": 2}));
    }
}
