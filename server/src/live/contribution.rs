//! What one row change counts for: the `[source_id, metric, sec, val, n, label]`
//! tuples the capture trigger writes into each outbox event's `summary.d`
//! (and the warm-up queries return), parsed into typed values.

use serde_json::Value;

/// A counted metric (bucketed by time) or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Counter bucketed at `sec`; index into the slot's counter array.
    Counter(Counter),
    /// Processing lag sample (ms in `val`) bucketed at `sec`.
    Lag,
    /// Duration of a finished run (ms in `val`) bucketed at its `finished_at`.
    RunDuration,
    /// Pending records now (gauge).
    Backlog,
    /// Runs in status running now (gauge).
    RunsRunning,
    /// Epoch ms of a record's `received_at` (for "last record" times).
    LastReceived,
}

/// Counters kept per time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Raw records by `received_at`.
    Received = 0,
    /// Raw records normalized, by `processed_at`.
    Normalized,
    /// Raw records rejected, by `processed_at`.
    Rejected,
    /// Error rows of severity error, by `occurred_at`.
    Errors,
    /// Error rows of severity warning, by `occurred_at`.
    Warnings,
    /// Runs by `started_at`.
    RunsStarted,
    /// Runs succeeded, by `finished_at`.
    RunsSucceeded,
    /// Runs failed, by `finished_at`.
    RunsFailed,
    /// Runs partial, by `finished_at`.
    RunsPartial,
}

/// Number of [`Counter`]s.
pub const COUNTERS: usize = 9;

impl Metric {
    /// Parses the trigger's metric name; unknown names are ignored by callers.
    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "received" => Metric::Counter(Counter::Received),
            "normalized" => Metric::Counter(Counter::Normalized),
            "rejected" => Metric::Counter(Counter::Rejected),
            "errors" => Metric::Counter(Counter::Errors),
            "warnings" => Metric::Counter(Counter::Warnings),
            "runs_started" => Metric::Counter(Counter::RunsStarted),
            "runs_succeeded" => Metric::Counter(Counter::RunsSucceeded),
            "runs_failed" => Metric::Counter(Counter::RunsFailed),
            "runs_partial" => Metric::Counter(Counter::RunsPartial),
            "lag" => Metric::Lag,
            "run_duration" => Metric::RunDuration,
            "backlog" => Metric::Backlog,
            "runs_running" => Metric::RunsRunning,
            "last_received" => Metric::LastReceived,
            _ => return None,
        })
    }
}

/// One net contribution: `n` (may be negative) of `metric` for a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    /// `ingest.sources.id`.
    pub source_id: i64,
    /// What is counted.
    pub metric: Metric,
    /// Epoch second of the bucket timestamp (counters and lag).
    pub sec: Option<i64>,
    /// Lag in ms, or epoch ms for `LastReceived`.
    pub val: Option<i64>,
    /// Net count.
    pub n: i64,
    /// Error code for errors and warnings.
    pub label: Option<String>,
}

impl Contribution {
    /// Parses one `[source_id, metric, sec, val, n, label]` tuple.
    pub fn from_json(v: &Value) -> Option<Contribution> {
        let a = v.as_array()?;
        Some(Contribution {
            source_id: a.first()?.as_i64()?,
            metric: Metric::parse(a.get(1)?.as_str()?)?,
            sec: a.get(2).and_then(Value::as_i64),
            val: a.get(3).and_then(Value::as_i64),
            n: a.get(4)?.as_i64()?,
            label: a.get(5).and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Parses a whole `summary.d` array, skipping tuples it does not understand.
    pub fn parse_all(d: Option<&Value>) -> Vec<Contribution> {
        d.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Contribution::from_json).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_trigger_tuples() {
        let d = json!([
            [1, "received", 100, null, 5, null],
            [2, "errors", 7, null, -1, "E_X"],
            [3, "unknown", 1, null, 1, null],
            "junk"
        ]);
        let all = Contribution::parse_all(Some(&d));
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].metric, Metric::Counter(Counter::Received));
        assert_eq!(all[1].label.as_deref(), Some("E_X"));
        assert_eq!(all[1].n, -1);
    }
}
