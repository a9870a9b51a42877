//! `GET /api/errors` — the structured error log.
//!
//! Parameters: `source` (names), `run` (ids), `severity` (error, warning),
//! `stage` (fetch, validate, normalize, load), `code` (exact, repeatable),
//! `q` (case-insensitive substring of the message; `%` and `_` are literal),
//! `from`/`to` (on `occurred_at`), `sort` (`occurred_at`, `severity`,
//! `stage`, `code`, `run_id`, `id`; default `-occurred_at`), `cursor`,
//! `limit`.

use axum::extract::State;
use axum::Json;

use super::{fetch_page, list_params, ListRequest, Page};
use crate::auth::Principal;
use crate::db::queries::{Kind, SEVERITIES, STAGES};
use crate::db::rows::Item;
use crate::error::AppError;
use crate::http::params::{self, ApiQuery, Params};
use crate::state::AppState;

/// Longest `q` accepted.
const MAX_Q: usize = 200;

list_params! {
    /// Query of `GET /api/errors` and `GET /api/export/errors.csv`.
    pub struct ErrorParams {
        pub run,
        pub severity,
        pub stage,
        pub code,
        pub q,
    }
}

impl Params for ErrorParams {
    const MULTI: &'static [&'static str] = &["source", "run", "severity", "stage", "code"];
}

impl ErrorParams {
    /// Validates into a request.
    pub fn request(&self) -> Result<ListRequest, AppError> {
        let mut req = ListRequest::common(Kind::Errors, &self.common())?;
        let f = &mut req.filters;
        f.runs = params::ids("run", self.run.as_deref())?;
        f.severities = params::one_of("severity", self.severity.as_deref(), &SEVERITIES)?;
        f.stages = params::one_of("stage", self.stage.as_deref(), &STAGES)?;
        f.codes = params::names("code", self.code.as_deref())?;
        if let Some(q) = &self.q {
            if q.chars().count() > MAX_Q {
                return Err(AppError::invalid(
                    "q",
                    format!("longer than {MAX_Q} characters"),
                ));
            }
            f.q = Some(q.clone());
        }
        Ok(req)
    }
}

/// `GET /api/errors`.
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
    ApiQuery(p): ApiQuery<ErrorParams>,
) -> Result<Json<Page<Item>>, AppError> {
    Ok(Json(fetch_page(&st, &principal, &p.request()?).await?))
}
