//! The alert rules file: what it configures (this module: [`RuleSet`],
//! receivers, rules, alert states), what a rule watches ([`condition`]: the
//! one typed list of condition kinds), and how the TOML text becomes a
//! validated [`RuleSet`] ([`parse`]: every value `Spanned`, so a problem
//! names its line). A bad file is refused at start-up with `line N: <problem>`.
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

pub mod condition;
pub mod parse;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use condition::{Cmp, Condition, ConditionKind, Scope};
pub use parse::parse_duration;

/// The embedded default rules used by `ingestwatch demo` when no file is given.
pub const DEFAULT_RULES: &str = include_str!("../default_rules.toml");

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

/// Alert state names, as stored and sent (serialized as the lowercase name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
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

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent a rule's alerts are (serialized as the lowercase name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `info` (also the severity recorded when a rule was removed).
    Info,
    /// `warning`, the default.
    Warning,
    /// `critical`.
    Critical,
}

impl Severity {
    /// Every severity.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parses a severity name.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    pub severities: Option<BTreeSet<Severity>>,
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
    pub fn wants(&self, to: StateName, severity: Severity) -> bool {
        self.states.contains(&to)
            && self
                .severities
                .as_ref()
                .is_none_or(|s| s.contains(&severity))
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
    pub severity: Severity,
    /// Free-form labels, sent with every transition.
    pub labels: BTreeMap<String, String>,
    /// One line for humans.
    pub summary: Option<String>,
    /// Receivers to notify (None: every receiver).
    pub receivers: Option<Vec<String>>,
}

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

    /// Parses and validates rules text (see [`parse`]).
    pub fn parse(text: &str) -> Result<RuleSet, RulesError> {
        parse::rule_set(text)
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
                    && r.wants(to, rule.severity)
            })
            .collect()
    }
}
