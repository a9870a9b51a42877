//! What a WebSocket subscriber holds: its KPI figures (snapshot plus every
//! delta applied as an RFC 7396 merge patch) and its event seqs, kept up to
//! date by a task that reads the socket, so tests can compare a subscriber's
//! view with SQL.

use std::time::Duration;

use serde_json::{json, Value};

use super::Ws;

/// Applies an RFC 7396 JSON merge patch (a KPI `delta`) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// What a `kpis` + `events` WebSocket subscriber holds: the KPI figures of
/// every window (snapshot plus every delta applied), the seq they are at,
/// how many snapshots came, and the event seqs in order.
#[derive(Debug, Default, Clone)]
pub struct SubscriberView {
    pub kpis: Value,
    pub kpi_seq: i64,
    pub snapshots: usize,
    pub events: Vec<i64>,
    pub frames: Vec<Value>,
}

/// Reads `ws` until it closes, keeping a [`SubscriberView`] up to date
/// (spawned: the subscriber never falls behind the test's writers).
pub fn follow(mut ws: Ws) -> std::sync::Arc<std::sync::Mutex<SubscriberView>> {
    let view = std::sync::Arc::new(std::sync::Mutex::new(SubscriberView::default()));
    let v = view.clone();
    tokio::spawn(async move {
        while let Some(f) = ws.next(Duration::from_secs(3600)).await {
            let mut v = v.lock().unwrap_or_else(|e| e.into_inner());
            match f["type"].as_str() {
                Some("snapshot") if f["topic"] == "kpis" => {
                    v.kpis = f["data"].clone();
                    v.kpi_seq = f["seq"].as_i64().unwrap_or(0);
                    v.snapshots += 1;
                }
                Some("delta") if f["topic"] == "kpis" => {
                    merge_patch(&mut v.kpis, &f["data"]);
                    v.kpi_seq = f["seq"].as_i64().unwrap_or(v.kpi_seq);
                }
                Some("event") => v.events.push(f["seq"].as_i64().unwrap_or(0)),
                _ => {}
            }
            if f["type"] != "event" && f["type"] != "delta" {
                v.frames.push(f);
            }
        }
    });
    view
}
