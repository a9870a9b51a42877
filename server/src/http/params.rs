//! Request parameters: the [`ApiQuery`] and [`ApiJson`] extractors, which
//! answer malformed input with our 400 envelope instead of axum's plain-text
//! rejections, and the parsers every list shares (lists of names, ids, time
//! ranges, page size, sort and cursor).
//!
//! Query structs hold `Option<String>` fields with `deny_unknown_fields`:
//! serde only checks the names, and the parsers here check the values, so
//! every message names its parameter. A parameter listed in
//! [`Params::MULTI`] may repeat (`source=a&source=b`) or hold a comma list
//! (`source=a,b`); a value holding a comma, quote or newline is quoted as in
//! CSV (`source="crm, north",erp`). Any other repeated parameter is refused.
//! An empty value (`source=`) counts as absent, as HTML forms send them.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::db::keyset::{Cursor, Order, SortCol};
use crate::error::AppError;

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 500;

/// A query-string struct.
pub trait Params: DeserializeOwned {
    /// Parameters that may repeat or hold a comma-separated list.
    const MULTI: &'static [&'static str] = &[];
}

/// `Query<T>` that rejects with the JSON envelope (`invalid_parameter`).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: Params, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// Parses a raw query string into `T`.
pub fn parse_query<T: Params>(query: &str) -> Result<T, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| AppError::invalid("query", format!("malformed query string: {e}")))?;
    from_pairs(pairs)
}

/// Builds `T` from `(name, value)` pairs: merges the repeats of
/// [`Params::MULTI`] parameters into one comma list, refuses other repeats,
/// drops empty values, and maps serde's complaints to `invalid_parameter`.
pub fn from_pairs<T: Params>(pairs: Vec<(String, String)>) -> Result<T, AppError> {
    let mut merged: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if v.is_empty() {
            continue;
        }
        match merged.iter_mut().find(|(mk, _)| *mk == k) {
            Some(slot) if T::MULTI.contains(&k.as_str()) => {
                slot.1.push(',');
                slot.1.push_str(&v);
            }
            Some(_) => return Err(AppError::invalid(&k, "given more than once")),
            None => merged.push((k, v)),
        }
    }
    let encoded = serde_urlencoded::to_string(&merged)
        .map_err(|e| AppError::Internal(format!("re-encoding a query: {e}")))?;
    serde_urlencoded::from_str::<T>(&encoded).map_err(|e| serde_error(&e.to_string()))
}

/// Maps serde's "unknown field `x`, expected one of `a`, `b`" to a message naming `x`.
fn serde_error(msg: &str) -> AppError {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = rest
            .split('`')
            .skip(1)
            .filter(|s| !s.is_empty() && !s.starts_with(',') && !s.starts_with(' '))
            .collect();
        let why = if expected.is_empty() {
            "unknown parameter; this route takes none".to_string()
        } else {
            format!("unknown parameter; use {}", expected.join(", "))
        };
        return AppError::invalid(name, why);
    }
    AppError::invalid("query", msg)
}

/// `Json<T>` for a JSON **object** body, rejecting with the JSON envelope
/// (`invalid_body`): wrong content type, malformed JSON, not an object (serde
/// would take a struct from an array too), unknown or mistyped fields.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |message: String| AppError::BadRequest {
            code: "invalid_body",
            message,
        };
        let axum::Json(v) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|rej| bad(rej.body_text()))?;
        if !v.is_object() {
            return Err(bad("the body must be a JSON object".into()));
        }
        serde_json::from_value(v)
            .map(ApiJson)
            .map_err(|e| bad(format!("invalid body: {e}")))
    }
}

/// A query struct for routes that take no parameters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl Params for NoParams {}

