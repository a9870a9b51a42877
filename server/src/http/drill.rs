//! Drill-downs: `GET /api/runs/{id}` (the run with its counts, an error
//! summary by code and a timeline) and `GET /api/records/{id}` (the raw
//! payload exactly as stored, the meeting normalized from it and the
//! record's errors, together, so a client can show them side by side).
//!
//! Both take no query parameters. Unknown ids, and ids of sources outside
//! the caller's scope, answer 404; ids that are not positive integers 400.
//! The payload is shown to operators only; for viewers `payload` and
//! `payload_text` are null and `payload_redacted` is true.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::auth::Principal;
use crate::db::keyset::Order;
use crate::db::queries::{self, Filters, Kind, PageSpec};
use crate::db::rows::{iso, raw_json, ErrorItem, RecordItem, RunItem};
use crate::error::AppError;
use crate::http::lists::resolve;
use crate::http::params::{self, ApiQuery, NoParams};
use crate::state::AppState;

/// Most error rows listed with a record (a record rarely has more than a few).
const RECORD_ERRORS_MAX: i64 = 1_000;
/// Most codes in a run's error summary.
const SUMMARY_MAX: i64 = 100;
/// Aim for at most this many buckets on a run's error timeline.
const TARGET_BUCKETS: i64 = 60;
/// Bucket sizes a timeline may use, in seconds.
const BUCKET_SIZES: [i64; 12] = [
    1, 5, 10, 30, 60, 300, 900, 3_600, 21_600, 86_400, 604_800, 2_592_000,
];

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<i64, AppError> {
    match path {
        Ok(Path(s)) => params::id("id", &s),
        Err(e) => Err(AppError::invalid("id", e.body_text())),
    }
}

/// Errors of one code in a run.
#[derive(Debug, Serialize)]
pub struct CodeSummary {
    /// Code.
    pub code: String,
    /// error | warning.
    pub severity: String,
    /// Rows.
    pub count: i64,
    /// First occurrence.
    pub first_at: String,
    /// Last occurrence.
    pub last_at: String,
}

/// Errors and warnings over a run's lifetime, columnar for charts.
#[derive(Debug, Serialize, PartialEq)]
pub struct ErrorSeries {
    /// Bucket width in seconds.
    pub bucket_secs: i64,
    /// Bucket starts, epoch seconds.
    pub t: Vec<i64>,
    /// Errors per bucket.
    pub errors: Vec<i64>,
    /// Warnings per bucket.
    pub warnings: Vec<i64>,
}

/// A run's timeline.
#[derive(Debug, Serialize)]
pub struct Timeline {
    /// Run start.
    pub started_at: String,
    /// First record received.
    pub first_record_at: Option<String>,
    /// Last record received.
    pub last_record_at: Option<String>,
    /// Run end (null while running).
    pub finished_at: Option<String>,
    /// Errors over time.
    pub errors: ErrorSeries,
}

/// `GET /api/runs/{id}`.
#[derive(Debug, Serialize)]
pub struct RunDetail {
    /// The run, as in the list.
    pub run: RunItem,
    /// Errors by code, most frequent first.
    pub error_summary: Vec<CodeSummary>,
    /// Timeline.
    pub timeline: Timeline,
}

/// The smallest bucket size from the list giving at most [`TARGET_BUCKETS`] over `span_secs`.
pub fn bucket_secs(span_secs: i64) -> i64 {
    BUCKET_SIZES
        .into_iter()
        .find(|b| (span_secs.max(1) + b - 1) / b <= TARGET_BUCKETS)
        .unwrap_or(BUCKET_SIZES[BUCKET_SIZES.len() - 1])
}

