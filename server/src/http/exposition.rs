//! The ingestion figures as Prometheus metrics, appended to `/metrics`: what
//! the wallboard shows, per source and in total, for Grafana and Alertmanager.
//!
//! Every family is a gauge except the quantiles (summaries of quantiles only,
//! computed by the server). The window figures are rolling sums that go down
//! as the window moves: use them as they are, not with `rate()`. Series of the
//! total carry no `source` label; per-source series carry `source="<name>"`.
//! Label cardinality is bounded: sources only (never record ids, codes or
//! free text), and at most `--metrics-max-sources` of them (by name; a log
//! line says when the cap cuts some off). The families and their labels are
//! listed in docs/operations.md ("Prometheus").

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::lists::sources::{freshness, FreshnessStatus};
use crate::live::snapshot::{Figures, LagFigures, WindowKpis};
use crate::live::SourceInfo;

/// What one scrape renders from.
pub struct Inputs<'a> {
    /// The figures of every window (`1m`, `5m`, `1h`, `24h`).
    pub windows: &'a BTreeMap<&'static str, WindowKpis>,
    /// Every known source (for health and the expected interval).
    pub sources: &'a [SourceInfo],
    /// The active alerts, as served by `/api/alerts` (JSON objects).
    pub alerts: &'a [Value],
    /// At most this many sources get their own series.
    pub max_sources: usize,
    /// The scrape time.
    pub now: DateTime<Utc>,
}

/// Set once the cap has been logged, so a large fleet logs it once.
static CAP_LOGGED: AtomicBool = AtomicBool::new(false);

/// One gauge family being written: `# HELP`/`# TYPE` once, then samples.
struct Family<'o> {
    out: &'o mut String,
    name: &'static str,
}

impl<'o> Family<'o> {
    fn new(out: &'o mut String, name: &'static str, help: &str) -> Self {
        Self::typed(out, name, help, "gauge")
    }

    fn typed(out: &'o mut String, name: &'static str, help: &str, kind: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The per-source and total figures of one window, with the labels that
/// name them (`source` absent for the total).
fn each<'k>(k: &'k WindowKpis, names: &'k [&'k str]) -> Vec<(Option<&'k str>, &'k Figures)> {
    let mut all = vec![(None, &k.total)];
    all.extend(
        names
            .iter()
            .filter_map(|n| k.sources.get(*n).map(|f| (Some(*n), f))),
    );
    all
}

fn with_source<'a>(
    source: Option<&'a str>,
    rest: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut l: Vec<(&str, &str)> = rest.to_vec();
    if let Some(s) = source {
        l.insert(0, ("source", s));
    }
    l
}

/// Renders every ingestion family.
pub fn render(input: &Inputs<'_>) -> String {
    let mut names: Vec<&str> = input.sources.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    if names.len() > input.max_sources {
        if !CAP_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                sources = names.len(),
                cap = input.max_sources,
                "more sources than --metrics-max-sources: only the first {} (by name) get per-source metrics; the totals still count every source",
                input.max_sources
            );
        }
        names.truncate(input.max_sources);
    }
    let mut out = String::new();
    let w = input.windows;

    let mut f = Family::new(&mut out, "ingestwatch_window_records", "Records in the window by outcome: received (by received_at), normalized and rejected (by processed_at).");
    for (window, k) in w {
        for (src, fig) in each(k, &names) {
            for (status, v) in [
                ("received", fig.received),
                ("normalized", fig.normalized),
                ("rejected", fig.rejected),
            ] {
                f.sample(
                    &with_source(src, &[("window", window), ("status", status)]),
                    v as f64,
                );
            }
        }
    }
    let mut f = Family::new(
        &mut out,
        "ingestwatch_window_errors",
        "Logged errors in the window by level.",
    );
    for (window, k) in w {
        for (src, fig) in each(k, &names) {
            for (level, v) in [("error", fig.errors), ("warning", fig.warnings)] {
                f.sample(
                    &with_source(src, &[("window", window), ("level", level)]),
                    v as f64,
                );
            }
        }
    }
    let mut f = Family::new(&mut out, "ingestwatch_window_runs", "Runs in the window: started (by started_at), and succeeded, failed, partial (by finished_at).");
    for (window, k) in w {
        for (src, fig) in each(k, &names) {
            for (outcome, v) in [
                ("started", fig.runs_started),
                ("succeeded", fig.runs_succeeded),
                ("failed", fig.runs_failed),
                ("partial", fig.runs_partial),
            ] {
                f.sample(
                    &with_source(src, &[("window", window), ("outcome", outcome)]),
                    v as f64,
                );
            }
        }
    }
    quantiles(
        &mut out,
        w,
        &names,
        "ingestwatch_lag_seconds",
        "Processing lag (received to processed) quantiles in the window, seconds.",
        |f| &f.lag_ms,
    );
    quantiles(
        &mut out,
        w,
        &names,
        "ingestwatch_run_duration_seconds",
        "Run duration quantiles of the runs finished in the window, seconds.",
        |f| &f.run_duration_ms,
    );

    // Gauges of now: the same in every window, taken from the shortest.
    if let Some(k) = w.get("1m").or_else(|| w.values().next()) {
        let mut f = Family::new(
            &mut out,
            "ingestwatch_backlog_records",
            "Records pending now.",
        );
        for (src, fig) in each(k, &names) {
            f.sample(&with_source(src, &[]), fig.backlog as f64);
        }
        let mut f = Family::new(&mut out, "ingestwatch_runs_running", "Runs running now.");
        for (src, fig) in each(k, &names) {
            f.sample(&with_source(src, &[]), fig.runs_running as f64);
        }
    }
    health(&mut out, input, &names);
    alerts(&mut out, input.alerts);
    out
}

