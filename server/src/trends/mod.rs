//! Trends: per-bucket series of one metric over up to 12 months, for charts.
//!
//! Where each bucket comes from (see docs/data-model.md, "Trends"):
//!
//! - **the live edge** — buckets starting at or after
//!   [`complete_minutes_from`](crate::live::series::complete_minutes_from)
//!   (about the last 24 h) are summed from the live aggregates' 1-minute
//!   buckets: the very numbers `/api/kpis` reports;
//! - **history** — older buckets come from the rollup tables
//!   (`monitor.rollup_minute|hour|day`, kept by [`rollup`]) at their state
//!   `rollup_state.seq`, plus the contributions of the few events above that
//!   seq not yet flushed (read from the outbox in the same snapshot), so an
//!   old row inserted a second ago is already counted;
//! - **old minutes** — minute buckets older than the minute rollups' retention
//!   are computed from the base tables (through the same `monitor.*_contrib`
//!   functions), exact as well.
//!
//! A bucket straddling the live edge takes its older minutes from the minute
//! rollups and the rest from memory.

pub mod query;
pub mod rollup;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::live::contribution::{Contribution, Counter, Metric};
use crate::live::histogram::{self, LagHistogram};
use crate::live::series::Slot;

/// Trend bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// 1 minute; ranges up to 7 days.
    Minute,
    /// 1 hour; ranges up to 90 days.
    Hour,
    /// 1 day (UTC); ranges up to 400 days.
    Day,
}

impl Bucket {
    /// Every bucket width.
    pub const ALL: [Bucket; 3] = [Bucket::Minute, Bucket::Hour, Bucket::Day];

    /// Parses `minute`, `hour` or `day`.
    pub fn parse(s: &str) -> Option<Bucket> {
        Bucket::ALL.into_iter().find(|b| b.name() == s)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// Width in seconds.
    pub fn secs(self) -> i64 {
        match self {
            Bucket::Minute => 60,
            Bucket::Hour => 3_600,
            Bucket::Day => 86_400,
        }
    }

    /// Longest range (seconds) a request may ask for with this width.
    pub fn max_range(self) -> i64 {
        match self {
            Bucket::Minute => 7 * 86_400,
            Bucket::Hour => 90 * 86_400,
            Bucket::Day => 400 * 86_400,
        }
    }

    /// Range used when `from` is not given.
    pub fn default_range(self) -> i64 {
        match self {
            Bucket::Minute => 3_600,
            Bucket::Hour => 86_400,
            Bucket::Day => 30 * 86_400,
        }
    }

    /// The rollup table of this width.
    pub fn table(self) -> &'static str {
        match self {
            Bucket::Minute => "monitor.rollup_minute",
            Bucket::Hour => "monitor.rollup_hour",
            Bucket::Day => "monitor.rollup_day",
        }
    }
}

/// A metric a trend can show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendMetric {
    /// API name (`received`, `lag_p95`, …).
    pub name: &'static str,
    /// The counter it sums, or None for a percentile of a histogram metric.
    pub counter: Option<Counter>,
    /// The histogram metric (`lag`, `run_duration`) when `counter` is None.
    pub hist: &'static str,
    /// Quantile (0..1) for histogram metrics.
    pub quantile: f64,
}

impl TrendMetric {
    /// Every trend metric.
    pub const ALL: [TrendMetric; 15] = [
        TrendMetric::count("received", Counter::Received),
        TrendMetric::count("normalized", Counter::Normalized),
        TrendMetric::count("rejected", Counter::Rejected),
        TrendMetric::count("errors", Counter::Errors),
        TrendMetric::count("warnings", Counter::Warnings),
        TrendMetric::count("runs_started", Counter::RunsStarted),
        TrendMetric::count("runs_succeeded", Counter::RunsSucceeded),
        TrendMetric::count("runs_failed", Counter::RunsFailed),
        TrendMetric::count("runs_partial", Counter::RunsPartial),
        TrendMetric::percentile("lag_p50", HIST_LAG, 0.50),
        TrendMetric::percentile("lag_p95", HIST_LAG, 0.95),
        TrendMetric::percentile("lag_p99", HIST_LAG, 0.99),
        TrendMetric::percentile("run_duration_p50", HIST_RUN_DURATION, 0.50),
        TrendMetric::percentile("run_duration_p95", HIST_RUN_DURATION, 0.95),
        TrendMetric::percentile("run_duration_p99", HIST_RUN_DURATION, 0.99),
    ];

