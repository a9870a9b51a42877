//! One error type for HTTP handlers and one JSON envelope:
//! `{"error":{"code":"...","message":"..."}}`. Internal causes are logged
//! once, here, and never sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Errors a handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A request parameter is missing or malformed; names the parameter.
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable code, e.g. `invalid_parameter`.
        code: &'static str,
        /// Human-readable message naming the parameter.
        message: String,
    },
    /// Missing or invalid credentials (401 with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the needed role (403).
    #[error("{0}")]
    Forbidden(String),
    /// A limit was reached (429).
    #[error("{0}")]
    TooMany(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing exists but is not in a state that allows this (409).
    #[error("{0}")]
    Conflict(String),
    /// Not ready yet (warming up, listener disconnected).
    #[error("{0}")]
    Unavailable(String),
    /// A database failure; the cause is logged, not returned.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// A pool failure; the cause is logged, not returned.
    #[error("database pool error")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Anything else that is our fault.
    #[error("internal error")]
    Internal(String),
}

impl From<crate::alerts::AlertsError> for AppError {
    fn from(e: crate::alerts::AlertsError) -> Self {
        use crate::alerts::AlertsError as E;
        match e {
            E::Loading => AppError::Unavailable(e.to_string()),
            E::Database(e) => AppError::Database(e),
        }
    }
}

impl From<crate::trends::query::TrendError> for AppError {
    fn from(e: crate::trends::query::TrendError) -> Self {
        use crate::trends::query::TrendError as E;
        match e {
            E::Building => AppError::Unavailable(e.to_string()),
            E::UnknownSource(_) => AppError::invalid("source", e),
            E::OutOfScope(_) => AppError::Forbidden(e.to_string()),
            E::Database(e) => AppError::Database(e),
        }
    }
}

impl AppError {
    /// A 400 for parameter `name`.
    pub fn invalid(name: &str, why: impl std::fmt::Display) -> Self {
        AppError::BadRequest {
            code: "invalid_parameter",
            message: format!("parameter `{name}`: {why}"),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Database(_) | AppError::Pool(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The JSON error body for `code` and `message`.
pub fn envelope(code: &str, message: &str) -> serde_json::Value {
    json!({"error": {"code": code, "message": message}})
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        match &self {
            AppError::Database(e) => tracing::error!(error = %e, "database error"),
            AppError::Pool(e) => tracing::error!(error = %e, "pool error"),
            AppError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => tracing::debug!(code, message = %self, "request refused"),
        }
        let message = match &self {
            AppError::Database(_) | AppError::Pool(_) => {
                "the database is unavailable; try again shortly".to_string()
            }
            other => other.to_string(),
        };
        let mut resp = (status, Json(envelope(code, &message))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"ingestwatch\""),
            );
        }
        resp
    }
}
