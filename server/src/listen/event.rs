//! One outbox event (`monitor.events` row) and its WebSocket / SSE frame.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::live::contribution::Contribution;

/// The columns the server selects from `monitor.events`, in this order.
pub const COLUMNS: &str = "seq, xid::text::bigint as xid, at, kind, source_id, rows, summary";

/// A row of `monitor.events`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Outbox sequence number.
    pub seq: i64,
    /// Top-level id of the writing transaction.
    pub xid: i64,
    /// Statement time.
    pub at: DateTime<Utc>,
    /// `<table>.<op>`.
    pub kind: String,
    /// The single source touched, if only one.
    pub source_id: Option<i64>,
    /// Rows changed.
    pub rows: i32,
    /// `{ids, sources, d}` as written by the trigger.
    pub summary: Value,
}

impl Event {
    /// Reads an event from a row selected with [`COLUMNS`] (at column offset `o`).
    pub fn from_row(row: &tokio_postgres::Row, o: usize) -> Result<Event, tokio_postgres::Error> {
        Ok(Event {
            seq: row.try_get(o)?,
            xid: row.try_get(o + 1)?,
            at: row.try_get(o + 2)?,
            kind: row.try_get(o + 3)?,
            source_id: row.try_get(o + 4)?,
            rows: row.try_get(o + 5)?,
            summary: row.try_get(o + 6)?,
        })
    }

    /// The KPI contributions the event carries.
    pub fn contributions(&self) -> Vec<Contribution> {
        Contribution::parse_all(self.summary.get("d"))
    }

    /// True for a TRUNCATE (op `truncate`, sql/0012): it carries no
    /// contributions, the aggregates must be re-read from the base tables.
    pub fn is_truncate(&self) -> bool {
        self.kind.ends_with(".truncate")
    }

    /// True for a change to `ingest.sources` (names must be reloaded).
    pub fn touches_sources(&self) -> bool {
        self.kind.starts_with("sources.")
    }

    /// Ids of all sources touched.
    pub fn source_ids(&self) -> Vec<i64> {
        self.summary
            .get("sources")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default()
    }

    /// The `event` frame, JSON text.
    pub fn frame(&self, names: &HashMap<i64, String>) -> String {
        let name = |id: i64| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
        let (table, op) = self.kind.split_once('.').unwrap_or((&self.kind, ""));
        let frame = EventFrame {
            kind: "event",
            seq: self.seq,
            event: &self.kind,
            table,
            op,
            at: self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            source: self.source_id.map(name),
            sources: self.source_ids().into_iter().map(name).collect(),
            rows: self.rows,
            ids: self.summary.get("ids").unwrap_or(&Value::Null),
            kpi: self.summary.get("d").unwrap_or(&Value::Null),
        };
        serde_json::to_string(&frame).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: i64,
    #[serde(rename = "kind")]
    event: &'a str,
    table: &'a str,
    op: &'a str,
    at: String,
    source: Option<String>,
    sources: Vec<String>,
    rows: i32,
    ids: &'a Value,
    kpi: &'a Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frame_names_sources_and_carries_seq() {
        let e = Event {
            seq: 7,
            xid: 100,
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            kind: "raw_records.insert".into(),
            source_id: Some(1),
            rows: 3,
            summary: json!({"ids": [1, 2, 3], "sources": [1], "d": []}),
        };
        let names = HashMap::from([(1, "crm".to_string())]);
        let v: Value = serde_json::from_str(&e.frame(&names)).unwrap_or_default();
        assert_eq!(v["type"], "event");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["kind"], "raw_records.insert");
        assert_eq!(v["table"], "raw_records");
        assert_eq!(v["op"], "insert");
        assert_eq!(v["source"], "crm");
        assert_eq!(v["sources"], json!(["crm"]));
    }
}
