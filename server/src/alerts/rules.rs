//! The rules file: TOML parsed with serde into raw structs (every value
//! `Spanned`, so a problem names its line), then validated into [`RuleSet`].
//! A bad file is refused at start-up with `line N: <problem>`.
//!
//! Format (see `alerts.example.toml` at the repository root for every key):
//!
//! ```toml
//! [settings]
//! interval = "1s"            # evaluation tick
//!
//! [[receivers]]
//! name = "ops"
//! url = "https://hooks.example.com/ingestwatch"
//! secret_env = "OPS_WEBHOOK_SECRET"
//!
//! [[rules]]
//! name = "reject-rate"
//! condition = "reject_rate"
//! window = "5m"
//! above = 0.2
//! sources = "each"
//! for = "2m"
//! severity = "warning"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The embedded default rules used by `ingestwatch demo` when no file is given.
pub const DEFAULT_RULES: &str = include_str!("default_rules.toml");

/// Longest window a rate / lag condition may use (the live aggregates keep 24 h).
const MAX_WINDOW_SECS: i64 = 86_400;
/// Windows up to this use 1-second buckets; longer ones must be whole minutes.
const SECOND_BUCKETS_UPTO: i64 = 300;

/// A problem in the rules file, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    /// Line of the offending value (None when the parser gave no position).
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RulesError {}

/// Everything the rules file configures.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Evaluation and coordination settings.
    pub settings: Settings,
    /// Webhook receivers.
    pub receivers: Vec<Receiver>,
    /// Alert rules, in file order.
    pub rules: Vec<Rule>,
}

/// `[settings]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Evaluation tick.
    pub interval: Duration,
    /// How often a follower tries to take leadership.
    pub leader_retry: Duration,
    /// How often every replica polls the alert tables (besides NOTIFY).
    pub sync_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: Duration::from_secs(1),
            leader_retry: Duration::from_secs(1),
            sync_interval: Duration::from_secs(1),
        }
    }
}

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ingestwatch's JSON document (see README).
    Json,
    /// A Slack incoming-webhook message (`text` + `attachments`).
    Slack,
}

/// Alert state names, as stored and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateName {
    /// Not breaching (never fired, or a pending alert that cleared).
    Inactive,
    /// Breaching, waiting for `for`.
    Pending,
    /// Breaching for at least `for`.
    Firing,
    /// Was firing, cleared.
    Resolved,
}

impl StateName {
    /// Every state.
    pub const ALL: [StateName; 4] = [
        StateName::Inactive,
        StateName::Pending,
        StateName::Firing,
        StateName::Resolved,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Inactive => "inactive",
            StateName::Pending => "pending",
            StateName::Firing => "firing",
            StateName::Resolved => "resolved",
        }
    }

    /// Parses a state name.
    pub fn parse(s: &str) -> Option<StateName> {
        StateName::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Pending or firing.
    pub fn is_active(self) -> bool {
        matches!(self, StateName::Pending | StateName::Firing)
    }
}

/// One `[[receivers]]` entry.
#[derive(Clone)]
pub struct Receiver {
    /// Unique name (rules refer to it; deliveries are recorded under it).
    pub name: String,
    /// http(s) URL the transitions are POSTed to.
    pub url: String,
    /// HMAC-SHA256 key; without one no signature header is sent.
    pub secret: Option<String>,
    /// Body format.
    pub format: Format,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Attempts before giving up on one transition.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles after each failure.
    pub backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// Only these severities (None: all).
    pub severities: Option<BTreeSet<String>>,
    /// Only transitions into these states (default firing and resolved).
    pub states: BTreeSet<StateName>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token (Slack); the secret is never shown.
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// Does this receiver want a transition into `to` of a rule of `severity`?
    pub fn wants(&self, to: StateName, severity: &str) -> bool {
        self.states.contains(&to)
            && self
                .severities
                .as_ref()
                .is_none_or(|s| s.contains(severity))
    }
}

