//! The operator API's lists against a real PostgreSQL and the real server:
//! every filter and every sort equals SQL and keyset pages visit every row
//! exactly once (drill-downs: api_drill.rs; paging under inserts, scopes and
//! roles: api_scopes.rs).

mod common;
#[path = "common/lists.rs"]
mod lists_support;

use common::*;
use lists_support::*;
use serde_json::{json, Value};

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
