//! The KPI fields that used to escape the SQL-truth comparison (issue 16,
//! item 5): `runs_partial`, `top_codes` and `last_received_at` equal SQL in
//! every window, and `last_received_at` agrees between a long-running server
//! and a freshly started one after the newest record is deleted, moved back
//! in time, or moved to another source.

mod common;

use common::*;

const WINDOWS: [&str; 4] = ["1m", "5m", "1h", "24h"];

async fn assert_all_windows(server: &TestServer, db: &TestDb) {
    for w in WINDOWS {
        assert_kpis_match_sql(&db.client, &server.kpis(w).await).await;
    }
}

/// `last_received_at` of the total and of every source, as a server reports it.
async fn last_received(server: &TestServer) -> Vec<(String, serde_json::Value)> {
    let k = server.kpis("5m").await;
    let mut out = vec![("total".to_string(), k["total"]["last_received_at"].clone())];
    for (name, f) in k["sources"].as_object().expect("sources") {
        out.push((name.clone(), f["last_received_at"].clone()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_runs_top_codes_and_last_received_equal_sql_and_a_fresh_server() {
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp").await;
    let server = TestServer::start(&db).await;
    let p = Pipeline::new(&db).await;
    for (i, src) in [crm, erp, crm, erp, crm].into_iter().enumerate() {
        let run = p.run(src).await;
        // Records received 1 to 4 s ago (distinct times per source and run).
        p.client
            .execute(
                "insert into ingest.raw_records (run_id, source_id, payload, received_at)
                 select $1, $2, '{}', now() - g * interval '1 second' - $3 * interval '37 ms'
                   from generate_series(1, 4) g",
                &[&run, &src, &(i as f64)],
            )
            .await
            .expect("records");
        // Seven codes with different counts: the top 5 and their order matter.
        for c in 0..7i64 {
            for _ in 0..=(c * (i as i64 + 1)) % 4 {
                let severity = if c % 2 == 0 { "error" } else { "warning" };
                p.error(run, src, None, severity, &format!("E_{c}")).await;
            }
        }
        p.finish_run(
            run,
            ["partial", "succeeded", "partial", "failed", "partial"][i],
        )
        .await;
    }
    server.wait_caught_up(&db).await;
    assert_all_windows(&server, &db).await;

    // The newest record of crm is deleted; the newest of erp moves an hour
    // back; then the newest remaining crm record moves to erp.
    p.client
        .batch_execute(&format!(
            "delete from ingest.raw_records
              where id = (select id from ingest.raw_records where source_id = {crm}
                           order by received_at desc limit 1);
             update ingest.raw_records set received_at = received_at - interval '1 hour'
              where id = (select id from ingest.raw_records where source_id = {erp}
                           order by received_at desc limit 1);
             update ingest.raw_records set source_id = {erp}
              where id = (select id from ingest.raw_records where source_id = {crm}
                           order by received_at desc limit 1);"
        ))
        .await
        .expect("delete and move");
    server.wait_caught_up(&db).await;
    assert_all_windows(&server, &db).await;

    // Everything of one source gone: its last_received_at is null again.
    p.client
        .batch_execute(&format!(
            "delete from ingest.raw_records where source_id = {crm}"
        ))
        .await
        .expect("delete crm");
    server.wait_caught_up(&db).await;
    assert_all_windows(&server, &db).await;

    let fresh = TestServer::start(&db).await;
    fresh.wait_caught_up(&db).await;
    assert_all_windows(&fresh, &db).await;
    assert_eq!(
        last_received(&server).await,
        last_received(&fresh).await,
        "long-running and fresh server"
    );
    fresh.stop().await;
    server.stop().await;
}