/// How a value is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// Breaches when `value > threshold`.
    Above,
    /// Breaches when `value >= threshold` (counts: "N consecutive").
    AtLeast,
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Error rows (severity error) ÷ records received, over `window` seconds.
    ErrorRate {
        /// Window in seconds.
        window: i64,
        /// Threshold (fraction, e.g. 0.05).
        above: f64,
        /// Fewer records received than this: no data (not breaching).
        min_records: i64,
    },
    /// Rejected ÷ (normalized + rejected), over `window` seconds.
    RejectRate {
        /// Window in seconds.
        window: i64,
        /// Threshold (fraction).
        above: f64,
        /// Fewer records processed than this: no data.
        min_records: i64,
    },
    /// No record from a source for longer than its `expected_interval` × `factor` (or `max_age`).
    Stale {
        /// Multiple of the source's `expected_interval`.
        factor: f64,
        /// Fixed limit in seconds instead of the source's interval.
        max_age: Option<f64>,
    },
    /// The newest `count` finished runs of a source all failed.
    FailedRuns {
        /// Consecutive failed runs.
        count: i64,
    },
    /// Processing lag p95 (ms) over `window` seconds.
    LagP95 {
        /// Window in seconds.
        window: i64,
        /// Threshold in ms.
        above_ms: f64,
        /// Fewer records processed than this: no data.
        min_records: i64,
    },
    /// Pending records now.
    Backlog {
        /// Threshold in records.
        above: f64,
    },
    /// A run in status running for longer than this many seconds.
    LongRun {
        /// Limit in seconds.
        longer_than: f64,
    },
    /// `pg_notification_queue_usage()` (0..1).
    NotificationQueue {
        /// Threshold (fraction).
        above: f64,
    },
    /// The server's LISTEN connection has been down for longer than this many seconds.
    ListenerDisconnected {
        /// Limit in seconds.
        longer_than: f64,
    },
}

/// Whether a condition is about one source, sums sources, or about the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Figures that add up over sources (rates, lag, backlog).
    Aggregate,
    /// Only meaningful per source (stale, failed runs, long runs).
    PerSource,
    /// About the server or database, not sources.
    System,
}

impl Condition {
    /// The `condition = "…"` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::ErrorRate { .. } => "error_rate",
            Condition::RejectRate { .. } => "reject_rate",
            Condition::Stale { .. } => "stale",
            Condition::FailedRuns { .. } => "failed_runs",
            Condition::LagP95 { .. } => "lag_p95",
            Condition::Backlog { .. } => "backlog",
            Condition::LongRun { .. } => "long_run",
            Condition::NotificationQueue { .. } => "notification_queue",
            Condition::ListenerDisconnected { .. } => "listener_disconnected",
        }
    }

    /// Unit of the value and threshold.
    pub fn unit(&self) -> &'static str {
        match self {
            Condition::ErrorRate { .. }
            | Condition::RejectRate { .. }
            | Condition::NotificationQueue { .. } => "ratio",
            Condition::Stale { .. }
            | Condition::LongRun { .. }
            | Condition::ListenerDisconnected { .. } => "seconds",
            Condition::FailedRuns { .. } => "runs",
            Condition::LagP95 { .. } => "ms",
            Condition::Backlog { .. } => "records",
        }
    }

    /// How the value is compared.
    pub fn cmp(&self) -> Cmp {
        match self {
            Condition::FailedRuns { .. } => Cmp::AtLeast,
            _ => Cmp::Above,
        }
    }

    /// Aggregate, per source or system.
    pub fn scope(&self) -> Scope {
        match self {
            Condition::ErrorRate { .. }
            | Condition::RejectRate { .. }
            | Condition::LagP95 { .. }
            | Condition::Backlog { .. } => Scope::Aggregate,
            Condition::Stale { .. } | Condition::FailedRuns { .. } | Condition::LongRun { .. } => {
                Scope::PerSource
            }
            Condition::NotificationQueue { .. } | Condition::ListenerDisconnected { .. } => {
                Scope::System
            }
        }
    }

    /// Needs the once-per-tick database read (runs, notification queue).
    pub fn needs_db(&self) -> bool {
        matches!(
            self,
            Condition::FailedRuns { .. }
                | Condition::LongRun { .. }
                | Condition::NotificationQueue { .. }
        )
    }

    /// Reads the live aggregates (skipped while they are not ready).
    pub fn needs_live(&self) -> bool {
        !matches!(
            self,
            Condition::NotificationQueue { .. } | Condition::ListenerDisconnected { .. }
        )
    }

    /// The fixed threshold, when it does not depend on the source.
    pub fn threshold(&self) -> Option<f64> {
        Some(match self {
            Condition::ErrorRate { above, .. }
            | Condition::RejectRate { above, .. }
            | Condition::Backlog { above }
            | Condition::NotificationQueue { above } => *above,
            Condition::LagP95 { above_ms, .. } => *above_ms,
            Condition::FailedRuns { count } => *count as f64,
            Condition::LongRun { longer_than }
            | Condition::ListenerDisconnected { longer_than } => *longer_than,
            Condition::Stale { max_age, .. } => return *max_age,
        })
    }
}

