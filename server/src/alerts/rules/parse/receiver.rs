//! One `[[receivers]]` entry: a webhook's URL, secret, format, retry policy
//! and the transitions it wants.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{duration_of, valid_name, Lines};
use crate::alerts::rules::{Format, Receiver, RulesError, Severity, StateName};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReceiver {
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

pub(super) fn receiver(lines: &Lines, span: &Spanned<RawReceiver>) -> Result<Receiver, RulesError> {
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
            let mut out = BTreeSet::new();
            for s in list.get_ref() {
                out.insert(Severity::parse(s).ok_or_else(|| {
                    lines.err(
                        list,
                        format!("{ctx}: unknown severity {s:?}; use info, warning or critical"),
                    )
                })?);
            }
            Some(out)
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
