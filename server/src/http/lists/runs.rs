//! `GET /api/runs` — pipeline runs with duration and record/error counts.
//!
//! Parameters: `source` (names, repeatable or comma list), `status`
//! (running, succeeded, failed, partial), `from`/`to` (on `started_at`,
//! `[from, to)`), `sort` (`started_at`, `finished_at`, `status`, `id`; `-`
//! for descending; default `-started_at`), `cursor`, `limit`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::{fetch_page, Common, ListRequest, Page};
use crate::auth::Principal;
use crate::db::queries::{Kind, RUN_STATUSES};
use crate::db::rows::Item;
use crate::error::AppError;
use crate::http::params::{self, ApiQuery, Params};
use crate::state::AppState;

/// Query of `GET /api/runs` and `GET /api/export/runs.csv`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RunParams {
    pub source: Option<String>,
    pub status: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub sort: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

impl Params for RunParams {
    const MULTI: &'static [&'static str] = &["source", "status"];
}

impl RunParams {
    /// Validates into a request.
    pub fn request(&self) -> Result<ListRequest, AppError> {
        let mut req = ListRequest::common(
            Kind::Runs,
            &Common {
                source: self.source.as_deref(),
                from: self.from.as_deref(),
                to: self.to.as_deref(),
                sort: self.sort.as_deref(),
                cursor: self.cursor.as_deref(),
                limit: self.limit.as_deref(),
            },
        )?;
        req.filters.statuses = params::one_of("status", self.status.as_deref(), &RUN_STATUSES)?;
        Ok(req)
    }
}

/// `GET /api/runs`.
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
    ApiQuery(p): ApiQuery<RunParams>,
) -> Result<Json<Page<Item>>, AppError> {
    Ok(Json(fetch_page(&st, &principal, &p.request()?).await?))
}