/// Which sources a rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Not given: all sources together (aggregate conditions), every source
    /// separately (per-source conditions), nothing (system conditions).
    All,
    /// `"each"`: one alert instance per source.
    Each,
    /// `["a", "b"]` (or one name): those sources together, one instance
    /// (per-source conditions: one instance per listed source).
    Together(Vec<String>),
    /// `{ each = ["a", "b"] }`: one instance per listed source.
    EachOf(Vec<String>),
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// What it watches.
    pub condition: Condition,
    /// Which sources.
    pub selector: Selector,
    /// Breaching this long before pending becomes firing.
    pub for_: Duration,
    /// Cleared this long before firing becomes resolved.
    pub resolve_for: Duration,
    /// Resolve only below `threshold × (1 − hysteresis)`.
    pub hysteresis: f64,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Free-form labels, sent with every transition.
    pub labels: BTreeMap<String, String>,
    /// One line for humans.
    pub summary: Option<String>,
    /// Receivers to notify (None: every receiver).
    pub receivers: Option<Vec<String>>,
}

// ---- raw (as written) -------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    settings: Option<Spanned<RawSettings>>,
    #[serde(default)]
    receivers: Vec<Spanned<RawReceiver>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    interval: Option<Spanned<String>>,
    leader_retry: Option<Spanned<String>>,
    sync_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_attempts: Option<Spanned<i64>>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    severities: Option<Spanned<Vec<String>>>,
    states: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSources {
    One(String),
    List(Vec<String>),
    Each { each: Vec<String> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    condition: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
    above: Option<Spanned<NumOrText>>,
    min_records: Option<Spanned<i64>>,
    count: Option<Spanned<i64>>,
    factor: Option<Spanned<f64>>,
    max_age: Option<Spanned<String>>,
    longer_than: Option<Spanned<String>>,
    sources: Option<Spanned<RawSources>>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    resolve_for: Option<Spanned<String>>,
    hysteresis: Option<Spanned<f64>>,
    severity: Option<Spanned<String>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
    summary: Option<Spanned<String>>,
    receivers: Option<Spanned<Vec<String>>>,
}

// ---- parsing ----------------------------------------------------------------

/// Turns byte offsets into 1-based line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.0.len());
        self.0.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err<T>(&self, span: &Spanned<T>, message: impl Into<String>) -> RulesError {
        RulesError {
            line: Some(self.line(span.span().start)),
            message: message.into(),
        }
    }
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!("{s:?} is not a duration (e.g. \"500ms\", \"30s\", \"5m\", \"2h\")")
    })?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        "h" => n * 3_600e3,
        "d" => n * 86_400e3,
        "" => return Err(format!("{s:?} needs a unit: ms, s, m, h or d")),
        u => return Err(format!("unknown unit {u:?} in {s:?}; use ms, s, m, h or d")),
    };
    if !ms.is_finite() || !(0.0..=1e12).contains(&ms) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_micros((ms * 1e3).round() as u64))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

