//! The HTTP surface: one router built by [`app`] from the shared state.
//! Tests call the same router the binary serves.

pub mod api;
pub mod assets;
pub mod health;
pub mod params;
pub mod sse;
pub mod trends;
pub mod ws;

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::envelope;
use crate::state::AppState;

/// The router.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/kpis", get(api::kpis))
        .route("/api/trends", get(trends::trends))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ));
    Router::new()
        .route("/ws", get(ws::upgrade))
        // Long-lived: outside the request timeout layer.
        .route("/api/stream", get(sse::stream))
        .merge(api)
        .merge(assets::routes())
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(envelope("not_found", "no such route")),
    )
}
