//! REST handlers for live figures.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize, Serializer};

use crate::auth::Principal;
use crate::error::AppError;
use crate::live::snapshot::WindowKpis;
use crate::live::window::Window;
use crate::state::AppState;

/// Query of `GET /api/kpis`.
#[derive(Debug, Deserialize)]
pub struct KpiQuery {
    /// `1m`, `5m` (default), `1h` or `24h`.
    pub window: Option<String>,
}

/// `GET /api/kpis?window=5m` — the figures of one window, in total and per
/// source, with the exact `[from, to)` they cover and the seq they include.
pub async fn kpis(
    State(st): State<AppState>,
    principal: Principal,
    Query(q): Query<KpiQuery>,
) -> Result<Json<Shared>, AppError> {
    let window =
        Window::from_param(q.window.as_deref()).map_err(|m| AppError::invalid("window", m))?;
    if !st.status.warm.load(std::sync::atomic::Ordering::Acquire) {
        return Err(AppError::Unavailable("live figures are warming up".into()));
    }
    Ok(Json(Shared(st.live.kpis_shared(
        window,
        chrono::Utc::now().timestamp_millis(),
        principal.sources.as_ref(),
    ))))
}

/// A cached snapshot, serialized as the snapshot itself.
pub struct Shared(Arc<WindowKpis>);

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}