impl RuleSet {
    /// Reads and validates a rules file (errors name the file and the line).
    pub fn load(path: &Path) -> anyhow::Result<RuleSet> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("alerts rules {}: {e}", path.display()))?;
        RuleSet::parse(&text).map_err(|e| anyhow::anyhow!("alerts rules {}: {e}", path.display()))
    }

    /// The embedded demo defaults.
    pub fn defaults() -> RuleSet {
        // Checked by a unit test; an empty set is the safe fallback.
        RuleSet::parse(DEFAULT_RULES).unwrap_or_default()
    }

    /// Parses and validates rules text.
    pub fn parse(text: &str) -> Result<RuleSet, RulesError> {
        let lines = Lines(text);
        let raw: RawFile = toml::from_str(text).map_err(|e| RulesError {
            line: e.span().map(|s| lines.line(s.start)),
            message: e.message().trim().to_string(),
        })?;
        let settings = match raw.settings {
            None => Settings::default(),
            Some(s) => settings(&lines, s.into_inner())?,
        };
        let mut receivers: Vec<Receiver> = Vec::new();
        for r in raw.receivers {
            let rec = receiver(&lines, &r)?;
            if receivers.iter().any(|x| x.name == rec.name) {
                return Err(lines.err(&r, format!("receiver {:?} is defined twice", rec.name)));
            }
            receivers.push(rec);
        }
        let mut rules: Vec<Rule> = Vec::new();
        for r in raw.rules {
            let rule = rule(&lines, &r, &receivers)?;
            if rules.iter().any(|x| x.name == rule.name) {
                return Err(lines.err(&r, format!("rule {:?} is defined twice", rule.name)));
            }
            rules.push(rule);
        }
        Ok(RuleSet {
            settings,
            receivers,
            rules,
        })
    }

    /// No rules: nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A rule by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The receivers a transition of `rule` into `to` goes to.
    pub fn receivers_for(&self, rule: &Rule, to: StateName) -> Vec<&Receiver> {
        self.receivers
            .iter()
            .filter(|r| {
                rule.receivers
                    .as_ref()
                    .is_none_or(|names| names.contains(&r.name))
                    && r.wants(to, &rule.severity)
            })
            .collect()
    }
}

fn duration_of(
    lines: &Lines,
    v: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
    min: Duration,
) -> Result<Duration, RulesError> {
    let Some(v) = v else { return Ok(default) };
    let d = parse_duration(v.get_ref()).map_err(|m| lines.err(v, format!("`{key}`: {m}")))?;
    if d < min {
        return Err(lines.err(v, format!("`{key}` must be at least {min:?}")));
    }
    Ok(d)
}

fn settings(lines: &Lines, s: RawSettings) -> Result<Settings, RulesError> {
    let d = Settings::default();
    let min = Duration::from_millis(20);
    Ok(Settings {
        interval: duration_of(lines, &s.interval, "interval", d.interval, min)?,
        leader_retry: duration_of(lines, &s.leader_retry, "leader_retry", d.leader_retry, min)?,
        sync_interval: duration_of(
            lines,
            &s.sync_interval,
            "sync_interval",
            d.sync_interval,
            min,
        )?,
    })
}