    const fn count(name: &'static str, counter: Counter) -> TrendMetric {
        TrendMetric {
            name,
            counter: Some(counter),
            hist: "",
            quantile: 0.0,
        }
    }

    const fn percentile(name: &'static str, hist: &'static str, quantile: f64) -> TrendMetric {
        TrendMetric {
            name,
            counter: None,
            hist,
            quantile,
        }
    }

    /// Parses an API metric name.
    pub fn parse(s: &str) -> Option<TrendMetric> {
        TrendMetric::ALL.into_iter().find(|m| m.name == s)
    }

    /// Names, comma-separated (for error messages).
    pub fn available() -> String {
        TrendMetric::ALL.map(|m| m.name).join(", ")
    }

    /// The trigger's metric name stored in the rollups (`lag` or
    /// `run_duration` for percentiles).
    pub fn stored(self) -> &'static str {
        match self.counter {
            Some(c) => counter_name(c),
            None => self.hist,
        }
    }

    /// True for percentiles of a histogram metric.
    pub fn is_hist(self) -> bool {
        self.counter.is_none()
    }
}

/// The stored name of the processing lag histogram metric.
pub const HIST_LAG: &str = "lag";
/// The stored name of the run duration histogram metric.
pub const HIST_RUN_DURATION: &str = "run_duration";

/// True for a stored metric kept as one histogram row per source and bucket.
pub fn is_hist_metric(stored: &str) -> bool {
    stored == HIST_LAG || stored == HIST_RUN_DURATION
}

/// The trigger's name of a counter.
pub fn counter_name(c: Counter) -> &'static str {
    match c {
        Counter::Received => "received",
        Counter::Normalized => "normalized",
        Counter::Rejected => "rejected",
        Counter::Errors => "errors",
        Counter::Warnings => "warnings",
        Counter::RunsStarted => "runs_started",
        Counter::RunsSucceeded => "runs_succeeded",
        Counter::RunsFailed => "runs_failed",
        Counter::RunsPartial => "runs_partial",
    }
}

/// What a contribution adds to the rollups: `(metric, second, val)` where
/// `val` is the lag bin for `lag` and 0 otherwise; None for gauges.
pub fn rollup_key(c: &Contribution) -> Option<(&'static str, i64, i64)> {
    let sec = c.sec?;
    match c.metric {
        Metric::Counter(k) => Some((counter_name(k), sec, 0)),
        Metric::Lag => Some((HIST_LAG, sec, lag_bin(c.val))),
        Metric::RunDuration => Some((HIST_RUN_DURATION, sec, lag_bin(c.val))),
        _ => None,
    }
}

/// The histogram bin of a lag value in ms (negative and missing count as 0).
pub fn lag_bin(val: Option<i64>) -> i64 {
    i64::from(histogram::bin(val.unwrap_or(0).max(0) as u64))
}

/// First minute-rollup bucket trends may read at `now_sec`: the rollup writer
/// keeps minute rows from one day before it (margin for clocks and the daily
/// prune), for `days` days.
pub fn minute_rollups_from(now_sec: i64, days: i64) -> i64 {
    now_sec.div_euclid(86_400) * 86_400 - days * 86_400
}

/// One bucket of one series while it is being summed. Lag samples are
/// collected as raw (bin, count) pairs and sorted once in [`Grid::finish`]
/// (inserting into a sorted histogram pair by pair is quadratic in bins).
#[derive(Debug, Clone, Default)]
struct Cell {
    n: i64,
    lag: Vec<(u32, i64)>,
}

/// The buckets of a trend answer, filled from any mix of sources (live
/// minutes, rollup rows, outbox events, base tables).
#[derive(Debug)]
pub struct Grid {
    metric: TrendMetric,
    from: i64,
    step: i64,
    visible: HashSet<i64>,
    /// Source id -> index into `series`.
    asked: HashMap<i64, usize>,
    total: Vec<Cell>,
    series: Vec<Vec<Cell>>,
}