/// Splits a comma list read as one CSV line (so `"a,b",c` is two items),
/// trimming and dropping empty items; `None` when nothing is left.
pub fn list(v: Option<&str>) -> Option<Vec<String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(v?.as_bytes());
    let mut items = Vec::new();
    for rec in rdr.records().flatten() {
        items.extend(rec.iter().filter(|s| !s.is_empty()).map(str::to_string));
    }
    (!items.is_empty()).then_some(items)
}

/// Quotes one value for a comma list, when it needs it.
pub fn quote_item(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.trim() != s {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A comma list of at most 100 values, each at most 200 characters.
pub fn names(name: &str, v: Option<&str>) -> Result<Option<Vec<String>>, AppError> {
    let Some(items) = list(v) else {
        return Ok(None);
    };
    if items.len() > 100 {
        return Err(AppError::invalid(name, "at most 100 values"));
    }
    if let Some(long) = items.iter().find(|s| s.chars().count() > 200) {
        let shown: String = long.chars().take(20).collect();
        return Err(AppError::invalid(
            name,
            format!("value {shown:?}… is longer than 200 characters"),
        ));
    }
    Ok(Some(items))
}

/// A comma list whose values must be in `allowed`.
pub fn one_of(
    name: &str,
    v: Option<&str>,
    allowed: &[&str],
) -> Result<Option<Vec<String>>, AppError> {
    let Some(items) = list(v) else {
        return Ok(None);
    };
    for s in &items {
        if !allowed.contains(&s.as_str()) {
            let shown: String = s.chars().take(40).collect();
            return Err(AppError::invalid(
                name,
                format!("unknown value {shown:?}; use {}", allowed.join(", ")),
            ));
        }
    }
    Ok(Some(items))
}

/// A positive 64-bit id.
pub fn id(name: &str, s: &str) -> Result<i64, AppError> {
    match s.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => {
            let shown: String = s.chars().take(40).collect();
            Err(AppError::invalid(
                name,
                format!("{shown:?} is not a positive integer id"),
            ))
        }
    }
}

/// A comma list of positive ids (at most 100).
pub fn ids(name: &str, v: Option<&str>) -> Result<Option<Vec<i64>>, AppError> {
    let Some(items) = list(v) else {
        return Ok(None);
    };
    if items.len() > 100 {
        return Err(AppError::invalid(name, "at most 100 values"));
    }
    items
        .iter()
        .map(|s| id(name, s))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// An RFC 3339 timestamp.
pub fn time(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, AppError> {
    let Some(s) = v else { return Ok(None) };
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            let shown: String = s.chars().take(40).collect();
            AppError::invalid(
                name,
                format!("{shown:?} is not an RFC 3339 timestamp like 2026-11-26T10:15:30Z ({e})"),
            )
        })
}

/// Optional bounds of a half-open time range `[from, to)`.
pub type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `from` and `to` as a half-open range `[from, to)`; `from` after `to` is refused.
pub fn range(from: Option<&str>, to: Option<&str>) -> Result<Range, AppError> {
    let (f, t) = (time("from", from)?, time("to", to)?);
    if let (Some(f), Some(t)) = (f, t) {
        if f > t {
            return Err(AppError::invalid(
                "from",
                "`from` is after `to` (the range is [from, to))",
            ));
        }
    }
    Ok((f, t))
}

/// Page size: default 50, 1 to 500.
pub fn limit(v: Option<&str>) -> Result<i64, AppError> {
    let Some(s) = v else { return Ok(DEFAULT_LIMIT) };
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Ok(n) => Err(AppError::invalid(
            "limit",
            format!("{n} is out of range; use 1 to {MAX_LIMIT}"),
        )),
        Err(_) => Err(AppError::invalid(
            "limit",
            format!(
                "{:?} is not an integer",
                s.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// `sort=` against the whitelist (`default` when absent).
pub fn sort(
    v: Option<&str>,
    default: &str,
    cols: &[SortCol],
    id_expr: &'static str,
) -> Result<Order, AppError> {
    Order::parse(v.unwrap_or(default), cols, id_expr).map_err(|e| AppError::invalid("sort", e))
}

/// `cursor=` for `order`.
pub fn cursor(v: Option<&str>, order: &Order) -> Result<Option<Cursor>, AppError> {
    v.map(|s| Cursor::decode(s, order).map_err(|e| AppError::invalid("cursor", e)))
        .transpose()
}

/// A boolean flag (`true`/`false`/`1`/`0`).
pub fn flag(name: &str, v: Option<&str>) -> Result<bool, AppError> {
    match v {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(AppError::invalid(
            name,
            format!(
                "{:?} is not a boolean; use true or false",
                other.chars().take(40).collect::<String>()
            ),
        )),
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

/// A timestamp given as RFC 3339 (`2026-11-26T10:00:00Z`) or epoch seconds,
/// as epoch seconds (fractions of a second truncated toward the past).
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

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Q {
        source: Option<String>,
        limit: Option<String>,
    }

    impl Params for Q {
        const MULTI: &'static [&'static str] = &["source"];
    }

    fn msg(e: AppError) -> String {
        e.to_string()
    }

    #[test]
    fn repeats_merge_only_for_multi_parameters() {
        let q: Q = parse_query("source=a&source=b,c&limit=5").expect("ok");
        assert_eq!(q.source.as_deref(), Some("a,b,c"));
        assert_eq!(q.limit.as_deref(), Some("5"));
        let e = msg(parse_query::<Q>("limit=1&limit=2").unwrap_err());
        assert_eq!(e, "parameter `limit`: given more than once");
        let q: Q = parse_query("source=&limit=").expect("empty is absent");
        assert_eq!(
            q,
            Q {
                source: None,
                limit: None
            }
        );
    }

    #[test]
    fn unknown_parameters_are_named() {
        let e = msg(parse_query::<Q>("sourcee=x").unwrap_err());
        assert_eq!(
            e,
            "parameter `sourcee`: unknown parameter; use source, limit"
        );
        let e = msg(parse_query::<NoParams>("x=1").unwrap_err());
        assert_eq!(e, "parameter `x`: unknown parameter; this route takes none");
    }

    #[test]
    fn values_are_checked_with_the_parameter_named() {
        assert_eq!(limit(None).expect("default"), 50);
        assert!(msg(limit(Some("501")).unwrap_err()).starts_with("parameter `limit`"));
        assert!(limit(Some("0")).is_err() && limit(Some("x")).is_err());
        assert!(msg(
            range(Some("2026-01-02T00:00:00Z"), Some("2026-01-01T00:00:00Z")).unwrap_err()
        )
        .starts_with("parameter `from`"));
        assert!(msg(range(Some("yesterday"), None).unwrap_err()).starts_with("parameter `from`"));
        assert!(msg(one_of("status", Some("ok"), &["a", "b"]).unwrap_err()).contains("use a, b"));
        assert_eq!(ids("run", Some("1, 2")).expect("ids"), Some(vec![1, 2]));
        assert!(ids("run", Some("1,-2")).is_err());
        assert!(flag("include_payload", Some("yes")).is_err());
    }

    #[test]
    fn comma_lists_take_csv_quoting() {
        let l = |s: &str| list(Some(s)).unwrap_or_default();
        assert_eq!(l("a, b,,c"), ["a", "b", "c"]);
        assert_eq!(l(r#""crm, ""north""",erp"#), ["crm, \"north\"", "erp"]);
        assert_eq!(l(r#"o"hara"#), [r#"o"hara"#]);
        assert!(list(Some(" , ")).is_none());
        for v in ["plain", "a,b", "say \"hi\"", "two\nlines", " padded "] {
            assert_eq!(l(&quote_item(v)), [v.trim()], "{v:?}");
        }
        let q: Q = parse_query("source=%22a%2Cb%22&source=c").expect("ok");
        assert_eq!(list(q.source.as_deref()).unwrap_or_default(), ["a,b", "c"]);
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