fn receiver(lines: &Lines, span: &Spanned<RawReceiver>) -> Result<Receiver, RulesError> {
    let r = span.get_ref();
    let name = r
        .name
        .as_ref()
        .ok_or_else(|| lines.err(span, "a receiver needs a `name`"))?;
    if !valid_name(name.get_ref()) {
        return Err(lines.err(
            name,
            "receiver names are 1-64 letters, digits, '-', '_' or '.'",
        ));
    }
    let ctx = format!("receiver {:?}", name.get_ref());
    let url = r
        .url
        .as_ref()
        .ok_or_else(|| lines.err(span, format!("{ctx} needs a `url`")))?;
    match reqwest::Url::parse(url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => return Err(lines.err(url, format!("{ctx}: `url` must be an absolute http(s) URL"))),
    }
    let secret = match (&r.secret, &r.secret_env) {
        (Some(s), None) if s.get_ref().is_empty() => {
            return Err(lines.err(s, format!("{ctx}: `secret` is empty")))
        }
        (Some(s), None) => Some(s.get_ref().clone()),
        (None, Some(var)) => match std::env::var(var.get_ref()) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                return Err(lines.err(
                    var,
                    format!(
                        "{ctx}: environment variable {:?} (secret_env) is not set",
                        var.get_ref()
                    ),
                ))
            }
        },
        (Some(s), Some(_)) => {
            return Err(lines.err(s, format!("{ctx}: give `secret` or `secret_env`, not both")))
        }
        (None, None) => None,
    };
    let format = match r.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "json")) => Format::Json,
        Some((_, "slack")) => Format::Slack,
        Some((f, other)) => {
            return Err(lines.err(
                f,
                format!("{ctx}: unknown format {other:?}; use \"json\" or \"slack\""),
            ))
        }
    };
    let max_attempts = match &r.max_attempts {
        None => 8,
        Some(n) if (1..=100).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => return Err(lines.err(n, format!("{ctx}: `max_attempts` must be 1 to 100"))),
    };
    let severities = match &r.severities {
        None => None,
        Some(list) => {
            for s in list.get_ref() {
                if !SEVERITIES.contains(&s.as_str()) {
                    return Err(lines.err(
                        list,
                        format!("{ctx}: unknown severity {s:?}; use info, warning or critical"),
                    ));
                }
            }
            Some(list.get_ref().iter().cloned().collect())
        }
    };
    let states = match &r.states {
        None => BTreeSet::from([StateName::Firing, StateName::Resolved]),
        Some(list) => {
            let mut out = BTreeSet::new();
            for s in list.get_ref() {
                out.insert(StateName::parse(s).ok_or_else(|| {
                    lines.err(
                        list,
                        format!(
                            "{ctx}: unknown state {s:?}; use pending, firing, resolved or inactive"
                        ),
                    )
                })?);
            }
            out
        }
    };
    let backoff = duration_of(
        lines,
        &r.backoff,
        "backoff",
        Duration::from_secs(1),
        Duration::from_millis(10),
    )?;
    let max_backoff = duration_of(
        lines,
        &r.max_backoff,
        "max_backoff",
        Duration::from_secs(60),
        Duration::from_millis(10),
    )?;
    if max_backoff < backoff {
        if let Some(m) = &r.max_backoff {
            return Err(lines.err(m, format!("{ctx}: `max_backoff` is shorter than `backoff`")));
        }
    }
    Ok(Receiver {
        name: name.get_ref().clone(),
        url: url.get_ref().clone(),
        secret,
        format,
        timeout: duration_of(
            lines,
            &r.timeout,
            "timeout",
            Duration::from_secs(5),
            Duration::from_millis(10),
        )?,
        max_attempts,
        backoff,
        max_backoff: max_backoff.max(backoff),
        severities,
        states,
    })
}

fn window_of(lines: &Lines, v: &Option<Spanned<String>>, ctx: &str) -> Result<i64, RulesError> {
    let Some(v) = v else { return Ok(300) };
    let d =
        parse_duration(v.get_ref()).map_err(|m| lines.err(v, format!("{ctx}: `window`: {m}")))?;
    let ms = d.as_millis() as i64;
    if ms % 1000 != 0 || !(1000..=MAX_WINDOW_SECS * 1000).contains(&ms) {
        return Err(lines.err(
            v,
            format!("{ctx}: `window` must be whole seconds between 1s and 24h"),
        ));
    }
    let secs = ms / 1000;
    if secs > SECOND_BUCKETS_UPTO && secs % 60 != 0 {
        return Err(lines.err(
            v,
            format!("{ctx}: a `window` longer than 5m must be whole minutes"),
        ));
    }
    Ok(secs)
}

