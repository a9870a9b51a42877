//! The one alert record: a recorded transition ([`Transition`], typed state
//! and severity), as stored in `monitor.alert_transitions` and sent in
//! history pages, WebSocket frames and webhook bodies; and [`Active`], the
//! same record shown as an active alert (REST `GET /api/alerts` and the WS
//! snapshot), which names its fields as that API always has.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::Value;
use tokio_postgres::types::{FromSql, Type};

use super::rules::{Severity, StateName};

/// One recorded transition (history rows, WS frames, webhook bodies).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transition {
    /// Increasing id (commit order: there is one writer at a time).
    pub id: i64,
    /// Rule name.
    pub rule: String,
    /// Instance key: source name, `a,b`, or empty for all sources / system.
    pub instance: String,
    /// Condition kind.
    pub condition: String,
    /// The one source, if one.
    pub source: Option<String>,
    /// Sources covered (empty: all sources, or a system condition).
    pub sources: Vec<String>,
    /// State before.
    pub from: StateName,
    /// State after.
    pub state: StateName,
    /// The value that caused it.
    pub value: Option<f64>,
    /// The threshold.
    pub threshold: f64,
    /// Unit of value and threshold.
    pub unit: String,
    /// Severity.
    pub severity: Severity,
    /// Labels.
    pub labels: Value,
    /// Summary.
    pub summary: Option<String>,
    /// When (RFC 3339).
    pub at: String,
    /// The same for every delivery of this transition.
    pub idempotency_key: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Transition {
    /// Reads a row of `TCOLS`.
    pub(crate) fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Transition::from_row_at(r, 0)
    }

    /// May a principal limited to `scope` see it? Alerts over all sources
    /// and system alerts are for unscoped principals only.
    pub fn visible(&self, scope: Option<&std::collections::BTreeSet<String>>) -> bool {
        super::store::visible(&self.sources, scope)
    }

    /// Reads the columns of `TCOLS` starting at column `o`.
    pub(crate) fn from_row_at(
        r: &tokio_postgres::Row,
        o: usize,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(Transition {
            id: r.try_get(o)?,
            rule: r.try_get(o + 1)?,
            instance: r.try_get(o + 2)?,
            condition: r.try_get(o + 3)?,
            source: r.try_get(o + 4)?,
            sources: r.try_get(o + 5)?,
            from: r.try_get(o + 6)?,
            state: r.try_get(o + 7)?,
            value: r.try_get(o + 8)?,
            threshold: r.try_get(o + 9)?,
            unit: r.try_get(o + 10)?,
            severity: r.try_get(o + 11)?,
            labels: r.try_get(o + 12)?,
            summary: r.try_get(o + 13)?,
            at: rfc3339(r.try_get(o + 14)?),
            idempotency_key: r.try_get(o + 15)?,
        })
    }
}

/// An active (pending or firing) alert as served by REST and WS: its last
/// transition, serialized with `since` for `at` and `transition_id` for `id`
/// (and without `from` and the idempotency key).
#[derive(Debug, Clone, PartialEq)]
pub struct Active(pub Transition);

impl Serialize for Active {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = &self.0;
        let mut m = s.serialize_struct("ActiveAlert", 14)?;
        m.serialize_field("rule", &t.rule)?;
        m.serialize_field("instance", &t.instance)?;
        m.serialize_field("condition", &t.condition)?;
        m.serialize_field("source", &t.source)?;
        m.serialize_field("sources", &t.sources)?;
        m.serialize_field("state", &t.state)?;
        m.serialize_field("since", &t.at)?;
        m.serialize_field("value", &t.value)?;
        m.serialize_field("threshold", &t.threshold)?;
        m.serialize_field("unit", &t.unit)?;
        m.serialize_field("severity", &t.severity)?;
        m.serialize_field("labels", &t.labels)?;
        m.serialize_field("summary", &t.summary)?;
        m.serialize_field("transition_id", &t.id)?;
        m.end()
    }
}

/// Reads a `text` column holding a name `parse` knows.
fn named<T>(
    ty: &Type,
    raw: &[u8],
    parse: fn(&str) -> Option<T>,
    what: &str,
) -> Result<T, Box<dyn std::error::Error + Sync + Send>> {
    let s = <&str as FromSql>::from_sql(ty, raw)?;
    parse(s).ok_or_else(|| format!("unknown {what} {s:?}").into())
}

impl<'a> FromSql<'a> for StateName {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        named(ty, raw, StateName::parse, "alert state")
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

impl<'a> FromSql<'a> for Severity {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        named(ty, raw, Severity::parse, "severity")
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes_are_the_ones_the_api_always_sent() {
        let t = Transition {
            id: 7,
            rule: "lag".into(),
            instance: "crm".into(),
            condition: "lag_p95".into(),
            source: Some("crm".into()),
            sources: vec!["crm".into()],
            from: StateName::Pending,
            state: StateName::Firing,
            value: None,
            threshold: 1000.0,
            unit: "ms".into(),
            severity: Severity::Critical,
            labels: serde_json::json!({"team": "data"}),
            summary: None,
            at: "2026-11-26T10:00:00.000Z".into(),
            idempotency_key: "iw-abc".into(),
        };
        assert_eq!(
            serde_json::to_string(&t).expect("json"),
            r#"{"id":7,"rule":"lag","instance":"crm","condition":"lag_p95","source":"crm","sources":["crm"],"from":"pending","state":"firing","value":null,"threshold":1000.0,"unit":"ms","severity":"critical","labels":{"team":"data"},"summary":null,"at":"2026-11-26T10:00:00.000Z","idempotency_key":"iw-abc"}"#
        );
        assert_eq!(
            serde_json::to_string(&Active(t)).expect("json"),
            r#"{"rule":"lag","instance":"crm","condition":"lag_p95","source":"crm","sources":["crm"],"state":"firing","since":"2026-11-26T10:00:00.000Z","value":null,"threshold":1000.0,"unit":"ms","severity":"critical","labels":{"team":"data"},"summary":null,"transition_id":7}"#
        );
    }
}
