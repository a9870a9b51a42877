//! TLS to PostgreSQL (issue 14): against a throwaway cluster with `ssl = on`
//! and a CA made in the test, `verify-full` succeeds with the right CA and
//! fails with a clear message on a wrong CA or host name, `require` works
//! without a CA; the server's pool, listener, rollup writer and alerts leader
//! all connect over TLS and serve live figures; `migrate` works over TLS.

mod common;
#[path = "common/tlspg.rs"]
mod tlspg;

use std::time::Duration;

use common::*;
use tlspg::SslCluster;

const T: Duration = Duration::from_secs(30);

/// Connects with `url`; `Ok(ssl)` tells whether the session is encrypted.
async fn session_ssl(url: &str) -> Result<bool, String> {
    let client = ingestwatch_server::db::connect(url)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let row = client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_check_what_they_promise() {
    let pg = SslCluster::start().await;
    let ca = pg.ca.display().to_string();
    let other = pg.other_ca.display().to_string();

    // verify-full: right CA and the host name in the certificate.
    assert_eq!(session_ssl(&pg.verified_url("postgres")).await, Ok(true));
    // verify-ca: the chain only, so an IP the certificate does not name is fine.
    let url = pg.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    );
    assert_eq!(session_ssl(&url).await, Ok(true));
    // require: encrypted, nothing checked, no CA needed.
    let url = pg.url("127.0.0.1", "postgres", "sslmode=require");
    assert_eq!(session_ssl(&url).await, Ok(true));
    // prefer (the default): encrypted when the server offers it.
    let url = pg.url("127.0.0.1", "postgres", "");
    assert_eq!(session_ssl(&url).await, Ok(true));
    let url = pg.url("127.0.0.1", "postgres", "sslmode=disable");
    assert_eq!(session_ssl(&url).await, Ok(false));

    // verify-full with a wrong host name.
    let url = pg.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let err = session_ssl(&url)
        .await
        .expect_err("wrong host name accepted");
    assert!(
        err.contains("not issued for that host name") && err.contains("verify-ca"),
        "{err}"
    );
    // verify-full with a wrong CA.
    let url = pg.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    );
    let err = session_ssl(&url).await.expect_err("wrong CA accepted");
    assert!(
        err.contains("not signed by the CA") && err.contains(&format!("sslrootcert={other}")),
        "{err}"
    );
    // require with a root certificate checks the chain (as libpq does).
    let url = pg.url(
        "localhost",
        "postgres",
        &format!("sslmode=require&sslrootcert={other}"),
    );
    let err = session_ssl(&url)
        .await
        .expect_err("require+wrong CA accepted");
    assert!(err.contains("not signed by the CA"), "{err}");
    // verify-full with a CA file that is not there.
    let url = pg.url(
        "localhost",
        "postgres",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    let err = session_ssl(&url).await.expect_err("missing CA accepted");
    assert!(err.contains("sslrootcert=/nonexistent/ca.pem"), "{err}");
    pg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_connection_and_migrate_run_over_tls() {
    let pg = SslCluster::start().await;
    let admin = ingestwatch_server::db::connect(&pg.verified_url("postgres"))
        .await
        .expect("admin over TLS");
    admin
        .batch_execute("create database iw_tls")
        .await
        .expect("create database");
    let url = pg.verified_url("iw_tls");

    // `ingestwatch migrate` over verify-full.
    let out = std::process::Command::new(common::bin::ingestwatch())
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .expect("run migrate");
    assert!(
        out.status.success(),
        "migrate over TLS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied"));

    // The server, with alert rules so the alerts leader runs.
    let rules = tempfile::NamedTempFile::new().expect("rules");
    std::fs::write(
        rules.path(),
        "[settings]\ninterval = \"100ms\"\nsync_interval = \"200ms\"\nleader_retry = \"200ms\"\n\n\
         [[rules]]\nname = \"backlog\"\ncondition = \"backlog\"\nabove = 1000\nsources = \"each\"\n",
    )
    .expect("write rules");
    let mut opts = options();
    opts.alerts = Some(rules.path().to_path_buf());
    opts.pool_size = 4;
    opts.rollup_flush_ms = 100;
    let server = TestServer::start_at(&url, opts, "127.0.0.1:0".parse().expect("addr")).await;

    let pipe = Pipeline {
        client: ingestwatch_server::db::connect(&url)
            .await
            .expect("pipeline"),
    };
    let src: i64 = pipe
        .client
        .query_one(
            "insert into ingest.sources (name, kind, expected_interval) values ('crm', 'api', '1 minute') returning id",
            &[],
        )
        .await
        .expect("source")
        .get(0);
    let run = pipe.run(src).await;
    pipe.records(run, src, 5).await;

    // Live figures from the listener.
    wait_for("live KPIs over TLS", T, || async {
        let k = server.kpis("5m").await;
        k["sources"]["crm"]["received"].as_i64() == Some(5)
    })
    .await;
    // The pool (a list read).
    let (status, body) = server.get("/api/sources").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("crm"), "{body}");

    // Every connection kind the server opens is there, and encrypted.
    let kinds = [
        "ingestwatch",
        ingestwatch_server::listen::APPLICATION_NAME,
        ingestwatch_server::trends::rollup::APPLICATION_NAME,
        ingestwatch_server::alerts::APPLICATION_NAME,
    ];
    wait_for("all server connections over TLS", T, || async {
        let rows = admin
            .query(
                "select a.application_name, s.ssl from pg_stat_activity a
                 join pg_stat_ssl s using (pid) where a.datname = 'iw_tls'",
                &[],
            )
            .await
            .expect("activity");
        let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert!(
            seen.iter().all(|(_, ssl)| *ssl),
            "a connection without TLS: {seen:?}"
        );
        kinds.iter().all(|k| seen.iter().any(|(name, _)| name == k))
    })
    .await;
    let (_, metrics) = server.get_raw("/metrics").await.into_ok();
    assert!(
        metrics.contains("ingestwatch_alerts_leader 1"),
        "alerts leader not elected over TLS"
    );

    server.stop().await;
    drop(admin);
    pg.stop().await;
}

trait IntoOk {
    fn into_ok(self) -> (u16, String);
}

impl IntoOk for (u16, String, String) {
    fn into_ok(self) -> (u16, String) {
        assert_eq!(self.0, 200, "{}", self.2);
        (self.0, self.2)
    }
}
