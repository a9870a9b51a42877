//! Strict query-string parsing for handlers that refuse unknown parameters:
//! every parameter must be one the route knows, single-valued ones may appear
//! once, and every refusal is a 400 `invalid_parameter` naming the parameter.

use chrono::{DateTime, Utc};

use crate::error::AppError;

/// The parsed query string of one request.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `raw` (the query string without `?`); names outside `allowed` are refused.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, AppError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| AppError::invalid("query", format!("malformed query string: {e}")))?;
        if let Some((name, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            let shown: String = name.chars().take(64).collect();
            return Err(AppError::invalid(
                &shown,
                format!("unknown parameter; this route takes {}", allowed.join(", ")),
            ));
        }
        Ok(Params { pairs })
    }

    /// The value of a parameter that may appear at most once.
    pub fn one(&self, name: &str) -> Result<Option<&str>, AppError> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(AppError::invalid(name, "given more than once"));
        }
        Ok(first)
    }

    /// Every value of a list parameter: repeated and/or comma-separated.
    pub fn list(&self, name: &str) -> Result<Option<Vec<&str>>, AppError> {
        let mut out = Vec::new();
        let mut given = false;
        for (_, v) in self.pairs.iter().filter(|(k, _)| k == name) {
            given = true;
            for item in v.split(',').map(str::trim) {
                if item.is_empty() {
                    return Err(AppError::invalid(name, "empty list item"));
                }
                if !out.contains(&item) {
                    out.push(item);
                }
            }
        }
        Ok(given.then_some(out))
    }
}

/// A non-negative integer seq (`since`, `Last-Event-ID`).
pub fn seq(name: &str, v: &str) -> Result<i64, AppError> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| AppError::invalid(name, "must be a non-negative integer seq"))
}

/// A timestamp: RFC 3339 (`2026-11-26T10:00:00Z`) or epoch seconds; returns epoch seconds.
/// Fractions of a second are truncated toward the past.
pub fn timestamp(name: &str, v: &str) -> Result<i64, AppError> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse::<i64>()
            .ok()
            .filter(|s| *s <= MAX_EPOCH)
            .ok_or_else(|| AppError::invalid(name, "epoch seconds out of range"));
    }
    let t = DateTime::parse_from_rfc3339(v).map_err(|_| {
        AppError::invalid(
            name,
            "expected RFC 3339 (e.g. 2026-11-26T10:00:00Z) or epoch seconds",
        )
    })?;
    let sec = t.with_timezone(&Utc).timestamp();
    if !(0..=MAX_EPOCH).contains(&sec) {
        return Err(AppError::invalid(name, "must be between 1970 and 9999"));
    }
    Ok(sec)
}

/// 9999-12-31T23:59:59Z.
const MAX_EPOCH: i64 = 253_402_300_799;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let p = Params::parse(Some("a=1&b=2,3&b=3"), &["a", "b"]).expect("parse");
        assert_eq!(p.one("a").expect("a"), Some("1"));
        assert_eq!(p.list("b").expect("b"), Some(vec!["2", "3"]));
        assert!(p.one("b").is_err());
        assert_eq!(p.one("c").expect("c"), None);
        let e = Params::parse(Some("a=1&zz=2"), &["a"]).expect_err("unknown");
        assert!(e.to_string().contains("`zz`"), "{e}");
        assert!(Params::parse(Some("b=,x"), &["b"])
            .expect("parse")
            .list("b")
            .is_err());
    }

    #[test]
    fn timestamps_accept_rfc3339_and_epoch_seconds() {
        assert_eq!(timestamp("from", "0").ok(), Some(0));
        assert_eq!(timestamp("from", "1700000000").ok(), Some(1_700_000_000));
        assert_eq!(
            timestamp("from", "2023-11-14T22:13:20Z").ok(),
            Some(1_700_000_000)
        );
        assert_eq!(
            timestamp("from", "2023-11-14T23:13:20.9+01:00").ok(),
            Some(1_700_000_000)
        );
        for bad in [
            "",
            "yesterday",
            "-5",
            "1.5",
            "2023-13-01T00:00:00Z",
            "99999999999999",
        ] {
            assert!(timestamp("from", bad).is_err(), "{bad}");
        }
        assert!(seq("since", "-1").is_err());
        assert_eq!(seq("since", "42").ok(), Some(42));
    }
}
