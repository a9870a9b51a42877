//! The OpenAPI 3.1 document served at `/openapi.json`, built from one table
//! of routes ([`ROUTES`]). A test (`tests/openapi.rs`) checks that this table
//! and the router in `http/mod.rs` list the same routes and methods, so the
//! document cannot drift from the code.

use axum::Json;
use serde_json::{json, Map, Value};

/// A query or path parameter: name, where, JSON type, description.
type Param = (&'static str, &'static str, &'static str, &'static str);

/// One documented operation.
pub struct Route {
    /// HTTP method, lowercase.
    pub method: &'static str,
    /// Path in OpenAPI form (`/api/runs/{id}`).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Role needed: `public`, `viewer` or `operator`.
    pub role: &'static str,
    /// Parameters.
    pub params: &'static [Param],
    /// Success status and media type.
    pub ok: (&'static str, &'static str),
}

const LIST: [Param; 3] = [
    (
        "sort",
        "query",
        "string",
        "whitelisted column, `-` prefix for descending; ties broken by id",
    ),
    (
        "cursor",
        "query",
        "string",
        "opaque `next_cursor` of the previous page (tied to its sort)",
    ),
    ("limit", "query", "integer", "page size, 1–500 (default 50)"),
];

macro_rules! params {
    ($($p:expr),* $(,)?) => { &[$($p),*] };
}

const SOURCE: Param = (
    "source",
    "query",
    "string",
    "source name(s), repeated or comma-separated",
);
const FROM: Param = (
    "from",
    "query",
    "string",
    "start of the interval (RFC 3339, inclusive)",
);
const TO: Param = (
    "to",
    "query",
    "string",
    "end of the interval (RFC 3339, exclusive)",
);
const ID: Param = ("id", "path", "string", "identifier");

