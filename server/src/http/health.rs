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
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
}
