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
//! connection then tells it to resync and resubscribes it (see `http::session`).
//! Publish and subscribe take the same per-topic lock, so a new subscriber
//! gets exactly the frames after what it was given — no gap, no duplicate.
//!
//! This file holds the hub itself: the registries of subscribers per topic
//! (`dashmap`, keyed by connection id) and the one `send` every feed uses.
//! Each feed lives in its own file: [`events`], [`kpis`], [`alerts`],
//! [`exports`]; [`topic`] and [`subscriber`] hold the shared vocabulary.

pub mod alerts;
pub mod catchup;
pub mod events;
pub mod exports;
pub mod kpis;
pub mod mergepatch;
pub mod subscriber;
pub mod topic;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::mpsc;

pub use alerts::AlertFrame;
pub use events::{EventFrame, Resume};
pub use kpis::kpi_frame_type;
pub use subscriber::{Outgoing, ResyncBudget, Subscriber, MAX_RESYNCS_PER_MINUTE};
pub use topic::{is_errors_kind, EventFilter, Topic};

use crate::metrics::Metrics;
use events::EventLog;
use kpis::KpiFeed;

/// Which sources a subscriber may see (`None` = all).
pub type Scope = Option<BTreeSet<String>>;

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
}
