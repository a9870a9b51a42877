//! The HTTP surface: one router built by [`app`] from the shared state.
//! Tests call the same router the binary serves.

pub mod alerts;
pub mod api;
pub mod assets;
pub mod asyncapi;
pub mod drill;
pub mod export;
pub mod exposition;
pub mod health;
pub mod lists;
pub mod openapi;
pub mod params;
pub mod session;
pub mod sse;
pub mod trends;
pub mod ws;

use std::time::Duration;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
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
        .route("/api/alerts", get(alerts::active))
        .route("/api/alerts/history", get(alerts::history))
        .route("/api/sources", get(lists::sources::list))
        .route("/api/runs", get(lists::runs::list))
        .route("/api/runs/{id}", get(drill::run))
        .route("/api/records", get(lists::records::list))
        .route("/api/records/{id}", get(drill::record))
        .route("/api/errors", get(lists::errors::list))
        .route("/api/export/{file}", get(export::csv))
        .route("/api/exports", post(export::start).get(export::mine))
        .route(
            "/api/exports/{id}",
            get(export::status).delete(export::remove),
        )
        .route("/api/exports/{id}/download", get(export::download))
        .route("/openapi.json", get(openapi::serve))
        .route("/asyncapi.json", get(asyncapi::serve))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ));
    let cors = cors(&state.options.auth.cors_origins);
    Router::new()
        .route("/ws", get(ws::upgrade))
        // Long-lived: outside the request timeout layer.
        .route("/api/stream", get(sse::stream))
        .merge(api)
        .merge(assets::routes())
        .layer(cors)
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(
            // Spans carry method and path only: query strings may hold tokens.
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
                })
                // 503 while warming up is expected; real faults are logged where they happen.
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .with_state(state)
}

/// CORS: only the configured origins (none by default: same origin only).
fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600))
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(envelope("not_found", "no such route")),
    )
}
