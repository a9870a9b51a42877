//! The `kpis` feed: one payload per scope (all sources, and each distinct
//! scope a subscriber has), a snapshot on subscribe and one merge-patch
//! delta per tick when anything changed.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde_json::{json, Value};

use super::{lock, mergepatch, Hub, Outgoing, Scope, Subscriber};

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

#[derive(Debug, Default)]
pub(super) struct KpiFeed {
    data: Value,
    seq: i64,
    /// The next publish sends a full snapshot (the aggregates were re-read).
    fresh: bool,
}

impl Hub {
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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

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
