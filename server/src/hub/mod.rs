//! Topics, subscribers and the fan-out policy.
//!
//! - `events`: every outbox event in seq order. A ring of recent frames lets a
//!   subscriber resume from `since` without touching PostgreSQL; older gaps
//!   are read from the outbox by the connection itself.
//! - `kpis`: a snapshot on subscribe, then one merge-patch delta per tick.
//! - `alerts`: a snapshot of the active alerts on subscribe, then one frame
//!   per transition (see `crate::alerts::view`, which publishes and
//!   subscribes under its own lock so snapshot and frames never overlap).
//!
//! Frames are serialized once and shared (`Utf8Bytes` clones are cheap).
//! Fan-out never waits: each subscriber has a bounded queue and `try_send`;
//! a full queue marks the subscriber overflowed and removes it from every
//! topic, so a stalled client costs at most its queue and slows no one. Its
//! connection then tells it to resync and resubscribes it (see `http::ws`).
//! Publish and subscribe take the same per-topic lock, so a new subscriber
//! gets exactly the frames after what it was given — no gap, no duplicate.

pub mod mergepatch;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Active alerts snapshot, then alert transitions.
    Alerts,
}

impl Topic {
    /// Parses a topic name.
    pub fn parse(s: &str) -> Option<Topic> {
        match s {
            "kpis" => Some(Topic::Kpis),
            "events" => Some(Topic::Events),
            "alerts" => Some(Topic::Alerts),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Kpis => "kpis",
            Topic::Events => "events",
            Topic::Alerts => "alerts",
        }
    }

    /// Every topic, in the order `hello` lists them.
    pub const ALL: [Topic; 3] = [Topic::Kpis, Topic::Events, Topic::Alerts];
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
}

impl EventFrame {
    /// Serializes an event once.
    pub fn new(e: &Event, names: &HashMap<i64, String>) -> Self {
        EventFrame {
            seq: e.seq,
            text: Utf8Bytes::from(e.frame(names)),
            sources: e.source_ids().into(),
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
    event_subs: DashMap<u64, Arc<Subscriber>>,
    kpis: Mutex<HashMap<Scope, KpiFeed>>,
    kpi_subs: DashMap<u64, (Arc<Subscriber>, Scope)>,
    alert_subs: DashMap<u64, (Arc<Subscriber>, Scope)>,
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
        let subs: Vec<Arc<Subscriber>> =
            self.event_subs.iter().map(|s| s.value().clone()).collect();
        for sub in subs {
            self.send(&sub, Outgoing::Events(frames.clone()));
        }
    }

    /// Registers `sub` on `events` after `since` if the ring still holds
    /// everything after it (queueing those frames), else says what to read.
    pub fn resume_events(&self, sub: &Arc<Subscriber>, since: i64) -> Resume {
        let log = lock(&self.events);
        if since < log.evicted_upto {
            return Resume::NeedOutbox {
                upto: log.evicted_upto,
            };
        }
        let backlog: Arc<[EventFrame]> =
            log.ring.iter().filter(|f| f.seq > since).cloned().collect();
        if !backlog.is_empty() && !self.send(sub, Outgoing::Events(backlog)) {
            return Resume::Registered; // overflowed already: the connection resyncs it
        }
        self.event_subs.insert(sub.id, sub.clone());
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

    /// Publishes this tick's KPI payload for `scope` as a delta to its subscribers.
    pub fn publish_kpis(&self, scope: &Scope, data: Value, seq: i64) {
        let mut feeds = lock(&self.kpis);
        let feed = feeds.entry(scope.clone()).or_default();
        let Some(patch) = mergepatch::diff(&feed.data, &data) else {
            return;
        };
        feed.data = data;
        feed.seq = seq;
        let frame = Utf8Bytes::from(
            json!({"type": "delta", "topic": "kpis", "seq": seq, "data": patch}).to_string(),
        );
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
            KpiFeed { data, seq }
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

    /// Removes `id` from one topic.
    pub fn unsubscribe(&self, id: u64, topic: Topic) {
        match topic {
            Topic::Kpis => {
                self.kpi_subs.remove(&id);
            }
            Topic::Events => {
                self.event_subs.remove(&id);
            }
            Topic::Alerts => {
                self.alert_subs.remove(&id);
            }
        }
    }

    /// Removes `id` from every topic.
    pub fn remove(&self, id: u64) {
        self.event_subs.remove(&id);
        self.kpi_subs.remove(&id);
        self.alert_subs.remove(&id);
    }

    /// Subscribers per topic (kpis, events).
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
            .map(|s| s.value().clone())
            .chain(self.kpi_subs.iter().map(|s| s.value().0.clone()))
            .chain(self.alert_subs.iter().map(|s| s.value().0.clone()));
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
        Event {
            seq,
            xid: 1,
            at: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
            kind: "errors.insert".into(),
            source_id: None,
            rows: 1,
            summary: json!({}),
        }
    }

    fn seqs(item: Outgoing) -> Vec<i64> {
        match item {
            Outgoing::Events(b) => b.iter().map(|f| f.seq).collect(),
            Outgoing::Kpis(_) | Outgoing::Alerts(_) => vec![],
        }
    }

    #[test]
    fn resume_from_ring_has_no_gap_or_duplicate() {
        let hub = Hub::new(16, Arc::default());
        hub.start_at(0);
        hub.publish_events(&[ev(1), ev(2), ev(3)], &HashMap::new());
        let (sub, mut rx) = hub.subscriber(8);
        assert!(matches!(hub.resume_events(&sub, 1), Resume::Registered));
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
        match hub.resume_events(&sub, 3) {
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
        hub.resume_events(&slow, 0);
        hub.resume_events(&fast, 0);
        for i in 1..=10 {
            hub.publish_events(&[ev(i)], &HashMap::new());
            fast_rx.try_recv().expect("fast gets every event");
        }
        assert!(slow.overflowed());
        assert_eq!(hub.counts().1, 1);
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
                Outgoing::Events(_) | Outgoing::Alerts(_) => Value::Null,
            })
            .collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["type"], "snapshot");
        assert_eq!(frames[0]["data"], json!({"a": 1}));
        assert_eq!(frames[1]["type"], "delta");
        assert_eq!(frames[1]["data"], json!({"a": 2}));
    }
}
