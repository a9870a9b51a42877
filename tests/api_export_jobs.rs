//! Export jobs against a real PostgreSQL and the real server: start,
//! progress (REST and the `exports` WebSocket topic), download, cancel,
//! failure and expiry after the TTL.

mod common;
#[path = "common/export.rs"]
mod export_support;

use std::time::Duration;

use common::*;
use export_support::*;
use reqwest::Method;
use serde_json::{json, Value};

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
