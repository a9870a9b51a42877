//! One `[[rules]]` entry, validated in steps: its condition kind and the
//! keys it takes, the condition's parameters, the sources, timing, severity
//! and receivers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{duration_of, parse_duration, valid_name, Lines};
use crate::alerts::rules::{
    Condition, ConditionKind, Receiver, Rule, RulesError, Scope, Selector, Severity,
};

/// Longest window a rate / lag condition may use (the live aggregates keep 24 h).
const MAX_WINDOW_SECS: i64 = 86_400;
/// Windows up to this use 1-second buckets; longer ones must be whole minutes.
const SECOND_BUCKETS_UPTO: i64 = 300;

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
pub(super) struct RawRule {
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

/// One `[[rules]]` entry, validated.
pub(super) fn rule(
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
    let kind = ConditionKind::parse(cond.get_ref()).ok_or_else(|| {
        lines.err(
            cond,
            format!(
                "{ctx}: unknown condition {:?}; use {}",
                cond.get_ref(),
                ConditionKind::names()
            ),
        )
    })?;
    let c = RuleCtx {
        lines,
        span,
        ctx,
        kind,
    };
    c.check_keys(r)?;
    let condition = c.condition(r)?;
    let selector = c.selector(r)?;
    let zero = Duration::ZERO;
    Ok(Rule {
        name: name.get_ref().clone(),
        condition,
        selector,
        for_: duration_of(lines, &r.for_, "for", zero, zero)?,
        resolve_for: duration_of(lines, &r.resolve_for, "resolve_for", zero, zero)?,
        hysteresis: c.hysteresis(r)?,
        severity: c.severity(r)?,
        labels: r
            .labels
            .as_ref()
            .map(|l| l.get_ref().clone())
            .unwrap_or_default(),
        summary: r.summary.as_ref().map(|s| s.get_ref().clone()),
        receivers: c.receivers(r, receivers)?,
    })
}

/// What the steps of validating one rule share: where it is, what to call it
/// in messages, and its condition kind.
struct RuleCtx<'a> {
    lines: &'a Lines<'a>,
    span: &'a Spanned<RawRule>,
    /// `rule "name"`, the prefix of every message.
    ctx: String,
    kind: ConditionKind,
}

