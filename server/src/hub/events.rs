//! The `events` feed: each outbox event serialized once into an
//! [`EventFrame`], a ring of recent frames so a subscriber resumes from
//! `since` without touching PostgreSQL (older gaps: [`super::catchup`]), and
//! per-publish batches shared by every subscriber (the `errors`-only batch
//! built once per publish).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde_json::{json, Value};

use super::{is_errors_kind, lock, EventFilter, Hub, Outgoing, Subscriber};
use crate::listen::event::Event;

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

    /// The frame as a client seeing the sources `visible` may see it
    /// (`None`: unscoped): unchanged when every source it touches is visible,
    /// `None` when none is, and a redacted copy (other sources' names, ids
    /// and contributions removed) when the statement touched both.
    pub fn scoped(&self, visible: Option<&BTreeSet<i64>>) -> Option<Utf8Bytes> {
        let Some(visible) = visible else {
            return Some(self.text.clone());
        };
        let seen = self.sources.iter().filter(|s| visible.contains(s)).count();
        if seen == self.sources.len() && seen > 0 {
            return Some(self.text.clone());
        }
        if seen == 0 {
            return None;
        }
        let mut v: Value = serde_json::from_str(self.text.as_str()).ok()?;
        if let Some(kpi) = v.get_mut("kpi").and_then(Value::as_array_mut) {
            kpi.retain(|t| {
                t.get(0)
                    .and_then(Value::as_i64)
                    .is_some_and(|id| visible.contains(&id))
            });
        }
        v["ids"] = json!([]);
        v["source"] = Value::Null;
        v["sources"] = json!([]);
        v["redacted"] = Value::Bool(true);
        Some(Utf8Bytes::from(v.to_string()))
    }
}

#[derive(Debug, Default)]
pub(super) struct EventLog {
    ring: VecDeque<EventFrame>,
    /// Highest seq evicted from the ring (everything above it is in the ring).
    evicted_upto: i64,
    /// Highest seq published.
    last: i64,
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

impl Hub {
    /// Sets where the event log starts (after warm-up): resumes from before
    /// it are served from the outbox.
    pub fn start_at(&self, seq: i64) {
        let mut log = lock(&self.events);
        if log.ring.is_empty() {
            log.evicted_upto = seq;
            log.last = seq;
        }
    }

    /// Highest seq published on `events`.
    pub fn last_seq(&self) -> i64 {
        lock(&self.events).last
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

    /// Events held in the resume ring.
    pub fn ring_len(&self) -> usize {
        lock(&self.events).ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{kpi_frame_type, Topic};
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
}