/// Every route the router serves (see `http::app`).
pub const ROUTES: &[Route] = &[
    Route { method: "get", path: "/api/kpis", summary: "Live figures of one window, in total and per source, with the exact [from, to) they cover", role: "viewer",
        params: params![("window", "query", "string", "1m, 5m (default), 1h or 24h")], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/trends", summary: "One metric per bucket over a range (columnar: t[], series{total, <source>…}); history from rollups, right edge from the live aggregates", role: "viewer",
        params: params![("metric", "query", "string", "received, normalized, rejected, errors, warnings, runs_started, runs_succeeded, runs_failed, runs_partial, lag_p50, lag_p95, lag_p99, run_duration_p50, run_duration_p95, run_duration_p99 (required)"), ("bucket", "query", "string", "minute (range ≤ 7 days), hour (≤ 90 days, default) or day (≤ 400 days)"), ("from", "query", "string", "range start: RFC 3339 or epoch seconds (default: to minus 1 h / 1 day / 30 days)"), ("to", "query", "string", "range end: RFC 3339 or epoch seconds (default: now)"), ("source", "query", "string", "sources with their own series, repeated or comma-separated; total covers every source the token may see")], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/stream", summary: "The /ws topics as Server-Sent Events (id: seq on events; resume with Last-Event-ID)", role: "viewer",
        params: params![("topics", "query", "string", "kpis, events, errors, alerts, exports; comma-separated (default events)"), ("since", "query", "integer", "resume after this seq (the Last-Event-ID header wins)"), ("access_token", "query", "string", "bearer token for EventSource")], ok: ("200", "text/event-stream") },
    Route { method: "get", path: "/api/sources", summary: "Sources with health (freshness vs expected_interval, last run) and live figures", role: "viewer",
        params: params![SOURCE, ("kind", "query", "string", "source kind(s)"), ("window", "query", "string", "window of the live figures"), LIST[0], LIST[1], LIST[2]], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/runs", summary: "Runs with duration and record/error counts", role: "viewer",
        params: params![SOURCE, ("status", "query", "string", "running, succeeded, failed, partial"), FROM, TO, LIST[0], LIST[1], LIST[2]], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/runs/{id}", summary: "A run with its counts, error summary by code and timeline", role: "viewer",
        params: params![ID], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/records", summary: "Raw records (no payloads)", role: "viewer",
        params: params![SOURCE, ("run", "query", "string", "run id(s)"), ("status", "query", "string", "pending, normalized, rejected"), ("external_id", "query", "string", "external id(s), exact"), FROM, TO, LIST[0], LIST[1], LIST[2]], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/records/{id}", summary: "A raw record: payload exactly as stored (operators), its normalized meeting and its errors", role: "viewer",
        params: params![ID], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/errors", summary: "The structured error log", role: "viewer",
        params: params![SOURCE, ("run", "query", "string", "run id(s)"), ("severity", "query", "string", "error, warning"), ("stage", "query", "string", "fetch, validate, normalize, load"), ("code", "query", "string", "error code(s), exact"), ("q", "query", "string", "text in message (case-insensitive, ≤ 200 characters)"), FROM, TO, LIST[0], LIST[1], LIST[2]], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/export/{file}", summary: "CSV of a list (`runs.csv`, `records.csv`, `errors.csv`) with the list's filters, streamed, up to 10,000 rows", role: "operator",
        params: params![("file", "path", "string", "runs.csv, records.csv or errors.csv"), ("include_payload", "query", "boolean", "records only: add the payload as a JSON column")], ok: ("200", "text/csv") },
    Route { method: "post", path: "/api/exports", summary: "Start a background CSV export job ({kind, filters, include_payload})", role: "operator",
        params: params![], ok: ("202", "application/json") },
    Route { method: "get", path: "/api/exports", summary: "The caller's export jobs still held (any state), newest first: {items: [job]}", role: "operator",
        params: params![], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/exports/{id}", summary: "An export job's status and progress", role: "operator",
        params: params![ID], ok: ("200", "application/json") },
    Route { method: "delete", path: "/api/exports/{id}", summary: "Cancel an export job or delete its file", role: "operator",
        params: params![ID], ok: ("204", "application/json") },
    Route { method: "get", path: "/api/exports/{id}/download", summary: "Download a finished export", role: "operator",
        params: params![ID], ok: ("200", "text/csv") },
    Route { method: "get", path: "/api/alerts", summary: "Active (pending and firing) alerts", role: "viewer",
        params: params![("state", "query", "string", "pending or firing"), ("severity", "query", "string", "severity"), ("rule", "query", "string", "rule name"), SOURCE], ok: ("200", "application/json") },
    Route { method: "get", path: "/api/alerts/history", summary: "Alert transitions, newest first", role: "viewer",
        params: params![("rule", "query", "string", "rule name"), SOURCE, ("state", "query", "string", "state entered"), FROM, TO, LIST[1], LIST[2]], ok: ("200", "application/json") },
    Route { method: "get", path: "/ws", summary: "WebSocket stream (docs/protocol.md); token via Authorization, `Sec-WebSocket-Protocol: bearer, <token>` or `access_token`", role: "viewer",
        params: params![("access_token", "query", "string", "bearer token for browsers")], ok: ("101", "application/json") },
    Route { method: "get", path: "/healthz", summary: "The process is up", role: "public", params: params![], ok: ("200", "application/json") },
    Route { method: "get", path: "/readyz", summary: "200 once the listener is connected and the aggregates are warm", role: "public", params: params![], ok: ("200", "application/json") },
    Route { method: "get", path: "/metrics", summary: "Prometheus metrics", role: "public", params: params![], ok: ("200", "text/plain") },
    Route { method: "get", path: "/openapi.json", summary: "This document", role: "public", params: params![], ok: ("200", "application/json") },
    Route { method: "get", path: "/asyncapi.json", summary: "The AsyncAPI 3 document of the WebSocket and SSE protocol", role: "public", params: params![], ok: ("200", "application/json") },
];

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// Builds the document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .params
            .iter()
            .map(|(name, place, ty, desc)| {
                json!({"name": name, "in": place, "required": *place == "path", "description": desc, "schema": {"type": ty}})
            })
            .collect();
        let mut responses = Map::new();
        responses.insert(
            r.ok.0.into(),
            json!({"description": "success", "content": {r.ok.1: {}}}),
        );
        responses.insert(
            "400".into(),
            error_response("a parameter is missing or malformed (the message names it)"),
        );
        if r.role != "public" {
            responses.insert(
                "401".into(),
                error_response("missing or invalid bearer token"),
            );
            responses.insert("403".into(), error_response("the token lacks the role"));
        }
        if r.path.contains('{') {
            responses.insert("404".into(), error_response("no such resource"));
        }
        responses.insert(
            "503".into(),
            error_response("warming up, or the database is unavailable"),
        );
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": responses,
            "x-role": r.role,
        });
        if r.role != "public" {
            op["security"] = json!([{"bearer": []}]);
        }
        if r.method == "post" {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ingestwatch",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Live monitor for PostgreSQL-backed data-ingestion pipelines. WebSocket protocol: docs/protocol.md."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}
            }}
        }
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document())
}
