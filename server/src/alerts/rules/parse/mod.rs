//! Parsing the rules file: TOML read with serde into raw structs (every
//! value `Spanned`, so a problem names its line), then validated into the
//! model of [`super`] — settings, receivers, and rules (a rule in steps: its
//! condition kind and keys, the condition's parameters, the sources, timing,
//! severity and receivers).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Receiver, Rule, RuleSet, RulesError, Settings};

mod receiver;
mod rule;

use receiver::{receiver, RawReceiver};
use rule::{rule, RawRule};

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

// ---- parsing ----------------------------------------------------------------

/// Turns byte offsets into 1-based line numbers.
pub(super) struct Lines<'a>(&'a str);

impl Lines<'_> {
    pub(super) fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.0.len());
        self.0.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(super) fn err<T>(&self, span: &Spanned<T>, message: impl Into<String>) -> RulesError {
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

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn duration_of(
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

/// Parses and validates rules text.
pub(super) fn rule_set(text: &str) -> Result<RuleSet, RulesError> {
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