impl Grid {
    /// Buckets `[from, to)` of `step` seconds (both aligned); `visible`
    /// sources count in the total; `asked` get their own series, in order.
    pub fn new(
        metric: TrendMetric,
        from: i64,
        to: i64,
        step: i64,
        visible: HashSet<i64>,
        asked: &[i64],
    ) -> Grid {
        let len = ((to - from) / step).max(0) as usize;
        Grid {
            metric,
            from,
            step,
            visible,
            asked: asked.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            total: vec![Cell::default(); len],
            series: vec![vec![Cell::default(); len]; asked.len()],
        }
    }

    /// The cells a value of `source` at `sec` goes to: the total's (when
    /// `total` and the source is visible) and the source's own series (when
    /// `own` and it was asked for).
    fn cells(
        &mut self,
        source: Option<i64>,
        sec: i64,
        total: bool,
        own: bool,
    ) -> impl Iterator<Item = &mut Cell> {
        let idx = (sec - self.from).div_euclid(self.step);
        let idx = usize::try_from(idx).ok().filter(|i| *i < self.total.len());
        let counted = total && source.is_none_or(|s| self.visible.contains(&s));
        let mine = source
            .filter(|_| own)
            .and_then(|s| self.asked.get(&s).copied());
        let (totals, series) = (&mut self.total, &mut self.series);
        let t = idx.filter(|_| counted).and_then(|i| totals.get_mut(i));
        let s = match (idx, mine) {
            (Some(i), Some(o)) => series.get_mut(o).and_then(|v| v.get_mut(i)),
            _ => None,
        };
        t.into_iter().chain(s)
    }

    fn put(&mut self, source: Option<i64>, sec: i64, val: i64, n: i64, total: bool, own: bool) {
        let lag = self.metric.is_hist();
        let bin = u32::try_from(val.max(0)).unwrap_or(u32::MAX);
        for cell in self.cells(source, sec, total, own) {
            if lag {
                cell.lag.push((bin, n));
            } else {
                cell.n += n;
            }
        }
    }

    /// Adds a lag histogram of `source` (flattened `[bin, count, …]`) to the
    /// bucket holding `sec`, in the total and in the source's series.
    pub fn add_hist(&mut self, source: i64, sec: i64, flat: &[i64]) {
        let pairs = flat
            .chunks_exact(2)
            .map(|p| (u32::try_from(p[0].max(0)).unwrap_or(u32::MAX), p[1]));
        let mut cells: Vec<&mut Cell> = self.cells(Some(source), sec, true, true).collect();
        match cells.pop() {
            None => {}
            Some(last) if cells.is_empty() => last.lag.extend(pairs),
            Some(last) => {
                let pairs: Vec<(u32, i64)> = pairs.collect();
                for c in cells {
                    c.lag.extend_from_slice(&pairs);
                }
                last.lag.extend_from_slice(&pairs);
            }
        }
    }

    /// Adds `n` of `source` to the bucket holding `sec`, in the total and in
    /// the source's series (for lag metrics: `n` samples in bin `val`).
    pub fn add(&mut self, source: i64, sec: i64, val: i64, n: i64) {
        self.put(Some(source), sec, val, n, true, true);
    }

    /// Adds `n` to the total only; the caller already summed visible sources.
    pub fn add_total(&mut self, sec: i64, val: i64, n: i64) {
        self.put(None, sec, val, n, true, false);
    }

    /// Adds `n` to `source`'s own series only (not to the total).
    pub fn add_own(&mut self, source: i64, sec: i64, val: i64, n: i64) {
        self.put(Some(source), sec, val, n, false, true);
    }

    /// Ids of the sources the total counts.
    pub fn visible_ids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.visible.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Ids of the sources with their own series.
    pub fn asked_ids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.asked.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Adds a live 1-minute bucket.
    pub fn add_slot(&mut self, source: i64, minute: i64, slot: &Slot) {
        let metric = self.metric;
        for cell in self.cells(Some(source), minute, true, true) {
            match metric.counter {
                Some(k) => cell.n += slot.counts[k as usize],
                None if metric.hist == HIST_RUN_DURATION => {
                    cell.lag.extend_from_slice(slot.run_duration.bins())
                }
                None => cell.lag.extend_from_slice(slot.lag.bins()),
            }
        }
    }

