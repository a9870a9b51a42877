//! The KPI snapshot: the figures of one window, in total and per source, in
//! the JSON shape served by `GET /api/kpis` and the WebSocket `kpis` topic.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::contribution::Counter;
use super::histogram::LagHistogram;
use super::series::Slot;

/// Percentiles in milliseconds (null when there was no sample): processing
/// lag, run duration.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LagFigures {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl LagFigures {
    /// p50, p95 and p99 of `h`.
    pub fn of(h: &LagHistogram) -> Self {
        LagFigures {
            p50: h.percentile(0.50),
            p95: h.percentile(0.95),
            p99: h.percentile(0.99),
        }
    }
}

/// One error code and how often it occurred in the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CodeCount {
    /// The error code.
    pub code: String,
    /// Errors and warnings with that code.
    pub count: i64,
}

/// The figures of one source, or of all sources, over one window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Figures {
    /// Raw records received.
    pub received: i64,
    /// Raw records normalized.
    pub normalized: i64,
    /// Raw records rejected.
    pub rejected: i64,
    /// Error-log rows of severity error.
    pub errors: i64,
    /// Error-log rows of severity warning.
    pub warnings: i64,
    /// Runs started.
    pub runs_started: i64,
    /// Runs finished as succeeded.
    pub runs_succeeded: i64,
    /// Runs finished as failed.
    pub runs_failed: i64,
    /// Runs finished as partial.
    pub runs_partial: i64,
    /// Runs running now.
    pub runs_running: i64,
    /// Pending raw records now.
    pub backlog: i64,
    /// Processing lag of the records processed in the window.
    pub lag_ms: LagFigures,
    /// Duration (`finished_at - started_at`) of the runs finished in the window.
    pub run_duration_ms: LagFigures,
    /// Newest `received_at` ever seen (not limited to the window).
    pub last_received_at: Option<String>,
    /// Most frequent error and warning codes in the window (top 5).
    pub top_codes: Vec<CodeCount>,
}

impl Figures {
    /// Figures from a summed slot and the gauges.
    pub fn from_slot(slot: &Slot, backlog: i64, runs_running: i64, last_ms: Option<i64>) -> Self {
        let c = |k: Counter| slot.counts[k as usize];
        let mut codes: Vec<CodeCount> = slot
            .codes
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(code, n)| CodeCount {
                code: code.clone(),
                count: *n,
            })
            .collect();
        codes.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
        codes.truncate(5);
        Figures {
            received: c(Counter::Received),
            normalized: c(Counter::Normalized),
            rejected: c(Counter::Rejected),
            errors: c(Counter::Errors),
            warnings: c(Counter::Warnings),
            runs_started: c(Counter::RunsStarted),
            runs_succeeded: c(Counter::RunsSucceeded),
            runs_failed: c(Counter::RunsFailed),
            runs_partial: c(Counter::RunsPartial),
            runs_running,
            backlog,
            lag_ms: LagFigures::of(&slot.lag),
            run_duration_ms: LagFigures::of(&slot.run_duration),
            last_received_at: last_ms.and_then(rfc3339_ms),
            top_codes: codes,
        }
    }
}

/// The figures of one window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowKpis {
    /// Window name (`1m`, `5m`, `1h`, `24h`).
    pub window: &'static str,
    /// Start of the interval (inclusive), RFC 3339 UTC.
    pub from: String,
    /// End of the interval (exclusive), RFC 3339 UTC.
    pub to: String,
    /// Every event with a seq up to this one is included.
    pub seq: i64,
    /// All sources together.
    pub total: Figures,
    /// Per source, by source name.
    pub sources: BTreeMap<String, Figures>,
}

/// Epoch seconds as RFC 3339 UTC.
pub fn rfc3339(sec: i64) -> String {
    DateTime::<Utc>::from_timestamp(sec, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}
