//! Export routes (operators only):
//!
//! - `GET /api/export/{runs|records|errors}.csv?<the list's filters and sort>`
//!   (records also `include_payload=true`): RFC 4180 CSV streamed at constant
//!   memory, up to 10,000 rows; more → 400 `export_too_large`.
//! - `POST /api/exports` `{"kind":"records","filters":{...},"include_payload":false}`
//!   → 202 with the job; `GET /api/exports/{id}`; `GET /api/exports/{id}/download`;
//!   `DELETE /api/exports/{id}` (cancel or remove) → 204.
//!
//! `cursor` and `limit` are list-only and refused here. Jobs sort by the
//! list's time column or `id` only (the orders an index serves batch after
//! batch); synchronous exports take any list sort.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::Principal;
use crate::db::queries::{self, Kind, PageSpec};
use crate::db::rows::CsvCells;
use crate::error::AppError;
use crate::export::jobs::{Exports, JobDeps, JobStatus, JobView};
use crate::export::{csv_body, ExportPlan, ReadTx, SYNC_MAX_ROWS};
use crate::http::lists::errors::ErrorParams;
use crate::http::lists::records::RecordParams;
use crate::http::lists::runs::RunParams;
use crate::http::lists::{resolve, ListRequest};
use crate::http::params::{self, ApiJson, ApiQuery, NoParams};
use crate::state::AppState;

/// Parses export parameters of `kind` from `(name, value)` pairs.
pub fn export_request(kind: Kind, pairs: Vec<(String, String)>) -> Result<ListRequest, AppError> {
    let req = match kind {
        Kind::Runs => params::from_pairs::<RunParams>(pairs)?.request()?,
        Kind::Records => params::from_pairs::<RecordParams>(pairs)?.request()?,
        Kind::Errors => params::from_pairs::<ErrorParams>(pairs)?.request()?,
    };
    if req.cursor.is_some() {
        return Err(AppError::invalid(
            "cursor",
            "exports take every matching row; cursors are for the lists",
        ));
    }
    Ok(req)
}

fn refuse_limit(pairs: &[(String, String)]) -> Result<(), AppError> {
    if pairs.iter().any(|(k, v)| k == "limit" && !v.is_empty()) {
        return Err(AppError::invalid(
            "limit",
            "exports take every matching row; narrow them with filters",
        ));
    }
    Ok(())
}

fn kind_of_file(file: &str) -> Result<Kind, AppError> {
    file.strip_suffix(".csv")
        .and_then(Kind::parse)
        .ok_or_else(|| {
            AppError::NotFound("no such export; use runs.csv, records.csv or errors.csv".into())
        })
}

/// `GET /api/export/{runs|records|errors}.csv`.
pub async fn csv(
    State(st): State<AppState>,
    principal: Principal,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    principal.require_operator()?;
    let kind = kind_of_file(&file)?;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|e| AppError::invalid("query", format!("malformed query string: {e}")))?;
    refuse_limit(&pairs)?;
    let req = export_request(kind, pairs)?;
    let client = st.pool.get().await?;
    let filters = resolve(&client, &principal, req.sources.as_deref(), req.filters).await?;
    let tx = ReadTx::begin(client).await?;
    let count = queries::count_capped(kind, &filters, SYNC_MAX_ROWS + 1);
    let n: i64 = tx
        .client()
        .query_one(&count.sql, &count.params())
        .await?
        .get(0);
    if n > SYNC_MAX_ROWS {
        return Err(AppError::BadRequest {
            code: "export_too_large",
            message: format!(
                "more than {SYNC_MAX_ROWS} rows match; narrow the filters or start an export job \
                 with POST /api/exports {{\"kind\":\"{}\",\"filters\":{{...}}}}",
                kind.name()
            ),
        });
    }
    let q = queries::page_query(&PageSpec {
        kind,
        filters: &filters,
        order: req.order,
        after: None,
        limit: SYNC_MAX_ROWS,
        upto_id: None,
        include_payload: req.include_payload,
    });
    let rows = tx.client().query_raw(&q.sql, q.params()).await?;
    let body = csv_body(
        tx,
        rows,
        kind,
        req.include_payload,
        CsvCells::raw_if(st.options.csv_raw_formulas),
    )
    .map_err(|e| AppError::Internal(format!("csv header: {e}")))?;
    Ok(csv_response(body, &format!("{}.csv", kind.name()), None))
}

fn csv_response(body: axum::body::Body, filename: &str, len: Option<u64>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp
}

/// Body of `POST /api/exports`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartExport {
    /// `runs`, `records` or `errors`.
    pub kind: String,
    /// The list's filters and sort, as strings (or arrays of strings for repeatable ones).
    #[serde(default)]
    pub filters: Map<String, Value>,
    /// Records only: add the payload column.
    #[serde(default)]
    pub include_payload: bool,
}