    /// The series as JSON columns: total first, then the asked sources by name.
    pub fn finish(self, names: &[String]) -> (Vec<i64>, Vec<(String, Vec<serde_json::Value>)>) {
        let t = (0..self.total.len() as i64)
            .map(|i| self.from + i * self.step)
            .collect();
        let metric = self.metric;
        let column = |cells: Vec<Cell>| -> Vec<serde_json::Value> {
            cells
                .into_iter()
                .map(|c| match metric.counter {
                    Some(_) => c.n.into(),
                    None => LagHistogram::from_pairs(c.lag)
                        .percentile(metric.quantile)
                        .into(),
                })
                .collect()
        };
        let mut out = vec![("total".to_string(), column(self.total))];
        for (name, cells) in names.iter().zip(self.series) {
            out.push((name.clone(), column(cells)));
        }
        (t, out)
    }
}

/// The JSON answer of `GET /api/trends`.
#[derive(Debug, Serialize)]
pub struct Trend {
    /// The metric.
    pub metric: &'static str,
    /// The bucket width.
    pub bucket: Bucket,
    /// Start of the first bucket (epoch seconds, inclusive).
    pub from: i64,
    /// End of the last bucket (epoch seconds, exclusive).
    pub to: i64,
    /// Bucket width in seconds.
    pub step: i64,
    /// Live delivered watermark when the answer was computed.
    pub seq: i64,
    /// Rollup state the history part was read at (events above it came from
    /// the outbox); null while the rollups are first built (live-edge-only
    /// ranges are still answered).
    pub rollup_seq: Option<i64>,
    /// Bucket starts, epoch seconds.
    pub t: Vec<i64>,
    /// One array per series (`total`, then each asked source), aligned with `t`:
    /// counts (0 for empty buckets) or lag percentiles in ms (null without samples).
    pub series: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn totals_count_only_visible_sources_and_asked_sources_get_series() {
        let m = TrendMetric::parse("received").expect("metric");
        let mut g = Grid::new(m, 0, 180, 60, HashSet::from([1, 2]), &[2]);
        g.add(1, 5, 0, 3); // visible, not asked
        g.add(2, 65, 0, 4); // visible and asked
        g.add(3, 125, 0, 100); // invisible: nowhere
        g.add(1, 180, 0, 9); // out of range
        g.add(1, -1, 0, 9); // out of range
        let (t, series) = g.finish(&["crm".into()]);
        assert_eq!(t, vec![0, 60, 120]);
        assert_eq!(
            series[0],
            ("total".into(), vec![json!(3), json!(4), json!(0)])
        );
        assert_eq!(
            series[1],
            ("crm".into(), vec![json!(0), json!(4), json!(0)])
        );
    }

    #[test]
    fn lag_series_are_percentiles_and_null_when_empty() {
        let m = TrendMetric::parse("lag_p95").expect("metric");
        let mut g = Grid::new(m, 0, 120, 60, HashSet::from([1]), &[]);
        for v in 1..=100 {
            g.add(1, 10, lag_bin(Some(v)), 1);
        }
        let (_, series) = g.finish(&[]);
        assert_eq!(series[0].1, vec![json!(95.0), serde_json::Value::Null]);
    }

    #[test]
    fn rollup_keys_bin_lag_and_skip_gauges() {
        let c = |metric, sec, val| Contribution {
            source_id: 1,
            metric,
            sec,
            val,
            n: 1,
            label: None,
        };
        assert_eq!(
            rollup_key(&c(Metric::Counter(Counter::Errors), Some(7), None)),
            Some(("errors", 7, 0))
        );
        assert_eq!(
            rollup_key(&c(Metric::Lag, Some(7), Some(5_000))),
            Some(("lag", 7, i64::from(histogram::bin(5_000))))
        );
        assert_eq!(rollup_key(&c(Metric::Backlog, None, None)), None);
        assert_eq!(minute_rollups_from(86_400 * 10 + 5, 3), 86_400 * 7);
    }
}
