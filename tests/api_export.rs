//! CSV exports against a real PostgreSQL and the real server: the CSV,
//! parsed with the `csv` crate, equals SQL row by row (payloads and messages
//! with commas, quotes, newlines and non-ASCII text) and big synchronous
//! exports are refused (export jobs: api_export_jobs.rs).

mod common;
#[path = "common/export.rs"]
mod export_support;

use std::time::Duration;

use common::*;
use export_support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_exports_equal_sql_row_by_row() {
    let db = TestDb::new().await;
    let s = seed(&db).await;
    let server = TestServer::start(&db).await;

    // Records with payloads.
    let (header, rows, body) =
        get_csv(&server, "/api/export/records.csv?include_payload=true").await;
    assert_eq!(
        header,
        [
            "id",
            "run_id",
            "source",
            "external_id",
            "status",
            "received_at",
            "processed_at",
            "payload"
        ]
    );
    assert!(body
        .starts_with("id,run_id,source,external_id,status,received_at,processed_at,payload\r\n"));
    assert!(body.ends_with("\r\n"));
    let want = sql_rows(&db, &records_sql("true", true)).await;
    assert_eq!(rows.len(), want.len());
    assert_eq!(rows, want, "records.csv with payloads equals SQL");
    for nasty in [
        "\"comma, separated\"",
        "東京 🚀",
        "\\nline two",
        "12345678901234567890123",
    ] {
        assert!(
            rows.iter().any(|r| r[7].contains(nasty)),
            "a payload holds {nasty}"
        );
    }
    // Every payload parses back to the stored JSON.
    for r in &rows {
        serde_json::from_str::<Value>(&r[7]).expect("payload column is JSON");
    }

    // Without payloads, filtered by source: a name with a comma and quotes,
    // CSV-quoted in the comma list (`"crm, ""north"""`), URL-encoded.
    let (header, rows, _) = get_csv(
        &server,
        "/api/export/records.csv?source=%22crm%2C%20%22%22north%22%22%22&status=normalized,rejected",
    )
    .await;
    assert_eq!(header.len(), 7);
    let want = sql_rows(
        &db,
        &records_sql(
            &format!(
                "r.source_id = {} and r.status in ('normalized', 'rejected')",
                s.src
            ),
            false,
        ),
    )
    .await;
    assert!(!want.is_empty());
    assert_eq!(rows, want);

    // Runs with counts and durations.
    let (header, rows, _) = get_csv(&server, "/api/export/runs.csv?sort=started_at").await;
    assert_eq!(header[5], "duration_ms");
    let want = sql_rows(
        &db,
        &format!(
            "select u.id::text, s.name, u.status,
                    to_char(u.started_at at time zone 'UTC', {TS}),
                    to_char(u.finished_at at time zone 'UTC', {TS}),
                    (extract(epoch from u.finished_at - u.started_at) * 1000)::float8::text,
                    (select count(*) from ingest.raw_records r where r.run_id = u.id)::text,
                    (select count(*) from ingest.raw_records r where r.run_id = u.id and r.status = 'normalized')::text,
                    (select count(*) from ingest.raw_records r where r.run_id = u.id and r.status = 'rejected')::text,
                    (select count(*) from ingest.raw_records r where r.run_id = u.id and r.status = 'pending')::text,
                    (select count(*) from ingest.errors e where e.run_id = u.id and e.severity = 'error')::text,
                    (select count(*) from ingest.errors e where e.run_id = u.id and e.severity = 'warning')::text
               from ingest.runs u join ingest.sources s on s.id = u.source_id
              order by u.started_at, u.id"
        ),
    )
    .await;
    assert_eq!(rows.len(), want.len());
    for (got, want) in rows.iter().zip(&want) {
        for i in 0..12 {
            if i == 5 && !want[i].is_empty() {
                let (g, w): (f64, f64) =
                    (got[i].parse().expect("ms"), want[i].parse().expect("ms"));
                assert!((g - w).abs() < 0.001, "duration {g} vs {w}");
            } else {
                assert_eq!(got[i], want[i], "runs.csv column {}", header[i]);
            }
        }
    }

    // Errors: messages with quotes, newlines, non-ASCII; details JSON.
    let (header, rows, _) = get_csv(&server, "/api/export/errors.csv").await;
    assert_eq!(header[8], "message");
    let want = sql_rows(
        &db,
        &format!(
            "select e.id::text, e.run_id::text, e.raw_record_id::text, s.name,
                    to_char(e.occurred_at at time zone 'UTC', {TS}), e.severity, e.stage, e.code,
                    e.message, e.details::text
               from ingest.errors e join ingest.sources s on s.id = e.source_id
              order by e.occurred_at desc, e.id desc"
        ),
    )
    .await;
    assert_eq!(rows, want);
    assert!(rows.iter().any(|r| r[8].contains("\nsecond line")));
    let (_, rows, _) = get_csv(
        &server,
        "/api/export/errors.csv?q=50%25%20done&source=erp&severity=error",
    )
    .await;
    let want = sql_rows(
        &db,
        &format!(
            "select e.id::text from ingest.errors e where e.source_id = {} and e.severity = 'error'
                and position('50% done' in e.message) > 0 order by e.occurred_at desc, e.id desc",
            s.other
        ),
    )
    .await;
    assert_eq!(
        rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        want.iter().map(|r| r[0].clone()).collect::<Vec<_>>()
    );
    assert_eq!(want.len(), 1);

    // An empty export is just the header.
    let (_, rows, body) = get_csv(&server, "/api/export/runs.csv?status=partial").await;
    assert!(rows.is_empty());
    assert_eq!(body.lines().count(), 1);

    // Bad input.
    for (path, param) in [
        ("/api/export/runs.csv?cursor=abc", "cursor"),
        ("/api/export/runs.csv?limit=5", "limit"),
        (
            "/api/export/runs.csv?include_payload=true",
            "include_payload",
        ),
        (
            "/api/export/records.csv?include_payload=maybe",
            "include_payload",
        ),
        ("/api/export/errors.csv?severity=fatal", "severity"),
        ("/api/export/records.csv?source=nope", "source"),
        ("/api/export/records.csv?sort=payload", "sort"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{path}");
        let msg = body["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.starts_with(&format!("parameter `{param}`")),
            "{path}: {msg}"
        );
    }
    let (status, body) = server.get("/api/export/meetings.csv").await;
    assert_eq!(status, 404, "{body}");

    // More than 10,000 rows: refused up front, pointing to the jobs; a
    // narrower filter still exports synchronously.
    let p = Pipeline::new(&db).await;
    let run = p.run(s.other).await;
    p.records(run, s.other, 10_001).await;
    let (status, body) = server.get("/api/export/records.csv").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "export_too_large");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("POST /api/exports"));
    let (_, rows, _) = get_csv(
        &server,
        &format!(
            "/api/export/records.csv?source=erp&run={run}&status=pending&external_id=ext-1,ext-2"
        ),
    )
    .await;
    assert_eq!(rows.len(), 2);

    // A client that goes away mid-download leaves no transaction open.
    let mut resp = server
        .http
        .get(format!(
            "http://{}/api/export/records.csv?include_payload=true&source=erp&run={run}&to=2100-01-01T00:00:00Z&status=pending&external_id={}",
            server.addr,
            (1..=100).map(|i| format!("ext-{i}")).collect::<Vec<_>>().join(",")
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status().as_u16(), 200);
    let first = resp.chunk().await.expect("chunk").expect("a first chunk");
    assert!(first.starts_with(b"id,run_id"));
    drop(resp);
    wait_for(
        "no export transaction left open",
        Duration::from_secs(10),
        || async {
            let n: i64 = db
                .client
                .query_one(
                    "select count(*) from pg_stat_activity where datname = current_database()
                   and application_name = 'ingestwatch' and state like 'idle in transaction%'",
                    &[],
                )
                .await
                .expect("activity")
                .get(0);
            n == 0
        },
    )
    .await;
    server.stop().await;
}
