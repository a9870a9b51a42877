//! The rows the operator API serves — runs, raw records, errors — read from
//! the page query (see [`super::queries`]) into one struct each, written as
//! JSON for the lists and as CSV for the exports, so both always agree.
//!
//! Timestamps are UTC ISO-8601 with microseconds (PostgreSQL's precision),
//! e.g. `2026-11-26T10:15:30.123456Z`. JSON columns (`payload`, `details`)
//! are the jsonb text exactly as PostgreSQL prints it, embedded raw.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use tokio_postgres::Row;

use super::keyset::{ColType, Cursor, CursorValue, Order};
use super::queries::Kind;

/// UTC ISO-8601 with microseconds.
pub fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn ser_ts<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&iso(t))
}

fn ser_opt_ts<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&iso(t)),
        None => s.serialize_none(),
    }
}

/// Raw JSON from jsonb text (`None` for SQL NULL; PostgreSQL's output is always valid JSON).
pub fn raw_json(text: Option<String>) -> Option<Box<RawValue>> {
    text.and_then(|t| RawValue::from_string(t).ok())
}

/// A run with its counts.
#[derive(Debug, Clone, Serialize)]
pub struct RunItem {
    /// Run id.
    pub id: i64,
    /// Source name.
    pub source: String,
    /// running | succeeded | failed | partial.
    pub status: String,
    /// Start.
    #[serde(serialize_with = "ser_ts")]
    pub started_at: DateTime<Utc>,
    /// End (null while running).
    #[serde(serialize_with = "ser_opt_ts")]
    pub finished_at: Option<DateTime<Utc>>,
    /// `finished_at - started_at` in ms (null while running).
    pub duration_ms: Option<f64>,
    /// Raw records of the run.
    pub records_received: i64,
    /// … normalized.
    pub records_normalized: i64,
    /// … rejected.
    pub records_rejected: i64,
    /// … still pending.
    pub records_pending: i64,
    /// Error-log rows of severity error.
    pub errors: i64,
    /// Error-log rows of severity warning.
    pub warnings: i64,
}

impl RunItem {
    /// From a row of the runs page query.
    pub fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        let started_at: DateTime<Utc> = r.try_get(3)?;
        let finished_at: Option<DateTime<Utc>> = r.try_get(4)?;
        Ok(RunItem {
            id: r.try_get(0)?,
            source: r.try_get(1)?,
            status: r.try_get(2)?,
            started_at,
            finished_at,
            duration_ms: finished_at.and_then(|f| {
                (f - started_at)
                    .num_microseconds()
                    .map(|us| us as f64 / 1000.0)
            }),
            records_received: r.try_get(5)?,
            records_normalized: r.try_get(6)?,
            records_rejected: r.try_get(7)?,
            records_pending: r.try_get(8)?,
            errors: r.try_get(9)?,
            warnings: r.try_get(10)?,
        })
    }
}

/// A raw record (the payload only in exports that ask for it).
#[derive(Debug, Clone, Serialize)]
pub struct RecordItem {
    /// Record id.
    pub id: i64,
    /// Run id.
    pub run_id: Option<i64>,
    /// Source name.
    pub source: String,
    /// The pipeline's id for it.
    pub external_id: Option<String>,
    /// pending | normalized | rejected.
    pub status: String,
    /// Arrival.
    #[serde(serialize_with = "ser_ts")]
    pub received_at: DateTime<Utc>,
    /// Processing (null while pending).
    #[serde(serialize_with = "ser_opt_ts")]
    pub processed_at: Option<DateTime<Utc>>,
    /// jsonb text of the payload (exports with `include_payload` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Box<RawValue>>,
}

impl RecordItem {
    /// From a row of the records page query.
    pub fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(RecordItem {
            id: r.try_get(0)?,
            run_id: r.try_get(1)?,
            source: r.try_get(2)?,
            external_id: r.try_get(3)?,
            status: r.try_get(4)?,
            received_at: r.try_get(5)?,
            processed_at: r.try_get(6)?,
            payload: if r.len() > 7 {
                raw_json(r.try_get(7)?)
            } else {
                None
            },
        })
    }
}

/// A row of the structured error log.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorItem {
    /// Error id.
    pub id: i64,
    /// Run id.
    pub run_id: Option<i64>,
    /// Raw record id.
    pub raw_record_id: Option<i64>,
    /// Source name.
    pub source: String,
    /// When.
    #[serde(serialize_with = "ser_ts")]
    pub occurred_at: DateTime<Utc>,
    /// error | warning.
    pub severity: String,
    /// fetch | validate | normalize | load.
    pub stage: String,
    /// Machine code.
    pub code: String,
    /// Message.
    pub message: String,
    /// Structured details (jsonb).
    pub details: Option<Box<RawValue>>,
}

