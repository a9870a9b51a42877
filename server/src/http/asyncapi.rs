//! The AsyncAPI 3 document of the WebSocket and SSE protocol, served at
//! `/asyncapi.json`. The document is `docs/asyncapi.json` (the machine-readable
//! twin of `docs/protocol.md`), embedded at build time; `tests/contracts.rs`
//! validates it with `@asyncapi/parser` and every frame a real session
//! receives against it.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as shipped in `docs/asyncapi.json`.
pub const DOCUMENT: &str = include_str!("../../../docs/asyncapi.json");

/// `GET /asyncapi.json`.
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
