//! CSV exports against a real PostgreSQL and the real server: the CSV,
//! parsed with the `csv` crate, equals SQL row by row (payloads and messages
//! with commas, quotes, newlines and non-ASCII text), big synchronous exports
//! are refused, and export jobs go through start, progress (REST and the
//! `exports` WebSocket topic), download, cancel, failure and expiry.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// `to_char` pattern for the export's timestamps.
const TS: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";

const NASTY: [&str; 6] = [
    r#"{"title": "plain"}"#,
    r#"{"title": "comma, separated", "note": "say \"hi\""}"#,
    r#"{"title": "line one\nline two\r\nline three", "city": "Zürich — 東京 🚀"}"#,
    r#"{"title": "=SUM(A1:A2)", "quote": "\"", "empty": ""}"#,
    r#"{"big": 12345678901234567890123, "n": 1.50, "nested": {"a": [1, "b,c", null]}}"#,
    r#""just a string, with a comma""#,
];

struct Seeded {
    src: i64,
    other: i64,
}

async fn seed(db: &TestDb) -> Seeded {
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

fn parse_csv(body: &str) -> (Vec<String>, Vec<Vec<String>>) {
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

async fn sql_rows(db: &TestDb, sql: &str) -> Vec<Vec<String>> {
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

async fn get_csv(server: &TestServer, path: &str) -> (Vec<String>, Vec<Vec<String>>, String) {
    let (status, ct, body) = server.get_raw(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert!(ct.starts_with("text/csv"), "{path}: {ct}");
    let (h, rows) = parse_csv(&body);
    (h, rows, body)
}

fn records_sql(cond: &str, payload: bool) -> String {
    format!(
        "select r.id::text, r.run_id::text, s.name, r.external_id, r.status,
                to_char(r.received_at at time zone 'UTC', {TS}),
                to_char(r.processed_at at time zone 'UTC', {TS}) {}
           from ingest.raw_records r join ingest.sources s on s.id = r.source_id
          where {cond} order by r.received_at desc, r.id desc",
        if payload { ", r.payload::text" } else { "" }
    )
}

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

async fn job(server: &TestServer, id: &str) -> (u16, Value) {
    server.get(&format!("/api/exports/{id}")).await
}

async fn wait_status(server: &TestServer, id: &str, want: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (_, body) = job(server, id).await;
        if body["status"] == want {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "export {id} never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Export frames for `id` until one with `status` (inclusive).
async fn frames_until(ws: &mut Ws, id: &str, status: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = ws
            .next_of("export", Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("no export frame with status {status}; got {out:?}"));
        if f["id"] != id {
            continue;
        }
        let done = f["status"] == status;
        out.push(f);
        if done {
            return out;
        }
    }
}

async fn subscribe_exports(server: &TestServer) -> Ws {
    let mut ws = server.ws().await;
    let hello = ws
        .next_of("hello", Duration::from_secs(5))
        .await
        .expect("hello");
    assert!(hello["topics"]
        .as_array()
        .expect("topics")
        .contains(&json!("exports")));
    ws.send(json!({"op": "subscribe", "topics": ["exports"]}))
        .await;
    ws.next_of("subscribed", Duration::from_secs(5))
        .await
        .expect("subscribed");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_job_runs_reports_progress_downloads_and_is_removed() {
    let db = TestDb::new().await;
    let s = seed(&db).await;
    // Enough rows for many batches, with payloads that need quoting.
    db.client
        .execute(
            "insert into ingest.raw_records (run_id, source_id, external_id, payload)
             select null, $1, 'bulk-' || g,
                    jsonb_build_object('title', 'Meeting, \"' || g || '\"', 'note', E'a\\nb', 'city', 'Zürich')
               from generate_series(1, 12000) g",
            &[&s.src],
        )
        .await
        .expect("bulk");
    let server = TestServer::start(&db).await;
    let mut ws = subscribe_exports(&server).await;

    let (status, started) = server
        .send(
            Method::POST,
            "/api/exports",
            Some(json!({"kind": "records", "filters": {"source": ["crm, \"north\""], "status": "pending"}, "include_payload": true})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_string();
    assert!(matches!(
        started["status"].as_str(),
        Some("queued" | "running" | "finished")
    ));
    assert_eq!(started["kind"], "records");

    let frames = frames_until(&mut ws, &id, "finished").await;
    let done = wait_status(&server, &id, "finished").await;
    let want = sql_rows(
        &db,
        &records_sql(
            &format!("r.source_id = {} and r.status = 'pending'", s.src),
            true,
        ),
    )
    .await;
    assert!(want.len() > 12_000);
    assert_eq!(done["rows"], json!(want.len()));
    assert!(done["total_estimate"].as_i64().expect("estimate") > 0);
    assert!(done["bytes"].as_u64().expect("bytes") > 0);
    assert!(done["expires_at"].is_string());
    assert_eq!(
        done["download"],
        json!(format!("/api/exports/{id}/download"))
    );
    // Frames: statuses in order, rows never decreasing, the last one complete.
    let rows: Vec<u64> = frames.iter().filter_map(|f| f["rows"].as_u64()).collect();
    assert!(rows.windows(2).all(|w| w[0] <= w[1]), "{rows:?}");
    assert_eq!(rows.last().copied(), Some(want.len() as u64));
    assert!(
        frames.iter().any(|f| f["status"] == "running"),
        "{frames:?}"
    );

    let (status, ct, body) = server.get_raw(&format!("/api/exports/{id}/download")).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/csv"));
    let (header, got) = parse_csv(&body);
    assert_eq!(header.last().map(String::as_str), Some("payload"));
    assert_eq!(got, want, "the job's file equals SQL row by row");

    // Removal.
    let (status, _) = server
        .send(Method::DELETE, &format!("/api/exports/{id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(job(&server, &id).await.0, 404);
    assert_eq!(
        server.get(&format!("/api/exports/{id}/download")).await.0,
        404
    );
    let (status, _) = server
        .send(Method::DELETE, &format!("/api/exports/{id}"), None)
        .await;
    assert_eq!(status, 404);

    // A runs job in the default order.
    let (status, started) = server
        .send(Method::POST, "/api/exports", Some(json!({"kind": "runs"})))
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_string();
    wait_status(&server, &id, "finished").await;
    let (_, _, body) = server.get_raw(&format!("/api/exports/{id}/download")).await;
    let (_, got) = parse_csv(&body);
    let want = sql_rows(
        &db,
        "select id::text from ingest.runs order by started_at desc, id desc",
    )
    .await;
    assert_eq!(
        got.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        want.iter().map(|r| r[0].clone()).collect::<Vec<_>>()
    );

    // The caller's jobs: the runs job (the records job was removed); another
    // operator sees none of them.
    let (status, mine) = server.get("/api/exports").await;
    assert_eq!(status, 200, "{mine}");
    let ids: Vec<&str> = mine["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(mine["items"][0]["status"], "finished");
    let other = ingestwatch_server::auth::mint(&ingestwatch_server::config::TokenClaims {
        jwt_secret: SECRET.into(),
        role: "operator".into(),
        ttl: "5m".into(),
        sources: Vec::new(),
        subject: "someone-else".into(),
        audience: None,
        issuer: None,
        role_claim: "role".into(),
    })
    .expect("mint");
    let (status, theirs) = server.get_as("/api/exports", Some(&other)).await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(theirs["items"], json!([]));
    let viewer = token("viewer", &[], "5m");
    assert_eq!(server.get_as("/api/exports", Some(&viewer)).await.0, 403);

    // Bad requests.
    for (body, code, param) in [
        (
            json!({"kind": "meetings"}),
            "invalid_parameter",
            Some("kind"),
        ),
        (
            json!({"kind": "runs", "filters": {"limit": 5}}),
            "invalid_parameter",
            Some("limit"),
        ),
        (
            json!({"kind": "runs", "filters": {"cursor": "x"}}),
            "invalid_parameter",
            Some("cursor"),
        ),
        (
            json!({"kind": "runs", "filters": {"sort": "status"}}),
            "invalid_parameter",
            Some("sort"),
        ),
        (
            json!({"kind": "runs", "filters": {"bogus": 1}}),
            "invalid_parameter",
            Some("bogus"),
        ),
        (
            json!({"kind": "runs", "filters": {"source": "nope"}}),
            "invalid_parameter",
            Some("source"),
        ),
        (
            json!({"kind": "runs", "filters": {"source": {"a": 1}}}),
            "invalid_parameter",
            Some("source"),
        ),
        (
            json!({"kind": "runs", "include_payload": true}),
            "invalid_parameter",
            Some("include_payload"),
        ),
        (
            json!({"kind": "records", "filters": {"include_payload": true}}),
            "invalid_parameter",
            Some("include_payload"),
        ),
        (json!({"kind": "runs", "extra": 1}), "invalid_body", None),
        (json!(["runs"]), "invalid_body", None),
    ] {
        let (status, resp) = server
            .send(Method::POST, "/api/exports", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {resp}");
        assert_eq!(resp["error"]["code"], code, "{body}: {resp}");
        if let Some(p) = param {
            let msg = resp["error"]["message"].as_str().unwrap_or("");
            assert!(
                msg.starts_with(&format!("parameter `{p}`")),
                "{body}: {msg}"
            );
        }
    }
    let r = server
        .http
        .post(format!("http://{}/api/exports", server.addr))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_body");
    let (status, body) = server.get("/api/exports/not-an-id").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_parameter");
    let (status, _) = server
        .get(&format!("/api/exports/{}", "0".repeat(32)))
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_jobs_can_be_cancelled_and_fail_cleanly() {
    let db = TestDb::new().await;
    seed(&db).await;
    let server = TestServer::start(&db).await;
    let mut ws = subscribe_exports(&server).await;
    // Hold a lock the job's reads must wait for (the pool's lock_timeout is 2 s).
    let locker = ingestwatch_server::db::connect(&db.url)
        .await
        .expect("locker");
    locker
        .batch_execute("begin; lock table ingest.raw_records in access exclusive mode")
        .await
        .expect("lock");

    let (status, started) = server
        .send(
            Method::POST,
            "/api/exports",
            Some(json!({"kind": "records"})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_string();
    wait_status(&server, &id, "running").await;
    let (status, body) = server.get(&format!("/api/exports/{id}/download")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let (status, _) = server
        .send(Method::DELETE, &format!("/api/exports/{id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(job(&server, &id).await.0, 404);
    let frames = frames_until(&mut ws, &id, "cancelled").await;
    assert_eq!(
        frames.last().map(|f| f["status"].clone()),
        Some(json!("cancelled"))
    );

    // A job whose reads time out on the lock fails, says so, and serves nothing.
    let (_, started) = server
        .send(
            Method::POST,
            "/api/exports",
            Some(json!({"kind": "records"})),
        )
        .await;
    let id = started["id"].as_str().expect("id").to_string();
    let failed = wait_status(&server, &id, "failed").await;
    assert!(failed["error"].as_str().unwrap_or("").contains("failed"));
    assert!(
        !failed["error"].as_str().unwrap_or("").contains("lock"),
        "no internals leak"
    );
    assert_eq!(
        server.get(&format!("/api/exports/{id}/download")).await.0,
        409
    );
    locker.batch_execute("rollback").await.expect("unlock");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_exports_expire_after_the_ttl() {
    let db = TestDb::new().await;
    seed(&db).await;
    let mut opts = options();
    opts.export_ttl_secs = 1;
    let server = TestServer::start_with(&db, opts).await;
    let mut ws = subscribe_exports(&server).await;
    let (status, started) = server
        .send(
            Method::POST,
            "/api/exports",
            Some(json!({"kind": "errors", "filters": {"sort": "id"}})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_string();
    frames_until(&mut ws, &id, "finished").await;
    let (status, body) = job(&server, &id).await;
    // It may already be gone if this machine is very slow; otherwise it
    // names its expiry one TTL after finishing.
    if status == 200 {
        let finished =
            chrono::DateTime::parse_from_rfc3339(body["finished_at"].as_str().expect("finished"))
                .expect("ts");
        let expires =
            chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("expires"))
                .expect("ts");
        assert_eq!((expires - finished).num_seconds(), 1);
    }
    frames_until(&mut ws, &id, "expired").await;
    wait_for("expired job removed", Duration::from_secs(10), || async {
        job(&server, &id).await.0 == 404
    })
    .await;
    assert_eq!(
        server.get(&format!("/api/exports/{id}/download")).await.0,
        404
    );
    server.stop().await;
}
