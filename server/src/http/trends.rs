//! `GET /api/trends` — one metric per bucket over a range, columnar for charts.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::params::{self, ApiQuery, Params};
use crate::auth::Principal;
use crate::error::AppError;
use crate::state::AppState;
use crate::trends::query::{self, TrendRequest};
use crate::trends::{Bucket, Trend, TrendMetric};

/// `GET /api/trends?metric=M&bucket=minute|hour|day&from=T&to=T&source=S[,S…]`
///
/// - `metric` (required): `received`, `normalized`, `rejected`, `errors`,
///   `warnings`, `runs_started`, `runs_succeeded`, `runs_failed`,
///   `runs_partial`, `lag_p50`, `lag_p95`, `lag_p99`.
/// - `bucket`: default `hour`; a range may span at most 7 days of minutes,
///   90 days of hours, 400 days of days.
/// - `from`, `to`: RFC 3339 or epoch seconds; `to` defaults to now, `from` to
///   `to` minus 1 hour / 1 day / 30 days. Widened to whole (UTC) buckets.
/// - `source`: names (repeated or comma-separated) that get their own series;
///   `total` always covers every source the caller may see.
pub async fn trends(
    State(st): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<TrendQuery>,
) -> Result<Json<Trend>, AppError> {
    let now_sec = chrono::Utc::now().timestamp();
    let req = parse(q, now_sec)?;
    if !st.status.warm.load(std::sync::atomic::Ordering::Acquire) {
        return Err(AppError::Unavailable("live figures are warming up".into()));
    }
    let mut client = st.pool.get().await?;
    let trend = query::run(
        &mut client,
        &st.live,
        i64::from(st.options.rollup_minute_days),
        &|name| principal.can_see(name),
        &req,
        now_sec,
    )
    .await?;
    Ok(Json(trend))
}

/// The query string of `GET /api/trends` (names checked by serde, values below).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrendQuery {
    /// The metric (required).
    pub metric: Option<String>,
    /// `minute`, `hour` (default) or `day`.
    pub bucket: Option<String>,
    /// Range start: RFC 3339 or epoch seconds.
    pub from: Option<String>,
    /// Range end: RFC 3339 or epoch seconds.
    pub to: Option<String>,
    /// Sources with their own series (repeated or comma-separated).
    pub source: Option<String>,
}

impl Params for TrendQuery {
    const MULTI: &'static [&'static str] = &["source"];
}

/// Validates a trend request at `now_sec`.
pub fn parse(q: TrendQuery, now_sec: i64) -> Result<TrendRequest, AppError> {
    let metric = match q.metric.as_deref() {
        None => {
            return Err(AppError::invalid(
                "metric",
                format!("required; one of {}", TrendMetric::available()),
            ))
        }
        Some(m) => TrendMetric::parse(m).ok_or_else(|| {
            let shown: String = m.chars().take(64).collect();
            AppError::invalid(
                "metric",
                format!(
                    "unknown metric {shown:?}; use one of {}",
                    TrendMetric::available()
                ),
            )
        })?,
    };
    let bucket = match q.bucket.as_deref() {
        None => Bucket::Hour,
        Some(b) => Bucket::parse(b).ok_or_else(|| {
            let shown: String = b.chars().take(64).collect();
            AppError::invalid(
                "bucket",
                format!("unknown bucket {shown:?}; use minute, hour or day"),
            )
        })?,
    };
    let to = match q.to.as_deref() {
        Some(v) => params::timestamp("to", v)?,
        None => now_sec,
    };
    let from = match q.from.as_deref() {
        Some(v) => params::timestamp("from", v)?,
        None => (to - bucket.default_range()).max(0),
    };
    if from >= to {
        return Err(AppError::invalid("from", "must be before `to`"));
    }
    if to - from > bucket.max_range() {
        let (max_days, hint) = match bucket {
            Bucket::Minute => (7, "; use bucket=hour"),
            Bucket::Hour => (90, "; use bucket=day"),
            Bucket::Day => (400, ""),
        };
        return Err(AppError::invalid(
            "bucket",
            format!(
                "{} buckets cover at most {max_days} days; the range asked spans {:.1} days{hint}",
                bucket.name(),
                (to - from) as f64 / 86_400.0
            ),
        ));
    }
    let step = bucket.secs();
    let sources: Vec<String> = params::names("source", q.source.as_deref())?.unwrap_or_default();
    if sources.iter().any(|s| s == "total") {
        return Err(AppError::invalid(
            "source",
            "`total` is the series of all sources; name real sources only",
        ));
    }
    if sources.len() > 50 {
        return Err(AppError::invalid(
            "source",
            "at most 50 sources per request",
        ));
    }
    Ok(TrendRequest {
        metric,
        bucket,
        from: from.div_euclid(step) * step,
        to: (to + step - 1).div_euclid(step) * step,
        sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(q: &str, now: i64) -> Result<TrendRequest, AppError> {
        parse(params::parse_query::<TrendQuery>(q)?, now)
    }

    fn code_and_message(q: &str) -> String {
        match parse_str(q, 1_700_000_000) {
            Ok(r) => format!("ok {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_input_names_the_parameter() {
        for (q, param) in [
            ("", "`metric`"),
            ("metric=nope", "`metric`"),
            ("metric=received&bucket=week", "`bucket`"),
            ("metric=received&from=10&to=5", "`from`"),
            ("metric=received&from=yesterday", "`from`"),
            ("metric=received&to=2026-13-01T00:00:00Z", "`to`"),
            ("metric=received&bucket=minute&from=0&to=700000", "`bucket`"),
            ("metric=received&bucket=hour&from=0&to=8000000", "`bucket`"),
            ("metric=received&bucket=day&from=0&to=40000000", "`bucket`"),
            ("metric=received&window=5m", "`window`"),
            ("metric=received&metric=errors", "`metric`"),
            ("metric=received&source=total", "`source`"),
        ] {
            let m = code_and_message(q);
            assert!(m.contains(param), "{q}: {m}");
        }
    }

    #[test]
    fn ranges_widen_to_whole_buckets_and_default_sensibly() {
        let r = parse_str("metric=lag_p95&bucket=hour&from=3601&to=7201", 0).expect("ok");
        assert_eq!((r.from, r.to), (3_600, 10_800));
        let r = parse_str("metric=received&bucket=day", 100 * 86_400 + 5).expect("ok");
        assert_eq!((r.from, r.to), (70 * 86_400, 101 * 86_400));
        let r = parse_str(
            "metric=received&bucket=day&from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&source=a,b&source=c",
            0,
        )
        .expect("ok");
        assert_eq!(r.sources, vec!["a", "b", "c"]);
        assert_eq!((r.to - r.from) / 86_400, 365);
    }
}