impl ErrorItem {
    /// From a row of the errors page query.
    pub fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(ErrorItem {
            id: r.try_get(0)?,
            run_id: r.try_get(1)?,
            raw_record_id: r.try_get(2)?,
            source: r.try_get(3)?,
            occurred_at: r.try_get(4)?,
            severity: r.try_get(5)?,
            stage: r.try_get(6)?,
            code: r.try_get(7)?,
            message: r.try_get(8)?,
            details: raw_json(r.try_get(9)?),
        })
    }
}

/// Any list row.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Item {
    /// A run.
    Run(RunItem),
    /// A raw record.
    Record(RecordItem),
    /// An error.
    Error(ErrorItem),
}

impl Item {
    /// Reads a row of the page query of `kind`.
    pub fn from_row(kind: Kind, r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(match kind {
            Kind::Runs => Item::Run(RunItem::from_row(r)?),
            Kind::Records => Item::Record(RecordItem::from_row(r)?),
            Kind::Errors => Item::Error(ErrorItem::from_row(r)?),
        })
    }

    /// Row id.
    pub fn id(&self) -> i64 {
        match self {
            Item::Run(x) => x.id,
            Item::Record(x) => x.id,
            Item::Error(x) => x.id,
        }
    }

    /// The cursor pointing just after this row under `order`.
    pub fn cursor(&self, order: &Order) -> Cursor {
        let ts = |t: DateTime<Utc>| CursorValue::Ts(t);
        let opt_ts = |t: Option<DateTime<Utc>>| t.map_or(CursorValue::Null, CursorValue::Ts);
        let text = |s: &str| CursorValue::Text(s.to_string());
        let opt_int = |i: Option<i64>| i.map_or(CursorValue::Null, CursorValue::Int);
        let value = match (self, order.col.name) {
            (_, "id") => CursorValue::Int(self.id()),
            (Item::Run(x), "started_at") => ts(x.started_at),
            (Item::Run(x), "finished_at") => opt_ts(x.finished_at),
            (Item::Run(x), "status") => text(&x.status),
            (Item::Record(x), "received_at") => ts(x.received_at),
            (Item::Record(x), "processed_at") => opt_ts(x.processed_at),
            (Item::Record(x), "status") => text(&x.status),
            (Item::Record(x), "external_id") => {
                x.external_id.as_deref().map_or(CursorValue::Null, text)
            }
            (Item::Error(x), "occurred_at") => ts(x.occurred_at),
            (Item::Error(x), "severity") => text(&x.severity),
            (Item::Error(x), "stage") => text(&x.stage),
            (Item::Error(x), "code") => text(&x.code),
            (Item::Error(x), "run_id") => opt_int(x.run_id),
            // Sort columns are whitelisted per kind; the table above covers
            // them all (a unit test checks it).
            _ => CursorValue::Null,
        };
        debug_assert!(
            matches!(
                (&value, order.col.ty),
                (CursorValue::Null, _)
                    | (CursorValue::Ts(_), ColType::Ts)
                    | (CursorValue::Text(_), ColType::Text)
                    | (CursorValue::Int(_), ColType::Int)
            ),
            "cursor value type of {}",
            order.col.name
        );
        Cursor {
            sort: order.spelling(),
            value,
            id: self.id(),
        }
    }
}

/// CSV header of an export of `kind`.
pub fn csv_header(kind: Kind, include_payload: bool) -> &'static [&'static str] {
    match (kind, include_payload) {
        (Kind::Runs, _) => &[
            "id",
            "source",
            "status",
            "started_at",
            "finished_at",
            "duration_ms",
            "records_received",
            "records_normalized",
            "records_rejected",
            "records_pending",
            "errors",
            "warnings",
        ],
        (Kind::Records, false) => &[
            "id",
            "run_id",
            "source",
            "external_id",
            "status",
            "received_at",
            "processed_at",
        ],
        (Kind::Records, true) => &[
            "id",
            "run_id",
            "source",
            "external_id",
            "status",
            "received_at",
            "processed_at",
            "payload",
        ],
        (Kind::Errors, _) => &[
            "id",
            "run_id",
            "raw_record_id",
            "source",
            "occurred_at",
            "severity",
            "stage",
            "code",
            "message",
            "details",
        ],
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn opt_ts(v: &Option<DateTime<Utc>>) -> String {
    v.as_ref().map(iso).unwrap_or_default()
}

/// How CSV cells holding the pipeline's text are written.
///
/// A spreadsheet evaluates a cell starting with `=`, `+`, `-` or `@` (and
/// some also after a tab or carriage return, or the full-width `＝ ＋ － ＠`)
/// as a formula, so a source name, external id, error code or message chosen
/// by whoever feeds the pipeline could run one on the operator's machine
/// (OWASP "CSV injection"). [`CsvCells::Guarded`] prefixes such a cell with
/// `'`, which spreadsheets show as text. Only text that comes from the data
/// is guarded; what the server writes itself (ids, counts, `duration_ms`,
/// timestamps) stays as it is, so a negative duration is still a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvCells {
    /// Neutralise formula-looking text cells (the default).
    Guarded,
    /// Write every cell as stored (`--csv-raw-formulas`).
    Raw,
}

impl CsvCells {
    /// [`CsvCells::Raw`] when `raw`, else [`CsvCells::Guarded`].
    pub fn raw_if(raw: bool) -> CsvCells {
        if raw {
            CsvCells::Raw
        } else {
            CsvCells::Guarded
        }
    }

    /// `text` as written into a cell.
    pub fn text<'a>(self, text: &'a str) -> std::borrow::Cow<'a, str> {
        const TRIGGERS: [char; 10] = ['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];
        match (self, text.chars().next()) {
            (CsvCells::Guarded, Some(c)) if TRIGGERS.contains(&c) => format!("'{text}").into(),
            _ => text.into(),
        }
    }
}