/// Dense series from `start` to `end` (epoch seconds) out of sparse
/// `(bucket start, errors, warnings)` rows aligned on `start`.
pub fn dense_series(start: i64, end: i64, bucket: i64, sparse: &[(i64, i64, i64)]) -> ErrorSeries {
    let first = sparse.first().map_or(start, |r| r.0.min(start));
    let last = sparse.last().map_or(end, |r| r.0.max(end));
    let n = ((last - first) / bucket + 1).clamp(1, 10 * TARGET_BUCKETS);
    let mut s = ErrorSeries {
        bucket_secs: bucket,
        t: (0..n).map(|i| first + i * bucket).collect(),
        errors: vec![0; n as usize],
        warnings: vec![0; n as usize],
    };
    for &(b, e, w) in sparse {
        let i = (b - first) / bucket;
        if (0..n).contains(&i) {
            s.errors[i as usize] += e;
            s.warnings[i as usize] += w;
        }
    }
    s
}

/// `GET /api/runs/{id}`.
pub async fn run(
    State(st): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<RunDetail>, AppError> {
    let id = path_id(path)?;
    let client = st.read_pool().get().await?;
    let filters = resolve(
        &client,
        &principal,
        None,
        Filters {
            runs: Some(vec![id]),
            ..Filters::default()
        },
    )
    .await?;
    let order =
        Order::parse("id", Kind::Runs.sorts(), Kind::Runs.id_expr()).map_err(AppError::Internal)?;
    let q = queries::page_query(&PageSpec {
        kind: Kind::Runs,
        filters: &filters,
        order,
        after: None,
        limit: 1,
        upto_id: None,
        include_payload: false,
    });
    let row = client
        .query_opt(&q.sql, &q.params())
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no run {id}")))?;
    let run = RunItem::from_row(&row)?;

    let summary = client
        .query(
            "select code, severity, count(*), min(occurred_at), max(occurred_at)
               from ingest.errors where run_id = $1
              group by code, severity order by count(*) desc, code, severity limit $2",
            &[&id, &SUMMARY_MAX],
        )
        .await?;
    let error_summary = summary
        .iter()
        .map(|r| {
            Ok(CodeSummary {
                code: r.try_get(0)?,
                severity: r.try_get(1)?,
                count: r.try_get(2)?,
                first_at: iso(&r.try_get(3)?),
                last_at: iso(&r.try_get(4)?),
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;

    let span = client
        .query_one(
            "select min(received_at), max(received_at),
                    (select max(occurred_at) from ingest.errors where run_id = $1)
               from ingest.raw_records where run_id = $1",
            &[&id],
        )
        .await?;
    let first_record: Option<DateTime<Utc>> = span.try_get(0)?;
    let last_record: Option<DateTime<Utc>> = span.try_get(1)?;
    let last_error: Option<DateTime<Utc>> = span.try_get(2)?;
    let start = run.started_at.timestamp();
    let end = run
        .finished_at
        .or(last_record.max(last_error))
        .unwrap_or_else(Utc::now)
        .timestamp()
        .max(start);
    let bucket = bucket_secs(end - start);
    let origin = run.started_at;
    let buckets = client
        .query(
            "select extract(epoch from date_bin(make_interval(secs => $2::float8), occurred_at, $3))::bigint as b,
                    count(*) filter (where severity = 'error'),
                    count(*) filter (where severity = 'warning')
               from ingest.errors where run_id = $1 group by b order by b",
            &[&id, &(bucket as f64), &origin],
        )
        .await?;
    let sparse: Vec<(i64, i64, i64)> = buckets
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let timeline = Timeline {
        started_at: iso(&run.started_at),
        first_record_at: first_record.as_ref().map(iso),
        last_record_at: last_record.as_ref().map(iso),
        finished_at: run.finished_at.as_ref().map(iso),
        errors: dense_series(start, end, bucket, &sparse),
    };
    Ok(Json(RunDetail {
        run,
        error_summary,
        timeline,
    }))
}

/// The meeting normalized from a record.
#[derive(Debug, Serialize)]
pub struct Meeting {
    /// Meeting id.
    pub id: i64,
    /// Title.
    pub title: Option<String>,
    /// Start.
    pub starts_at: Option<String>,
    /// End.
    pub ends_at: Option<String>,
    /// Organizer.
    pub organizer: Option<String>,
    /// Attendees.
    pub attendee_count: Option<i32>,
}

/// `GET /api/records/{id}`.
#[derive(Debug, Serialize)]
pub struct RecordDetail {
    /// The record, as in the list.
    pub record: RecordItem,
    /// The payload exactly as stored (jsonb), as JSON; null for viewers.
    pub payload: Option<Box<RawValue>>,
    /// The same payload as PostgreSQL prints it, for verbatim display; null for viewers.
    pub payload_text: Option<String>,
    /// True when the caller may not see payloads (viewer role).
    pub payload_redacted: bool,
    /// The meeting normalized from it, if any.
    pub meeting: Option<Meeting>,
    /// The record's error-log rows, oldest first.
    pub errors: Vec<ErrorItem>,
}

/// `GET /api/records/{id}`.
pub async fn record(
    State(st): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<RecordDetail>, AppError> {
    let id = path_id(path)?;
    let may_see_payload = principal.require_operator().is_ok();
    let client = st.read_pool().get().await?;
    let scope = resolve(&client, &principal, None, Filters::default())
        .await?
        .source_ids;
    let row = client
        .query_opt(
            "select r.id, r.run_id, s.name, r.external_id, r.status, r.received_at, r.processed_at,
                    case when $3 then r.payload::text end
               from ingest.raw_records r join ingest.sources s on s.id = r.source_id
              where r.id = $1 and ($2::bigint[] is null or r.source_id = any($2))",
            &[&id, &scope, &may_see_payload],
        )
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no record {id}")))?;
    let payload_text: Option<String> = row.try_get(7)?;
    let record = RecordItem {
        id: row.try_get(0)?,
        run_id: row.try_get(1)?,
        source: row.try_get(2)?,
        external_id: row.try_get(3)?,
        status: row.try_get(4)?,
        received_at: row.try_get(5)?,
        processed_at: row.try_get(6)?,
        payload: None,
    };
    let meeting = client
        .query_opt(
            "select id, title, starts_at, ends_at, organizer, attendee_count
               from ingest.meetings where raw_record_id = $1",
            &[&id],
        )
        .await?
        .map(|m| {
            Ok::<_, tokio_postgres::Error>(Meeting {
                id: m.try_get(0)?,
                title: m.try_get(1)?,
                starts_at: m.try_get::<_, Option<DateTime<Utc>>>(2)?.map(|t| iso(&t)),
                ends_at: m.try_get::<_, Option<DateTime<Utc>>>(3)?.map(|t| iso(&t)),
                organizer: m.try_get(4)?,
                attendee_count: m.try_get(5)?,
            })
        })
        .transpose()?;
    let errors = client
        .query(
            "select e.id, e.run_id, e.raw_record_id, s.name, e.occurred_at, e.severity, e.stage,
                    e.code, e.message, e.details::text
               from ingest.errors e join ingest.sources s on s.id = e.source_id
              where e.raw_record_id = $1 order by e.occurred_at, e.id limit $2",
            &[&id, &RECORD_ERRORS_MAX],
        )
        .await?
        .iter()
        .map(ErrorItem::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(RecordDetail {
        record,
        payload: raw_json(payload_text.clone()),
        payload_text,
        payload_redacted: !may_see_payload,
        meeting,
        errors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_near_sixty() {
        assert_eq!(bucket_secs(0), 1);
        assert_eq!(bucket_secs(60), 1);
        assert_eq!(bucket_secs(61), 5);
        assert_eq!(bucket_secs(3_600), 60);
        assert_eq!(bucket_secs(86_400), 3_600);
        assert_eq!(bucket_secs(i64::MAX / 2), 2_592_000);
    }

    #[test]
    fn series_are_dense_and_aligned() {
        let s = dense_series(100, 130, 10, &[(110, 2, 0), (130, 0, 1)]);
        assert_eq!(s.t, vec![100, 110, 120, 130]);
        assert_eq!(s.errors, vec![0, 2, 0, 0]);
        assert_eq!(s.warnings, vec![0, 0, 0, 1]);
        let early = dense_series(100, 110, 10, &[(90, 1, 0)]);
        assert_eq!(early.t, vec![90, 100, 110]);
    }
}
