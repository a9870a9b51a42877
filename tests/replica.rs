//! Read replica (issue 14). Streaming replication is not set up here: the
//! "replica" is a second database on the same server under another URL,
//! holding different rows, so every answer shows which database it came
//! from. Lists, drill-downs, trends and exports read there; live figures
//! stay on the primary; `/readyz` and the metrics report the replica and
//! its lag; a replica that goes away sends the reads back to the primary.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

async fn readyz(server: &TestServer) -> serde_json::Value {
    let r = server
        .http
        .get(format!("http://{}/readyz", server.addr))
        .send()
        .await
        .expect("readyz");
    serde_json::from_str(&r.text().await.unwrap_or_default()).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_reads_go_to_the_replica_live_figures_stay_on_the_primary_and_a_lost_replica_falls_back(
) {
    let primary = TestDb::new().await;
    let replica = TestDb::new().await;
    let (p_src, r_src) = (
        primary.source("on-primary").await,
        replica.source("on-replica").await,
    );
    let (pp, rp) = (Pipeline::new(&primary).await, Pipeline::new(&replica).await);
    let p_run = pp.run(p_src).await;
    let p_ids = pp.records(p_run, p_src, 5).await;
    let r_run = rp.run(r_src).await;
    let r_ids = rp.records(r_run, r_src, 7).await;

    let mut opts = options();
    opts.replica_database_url = Some(replica.reader_url.clone());
    let server = TestServer::start_at(
        &primary.reader_url,
        opts,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await;

    wait_for("replica in use", T, || async {
        readyz(&server).await["replica"]["reads_from"] == "replica"
    })
    .await;
    let ready = readyz(&server).await;
    assert_eq!(ready["replica"]["healthy"], true, "{ready}");
    assert_eq!(ready["replica"]["lag_ms"], 0, "{ready}");
    assert_eq!(ready["replica"]["standby"], false, "{ready}");
    assert_eq!(server.metric("ingestwatch_replica_healthy").await, 1.0);

    // Lists, drill-downs, exports and trends answer from the replica.
    let (s, body) = server.get("/api/records?limit=100").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(7), "{body}");
    let (s, body) = server.get("/api/sources").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.to_string().contains("on-replica"), "{body}");
    assert!(!body.to_string().contains("on-primary"), "{body}");
    let (s, body) = server.get(&format!("/api/runs/{r_run}")).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.to_string().contains("on-replica"), "{body}");
    let (s, body) = server.get(&format!("/api/records/{}", r_ids[0])).await;
    assert_eq!(s, 200, "{body}");
    let (s, _, csv) = server.get_raw("/api/export/records.csv").await;
    assert_eq!(s, 200, "{csv}");
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");
    let (s, body) = server
        .get("/api/trends?metric=received&bucket=minute&source=on-replica")
        .await;
    assert_eq!(s, 200, "trends read the replica's sources: {body}");
    let (s, body) = server
        .get("/api/trends?metric=received&bucket=minute&source=on-primary")
        .await;
    assert_ne!(
        s, 200,
        "the primary's source is unknown on the replica: {body}"
    );

    // Live figures come from the primary's outbox.
    server.wait_caught_up(&primary).await;
    let k = server.kpis("5m").await;
    assert_eq!(
        k["sources"]["on-primary"]["received"].as_i64(),
        Some(5),
        "{k}"
    );
    assert!(k["sources"]["on-replica"].is_null(), "{k}");

    // The replica goes away: reads fall back to the primary.
    replica
        .client
        .batch_execute("select 1")
        .await
        .expect("replica alive");
    let admin = ingestwatch::db::connect(&admin_url()).await.expect("admin");
    admin
        .batch_execute(&format!("drop database {} with (force)", replica.name))
        .await
        .expect("drop the replica");
    wait_for("fallback to the primary", T, || async {
        readyz(&server).await["replica"]["reads_from"] == "primary"
    })
    .await;
    let ready = readyz(&server).await;
    assert_eq!(
        ready["ready"], true,
        "a lost replica does not make the server unready: {ready}"
    );
    assert_eq!(ready["replica"]["healthy"], false, "{ready}");
    assert_eq!(server.metric("ingestwatch_replica_healthy").await, 0.0);
    let (s, body) = server.get("/api/records?limit=100").await;
    assert_eq!(s, 200, "{body}");
    let ids: Vec<i64> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect();
    let mut want = p_ids.clone();
    want.sort_unstable();
    let mut got = ids.clone();
    got.sort_unstable();
    assert_eq!(got, want, "records from the primary after the fallback");
    server.stop().await;
}
