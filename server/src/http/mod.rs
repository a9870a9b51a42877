//! The HTTP surface: one router built by [`app`] from the shared state.
//! Tests call the same router the binary serves.

pub mod api;
pub mod assets;
pub mod drill;
pub mod export;
pub mod health;
pub mod lists;
pub mod params;
pub mod ws;

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
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
        .route("/api/sources", get(lists::sources::list))
        .route("/api/runs", get(lists::runs::list))
        .route("/api/runs/{id}", get(drill::run))
        .route("/api/records", get(lists::records::list))
        .route("/api/records/{id}", get(drill::record))
        .route("/api/errors", get(lists::errors::list))
        .route("/api/export/{file}", get(export::csv))
        .route("/api/exports", post(export::start))
        .route(
            "/api/exports/{id}",
            get(export::status).delete(export::remove),
        )
        .route("/api/exports/{id}/download", get(export::download))
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
