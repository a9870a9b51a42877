//! What every replica shows: the active alerts and the transitions, built
//! from the alert tables only (never from the local engine), so a leader and
//! its followers show the same thing. The sync task loads the active alerts
//! once, then applies transitions with id > the last one seen, in id order,
//! on every doorbell (the leader's NOTIFY, or the local leader after it
//! recorded) and at least every `sync_interval`.
//!
//! Applying a transition and publishing its WebSocket frame happen under the
//! view's lock, and so does a new subscriber's snapshot: it gets exactly the
//! transitions after its snapshot — no gap, no duplicate. The lock is a std
//! mutex held only for in-memory work (hub sends are `try_send`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use serde_json::{json, Value};

use super::record::{Active, Transition};
use super::rules::StateName;
use super::store::visible;
use crate::hub::{AlertFrame, Hub, Scope, Subscriber};
use crate::metrics::Metrics;

#[derive(Debug, Default)]
struct ViewState {
    active: BTreeMap<(String, String), Transition>,
    last_id: i64,
    loaded: bool,
}

/// The replica's view of the alerts.
#[derive(Debug, Default)]
pub struct AlertView {
    inner: Mutex<ViewState>,
}

/// The `alert` frame of a transition.
pub fn frame(t: &Transition) -> AlertFrame {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), json!("alert"));
    }
    AlertFrame {
        text: Utf8Bytes::from(v.to_string()),
        sources: t.sources.iter().cloned().collect(),
    }
}

impl AlertView {
    fn lock(&self) -> std::sync::MutexGuard<'_, ViewState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loaded from the database at least once.
    pub fn loaded(&self) -> bool {
        self.lock().loaded
    }

    /// The highest transition id applied.
    pub fn last_id(&self) -> i64 {
        self.lock().last_id
    }

    /// Sets the state from a snapshot (active alerts, highest id); WebSocket
    /// subscribers registered before (waiting for it) get their snapshot now.
    pub fn load(&self, active: Vec<Transition>, last_id: i64, hub: &Hub, metrics: &Metrics) {
        let mut st = self.lock();
        st.active = active
            .into_iter()
            .map(|t| ((t.rule.clone(), t.instance.clone()), t))
            .collect();
        st.last_id = last_id;
        st.loaded = true;
        for (sub, scope) in hub.alert_subscribers() {
            hub.send_alert(&sub, snapshot(&st, scope.as_ref()));
        }
        gauges(&st, metrics);
    }

    /// Applies transitions (id order; ids already seen are skipped) and
    /// publishes one frame each.
    pub fn apply(&self, transitions: &[Transition], hub: &Hub, metrics: &Metrics) {
        let mut st = self.lock();
        for t in transitions {
            if t.id <= st.last_id {
                continue;
            }
            st.last_id = t.id;
            let key = (t.rule.clone(), t.instance.clone());
            if t.state.is_active() {
                st.active.insert(key, t.clone());
            } else {
                st.active.remove(&key);
            }
            hub.publish_alert(&frame(t));
        }
        gauges(&st, metrics);
    }

    /// The active alerts `scope` may see, oldest first.
    pub fn active(&self, scope: Option<&BTreeSet<String>>) -> (Vec<Active>, i64) {
        let st = self.lock();
        (visible_active(&st, scope), st.last_id)
    }

    /// Registers a WebSocket subscriber: its snapshot (once the view is
    /// loaded), then every transition after it.
    pub fn subscribe(&self, hub: &Hub, sub: &Arc<Subscriber>, scope: Scope) {
        let st = self.lock();
        let first = st.loaded.then(|| snapshot(&st, scope.as_ref()));
        hub.subscribe_alerts(sub, scope, first);
    }
}

/// The `snapshot` frame of the active alerts `scope` may see.
fn snapshot(st: &ViewState, scope: Option<&BTreeSet<String>>) -> Utf8Bytes {
    let active = visible_active(st, scope);
    let frame = json!({"type": "snapshot", "topic": "alerts", "id": st.last_id,
                       "data": {"active": active}});
    Utf8Bytes::from(frame.to_string())
}

/// The active alerts `scope` may see, oldest first.
fn visible_active(st: &ViewState, scope: Option<&BTreeSet<String>>) -> Vec<Active> {
    let mut list: Vec<Active> = st
        .active
        .values()
        .filter(|t| visible(&t.sources, scope))
        .cloned()
        .map(Active)
        .collect();
    list.sort_by_key(|a| a.0.id);
    list
}

fn gauges(st: &ViewState, metrics: &Metrics) {
    let firing = st
        .active
        .values()
        .filter(|t| t.state == StateName::Firing)
        .count();
    metrics.alerts_firing.set(firing as i64);
    metrics
        .alerts_pending
        .set((st.active.len() - firing) as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: i64, instance: &str, state: StateName) -> Transition {
        Transition {
            id,
            rule: "r".into(),
            instance: instance.into(),
            condition: "backlog".into(),
            source: Some(instance.into()),
            sources: vec![instance.into()],
            from: StateName::Inactive,
            state,
            value: Some(1.0),
            threshold: 0.0,
            unit: "records".into(),
            severity: super::super::rules::Severity::Info,
            labels: json!({}),
            summary: None,
            at: "2026-11-26T10:00:00.000Z".into(),
            idempotency_key: format!("k{id}"),
        }
    }

    fn frames(rx: &mut tokio::sync::mpsc::Receiver<crate::hub::Outgoing>) -> Vec<Value> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|o| match o {
                crate::hub::Outgoing::Alerts(f) => {
                    serde_json::from_str(f.as_str()).unwrap_or_default()
                }
                _ => Value::Null,
            })
            .collect()
    }

    #[test]
    fn snapshot_then_transitions_also_for_an_early_subscriber() {
        let hub = Hub::new(16, Arc::default());
        let metrics = Metrics::default();
        let view = AlertView::default();
        let (early, mut early_rx) = hub.subscriber(16);
        view.subscribe(&hub, &early, None);
        assert!(
            frames(&mut early_rx).is_empty(),
            "no snapshot before the first load"
        );
        view.load(vec![t(3, "crm", StateName::Firing)], 3, &hub, &metrics);
        view.apply(
            &[
                t(2, "old", StateName::Firing),
                t(4, "erp", StateName::Pending),
                t(5, "crm", StateName::Resolved),
            ],
            &hub,
            &metrics,
        );
        let f = frames(&mut early_rx);
        assert_eq!(f.len(), 3, "{f:?}");
        assert_eq!(f[0]["type"], "snapshot");
        assert_eq!(f[0]["data"]["active"][0]["instance"], "crm");
        assert_eq!(
            (f[1]["id"].as_i64(), f[2]["id"].as_i64()),
            (Some(4), Some(5)),
            "id 2 was seen"
        );
        let (active, last) = view.active(None);
        assert_eq!((active.len(), last), (1, 5));
        assert_eq!(active[0].0.state, StateName::Pending);
        let (late, mut late_rx) = hub.subscriber(16);
        let scope: Scope = Some(BTreeSet::from(["crm".to_string()]));
        view.subscribe(&hub, &late, scope.clone());
        let f = frames(&mut late_rx);
        assert_eq!(f[0]["data"]["active"], json!([]), "erp is out of scope");
        assert_eq!(view.active(scope.as_ref()).0.len(), 0);
        assert_eq!(metrics.alerts_pending.get(), 1);
    }
}
