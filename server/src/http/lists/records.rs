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

use super::{fetch_page, list_params, ListRequest, Page};
use crate::auth::Principal;
use crate::db::queries::{Kind, RECORD_STATUSES};
use crate::db::rows::Item;
use crate::error::AppError;
use crate::http::params::{self, ApiQuery, Params};
use crate::state::AppState;

list_params! {
    /// Query of `GET /api/records` and `GET /api/export/records.csv`.
    pub struct RecordParams {
        pub run,
        pub status,
        pub external_id,
        /// Exports only.
        pub include_payload,
    }
}

impl Params for RecordParams {
    const MULTI: &'static [&'static str] = &["source", "run", "status", "external_id"];
}

impl RecordParams {
    /// Validates into a request.
    pub fn request(&self) -> Result<ListRequest, AppError> {
        let mut req = ListRequest::common(Kind::Records, &self.common())?;
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
