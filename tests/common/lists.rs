//! List test helpers: a seed with every status, severity and stage, ids
//! by SQL, keyset paging through a list, and URL encoding.
#![allow(dead_code)]

use serde_json::{json, Value};

use super::common::*;

/// What [`seed`] wrote.
pub struct Seed {
    pub crm: i64,
    pub calendar: i64,
    pub erp: i64,
    /// Runs in insertion order.
    pub runs: Vec<i64>,
    /// A record with a tricky payload, its meeting and two errors.
    pub record: i64,
    pub payload: &'static str,
}

pub const PAYLOAD: &str = r#"{"title": "Q3 review, \"final\"\nline two", "city": "Zürich — 東京", "big": 12345678901234567890123, "n": 1.50, "tags": ["a,b", "%_"]}"#;

/// Three sources with runs in every status, records in every status, errors
/// of both severities and all stages, a never-heard-from source and a stale one.
pub async fn seed(db: &TestDb) -> Seed {
    let crm = db.source("crm").await;
    let calendar = db.source("calendar").await;
    let erp = db.source("erp").await;
    db.client
        .batch_execute(
            "insert into ingest.sources (name, kind, expected_interval) values
               ('quiet', 'file', '1 hour'), ('legacy', 'file', null), ('old', 'api', '1 minute')",
        )
        .await
        .expect("more sources");
    let old: i64 = db
        .client
        .query_one("select id from ingest.sources where name = 'old'", &[])
        .await
        .expect("old")
        .get(0);
    let p = Pipeline::new(db).await;
    let mut runs = Vec::new();
    for (i, (src, n)) in [
        (crm, 12),
        (calendar, 7),
        (crm, 9),
        (erp, 4),
        (calendar, 15),
        (crm, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let run = p.run(src).await;
        runs.push(run);
        let ids = p.records(run, src, n).await;
        let third = ids.len() / 3;
        p.process(&ids[..third], "normalized", 40 + i as i64).await;
        p.process(&ids[third..2 * third], "rejected", 900).await;
        for (j, r) in ids[third..2 * third].iter().enumerate() {
            let sev = if j % 2 == 0 { "error" } else { "warning" };
            let stage = ["fetch", "validate", "normalize", "load"][j % 4];
            let code = ["E_SCHEMA", "E_TZ", "W_DUP"][j % 3];
            p.error_with(
                Some(run),
                src,
                Some(*r),
                sev,
                stage,
                code,
                &format!("record {r}: field missing, \"start\"; 50%_off"),
                Some(r#"{"field": "start"}"#),
            )
            .await;
        }
        match i % 3 {
            0 => p.finish_run(run, "succeeded").await,
            1 => p.finish_run(run, "failed").await,
            _ if i == 5 => {} // still running
            _ => p.finish_run(run, "partial").await,
        }
    }
    let last = *runs.last().expect("runs");
    let record = p
        .record_with(last, crm, Some("ext-tricky, \"one\""), PAYLOAD)
        .await;
    p.process(&[record], "normalized", 120).await;
    p.meeting(record, crm, "Q3 review, \"final\"", 7).await;
    p.error_with(
        Some(last),
        crm,
        Some(record),
        "warning",
        "normalize",
        "W_TITLE",
        "title had a newline\nkept as is; 東京",
        None,
    )
    .await;
    p.error_with(
        None,
        crm,
        Some(record),
        "error",
        "load",
        "E_LOAD",
        "no run",
        None,
    )
    .await;
    // `old` had records an hour ago only.
    let old_run = p.run(old).await;
    let ids = p.records(old_run, old, 2).await;
    db.client
        .execute(
            "update ingest.raw_records set received_at = now() - interval '1 hour' where id = any($1)",
            &[&ids],
        )
        .await
        .expect("age records");
    Seed {
        crm,
        calendar,
        erp,
        runs,
        record,
        payload: PAYLOAD,
    }
}

pub async fn ids_sql(db: &TestDb, sql: &str) -> Vec<i64> {
    db.client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

pub fn ids_of(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

/// Pages through `path` (which has a `?`) with `limit`; returns all items.
pub async fn page_all(server: &TestServer, path: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let (status, body) = server.get(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(body["limit"], json!(limit));
        let items = body["items"].as_array().expect("items");
        assert!(items.len() <= limit);
        out.extend(items.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => {
                assert!(!items.is_empty(), "a next page after an empty one");
                cursor = Some(c.to_string());
            }
            None => return out,
        }
    }
    panic!("{path}: paging did not end");
}

pub fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).expect("encode")[2..].to_string()
}

pub async fn iso_of(db: &TestDb, sql: &str) -> String {
    db.client
        .query_one(
            &format!(
                "select to_char(t at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from ({sql}) x(t)"
            ),
            &[],
        )
        .await
        .expect("iso")
        .get(0)
}