impl RuleCtx<'_> {
    fn err<T>(&self, at: &Spanned<T>, problem: impl std::fmt::Display) -> RulesError {
        self.lines.err(at, format!("{}: {problem}", self.ctx))
    }

    fn required(&self, key: &str) -> RulesError {
        let kind = self.kind.as_str();
        self.err(self.span, format!("condition {kind:?} needs `{key}`"))
    }

    /// Refuses a parameter key the condition does not take.
    fn check_keys(&self, r: &RawRule) -> Result<(), RulesError> {
        let allowed = self.kind.keys();
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
                        line: Some(self.lines.line(at.start)),
                        message: format!(
                            "{}: `{key}` does not apply to condition {:?} (it takes: {})",
                            self.ctx,
                            self.kind.as_str(),
                            allowed.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// `above` as a number >= 0.
    fn fraction(&self, v: &Option<Spanned<NumOrText>>) -> Result<f64, RulesError> {
        let v = v.as_ref().ok_or_else(|| self.required("above"))?;
        match v.get_ref() {
            NumOrText::Num(n) if n.is_finite() && *n >= 0.0 => Ok(*n),
            _ => Err(self.err(v, "`above` must be a number >= 0")),
        }
    }

    fn min_records(&self, v: &Option<Spanned<i64>>) -> Result<i64, RulesError> {
        match v {
            None => Ok(1),
            Some(n) if *n.get_ref() >= 1 => Ok(*n.get_ref()),
            Some(n) => Err(self.err(n, "`min_records` must be >= 1")),
        }
    }

    fn secs(&self, v: &Spanned<String>, key: &str) -> Result<f64, RulesError> {
        parse_duration(v.get_ref())
            .map(|d| d.as_secs_f64())
            .map_err(|m| self.err(v, format!("`{key}`: {m}")))
    }

    fn window(&self, r: &RawRule) -> Result<i64, RulesError> {
        window_of(self.lines, &r.window, &self.ctx)
    }

    /// The condition's parameters.
    fn condition(&self, r: &RawRule) -> Result<Condition, RulesError> {
        Ok(match self.kind {
            ConditionKind::ErrorRate => Condition::ErrorRate {
                window: self.window(r)?,
                above: self.fraction(&r.above)?,
                min_records: self.min_records(&r.min_records)?,
            },
            ConditionKind::RejectRate => {
                let window = self.window(r)?;
                let above = self.fraction(&r.above)?;
                let min_records = self.min_records(&r.min_records)?;
                if above > 1.0 {
                    if let Some(a) = &r.above {
                        return Err(self.err(a, "a reject rate is at most 1"));
                    }
                }
                Condition::RejectRate {
                    window,
                    above,
                    min_records,
                }
            }
            ConditionKind::Stale => self.stale(r)?,
            ConditionKind::FailedRuns => match &r.count {
                Some(c) if (1..=100).contains(c.get_ref()) => Condition::FailedRuns {
                    count: *c.get_ref(),
                },
                Some(c) => return Err(self.err(c, "`count` must be 1 to 100")),
                None => return Err(self.required("count")),
            },
            ConditionKind::LagP95 => self.lag_p95(r)?,
            ConditionKind::Backlog => Condition::Backlog {
                above: self.fraction(&r.above)?,
            },
            ConditionKind::NotificationQueue => {
                let above = self.fraction(&r.above)?;
                if above >= 1.0 {
                    if let Some(a) = &r.above {
                        return Err(self.err(a, "the queue usage is a fraction below 1"));
                    }
                }
                Condition::NotificationQueue { above }
            }
            ConditionKind::LongRun | ConditionKind::ListenerDisconnected => {
                let v = r
                    .longer_than
                    .as_ref()
                    .ok_or_else(|| self.required("longer_than"))?;
                let longer_than = self.secs(v, "longer_than")?;
                if self.kind == ConditionKind::LongRun {
                    Condition::LongRun { longer_than }
                } else {
                    Condition::ListenerDisconnected { longer_than }
                }
            }
        })
    }

    fn stale(&self, r: &RawRule) -> Result<Condition, RulesError> {
        let factor = match &r.factor {
            None => 1.0,
            Some(f) if f.get_ref().is_finite() && *f.get_ref() > 0.0 => *f.get_ref(),
            Some(f) => return Err(self.err(f, "`factor` must be > 0")),
        };
        let max_age = match &r.max_age {
            None => None,
            Some(v) => Some(self.secs(v, "max_age")?),
        };
        Ok(Condition::Stale { factor, max_age })
    }

    fn lag_p95(&self, r: &RawRule) -> Result<Condition, RulesError> {
        let window = self.window(r)?;
        let above = r.above.as_ref().ok_or_else(|| self.required("above"))?;
        let above_ms = match above.get_ref() {
            NumOrText::Num(n) if n.is_finite() && *n >= 0.0 => *n,
            NumOrText::Text(t) => parse_duration(t)
                .map(|d| d.as_secs_f64() * 1e3)
                .map_err(|m| self.err(above, format!("`above`: {m}")))?,
            NumOrText::Num(_) => {
                return Err(self.err(above, "`above` must be >= 0 (ms) or a duration"))
            }
        };
        Ok(Condition::LagP95 {
            window,
            above_ms,
            min_records: self.min_records(&r.min_records)?,
        })
    }

    /// `sources`: which sources the rule looks at.
    fn selector(&self, r: &RawRule) -> Result<Selector, RulesError> {
        let Some(s) = &r.sources else {
            return Ok(Selector::All);
        };
        if self.kind.scope() == Scope::System {
            let kind = self.kind.as_str();
            return Err(self.err(
                s,
                format!("condition {kind:?} is not about sources; remove `sources`"),
            ));
        }
        let check = |names: &[String]| -> Result<(), RulesError> {
            if names.is_empty() {
                return Err(self.err(s, "`sources` lists no source"));
            }
            if let Some(bad) = names.iter().find(|n| n.is_empty() || n.len() > 200) {
                return Err(self.err(s, format!("bad source name {bad:?}")));
            }
            Ok(())
        };
        let sorted = |list: &[String]| {
            let mut l = list.to_vec();
            l.sort();
            l.dedup();
            l
        };
        Ok(match s.get_ref() {
            RawSources::One(n) if n == "each" => Selector::Each,
            RawSources::One(n) => {
                check(std::slice::from_ref(n))?;
                Selector::Together(vec![n.clone()])
            }
            RawSources::List(list) => {
                check(list)?;
                Selector::Together(sorted(list))
            }
            RawSources::Each { each } => {
                check(each)?;
                Selector::EachOf(sorted(each))
            }
        })
    }

    fn hysteresis(&self, r: &RawRule) -> Result<f64, RulesError> {
        match &r.hysteresis {
            None => Ok(0.0),
            Some(h) if (0.0..1.0).contains(h.get_ref()) => Ok(*h.get_ref()),
            Some(h) => Err(self.err(h, "`hysteresis` must be in [0, 1), e.g. 0.1")),
        }
    }

    fn severity(&self, r: &RawRule) -> Result<Severity, RulesError> {
        let Some(s) = &r.severity else {
            return Ok(Severity::Warning);
        };
        match Severity::parse(s.get_ref()) {
            Some(v) => Ok(v),
            None => Err(self.err(
                s,
                format!(
                    "unknown severity {:?}; use info, warning or critical",
                    s.get_ref()
                ),
            )),
        }
    }

    /// `receivers`: each must be defined above.
    fn receivers(
        &self,
        r: &RawRule,
        receivers: &[Receiver],
    ) -> Result<Option<Vec<String>>, RulesError> {
        let Some(list) = &r.receivers else {
            return Ok(None);
        };
        if let Some(n) = list
            .get_ref()
            .iter()
            .find(|n| !receivers.iter().any(|x| &x.name == *n))
        {
            return Err(self.err(
                list,
                format!("no receiver named {n:?} (define it in [[receivers]] first)"),
            ));
        }
        Ok(Some(list.get_ref().clone()))
    }
}