fn quantiles(
    out: &mut String,
    w: &BTreeMap<&'static str, WindowKpis>,
    names: &[&str],
    name: &'static str,
    help: &str,
    pick: impl Fn(&Figures) -> &LagFigures,
) {
    // Quantiles computed by the server: a summary without `_sum`/`_count`.
    let mut f = Family::typed(out, name, help, "summary");
    for (window, k) in w {
        for (src, fig) in each(k, names) {
            let q = pick(fig);
            for (label, v) in [("0.5", q.p50), ("0.95", q.p95), ("0.99", q.p99)] {
                if let Some(ms) = v {
                    f.sample(
                        &with_source(src, &[("window", window), ("quantile", label)]),
                        ms / 1000.0,
                    );
                }
            }
        }
    }
}

/// Seconds since each source's newest record, and its health as a state set.
fn health(out: &mut String, input: &Inputs<'_>, names: &[&str]) {
    let last: BTreeMap<&str, Option<DateTime<Utc>>> = input
        .windows
        .get("24h")
        .or_else(|| input.windows.values().last())
        .map(|k| {
            k.sources
                .iter()
                .map(|(n, f)| {
                    let at = f
                        .last_received_at
                        .as_deref()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|d| d.with_timezone(&Utc));
                    (n.as_str(), at)
                })
                .collect()
        })
        .unwrap_or_default();
    let by_name: BTreeMap<&str, &SourceInfo> =
        input.sources.iter().map(|s| (s.name.as_str(), s)).collect();
    let verdicts: Vec<(&str, _)> = names
        .iter()
        .map(|n| {
            let expected = by_name.get(n).and_then(|s| s.expected_interval_secs);
            (
                *n,
                freshness(last.get(n).copied().flatten(), expected, input.now),
            )
        })
        .collect();
    let mut f = Family::new(
        out,
        "ingestwatch_source_last_record_age_seconds",
        "Seconds since the source's newest record (absent when it has none).",
    );
    for (n, v) in &verdicts {
        if let Some(age) = v.age_secs {
            f.sample(&[("source", n)], age);
        }
    }
    let mut f = Family::new(out, "ingestwatch_source_health", "Source freshness as a state set: 1 for the current state (healthy, late, stale, never), 0 for the others.");
    for (n, v) in &verdicts {
        for (state, s) in [
            ("healthy", FreshnessStatus::Healthy),
            ("late", FreshnessStatus::Late),
            ("stale", FreshnessStatus::Stale),
            ("never", FreshnessStatus::Never),
        ] {
            f.sample(
                &[("source", n), ("state", state)],
                f64::from(u8::from(v.status == s)),
            );
        }
    }
}

/// Active alerts, like Prometheus's own `ALERTS`: one series per pending or
/// firing alert, value 1.
fn alerts(out: &mut String, active: &[Value]) {
    let mut f = Family::new(out, "ingestwatch_alerts", "Active alerts (value 1) by rule, instance (source names, empty for all sources) and state, like Prometheus's ALERTS.");
    for a in active {
        let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
        let (rule, instance, state, severity) =
            (s("rule"), s("instance"), s("state"), s("severity"));
        f.sample(
            &[
                ("alertname", &rule),
                ("instance", &instance),
                ("alertstate", &state),
                ("severity", &severity),
            ],
            1.0,
        );
    }
}