/// JSON filters as query pairs: a string is read like the query parameter
/// (a comma list for repeatable ones), an array's items are single values
/// (quoted for the comma list), null is absent.
fn filter_pairs(filters: Map<String, Value>) -> Result<Vec<(String, String)>, AppError> {
    let mut pairs = Vec::new();
    for (k, v) in filters {
        let mut push = |v: &Value| -> Result<(), AppError> {
            match v {
                Value::Null => {}
                Value::String(s) => pairs.push((k.clone(), s.clone())),
                Value::Number(n) => pairs.push((k.clone(), n.to_string())),
                Value::Bool(b) => pairs.push((k.clone(), b.to_string())),
                _ => {
                    return Err(AppError::invalid(
                        &k,
                        "must be a string, number or an array of them",
                    ))
                }
            }
            Ok(())
        };
        match &v {
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Value::String(params::quote_item(s)),
                    other => other.clone(),
                })
                .try_for_each(|i| push(&i))?,
            other => push(other)?,
        }
    }
    Ok(pairs)
}

/// `POST /api/exports` — starts a job (202).
pub async fn start(
    State(st): State<AppState>,
    principal: Principal,
    ApiQuery(_): ApiQuery<NoParams>,
    ApiJson(body): ApiJson<StartExport>,
) -> Result<Response, AppError> {
    principal.require_operator()?;
    let kind = Kind::parse(&body.kind).ok_or_else(|| {
        AppError::invalid("kind", "unknown export kind; use runs, records or errors")
    })?;
    let mut pairs = filter_pairs(body.filters)?;
    refuse_limit(&pairs)?;
    if pairs.iter().any(|(k, _)| k == "include_payload") {
        return Err(AppError::invalid(
            "include_payload",
            "give it next to `filters`, not inside",
        ));
    }
    if body.include_payload {
        if kind != Kind::Records {
            return Err(AppError::invalid(
                "include_payload",
                "only records have payloads",
            ));
        }
        pairs.push(("include_payload".into(), "true".into()));
    }
    let req = export_request(kind, pairs)?;
    let time_sort = kind.time_col().rsplit('.').next().unwrap_or("id");
    if req.order.col.name != time_sort && req.order.col.name != "id" {
        return Err(AppError::invalid(
            "sort",
            format!(
                "export jobs sort by {time_sort} or id (with `-` for descending); \
                 synchronous exports take any sort"
            ),
        ));
    }
    let filters = {
        let client = st.pool.get().await?;
        resolve(&client, &principal, req.sources.as_deref(), req.filters).await?
    };
    let job = Exports::start(
        &JobDeps {
            exports: st.exports.clone(),
            pool: st.pool.clone(),
            hub: st.hub.clone(),
            shutdown: st.shutdown.clone(),
        },
        ExportPlan {
            kind,
            filters,
            order: req.order,
            include_payload: req.include_payload,
            cells: CsvCells::raw_if(st.options.csv_raw_formulas),
        },
        principal.subject.clone(),
    );
    let view = job.view(st.exports.ttl());
    let mut resp = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/exports/{}", job.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn job_id(path: Result<Path<String>, PathRejection>) -> Result<String, AppError> {
    let Path(id) = path.map_err(|e| AppError::invalid("id", e.body_text()))?;
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(AppError::invalid("id", "not an export job id"))
    }
}

fn find(
    st: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<std::sync::Arc<crate::export::jobs::Job>, AppError> {
    st.exports
        .get(id, &principal.subject)
        .ok_or_else(|| AppError::NotFound(format!("no export job {id}")))
}

/// `GET /api/exports` — the caller's jobs still held (any state), newest first.
pub async fn mine(
    State(st): State<AppState>,
    principal: Principal,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<serde_json::Value>, AppError> {
    principal.require_operator()?;
    let ttl = st.exports.ttl();
    let items: Vec<JobView> = st
        .exports
        .of_owner(&principal.subject)
        .iter()
        .map(|j| j.view(ttl))
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

/// `GET /api/exports/{id}`.
pub async fn status(
    State(st): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<JobView>, AppError> {
    principal.require_operator()?;
    let id = job_id(path)?;
    Ok(Json(find(&st, &principal, &id)?.view(st.exports.ttl())))
}

/// `GET /api/exports/{id}/download`.
pub async fn download(
    State(st): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Response, AppError> {
    principal.require_operator()?;
    let id = job_id(path)?;
    let job = find(&st, &principal, &id)?;
    let status = job.status();
    if status != JobStatus::Finished {
        return Err(AppError::Conflict(format!(
            "export job {id} is {}; download it once finished",
            serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        )));
    }
    // An open file survives its deletion by the TTL sweep (unix), so a
    // download that started always completes.
    let file = tokio::fs::File::open(&job.path)
        .await
        .map_err(|_| AppError::NotFound(format!("no export job {id}")))?;
    let len = file.metadata().await.ok().map(|m| m.len());
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok(csv_response(
        body,
        &format!("{}-{id}.csv", job.kind.name()),
        len,
    ))
}

/// `DELETE /api/exports/{id}` — cancels a running job or removes a finished one (204).
pub async fn remove(
    State(st): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<StatusCode, AppError> {
    principal.require_operator()?;
    let id = job_id(path)?;
    let job = find(&st, &principal, &id)?;
    st.exports.remove(&job).await;
    Ok(StatusCode::NO_CONTENT)
}
