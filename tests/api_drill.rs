//! The operator API's sources list and drill-downs against a real
//! PostgreSQL and the real server: freshness and live figures, counts,
//! timeline, payload, meeting and errors; unknown ids are 404 and bad input
//! is a 400 naming its parameter.

mod common;
#[path = "common/lists.rs"]
mod lists_support;

use common::*;
use lists_support::*;
use serde_json::{json, Value};

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
