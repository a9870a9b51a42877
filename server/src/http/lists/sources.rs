//! `GET /api/sources` — every source with its health: newest record,
//! freshness against `expected_interval`, last run, and the live figures of
//! one window (from the in-memory aggregates, the same numbers as
//! `GET /api/kpis`).
//!
//! Parameters: `source` (names), `kind` (source kinds), `window` (`1m`,
//! `5m`, `1h`, `24h`; default `5m`), `sort` (`name`, `id`; default `name`),
//! `cursor`, `limit`.
//!
//! Freshness (age = now − newest `received_at`, `expected_interval` = E):
//! `never` without any record; `healthy` when age ≤ E (or when no E is set);
//! `late` when age ≤ 3·E; `stale` beyond.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{resolve, Page};
use crate::auth::Principal;
use crate::db::keyset::{Cursor, CursorValue};
use crate::db::queries::{self, Filters, SOURCE_SORTS};
use crate::db::rows::iso;
use crate::error::AppError;
use crate::http::params::{self, ApiQuery, Params};
use crate::live::snapshot::Figures;
use crate::live::window::Window;
use crate::state::AppState;

/// A source is `late` up to this many expected intervals, then `stale`.
pub const STALE_AFTER_INTERVALS: f64 = 3.0;

/// Query of `GET /api/sources`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SourceParams {
    pub source: Option<String>,
    pub kind: Option<String>,
    pub window: Option<String>,
    pub sort: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

impl Params for SourceParams {
    const MULTI: &'static [&'static str] = &["source", "kind"];
}

/// How fresh a source's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FreshnessStatus {
    /// Newest record within the expected interval (or no interval set).
    Healthy,
    /// Older than the expected interval, within three of them.
    Late,
    /// Older than three expected intervals.
    Stale,
    /// No record ever.
    Never,
}

/// Freshness of a source at `now`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freshness {
    /// The verdict.
    pub status: FreshnessStatus,
    /// Seconds since the newest record (null when none).
    pub age_secs: Option<f64>,
}

/// Freshness from the newest record time and the expected interval.
pub fn freshness(
    last: Option<DateTime<Utc>>,
    expected_secs: Option<f64>,
    now: DateTime<Utc>,
) -> Freshness {
    let Some(last) = last else {
        return Freshness {
            status: FreshnessStatus::Never,
            age_secs: None,
        };
    };
    let age = ((now - last).num_milliseconds() as f64 / 1000.0).max(0.0);
    let status = match expected_secs {
        Some(e) if e > 0.0 && age > e * STALE_AFTER_INTERVALS => FreshnessStatus::Stale,
        Some(e) if e > 0.0 && age > e => FreshnessStatus::Late,
        _ => FreshnessStatus::Healthy,
    };
    Freshness {
        status,
        age_secs: Some(age),
    }
}

/// A source's last run.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// Run id.
    pub id: i64,
    /// Its status.
    pub status: String,
    /// Start (ISO-8601 UTC).
    pub started_at: String,
    /// End, null while running.
    pub finished_at: Option<String>,
}

/// One row of `GET /api/sources`.
#[derive(Debug, Clone, Serialize)]
pub struct SourceItem {
    /// Source id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Kind.
    pub kind: Option<String>,
    /// `expected_interval` in seconds.
    pub expected_interval_secs: Option<f64>,
    /// Newest `received_at` (ISO-8601 UTC).
    pub last_record_at: Option<String>,
    /// Freshness verdict.
    pub freshness: Freshness,
    /// Newest run by `started_at`.
    pub last_run: Option<LastRun>,
    /// Live figures over `window` (null while the aggregates warm up).
    pub figures: Option<Figures>,
}

/// The window the figures cover.
#[derive(Debug, Serialize)]
pub struct WindowInfo {
    /// `1m`, `5m`, `1h` or `24h`.
    pub name: &'static str,
    /// Start (inclusive).
    pub from: String,
    /// End (exclusive).
    pub to: String,
    /// Every event up to this seq is included.
    pub seq: i64,
}

