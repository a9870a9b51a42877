//! Export test helpers: seeded rows with hostile text, the CSV parsed with
//! the `csv` crate, and the same rows read by SQL.
#![allow(dead_code)]

use super::common::*;

/// `to_char` pattern for the export's timestamps.
pub const TS: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";

pub const NASTY: [&str; 6] = [
    r#"{"title": "plain"}"#,
    r#"{"title": "comma, separated", "note": "say \"hi\""}"#,
    r#"{"title": "line one\nline two\r\nline three", "city": "Zürich — 東京 🚀"}"#,
    r#"{"title": "=SUM(A1:A2)", "quote": "\"", "empty": ""}"#,
    r#"{"big": 12345678901234567890123, "n": 1.50, "nested": {"a": [1, "b,c", null]}}"#,
    r#""just a string, with a comma""#,
];

pub struct Seeded {
    pub src: i64,
    pub other: i64,
}

pub async fn seed(db: &TestDb) -> Seeded {
    let src = db.source("crm, \"north\"").await;
    let other = db.source("erp").await;
    let p = Pipeline::new(db).await;
    for (i, s) in [src, other, src].into_iter().enumerate() {
        let run = p.run(s).await;
        let mut ids = Vec::new();
        for (j, payload) in NASTY.iter().enumerate() {
            let ext = match j {
                0 => None,
                1 => Some("ext, with comma".to_string()),
                2 => Some("ext \"quoted\"\nnewline".to_string()),
                _ => Some(format!("ext-{i}-{j}")),
            };
            ids.push(p.record_with(run, s, ext.as_deref(), payload).await);
        }
        ids.extend(p.records(run, s, 10).await);
        p.process(&ids[..4], "normalized", 30).await;
        p.process(&ids[4..7], "rejected", 700).await;
        for (k, r) in ids[4..7].iter().enumerate() {
            let msg = [
                "missing field \"start\", expected RFC 3339",
                "zone Europe/Zürich unknown;\nsecond line",
                "50% done, _underscore_ and 東京",
            ][k];
            p.error_with(
                Some(run),
                s,
                Some(*r),
                if k == 1 { "warning" } else { "error" },
                "validate",
                "E_CSV",
                msg,
                Some(r#"{"field": "start", "why": "a,b \"c\""}"#),
            )
            .await;
        }
        if i < 2 {
            p.finish_run(run, if i == 0 { "succeeded" } else { "failed" })
                .await;
        }
    }
    Seeded { src, other }
}

pub fn parse_csv(body: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body.as_bytes());
    let header = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = r
        .records()
        .map(|rec| {
            rec.expect("csv record")
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    (header, rows)
}

pub async fn sql_rows(db: &TestDb, sql: &str) -> Vec<Vec<String>> {
    db.client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.get::<_, Option<String>>(i).unwrap_or_default())
                .collect()
        })
        .collect()
}

pub async fn get_csv(server: &TestServer, path: &str) -> (Vec<String>, Vec<Vec<String>>, String) {
    let (status, ct, body) = server.get_raw(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert!(ct.starts_with("text/csv"), "{path}: {ct}");
    let (h, rows) = parse_csv(&body);
    (h, rows, body)
}

pub fn records_sql(cond: &str, payload: bool) -> String {
    format!(
        "select r.id::text, r.run_id::text, s.name, r.external_id, r.status,
                to_char(r.received_at at time zone 'UTC', {TS}),
                to_char(r.processed_at at time zone 'UTC', {TS}) {}
           from ingest.raw_records r join ingest.sources s on s.id = r.source_id
          where {cond} order by r.received_at desc, r.id desc",
        if payload { ", r.payload::text" } else { "" }
    )
}