impl Item {
    /// Writes this row as one CSV record (NULL = empty field); text from the
    /// data goes through `cells`.
    pub fn write_csv<W: std::io::Write>(
        &self,
        w: &mut csv::Writer<W>,
        cells: CsvCells,
    ) -> csv::Result<()> {
        let t = |s: &'_ str| cells.text(s).into_owned();
        match self {
            Item::Run(x) => w.write_record([
                x.id.to_string(),
                t(&x.source),
                t(&x.status),
                iso(&x.started_at),
                opt_ts(&x.finished_at),
                opt(&x.duration_ms),
                x.records_received.to_string(),
                x.records_normalized.to_string(),
                x.records_rejected.to_string(),
                x.records_pending.to_string(),
                x.errors.to_string(),
                x.warnings.to_string(),
            ]),
            Item::Record(x) => {
                w.write_field(x.id.to_string())?;
                w.write_field(opt(&x.run_id))?;
                w.write_field(cells.text(&x.source).as_ref())?;
                w.write_field(cells.text(x.external_id.as_deref().unwrap_or("")).as_ref())?;
                w.write_field(cells.text(&x.status).as_ref())?;
                w.write_field(iso(&x.received_at))?;
                w.write_field(opt_ts(&x.processed_at))?;
                if let Some(p) = &x.payload {
                    w.write_field(cells.text(p.get()).as_ref())?;
                }
                w.write_record(None::<&[u8]>)
            }
            Item::Error(x) => w.write_record([
                x.id.to_string(),
                opt(&x.run_id),
                opt(&x.raw_record_id),
                t(&x.source),
                iso(&x.occurred_at),
                t(&x.severity),
                t(&x.stage),
                t(&x.code),
                t(&x.message),
                t(x.details.as_ref().map_or("", |d| d.get())),
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::keyset::Order;

    #[test]
    fn every_sort_column_has_a_cursor_value() {
        let t = DateTime::from_timestamp(1_800_000_000, 5_000).expect("ts");
        let items = [
            (
                Kind::Runs,
                Item::Run(RunItem {
                    id: 1,
                    source: "s".into(),
                    status: "running".into(),
                    started_at: t,
                    finished_at: Some(t),
                    duration_ms: None,
                    records_received: 0,
                    records_normalized: 0,
                    records_rejected: 0,
                    records_pending: 0,
                    errors: 0,
                    warnings: 0,
                }),
            ),
            (
                Kind::Records,
                Item::Record(RecordItem {
                    id: 2,
                    run_id: None,
                    source: "s".into(),
                    external_id: Some("x".into()),
                    status: "pending".into(),
                    received_at: t,
                    processed_at: Some(t),
                    payload: None,
                }),
            ),
            (
                Kind::Errors,
                Item::Error(ErrorItem {
                    id: 3,
                    run_id: Some(4),
                    raw_record_id: None,
                    source: "s".into(),
                    occurred_at: t,
                    severity: "error".into(),
                    stage: "load".into(),
                    code: "E".into(),
                    message: "m".into(),
                    details: None,
                }),
            ),
        ];
        for (kind, item) in &items {
            for col in kind.sorts() {
                let order = Order::parse(col.name, kind.sorts(), kind.id_expr()).expect("sort");
                let c = item.cursor(&order);
                assert_ne!(c.value, CursorValue::Null, "{} {}", kind.name(), col.name);
                assert_eq!(Cursor::decode(&c.encode(), &order), Ok(c));
            }
        }
    }

    #[test]
    fn guarded_cells_start_with_a_quote_only_when_a_spreadsheet_would_evaluate_them() {
        let g = CsvCells::Guarded;
        for f in [
            "=1", "+1", "-1", "@A", "\tx", "\rx", "＝1", "＋1", "－1", "＠A",
        ] {
            assert_eq!(g.text(f), format!("'{f}"), "{f:?}");
            assert_eq!(CsvCells::Raw.text(f), f);
        }
        for plain in ["", "a=1", " =1", "'=1", "1", "{\"a\":-1}", "\"=x\"", "\nx"] {
            assert_eq!(g.text(plain), plain, "{plain:?}");
        }
    }

    #[test]
    fn iso_has_microseconds_and_z() {
        let t = DateTime::from_timestamp(1_800_000_000, 123_456_000).expect("ts");
        assert_eq!(iso(&t), "2027-01-15T08:00:00.123456Z");
    }
}