fn rule(
    lines: &Lines,
    span: &Spanned<RawRule>,
    receivers: &[Receiver],
) -> Result<Rule, RulesError> {
    let r = span.get_ref();
    let name = r
        .name
        .as_ref()
        .ok_or_else(|| lines.err(span, "a rule needs a `name`"))?;
    if !valid_name(name.get_ref()) {
        return Err(lines.err(name, "rule names are 1-64 letters, digits, '-', '_' or '.'"));
    }
    let ctx = format!("rule {:?}", name.get_ref());
    let cond = r
        .condition
        .as_ref()
        .ok_or_else(|| lines.err(span, format!("{ctx} needs a `condition`")))?;
    let kind = cond.get_ref().as_str();

    // Which keys each condition takes; anything else is refused.
    let allowed: &[&str] = match kind {
        "error_rate" | "reject_rate" => &["window", "above", "min_records"],
        "stale" => &["factor", "max_age"],
        "failed_runs" => &["count"],
        "lag_p95" => &["window", "above", "min_records"],
        "backlog" | "notification_queue" => &["above"],
        "long_run" | "listener_disconnected" => &["longer_than"],
        other => {
            return Err(lines.err(
                cond,
                format!(
                    "{ctx}: unknown condition {other:?}; use error_rate, reject_rate, stale, \
                     failed_runs, lag_p95, backlog, long_run, notification_queue or listener_disconnected"
                ),
            ))
        }
    };
    let given: [(&str, Option<std::ops::Range<usize>>); 7] = [
        ("window", r.window.as_ref().map(|v| v.span())),
        ("above", r.above.as_ref().map(|v| v.span())),
        ("min_records", r.min_records.as_ref().map(|v| v.span())),
        ("count", r.count.as_ref().map(|v| v.span())),
        ("factor", r.factor.as_ref().map(|v| v.span())),
        ("max_age", r.max_age.as_ref().map(|v| v.span())),
        ("longer_than", r.longer_than.as_ref().map(|v| v.span())),
    ];
    for (key, at) in &given {
        if let Some(at) = at {
            if !allowed.contains(key) {
                return Err(RulesError {
                    line: Some(lines.line(at.start)),
                    message: format!(
                        "{ctx}: `{key}` does not apply to condition {kind:?} (it takes: {})",
                        allowed.join(", ")
                    ),
                });
            }
        }
    }
    let required = |key: &str| lines.err(span, format!("{ctx}: condition {kind:?} needs `{key}`"));
    let fraction = |v: &Spanned<NumOrText>| -> Result<f64, RulesError> {
        match v.get_ref() {
            NumOrText::Num(n) if n.is_finite() && *n >= 0.0 => Ok(*n),
            _ => Err(lines.err(v, format!("{ctx}: `above` must be a number >= 0"))),
        }
    };
    let min_records = |v: &Option<Spanned<i64>>| -> Result<i64, RulesError> {
        match v {
            None => Ok(1),
            Some(n) if *n.get_ref() >= 1 => Ok(*n.get_ref()),
            Some(n) => Err(lines.err(n, format!("{ctx}: `min_records` must be >= 1"))),
        }
    };
    let secs_of = |v: &Spanned<String>, key: &str| -> Result<f64, RulesError> {
        parse_duration(v.get_ref())
            .map(|d| d.as_secs_f64())
            .map_err(|m| lines.err(v, format!("{ctx}: `{key}`: {m}")))
    };
    let condition = match kind {
        "error_rate" | "reject_rate" => {
            let window = window_of(lines, &r.window, &ctx)?;
            let above = fraction(r.above.as_ref().ok_or_else(|| required("above"))?)?;
            let min_records = min_records(&r.min_records)?;
            if kind == "error_rate" {
                Condition::ErrorRate {
                    window,
                    above,
                    min_records,
                }
            } else {
                if above > 1.0 {
                    if let Some(a) = &r.above {
                        return Err(lines.err(a, format!("{ctx}: a reject rate is at most 1")));
                    }
                }
                Condition::RejectRate {
                    window,
                    above,
                    min_records,
                }
            }
        }
        "stale" => {
            let factor = match &r.factor {
                None => 1.0,
                Some(f) if f.get_ref().is_finite() && *f.get_ref() > 0.0 => *f.get_ref(),
                Some(f) => return Err(lines.err(f, format!("{ctx}: `factor` must be > 0"))),
            };
            let max_age = match &r.max_age {
                None => None,
                Some(v) => Some(secs_of(v, "max_age")?),
            };
            Condition::Stale { factor, max_age }
        }
        "failed_runs" => match &r.count {
            Some(c) if (1..=100).contains(c.get_ref()) => Condition::FailedRuns {
                count: *c.get_ref(),
            },
            Some(c) => return Err(lines.err(c, format!("{ctx}: `count` must be 1 to 100"))),
            None => return Err(required("count")),
        },
        "lag_p95" => {
            let window = window_of(lines, &r.window, &ctx)?;
            let above = r.above.as_ref().ok_or_else(|| required("above"))?;
            let above_ms = match above.get_ref() {
                NumOrText::Num(n) if n.is_finite() && *n >= 0.0 => *n,
                NumOrText::Text(t) => parse_duration(t)
                    .map(|d| d.as_secs_f64() * 1e3)
                    .map_err(|m| lines.err(above, format!("{ctx}: `above`: {m}")))?,
                NumOrText::Num(_) => {
                    return Err(lines.err(
                        above,
                        format!("{ctx}: `above` must be >= 0 (ms) or a duration"),
                    ))
                }
            };
            Condition::LagP95 {
                window,
                above_ms,
                min_records: min_records(&r.min_records)?,
            }
        }
        "backlog" => Condition::Backlog {
            above: fraction(r.above.as_ref().ok_or_else(|| required("above"))?)?,
        },
        "notification_queue" => {
            let a = r.above.as_ref().ok_or_else(|| required("above"))?;
            let above = fraction(a)?;
            if above >= 1.0 {
                return Err(lines.err(a, format!("{ctx}: the queue usage is a fraction below 1")));
            }
            Condition::NotificationQueue { above }
        }
        "long_run" | "listener_disconnected" => {
            let v = r
                .longer_than
                .as_ref()
                .ok_or_else(|| required("longer_than"))?;
            let longer_than = secs_of(v, "longer_than")?;
            if kind == "long_run" {
                Condition::LongRun { longer_than }
            } else {
                Condition::ListenerDisconnected { longer_than }
            }
        }
        _ => unreachable!("checked above"),
    };

    let selector = match &r.sources {
        None => Selector::All,
        Some(s) => {
            if condition.scope() == Scope::System {
                return Err(lines.err(
                    s,
                    format!("{ctx}: condition {kind:?} is not about sources; remove `sources`"),
                ));
            }
            let check = |names: &Vec<String>| -> Result<(), RulesError> {
                if names.is_empty() {
                    return Err(lines.err(s, format!("{ctx}: `sources` lists no source")));
                }
                if let Some(bad) = names.iter().find(|n| n.is_empty() || n.len() > 200) {
                    return Err(lines.err(s, format!("{ctx}: bad source name {bad:?}")));
                }
                Ok(())
            };
            match s.get_ref() {
                RawSources::One(n) if n == "each" => Selector::Each,
                RawSources::One(n) => {
                    check(&vec![n.clone()])?;
                    Selector::Together(vec![n.clone()])
                }
                RawSources::List(list) => {
                    check(list)?;
                    let mut l = list.clone();
                    l.sort();
                    l.dedup();
                    Selector::Together(l)
                }
                RawSources::Each { each } => {
                    check(each)?;
                    let mut l = each.clone();
                    l.sort();
                    l.dedup();
                    Selector::EachOf(l)
                }
            }
        }
    };
    let zero = Duration::ZERO;
    let for_ = duration_of(lines, &r.for_, "for", zero, zero)?;
    let resolve_for = duration_of(lines, &r.resolve_for, "resolve_for", zero, zero)?;
    let hysteresis = match &r.hysteresis {
        None => 0.0,
        Some(h) if (0.0..1.0).contains(h.get_ref()) => *h.get_ref(),
        Some(h) => {
            return Err(lines.err(
                h,
                format!("{ctx}: `hysteresis` must be in [0, 1), e.g. 0.1"),
            ))
        }
    };
    let severity = match &r.severity {
        None => "warning".to_string(),
        Some(s) if SEVERITIES.contains(&s.get_ref().as_str()) => s.get_ref().clone(),
        Some(s) => {
            return Err(lines.err(
                s,
                format!(
                    "{ctx}: unknown severity {:?}; use info, warning or critical",
                    s.get_ref()
                ),
            ))
        }
    };
    let receivers_named = match &r.receivers {
        None => None,
        Some(list) => {
            for n in list.get_ref() {
                if !receivers.iter().any(|x| &x.name == n) {
                    return Err(lines.err(
                        list,
                        format!(
                            "{ctx}: no receiver named {n:?} (define it in [[receivers]] first)"
                        ),
                    ));
                }
            }
            Some(list.get_ref().clone())
        }
    };
    Ok(Rule {
        name: name.get_ref().clone(),
        condition,
        selector,
        for_,
        resolve_for,
        hysteresis,
        severity,
        labels: r
            .labels
            .as_ref()
            .map(|l| l.get_ref().clone())
            .unwrap_or_default(),
        summary: r.summary.as_ref().map(|s| s.get_ref().clone()),
        receivers: receivers_named,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> RulesError {
        RuleSet::parse(text).expect_err("should be refused")
    }

    #[test]
    fn defaults_and_example_parse() {
        let d = RuleSet::parse(DEFAULT_RULES).expect("default rules");
        assert!(d.rules.len() >= 8, "a rule of every condition kind");
        let example = include_str!("../../../alerts.example.toml");
        std::env::set_var("OPS_WEBHOOK_SECRET", "s3cret");
        let e = RuleSet::parse(example).expect("alerts.example.toml");
        let kinds: BTreeSet<&str> = e.rules.iter().map(|r| r.condition.kind()).collect();
        assert_eq!(
            kinds.len(),
            9,
            "the example shows every condition: {kinds:?}"
        );
    }

    #[test]
    fn a_full_rule_parses() {
        let s = RuleSet::parse(
            r#"
[settings]
interval = "250ms"

[[receivers]]
name = "ops"
url = "http://127.0.0.1:9/hook"
secret = "k"
format = "slack"
severities = ["critical"]

[[rules]]
name = "rejects"
condition = "reject_rate"
window = "30s"
above = 0.25
min_records = 10
sources = { each = ["b", "a"] }
for = "2s"
resolve_for = "1s"
hysteresis = 0.2
severity = "critical"
labels = { team = "data" }
receivers = ["ops"]

[[rules]]
name = "lag"
condition = "lag_p95"
above = "2.5s"
sources = ["x", "y"]
"#,
        )
        .expect("valid");
        assert_eq!(s.settings.interval, Duration::from_millis(250));
        let r = &s.rules[0];
        assert_eq!(
            r.condition,
            Condition::RejectRate {
                window: 30,
                above: 0.25,
                min_records: 10
            }
        );
        assert_eq!(r.selector, Selector::EachOf(vec!["a".into(), "b".into()]));
        assert_eq!(r.for_, Duration::from_secs(2));
        assert_eq!(s.receivers_for(r, StateName::Firing).len(), 1);
        assert_eq!(s.receivers_for(r, StateName::Pending).len(), 0);
        assert_eq!(
            s.rules[1].condition,
            Condition::LagP95 {
                window: 300,
                above_ms: 2500.0,
                min_records: 1
            }
        );
        assert_eq!(
            s.rules[1].selector,
            Selector::Together(vec!["x".into(), "y".into()])
        );
        assert_eq!(s.receivers[0].format, Format::Slack);
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases: [(&str, usize, &str); 12] = [
            ("[[rules]]\nname = \"a\"\ncondition = \"nope\"\n", 3, "unknown condition \"nope\""),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\n", 1, "needs `above`"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nwindow = \"1m\"\n", 5, "`window` does not apply"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nfor = \"ten\"\n", 5, "`for`"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nhysteresis = 1.5\n", 5, "hysteresis"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nseverity = \"meh\"\n", 5, "unknown severity"),
            ("\n\n[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nbogus = 1\n", 7, "bogus"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\n\n[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 6\n", 6, "defined twice"),
            ("[[rules]]\nname = \"a\"\ncondition = \"listener_disconnected\"\nlonger_than = \"5s\"\nsources = \"each\"\n", 5, "not about sources"),
            ("[[rules]]\nname = \"a\"\ncondition = \"reject_rate\"\nabove = 0.1\nwindow = \"7m30s\"\n", 5, "window"),
            ("[[rules]]\nname = \"a\"\ncondition = \"backlog\"\nabove = 5\nreceivers = [\"x\"]\n", 5, "no receiver named \"x\""),
            ("[[rules]\nname = \"a\"\n", 1, ""),
        ];
        for (text, line, needle) in cases {
            let e = err(text);
            assert_eq!(e.line, Some(line), "{text:?} -> {e}");
            assert!(e.to_string().contains(needle), "{text:?} -> {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        }
    }

    #[test]
    fn receivers_are_validated() {
        let e = err("[[receivers]]\nname = \"r\"\nurl = \"ftp://x\"\n");
        assert_eq!(e.line, Some(3));
        let e = err("[[receivers]]\nname = \"r\"\nurl = \"http://x\"\nsecret_env = \"IW_SURELY_UNSET_VAR_42\"\n");
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("IW_SURELY_UNSET_VAR_42"));
        let e = err("[[receivers]]\nname = \"r\"\nurl = \"http://x\"\nformat = \"xml\"\n");
        assert_eq!(e.line, Some(4));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
