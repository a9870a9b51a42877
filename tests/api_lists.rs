//! The operator API's lists and drill-downs against a real PostgreSQL and
//! the real server: every filter and every sort equals SQL, keyset pages
//! visit every row exactly once (also while the pipeline inserts), bad input
//! is a 400 naming its parameter, unknown ids are 404, and source scopes and
//! roles apply.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use common::*;
use ingestwatch_server::auth::{Principal, Role};
use ingestwatch_server::http::params::{ApiQuery, NoParams};
use serde_json::{json, Value};

/// What [`seed`] wrote.
struct Seed {
    crm: i64,
    calendar: i64,
    erp: i64,
    /// Runs in insertion order.
    runs: Vec<i64>,
    /// A record with a tricky payload, its meeting and two errors.
    record: i64,
    payload: &'static str,
}

const PAYLOAD: &str = r#"{"title": "Q3 review, \"final\"\nline two", "city": "Zürich — 東京", "big": 12345678901234567890123, "n": 1.50, "tags": ["a,b", "%_"]}"#;

/// Three sources with runs in every status, records in every status, errors
/// of both severities and all stages, a never-heard-from source and a stale one.
async fn seed(db: &TestDb) -> Seed {
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

async fn ids_sql(db: &TestDb, sql: &str) -> Vec<i64> {
    db.client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn ids_of(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

/// Pages through `path` (which has a `?`) with `limit`; returns all items.
async fn page_all(server: &TestServer, path: &str, limit: usize) -> Vec<Value> {
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

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).expect("encode")[2..].to_string()
}

async fn iso_of(db: &TestDb, sql: &str) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sort_pages_through_every_row_once_in_sql_order() {
    let db = TestDb::new().await;
    seed(&db).await;
    let server = TestServer::start(&db).await;
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "/api/runs",
            "ingest.runs",
            &["started_at", "finished_at", "status", "id"],
        ),
        (
            "/api/records",
            "ingest.raw_records",
            &["received_at", "processed_at", "status", "external_id", "id"],
        ),
        (
            "/api/errors",
            "ingest.errors",
            &["occurred_at", "severity", "stage", "code", "run_id", "id"],
        ),
    ];
    for (route, table, cols) in cases {
        for col in cols {
            for desc in [false, true] {
                let dir = if desc { "desc" } else { "asc" };
                let want = ids_sql(
                    &db,
                    &format!("select id from {table} order by {col} {dir}, id {dir}"),
                )
                .await;
                let sort = if desc {
                    format!("-{col}")
                } else {
                    col.to_string()
                };
                let got = ids_of(&page_all(&server, &format!("{route}?sort={sort}"), 7).await);
                assert_eq!(got, want, "{route}?sort={sort}");
            }
        }
        // Default: newest first.
        let time = cols[0];
        let want = ids_sql(
            &db,
            &format!("select id from {table} order by {time} desc, id desc"),
        )
        .await;
        let got = ids_of(&page_all(&server, &format!("{route}?"), 500).await);
        assert_eq!(got, want, "{route} default order");
    }
    for desc in [false, true] {
        let dir = if desc { "desc" } else { "asc" };
        let want = ids_sql(
            &db,
            &format!("select id from ingest.sources order by name {dir}, id {dir}"),
        )
        .await;
        let sort = if desc { "-name" } else { "name" };
        let got = ids_of(&page_all(&server, &format!("/api/sources?sort={sort}"), 2).await);
        assert_eq!(got, want, "sources sort={sort}");
    }
    // A page of the default size.
    let (status, body) = server.get("/api/records").await;
    assert_eq!(status, 200);
    assert_eq!(body["limit"], 50);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(50));
    assert!(
        body["items"][0].get("payload").is_none(),
        "no payloads in lists"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_filters_counts_and_durations_equal_sql() {
    let db = TestDb::new().await;
    let s = seed(&db).await;
    let server = TestServer::start(&db).await;
    let from = iso_of(
        &db,
        &format!(
            "select started_at from ingest.runs where id = {}",
            s.runs[1]
        ),
    )
    .await;
    let to = iso_of(
        &db,
        &format!(
            "select started_at from ingest.runs where id = {}",
            s.runs[4]
        ),
    )
    .await;
    let cases: Vec<(String, String)> = vec![
        (String::new(), "true".to_string()),
        ("source=crm".into(), format!("u.source_id = {}", s.crm)),
        (
            "source=crm&source=erp".into(),
            format!("u.source_id in ({}, {})", s.crm, s.erp),
        ),
        (
            "source=crm,calendar&status=succeeded,running".into(),
            format!(
                "u.source_id in ({}, {}) and u.status in ('succeeded', 'running')",
                s.crm, s.calendar
            ),
        ),
        ("status=failed".into(), "u.status = 'failed'".into()),
        (
            format!("from={from}&to={to}"),
            format!("u.started_at >= '{from}' and u.started_at < '{to}'"),
        ),
        (format!("from={from}"), format!("u.started_at >= '{from}'")),
    ];
    for (query, cond) in cases {
        let truth = db
            .client
            .query(
                &format!(
                    "select u.id, s.name, u.status,
                        (select count(*) from ingest.raw_records r where r.run_id = u.id),
                        (select count(*) from ingest.raw_records r where r.run_id = u.id and r.status = 'normalized'),
                        (select count(*) from ingest.raw_records r where r.run_id = u.id and r.status = 'rejected'),
                        (select count(*) from ingest.raw_records r where r.run_id = u.id and r.status = 'pending'),
                        (select count(*) from ingest.errors e where e.run_id = u.id and e.severity = 'error'),
                        (select count(*) from ingest.errors e where e.run_id = u.id and e.severity = 'warning'),
                        (extract(epoch from u.finished_at - u.started_at) * 1000)::float8,
                        to_char(u.started_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
                   from ingest.runs u join ingest.sources s on s.id = u.source_id
                  where {cond} order by u.started_at desc, u.id desc"
                ),
                &[],
            )
            .await
            .expect("truth");
        let items = page_all(&server, &format!("/api/runs?{query}"), 3).await;
        assert_eq!(items.len(), truth.len(), "{query}");
        for (item, row) in items.iter().zip(&truth) {
            assert_eq!(item["id"], json!(row.get::<_, i64>(0)), "{query}");
            assert_eq!(item["source"], json!(row.get::<_, String>(1)));
            assert_eq!(item["status"], json!(row.get::<_, String>(2)));
            for (k, i) in [
                ("records_received", 3),
                ("records_normalized", 4),
                ("records_rejected", 5),
                ("records_pending", 6),
                ("errors", 7),
                ("warnings", 8),
            ] {
                assert_eq!(
                    item[k],
                    json!(row.get::<_, i64>(i)),
                    "{query} run {} {k}",
                    item["id"]
                );
            }
            match row.get::<_, Option<f64>>(9) {
                Some(d) => {
                    assert!((item["duration_ms"].as_f64().expect("duration") - d).abs() < 0.001)
                }
                None => assert!(item["duration_ms"].is_null() && item["finished_at"].is_null()),
            }
            assert_eq!(item["started_at"], json!(row.get::<_, String>(10)));
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_errors_filters_equal_sql() {
    let db = TestDb::new().await;
    let s = seed(&db).await;
    let server = TestServer::start(&db).await;
    let mid = iso_of(
        &db,
        "select received_at from ingest.raw_records order by received_at, id offset 20 limit 1",
    )
    .await;
    let record_cases = [
        (
            "source=calendar".to_string(),
            format!("source_id = {}", s.calendar),
        ),
        (
            format!("run={}", s.runs[0]),
            format!("run_id = {}", s.runs[0]),
        ),
        (
            format!("run={},{}&status=rejected", s.runs[0], s.runs[2]),
            format!(
                "run_id in ({}, {}) and status = 'rejected'",
                s.runs[0], s.runs[2]
            ),
        ),
        ("status=pending".into(), "status = 'pending'".into()),
        (
            "external_id=ext-3&external_id=ext-5".into(),
            "external_id in ('ext-3', 'ext-5')".into(),
        ),
        (
            format!("external_id={}", enc("ext-tricky")),
            "external_id = 'ext-tricky'".into(),
        ),
        (format!("to={mid}"), format!("received_at < '{mid}'")),
        (
            format!("from={mid}&source=crm&status=normalized"),
            format!(
                "received_at >= '{mid}' and source_id = {} and status = 'normalized'",
                s.crm
            ),
        ),
    ];
    for (query, cond) in record_cases {
        let want = ids_sql(
            &db,
            &format!(
                "select id from ingest.raw_records where {cond} order by received_at desc, id desc"
            ),
        )
        .await;
        let got = ids_of(&page_all(&server, &format!("/api/records?{query}"), 4).await);
        assert_eq!(got, want, "/api/records?{query}");
    }
    // The tricky external id contains a comma, so it cannot be given as a
    // comma list; the exact value matches nothing else.
    let (_, body) = server.get(&format!("/api/records/{}", s.record)).await;
    assert_eq!(body["record"]["external_id"], "ext-tricky, \"one\"");

    let error_cases = [
        (
            "severity=warning".to_string(),
            "severity = 'warning'".to_string(),
        ),
        (
            "stage=fetch,load&severity=error".into(),
            "stage in ('fetch', 'load') and severity = 'error'".into(),
        ),
        (
            "code=E_TZ&code=W_DUP".into(),
            "code in ('E_TZ', 'W_DUP')".into(),
        ),
        (
            format!("run={}", s.runs[4]),
            format!("run_id = {}", s.runs[4]),
        ),
        (
            format!("source=erp&q={}", enc("FIELD MISSING")),
            format!("source_id = {} and message ilike '%field missing%'", s.erp),
        ),
        // Wildcards are literal: "50%_off" matches, "50_%off" does not.
        (
            format!("q={}", enc("50%_off")),
            "position('50%_off' in message) > 0".into(),
        ),
        (format!("q={}", enc("50_%off")), "false".into()),
        (
            format!("q={}", enc("東京")),
            "position('東京' in message) > 0".into(),
        ),
        (
            format!("q={}", enc("\"start\";")),
            "position('\"start\";' in message) > 0".into(),
        ),
    ];
    for (query, cond) in error_cases {
        let want = ids_sql(
            &db,
            &format!(
                "select id from ingest.errors where {cond} order by occurred_at desc, id desc"
            ),
        )
        .await;
        let got = ids_of(&page_all(&server, &format!("/api/errors?{query}"), 5).await);
        assert_eq!(got, want, "/api/errors?{query}");
    }
    assert!(
        !ids_sql(
            &db,
            "select id from ingest.errors where message like '%50\\%\\_off%'"
        )
        .await
        .is_empty(),
        "the wildcard case tests something"
    );
    // Error rows carry their details and the source name.
    let (_, body) = server.get("/api/errors?code=E_LOAD").await;
    let e = &body["items"][0];
    assert_eq!(e["source"], "crm");
    assert_eq!(e["run_id"], Value::Null);
    assert_eq!(e["details"], Value::Null);
    let (_, body) = server.get("/api/errors?code=E_TZ&limit=1").await;
    assert_eq!(body["items"][0]["details"], json!({"field": "start"}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_show_freshness_last_run_and_live_figures() {
    let db = TestDb::new().await;
    let s = seed(&db).await;
    let server = TestServer::start(&db).await;
    server.wait_caught_up(&db).await;
    let (status, body) = server.get("/api/sources?window=1h").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window"]["name"], "1h");
    let by_name = |n: &str| -> Value {
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("source {n} missing from {body}"))
    };
    let crm = by_name("crm");
    assert_eq!(crm["freshness"]["status"], "healthy");
    assert_eq!(crm["expected_interval_secs"], 60.0);
    assert_eq!(crm["last_run"]["id"], json!(s.runs[5]));
    assert_eq!(crm["last_run"]["status"], "running");
    assert_eq!(crm["last_run"]["finished_at"], Value::Null);
    let last = iso_of(
        &db,
        &format!(
            "select max(received_at) from ingest.raw_records where source_id = {}",
            s.crm
        ),
    )
    .await;
    assert_eq!(crm["last_record_at"], json!(last));
    let kpis = server.kpis("1h").await;
    for k in [
        "received",
        "normalized",
        "rejected",
        "errors",
        "warnings",
        "backlog",
    ] {
        assert_eq!(
            crm["figures"][k], kpis["sources"]["crm"][k],
            "figures.{k} equal /api/kpis"
        );
    }
    assert_eq!(by_name("quiet")["freshness"]["status"], "never");
    assert_eq!(by_name("quiet")["last_run"], Value::Null);
    assert_eq!(by_name("quiet")["figures"]["received"], 0);
    assert_eq!(by_name("legacy")["freshness"]["status"], "never");
    let old = by_name("old");
    assert_eq!(old["freshness"]["status"], "stale");
    assert!(old["freshness"]["age_secs"].as_f64().expect("age") >= 3_599.0);
    // Filters.
    let (_, body) = server.get("/api/sources?kind=file").await;
    let names: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["legacy", "quiet"]);
    let (_, body) = server.get("/api/sources?source=erp,crm&sort=-name").await;
    assert_eq!(
        ids_of(body["items"].as_array().expect("items")),
        [s.erp, s.crm]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_downs_show_counts_timeline_payload_meeting_and_errors() {
    let db = TestDb::new().await;
    let s = seed(&db).await;
    let server = TestServer::start(&db).await;

    // Run: the same item as the list, error summary by code, timeline.
    let run = s.runs[0];
    let (status, body) = server.get(&format!("/api/runs/{run}")).await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = server.get("/api/runs?sort=id&limit=1").await;
    assert_eq!(body["run"], list["items"][0]);
    let summary = db
        .client
        .query(
            "select code, severity, count(*) from ingest.errors where run_id = $1
              group by code, severity order by count(*) desc, code, severity",
            &[&run],
        )
        .await
        .expect("summary");
    let got: Vec<(String, String, i64)> = body["error_summary"]
        .as_array()
        .expect("summary")
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap_or("").to_string(),
                c["severity"].as_str().unwrap_or("").to_string(),
                c["count"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let want: Vec<(String, String, i64)> = summary
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, want);
    let tl = &body["timeline"];
    assert_eq!(tl["started_at"], body["run"]["started_at"]);
    assert_eq!(tl["finished_at"], body["run"]["finished_at"]);
    let first = iso_of(
        &db,
        &format!("select min(received_at) from ingest.raw_records where run_id = {run}"),
    )
    .await;
    assert_eq!(tl["first_record_at"], json!(first));
    let series = &tl["errors"];
    let n = series["t"].as_array().expect("t").len();
    assert!(n >= 1 && series["errors"].as_array().map(Vec::len) == Some(n));
    let sum = |k: &str| -> i64 {
        series[k]
            .as_array()
            .expect(k)
            .iter()
            .filter_map(Value::as_i64)
            .sum()
    };
    let (errors, warnings): (i64, i64) = {
        let r = db
            .client
            .query_one(
                "select count(*) filter (where severity = 'error'), count(*) filter (where severity = 'warning')
                   from ingest.errors where run_id = $1",
                &[&run],
            )
            .await
            .expect("counts");
        (r.get(0), r.get(1))
    };
    assert_eq!((sum("errors"), sum("warnings")), (errors, warnings));
    assert_eq!(body["run"]["errors"], json!(errors));

    // Record: payload exactly as stored, verbatim text, meeting, errors.
    let (status, body) = server.get(&format!("/api/records/{}", s.record)).await;
    assert_eq!(status, 200, "{body}");
    let text: String = db
        .client
        .query_one(
            "select payload::text from ingest.raw_records where id = $1",
            &[&s.record],
        )
        .await
        .expect("payload")
        .get(0);
    assert_eq!(body["payload_text"], json!(text));
    assert_eq!(body["payload_redacted"], false);
    let raw = server
        .get_raw(&format!("/api/records/{}", s.record))
        .await
        .2;
    assert!(
        raw.contains(&format!("\"payload\":{text}")),
        "the payload is embedded verbatim (big numbers and key order kept): {raw}"
    );
    assert!(raw.contains("12345678901234567890123"));
    let reparsed: Value = serde_json::from_str(s.payload).expect("payload json");
    assert_eq!(body["payload"]["city"], reparsed["city"]);
    assert_eq!(body["record"]["status"], "normalized");
    assert_eq!(body["meeting"]["title"], "Q3 review, \"final\"");
    assert_eq!(body["meeting"]["attendee_count"], 7);
    assert_eq!(body["meeting"]["organizer"], "Zoë");
    let codes: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert_eq!(codes, ["W_TITLE", "E_LOAD"]);
    assert_eq!(
        body["errors"][0]["message"],
        "title had a newline\nkept as is; 東京"
    );
    // A record without meeting or errors.
    let plain: i64 = ids_sql(
        &db,
        "select id from ingest.raw_records where status = 'pending' limit 1",
    )
    .await[0];
    let (status, body) = server.get(&format!("/api/records/{plain}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["meeting"], Value::Null);
    assert_eq!(body["errors"], json!([]));
    server.stop().await;
}

fn assert_invalid(status: u16, body: &Value, param: &str, ctx: &str) {
    assert_eq!(status, 400, "{ctx}: {body}");
    assert_eq!(body["error"]["code"], "invalid_parameter", "{ctx}: {body}");
    let msg = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with(&format!("parameter `{param}`: ")),
        "{ctx}: message {msg:?} names `{param}`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_404_and_bad_input_is_400_naming_the_parameter() {
    let db = TestDb::new().await;
    seed(&db).await;
    let server = TestServer::start(&db).await;
    for path in ["/api/runs/999999", "/api/records/999999"] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (_, page) = server.get("/api/runs?sort=status&limit=1").await;
    let status_cursor = page["next_cursor"].as_str().expect("cursor").to_string();
    let cases: Vec<(String, &str)> = vec![
        ("/api/runs/abc".into(), "id"),
        ("/api/runs/-3".into(), "id"),
        ("/api/records/1.5".into(), "id"),
        ("/api/records/99999999999999999999".into(), "id"),
        ("/api/runs/1?verbose=1".into(), "verbose"),
        ("/api/runs?limit=501".into(), "limit"),
        ("/api/runs?limit=0".into(), "limit"),
        ("/api/runs?limit=ten".into(), "limit"),
        ("/api/runs?limit=5&limit=6".into(), "limit"),
        ("/api/runs?status=done".into(), "status"),
        ("/api/runs?source=nope".into(), "source"),
        ("/api/runs?source=crm,nope".into(), "source"),
        ("/api/runs?sort=-nope".into(), "sort"),
        ("/api/runs?sort=payload".into(), "sort"),
        ("/api/runs?from=yesterday".into(), "from"),
        ("/api/runs?to=2026-13-01T00:00:00Z".into(), "to"),
        (
            "/api/runs?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z".into(),
            "from",
        ),
        ("/api/runs?cursor=!!!".into(), "cursor"),
        ("/api/runs?cursor=eyJ4IjoxfQ".into(), "cursor"),
        (format!("/api/runs?cursor={status_cursor}"), "cursor"),
        (
            format!("/api/runs?sort=-status&cursor={status_cursor}"),
            "cursor",
        ),
        ("/api/runs?page=2".into(), "page"),
        ("/api/records?status=ok".into(), "status"),
        ("/api/records?run=x".into(), "run"),
        (
            "/api/records?include_payload=true".into(),
            "include_payload",
        ),
        ("/api/records?sort=payload".into(), "sort"),
        ("/api/errors?severity=fatal".into(), "severity"),
        ("/api/errors?stage=parse".into(), "stage"),
        (format!("/api/errors?q={}", "x".repeat(201)), "q"),
        ("/api/errors?q=a&q=b".into(), "q"),
        ("/api/sources?window=2h".into(), "window"),
        ("/api/sources?status=late".into(), "status"),
        ("/api/sources?sort=-received".into(), "sort"),
    ];
    for (path, param) in &cases {
        let (status, body) = server.get(path).await;
        assert_invalid(status, &body, param, path);
    }
    // A cursor from one sort is accepted by that sort only.
    let (status, _) = server
        .get(&format!("/api/runs?sort=status&cursor={status_cursor}"))
        .await;
    assert_eq!(status, 200);
    // Empty values count as absent.
    let (status, body) = server.get("/api/runs?source=&status=&limit=").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["limit"], 50);
    // Unknown routes under /api are JSON 404s.
    let (status, body) = server.get("/api/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_while_the_pipeline_inserts_skips_and_repeats_nothing() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let p = Pipeline::new(&db).await;
    let run = p.run(src).await;
    for _ in 0..6 {
        p.records(run, src, 50).await;
    }
    let errs_run = p.run(src).await;
    for i in 0..120 {
        p.error_with(
            Some(errs_run),
            src,
            None,
            "error",
            "load",
            "E",
            &format!("e{i}"),
            None,
        )
        .await;
    }
    let server = TestServer::start(&db).await;

    for sort in ["-received_at", "received_at", "id", "-id", "status"] {
        let before: HashSet<i64> = ids_sql(&db, "select id from ingest.raw_records")
            .await
            .into_iter()
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let w = Pipeline::new(&db).await;
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0;
                // Bounded, so ascending pages can catch up and end.
                while !stop.load(Ordering::Acquire) && n < 150 {
                    w.records(run, src, 3).await;
                    n += 1;
                }
                n
            })
        };
        let items = page_all(&server, &format!("/api/records?sort={sort}"), 20).await;
        stop.store(true, Ordering::Release);
        let statements = writer.await.expect("writer");
        let got = ids_of(&items);
        let unique: HashSet<i64> = got.iter().copied().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "sort={sort}: a row was served twice"
        );
        let missing: Vec<&i64> = before.difference(&unique).collect();
        assert!(missing.is_empty(), "sort={sort}: rows skipped: {missing:?}");
        // Whatever else was served exists, and the whole sequence is in SQL order.
        let list = got.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let (col, dir) = match sort.strip_prefix('-') {
            Some(c) => (c, "desc"),
            None => (sort, "asc"),
        };
        let ordered = ids_sql(
            &db,
            &format!("select id from ingest.raw_records where id in ({list}) order by {col} {dir}, id {dir}"),
        )
        .await;
        assert_eq!(got, ordered, "sort={sort}: pages are in order");
        assert!(statements > 0, "the writer wrote while paging");
    }
    // The error log too, with a writer.
    let before = ids_sql(
        &db,
        "select id from ingest.errors order by occurred_at desc, id desc",
    )
    .await;
    let writer = {
        let w = Pipeline::new(&db).await;
        tokio::spawn(async move {
            for i in 0..100 {
                w.error_with(
                    Some(errs_run),
                    src,
                    None,
                    "warning",
                    "fetch",
                    "W",
                    &format!("w{i}"),
                    None,
                )
                .await;
            }
        })
    };
    let got = ids_of(&page_all(&server, "/api/errors?", 9).await);
    writer.await.expect("writer");
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len());
    assert!(before.iter().all(|id| unique.contains(id)));
    server.stop().await;
}

fn principal(role: Role, sources: Option<&[&str]>) -> Principal {
    Principal {
        subject: "test".into(),
        role,
        sources: sources.map(|s| s.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>()),
        expires_at: None,
    }
}

/// The handlers are called directly with a principal (the auth extractor is
/// not part of this branch): scopes filter every list, hide other sources'
/// runs and records (404), and viewers get no payloads and no exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_roles_apply_to_lists_drill_downs_and_exports() {
    use ingestwatch_server::http::lists::{errors, records, runs, sources};
    let db = TestDb::new().await;
    let s = seed(&db).await;
    let st = ingestwatch_server::server::state(
        &db.reader_url,
        options(),
        tokio_util::sync::CancellationToken::new(),
    )
    .expect("state");
    let scoped = principal(Role::Viewer, Some(&["calendar", "erp"]));

    let page = runs::list(
        State(st.clone()),
        scoped.clone(),
        ApiQuery(Default::default()),
    )
    .await
    .expect("runs");
    let got: Vec<i64> = page.0.items.iter().map(|i| i.id()).collect();
    let want = ids_sql(
        &db,
        &format!(
            "select id from ingest.runs where source_id in ({}, {}) order by started_at desc, id desc",
            s.calendar, s.erp
        ),
    )
    .await;
    assert_eq!(got, want);

    let page = records::list(
        State(st.clone()),
        scoped.clone(),
        ApiQuery(Default::default()),
    )
    .await
    .expect("records");
    assert!(page
        .0
        .items
        .iter()
        .all(|i| matches!(i, ingestwatch_server::db::rows::Item::Record(r) if r.source != "crm")));
    let page = errors::list(
        State(st.clone()),
        scoped.clone(),
        ApiQuery(Default::default()),
    )
    .await
    .expect("errors");
    let want = ids_sql(
        &db,
        &format!(
            "select id from ingest.errors where source_id in ({}, {}) order by occurred_at desc, id desc",
            s.calendar, s.erp
        ),
    )
    .await;
    assert_eq!(
        page.0.items.iter().map(|i| i.id()).collect::<Vec<_>>(),
        want
    );
    let page = sources::list(
        State(st.clone()),
        scoped.clone(),
        ApiQuery(Default::default()),
    )
    .await
    .expect("sources");
    let names: Vec<&str> = page.0.page.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["calendar", "erp"]);

    // Asking for a source outside the scope is the same 400 as an unknown one.
    let q = runs::RunParams {
        source: Some("crm".into()),
        ..Default::default()
    };
    let e = runs::list(State(st.clone()), scoped.clone(), ApiQuery(q))
        .await
        .expect_err("crm is out of scope");
    assert_eq!(e.to_string(), "parameter `source`: unknown source \"crm\"");
    // An empty scope sees nothing.
    let nobody = principal(Role::Viewer, Some(&[]));
    let page = runs::list(State(st.clone()), nobody, ApiQuery(Default::default()))
        .await
        .expect("runs");
    assert!(page.0.items.is_empty());

    // Drill-downs: other sources are 404; viewers get no payload.
    use ingestwatch_server::http::drill;
    let e = drill::run(
        State(st.clone()),
        scoped.clone(),
        Ok(Path(s.runs[0].to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect_err("crm run hidden");
    assert!(matches!(
        e,
        ingestwatch_server::error::AppError::NotFound(_)
    ));
    let e = drill::record(
        State(st.clone()),
        scoped.clone(),
        Ok(Path(s.record.to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect_err("crm record hidden");
    assert!(matches!(
        e,
        ingestwatch_server::error::AppError::NotFound(_)
    ));
    let ok = drill::run(
        State(st.clone()),
        scoped.clone(),
        Ok(Path(s.runs[1].to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect("calendar run visible");
    assert_eq!(ok.0.run.source, "calendar");
    let viewer = principal(Role::Viewer, None);
    let detail = drill::record(
        State(st.clone()),
        viewer.clone(),
        Ok(Path(s.record.to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect("record");
    assert!(detail.0.payload.is_none() && detail.0.payload_text.is_none());
    assert!(detail.0.payload_redacted);
    assert_eq!(detail.0.errors.len(), 2, "errors are not payloads");
    let operator = principal(Role::Operator, Some(&["crm"]));
    let detail = drill::record(
        State(st.clone()),
        operator,
        Ok(Path(s.record.to_string())),
        ApiQuery(NoParams {}),
    )
    .await
    .expect("record");
    assert!(detail.0.payload_text.is_some() && !detail.0.payload_redacted);

    // Exports need the operator role.
    use ingestwatch_server::http::export;
    let e = export::csv(
        State(st.clone()),
        viewer.clone(),
        Path("runs.csv".into()),
        axum::extract::RawQuery(None),
    )
    .await
    .expect_err("viewer export");
    assert!(matches!(
        e,
        ingestwatch_server::error::AppError::Forbidden(_)
    ));
    let e = export::start(
        State(st.clone()),
        viewer,
        ApiQuery(NoParams {}),
        ingestwatch_server::http::params::ApiJson(export::StartExport {
            kind: "runs".into(),
            filters: Default::default(),
            include_payload: false,
        }),
    )
    .await
    .expect_err("viewer job");
    assert!(matches!(
        e,
        ingestwatch_server::error::AppError::Forbidden(_)
    ));
}