/// The sources page.
#[derive(Debug, Serialize)]
pub struct SourcesPage {
    /// Items, cursor and limit.
    #[serde(flatten)]
    pub page: Page<SourceItem>,
    /// The window of `figures` (null while warming up).
    pub window: Option<WindowInfo>,
}

/// `GET /api/sources`.
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
    ApiQuery(p): ApiQuery<SourceParams>,
) -> Result<Json<SourcesPage>, AppError> {
    let window =
        Window::from_param(p.window.as_deref()).map_err(|m| AppError::invalid("window", m))?;
    let order = params::sort(p.sort.as_deref(), "name", &SOURCE_SORTS, "s.id")?;
    let cursor = params::cursor(p.cursor.as_deref(), &order)?;
    let limit = params::limit(p.limit.as_deref())?;
    let requested = params::names("source", p.source.as_deref())?;
    let kinds = params::names("kind", p.kind.as_deref())?;

    let client = st.pool.get().await?;
    let filters = resolve(
        &client,
        &principal,
        requested.as_deref(),
        Filters {
            kinds,
            ..Filters::default()
        },
    )
    .await?;
    let q = queries::sources_query(&filters, &order, cursor.as_ref(), limit + 1);
    let rows = client.query(&q.sql, &q.params()).await?;
    drop(client);

    let now = Utc::now();
    let warm = st.status.warm.load(std::sync::atomic::Ordering::Acquire);
    let kpis = warm.then(|| {
        st.live
            .kpis(window, now.timestamp_millis(), principal.sources.as_ref())
    });
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let name: String = r.try_get(1)?;
        let expected: Option<f64> = r.try_get(3)?;
        let last: Option<DateTime<Utc>> = r.try_get(4)?;
        let run_id: Option<i64> = r.try_get(5)?;
        let last_run = match run_id {
            Some(id) => Some(LastRun {
                id,
                status: r.try_get(6)?,
                started_at: iso(&r.try_get::<_, DateTime<Utc>>(7)?),
                finished_at: r.try_get::<_, Option<DateTime<Utc>>>(8)?.map(|t| iso(&t)),
            }),
            None => None,
        };
        let figures = kpis
            .as_ref()
            .map(|k| k.sources.get(&name).cloned().unwrap_or_default());
        items.push(SourceItem {
            id: r.try_get(0)?,
            kind: r.try_get(2)?,
            expected_interval_secs: expected,
            last_record_at: last.as_ref().map(iso),
            freshness: freshness(last, expected, now),
            last_run,
            figures,
            name,
        });
    }
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|s| {
            Cursor {
                sort: order.spelling(),
                value: match order.col.name {
                    "id" => CursorValue::Int(s.id),
                    _ => CursorValue::Text(s.name.clone()),
                },
                id: s.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(SourcesPage {
        page: Page {
            items,
            next_cursor,
            limit,
        },
        window: kpis.map(|k| WindowInfo {
            name: k.window,
            from: k.from,
            to: k.to,
            seq: k.seq,
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_follows_the_expected_interval() {
        let now = DateTime::from_timestamp(1_000_000, 0).expect("now");
        let ago = |s: i64| Some(now - chrono::Duration::seconds(s));
        let st = |last, e| freshness(last, e, now).status;
        assert_eq!(st(None, Some(60.0)), FreshnessStatus::Never);
        assert_eq!(st(ago(60), Some(60.0)), FreshnessStatus::Healthy);
        assert_eq!(st(ago(61), Some(60.0)), FreshnessStatus::Late);
        assert_eq!(st(ago(180), Some(60.0)), FreshnessStatus::Late);
        assert_eq!(st(ago(181), Some(60.0)), FreshnessStatus::Stale);
        assert_eq!(st(ago(100_000), None), FreshnessStatus::Healthy);
        assert_eq!(freshness(ago(-5), Some(1.0), now).age_secs, Some(0.0));
    }
}
