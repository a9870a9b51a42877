//! Liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz` — the process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz` — 200 once the listener is connected and the aggregates are warm.
pub async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    let connected = st
        .status
        .connected
        .load(std::sync::atomic::Ordering::Acquire);
    let warm = st.status.warm.load(std::sync::atomic::Ordering::Acquire);
    let mut body = json!({
        "ready": connected && warm,
        "listener_connected": connected,
        "warm": warm,
        "seq": st.live.seq(),
    });
    if let Some(r) = &st.replica {
        body["replica"] = r.report();
    }
    let body = Json(body);
    let status = if connected && warm {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

/// `GET /metrics` — Prometheus text format.
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    if let Ok(client) = st.pool.get().await {
        if let Ok(row) = client
            .query_one("select pg_notification_queue_usage()", &[])
            .await
        {
            st.metrics
                .notification_queue_usage
                .set(row.get::<_, f64>(0));
        }
    }
    let m = &st.metrics;
    let (queued, longest) = st.hub.queued();
    m.hub_queued.set(queued as i64);
    m.hub_queue_max.set(longest as i64);
    m.hub_ring_events.set(st.hub.ring_len() as i64);
    m.hub_event_subscribers.set(st.hub.counts().1 as i64);
    m.live_buckets.set(st.live.buckets() as i64);
    m.runtime_tasks.set(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as i64,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text_format(&with_ingestion(st.metrics.render(), &st)),
    )
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition: what
/// every Prometheus version and `promtool check metrics` read. Counter
/// families are named with their `_total` samples, `# UNIT` and `# EOF`
/// lines go.
fn text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let name = rest.split(' ').next().unwrap_or_default();
                if counters.contains(name) {
                    out.push_str(prefix);
                    out.push_str(name);
                    out.push_str("_total");
                    out.push_str(&rest[name.len()..]);
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The server's own metrics with the ingestion figures
/// ([`super::exposition`]) inserted before the OpenMetrics `# EOF`.
fn with_ingestion(mut own: String, st: &AppState) -> String {
    let now = chrono::Utc::now();
    let windows = st.live.all_kpis(now.timestamp_millis(), None);
    let sources = st.live.sources();
    let alerts: Vec<serde_json::Value> = st
        .alerts
        .view
        .active(None)
        .0
        .iter()
        .filter_map(|a| serde_json::to_value(a).ok())
        .collect();
    let ingestion = super::exposition::render(&super::exposition::Inputs {
        windows: &windows,
        sources: &sources,
        alerts: &alerts,
        max_sources: st.options.metrics_max_sources,
        now,
    });
    let at = own.rfind("# EOF").unwrap_or(own.len());
    own.insert_str(at, &ingestion);
    own
}
