//! `GET /api/runs` — pipeline runs with duration and record/error counts.
//!
//! Parameters: `source` (names, repeatable or comma list), `status`
//! (running, succeeded, failed, partial), `from`/`to` (on `started_at`,
//! `[from, to)`), `sort` (`started_at`, `finished_at`, `status`, `id`; `-`
//! for descending; default `-started_at`), `cursor`, `limit`.

use axum::extract::State;
use axum::Json;

use super::{fetch_page, list_params, ListRequest, Page};
use crate::auth::Principal;
use crate::db::queries::{Kind, RUN_STATUSES};
use crate::db::rows::Item;
use crate::error::AppError;
use crate::http::params::{self, ApiQuery, Params};
use crate::state::AppState;

list_params! {
    /// Query of `GET /api/runs` and `GET /api/export/runs.csv`.
    pub struct RunParams {
        pub status,
    }
}

impl Params for RunParams {
    const MULTI: &'static [&'static str] = &["source", "status"];
}

impl RunParams {
    /// Validates into a request.
    pub fn request(&self) -> Result<ListRequest, AppError> {
        let mut req = ListRequest::common(Kind::Runs, &self.common())?;
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
