//! `GET /api/records` — raw records without their payloads (the payload is
//! in the drill-down `GET /api/records/{id}` and the operator's exports).
//!
//! Parameters: `source` (names), `run` (ids), `status` (pending,
//! normalized, rejected), `external_id` (exact, repeatable), `from`/`to` (on
//! `received_at`), `sort` (`received_at`, `processed_at`, `status`,
//! `external_id`, `id`; default `-received_at`), `cursor`, `limit`. The CSV
//! export also takes `include_payload=true`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::{fetch_page, Common, ListRequest, Page};
use crate::auth::Principal;
use crate::db::queries::{Kind, RECORD_STATUSES};
use crate::db::rows::Item;
use crate::error::AppError;
use crate::http::params::{self, ApiQuery, Params};
use crate::state::AppState;

/// Query of `GET /api/records` and `GET /api/export/records.csv`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RecordParams {
    pub source: Option<String>,
    pub run: Option<String>,
    pub status: Option<String>,
    pub external_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub sort: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
    /// Exports only.
    pub include_payload: Option<String>,
}

impl Params for RecordParams {
    const MULTI: &'static [&'static str] = &["source", "run", "status", "external_id"];
}

impl RecordParams {
    /// Validates into a request.
    pub fn request(&self) -> Result<ListRequest, AppError> {
        let mut req = ListRequest::common(
            Kind::Records,
            &Common {
                source: self.source.as_deref(),
                from: self.from.as_deref(),
                to: self.to.as_deref(),
                sort: self.sort.as_deref(),
                cursor: self.cursor.as_deref(),
                limit: self.limit.as_deref(),
            },
        )?;
        req.filters.runs = params::ids("run", self.run.as_deref())?;
        req.filters.statuses = params::one_of("status", self.status.as_deref(), &RECORD_STATUSES)?;
        req.filters.external_ids = params::names("external_id", self.external_id.as_deref())?;
        req.include_payload = params::flag("include_payload", self.include_payload.as_deref())?;
        Ok(req)
    }
}

/// `GET /api/records`.
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
    ApiQuery(p): ApiQuery<RecordParams>,
) -> Result<Json<Page<Item>>, AppError> {
    if p.include_payload.is_some() {
        return Err(AppError::invalid(
            "include_payload",
            "lists never carry payloads; use GET /api/records/{id} or the CSV export",
        ));
    }
    Ok(Json(fetch_page(&st, &principal, &p.request()?).await?))
}
