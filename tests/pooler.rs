//! Poolers (issue 14): a real PgBouncer in `pool_mode = transaction` in
//! front of the REST pool with LISTEN on the direct URL serves the whole
//! live path; LISTEN through the pooler is refused at start-up with the
//! explanation, by the library and by the `serve` binary.

#[path = "common/bouncer.rs"]
mod bouncer;
mod common;

use std::time::Duration;

use bouncer::Bouncer;
use common::*;
use ingestwatch_server::db::PoolerMode;

const T: Duration = Duration::from_secs(30);

fn pg_host_port(url: &str) -> (String, u16) {
    let cfg: tokio_postgres::Config = url.parse().expect("url");
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    (host, cfg.get_ports().first().copied().unwrap_or(5432))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_through_pgbouncer_transaction_mode_and_listen_direct_serve_the_live_path() {
    let db = TestDb::new().await;
    let (host, port) = pg_host_port(&db.reader_url);
    let bouncer = Bouncer::start(&host, port);
    let pooled = bouncer.url(&db.reader_url);

    let mut opts = options();
    opts.listen_database_url = Some(db.reader_url.clone());
    opts.pooler_mode = PoolerMode::Transaction;
    opts.pool_size = 8;
    let server = TestServer::start_at(&pooled, opts, "127.0.0.1:0".parse().expect("addr")).await;

    let src = db.source("crm").await;
    let p = Pipeline::new(&db).await;
    let run = p.run(src).await;
    let ids = p.records(run, src, 20).await;
    p.process(&ids[..5], "normalized", 40).await;
    p.finish_run(run, "succeeded").await;
    server.wait_caught_up(&db).await;
    let k = server.kpis("5m").await;
    assert_eq!(k["sources"]["crm"]["received"].as_i64(), Some(20), "{k}");

    // Heavy reads through the pooler, many at once: server connections are
    // shared between transactions, so named statements outside one
    // transaction would land on the wrong backend.
    let paths = [
        "/api/sources".to_string(),
        "/api/runs".to_string(),
        format!("/api/runs/{run}"),
        "/api/records?limit=5".to_string(),
        format!("/api/records/{}", ids[0]),
        "/api/errors".to_string(),
        "/api/export/records.csv".to_string(),
        "/api/trends?metric=received&bucket=minute".to_string(),
        "/api/alerts".to_string(),
    ];
    for round in 0..4 {
        let mut calls = Vec::new();
        for path in paths.iter().chain(paths.iter()) {
            let (http, url, token) = (
                server.http.clone(),
                format!("http://{}{}", server.addr, path),
                server.token.clone(),
            );
            calls.push(tokio::spawn(async move {
                let r = http
                    .get(&url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("http");
                (url, r.status().as_u16(), r.text().await.unwrap_or_default())
            }));
        }
        for c in calls {
            let (url, status, body) = c.await.expect("join");
            assert_eq!(status, 200, "round {round}: {url}: {body}");
        }
    }
    // The pool really went through PgBouncer.
    assert!(
        bouncer.log().contains(&format!("db={}", db.name)),
        "no PgBouncer login for the test database:\n{}",
        bouncer.log()
    );

    // Still live after the heavy reads.
    let more = p.records(run, src, 3).await;
    assert_eq!(more.len(), 3);
    server.wait_caught_up(&db).await;
    let k = server.kpis("5m").await;
    assert_eq!(k["sources"]["crm"]["received"].as_i64(), Some(23), "{k}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_through_a_transaction_pooler_is_refused_at_start_up() {
    let db = TestDb::new().await;
    let (host, port) = pg_host_port(&db.reader_url);
    let bouncer = Bouncer::start(&host, port);
    let pooled = bouncer.url(&db.reader_url);

    // The library: `run` returns the explanation instead of serving.
    let mut opts = options();
    opts.pooler_mode = PoolerMode::Transaction;
    opts.listen_database_url = Some(pooled.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let err = tokio::time::timeout(
        T,
        ingestwatch_server::server::run(listener, &pooled, opts, Default::default()),
    )
    .await
    .expect("start-up did not stop")
    .expect_err("LISTEN through PgBouncer accepted");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("LISTEN_DATABASE_URL") && msg.contains("transaction"),
        "{msg}"
    );

    // The binary: DATABASE_URL through the pooler and no LISTEN URL.
    let out = tokio::process::Command::new(common::bin::ingestwatch())
        .args(["serve", "--listen", "127.0.0.1:0", "--auth-disabled"])
        .env("DATABASE_URL", &pooled)
        .env("INGESTWATCH_POOLER_MODE", "transaction")
        .env_remove("LISTEN_DATABASE_URL")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(T, out)
        .await
        .expect("serve did not stop")
        .expect("run serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines.last().copied().unwrap_or("");
    assert!(
        last.contains("DATABASE_URL")
            && last.contains("pooler in transaction mode")
            && last.contains("LISTEN_DATABASE_URL"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Caused by"),
        "{stderr}"
    );
}
