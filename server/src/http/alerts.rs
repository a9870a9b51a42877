//! REST handlers for alerts: the active ones (from this replica's view,
//! which every replica builds from the alert tables) and the history (keyset
//! paged, newest first). Scoped principals see only alerts whose sources
//! they may all see; alerts over all sources and system alerts are for
//! unscoped principals.

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alerts::record::{Active, Transition};
use crate::alerts::rules::{Severity, StateName};
use crate::alerts::store::HistoryQuery;
use crate::auth::Principal;
use crate::error::AppError;
use crate::state::AppState;

/// Largest page of `GET /api/alerts/history`.
pub const MAX_LIMIT: i64 = 500;
/// Default page size.
pub const DEFAULT_LIMIT: i64 = 100;

type Params = Vec<(String, String)>;

fn single<'a>(params: &'a Params, allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, AppError> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (k, v) in params {
        if k == "access_token" {
            continue; // the token, read by the Principal extractor
        }
        if !allowed.contains(&k.as_str()) {
            let shown: String = k.chars().take(40).collect();
            return Err(AppError::invalid(
                &shown,
                format!("unknown parameter; use {}", allowed.join(", ")),
            ));
        }
        if seen.iter().any(|(s, _)| *s == k) {
            return Err(AppError::invalid(k, "given more than once"));
        }
        seen.push((k, v));
    }
    Ok(seen)
}

fn name_param(name: &str, v: &str) -> Result<String, AppError> {
    if v.is_empty() || v.len() > 200 {
        return Err(AppError::invalid(name, "must be 1 to 200 characters"));
    }
    Ok(v.to_string())
}

fn state_param(v: &str, allowed: &[StateName]) -> Result<StateName, AppError> {
    match StateName::parse(v) {
        Some(s) if allowed.contains(&s) => Ok(s),
        _ => Err(AppError::invalid(
            "state",
            format!(
                "use {}",
                allowed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn time_param(name: &str, v: &str) -> Result<DateTime<Utc>, AppError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| AppError::invalid(name, "must be an RFC 3339 time, e.g. 2026-11-26T10:00:00Z"))
}

/// Body of `GET /api/alerts`.
#[derive(Debug, Serialize)]
pub struct ActiveBody {
    /// Active alerts, oldest first.
    pub alerts: Vec<Active>,
    /// The newest transition this replica has applied.
    pub last_transition_id: i64,
}

/// `GET /api/alerts?state=&severity=&rule=&source=` — the active (pending
/// and firing) alerts, with since when and the value that made them so.
pub async fn active(
    State(st): State<AppState>,
    principal: Principal,
    Query(params): Query<Params>,
) -> Result<Json<ActiveBody>, AppError> {
    let (mut state, mut severity, mut rule, mut source) = (None, None, None, None);
    for (k, v) in single(&params, &["state", "severity", "rule", "source"])? {
        match k {
            "state" => state = Some(state_param(v, &[StateName::Pending, StateName::Firing])?),
            "severity" => {
                severity = Some(Severity::parse(v).ok_or_else(|| {
                    AppError::invalid("severity", "use info, warning or critical")
                })?);
            }
            "rule" => rule = Some(name_param("rule", v)?),
            _ => source = Some(name_param("source", v)?),
        }
    }
    let (mut alerts, last) = st.alerts.active(principal.sources.as_ref())?;
    alerts.retain(|Active(a)| {
        state.is_none_or(|s| a.state == s)
            && severity.is_none_or(|s| a.severity == s)
            && rule.as_ref().is_none_or(|r| &a.rule == r)
            && source.as_ref().is_none_or(|s| a.sources.contains(s))
    });
    Ok(Json(ActiveBody {
        alerts,
        last_transition_id: last,
    }))
}

/// Body of `GET /api/alerts/history`.
#[derive(Debug, Serialize)]
pub struct HistoryBody {
    /// Transitions, newest first.
    pub transitions: Vec<Transition>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /api/alerts/history?rule=&source=&state=&from=&to=&limit=&cursor=` —
/// transitions, newest first, keyset paged.
pub async fn history(
    State(st): State<AppState>,
    principal: Principal,
    Query(params): Query<Params>,
) -> Result<Json<HistoryBody>, AppError> {
    let mut q = HistoryQuery {
        limit: DEFAULT_LIMIT,
        scope: principal
            .sources
            .as_ref()
            .map(|s| s.iter().cloned().collect()),
        ..HistoryQuery::default()
    };
    let allowed = ["rule", "source", "state", "from", "to", "limit", "cursor"];
    for (k, v) in single(&params, &allowed)? {
        match k {
            "rule" => q.rule = Some(name_param("rule", v)?),
            "source" => q.source = Some(name_param("source", v)?),
            "state" => q.state = Some(state_param(v, &StateName::ALL)?),
            "from" => q.from = Some(time_param("from", v)?),
            "to" => q.to = Some(time_param("to", v)?),
            "limit" => {
                q.limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        AppError::invalid(
                            "limit",
                            format!("must be an integer from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            _ => {
                q.before = Some(v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    AppError::invalid("cursor", "must be a `next_cursor` from a previous page")
                })?);
            }
        }
    }
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if f >= t {
            return Err(AppError::invalid("from", "must be before `to`"));
        }
    }
    if let (Some(s), Some(scope)) = (&q.source, &principal.sources) {
        if !scope.contains(s) {
            return Err(AppError::Forbidden(
                "your token does not cover this source".into(),
            ));
        }
    }
    let client = st.pool.get().await?;
    let transitions = crate::alerts::history(&**client, &q).await?;
    let next_cursor = (transitions.len() as i64 == q.limit)
        .then(|| transitions.last().map(|t| t.id.to_string()))
        .flatten();
    Ok(Json(HistoryBody {
        transitions,
        next_cursor,
    }))
}
