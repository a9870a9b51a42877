//! Errors a newcomer understands (issue 14): a wrong password, an
//! unreachable host, a certificate problem, a role without the grants —
//! `ingestwatch migrate` and `ingestwatch serve` stop with exit code 1 and
//! ONE line on stderr naming the setting to change, never a backtrace.

#[path = "common/bin.rs"]
mod bin;
#[path = "common/tlspg.rs"]
mod tlspg;

use std::time::Duration;

use tlspg::SslCluster;

/// Runs the binary; returns its exit code and its stderr's one line
/// (asserting there is exactly one and no backtrace).
async fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(bin::ingestwatch());
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LISTEN_DATABASE_URL")
        .env_remove("RUST_BACKTRACE")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the command did not stop")
        .expect("run ingestwatch");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr:\n{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    (out.status.code().unwrap_or(-1), lines[0].to_string())
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_serve_explain_connection_problems_in_one_line() {
    let pg = SslCluster::start().await;
    let port = pg.cluster.port();
    let admin = ingestwatch_server::db::connect(&pg.verified_url("postgres"))
        .await
        .expect("admin");
    // A role that must give its password, and one without any grant.
    admin
        .batch_execute(
            "create role pwuser login password 'right';
             create role nogrants login;",
        )
        .await
        .expect("roles");
    admin
        .batch_execute("create database iw_err")
        .await
        .expect("database");
    let hba = pg.cluster.data_dir().join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).expect("pg_hba");
    std::fs::write(
        &hba,
        format!("host all pwuser 127.0.0.1/32 scram-sha-256\n{text}"),
    )
    .expect("write pg_hba");
    admin
        .batch_execute("select pg_reload_conf()")
        .await
        .expect("reload");
    let mut c = ingestwatch_server::db::connect(&pg.verified_url("iw_err"))
        .await
        .expect("db");
    ingestwatch_server::db::migrate::run(&mut c)
        .await
        .expect("migrate");

    let wrong_pw = format!("postgres://pwuser:wrong@127.0.0.1:{port}/iw_err?sslmode=require");
    let nowhere = format!("postgres://postgres@127.0.0.1:{}/iw_err", closed_port());
    let other_ca = pg.url(
        "localhost",
        "iw_err",
        &format!("sslmode=verify-full&sslrootcert={}", pg.other_ca.display()),
    );

    // migrate
    let (code, line) = run(&["migrate"], &[("DATABASE_URL", &wrong_pw)]).await;
    assert_eq!(code, 1);
    assert!(
        line.contains("DATABASE_URL")
            && line.contains("password authentication failed for user \"pwuser\"")
            && line.contains("fix the password"),
        "{line}"
    );
    let (code, line) = run(&["migrate"], &[("DATABASE_URL", &nowhere)]).await;
    assert_eq!(code, 1);
    assert!(
        line.contains("DATABASE_URL")
            && line.contains("cannot reach")
            && line.contains("connection refused"),
        "{line}"
    );
    let (code, line) = run(&["migrate"], &[("DATABASE_URL", &other_ca)]).await;
    assert_eq!(code, 1);
    assert!(
        line.contains("DATABASE_URL")
            && line.contains("not signed by the CA in sslrootcert=")
            && line.contains("sslmode=require"),
        "{line}"
    );

    // serve (the start-up self-check)
    let serve = ["serve", "--listen", "127.0.0.1:0", "--auth-disabled"];
    let (code, line) = run(&serve, &[("DATABASE_URL", &wrong_pw)]).await;
    assert_eq!(code, 1);
    assert!(
        line.contains("DATABASE_URL: password authentication failed"),
        "{line}"
    );
    let (code, line) = run(&serve, &[("DATABASE_URL", &other_ca)]).await;
    assert_eq!(code, 1);
    assert!(line.contains("DATABASE_URL: the certificate"), "{line}");
    let good = pg.verified_url("iw_err");
    let (code, line) = run(
        &serve,
        &[("DATABASE_URL", &good), ("LISTEN_DATABASE_URL", &nowhere)],
    )
    .await;
    assert_eq!(code, 1);
    assert!(line.contains("LISTEN_DATABASE_URL: cannot reach"), "{line}");
    let no_grants = format!("postgres://nogrants@127.0.0.1:{port}/iw_err?sslmode=require");
    let (code, line) = run(&serve, &[("DATABASE_URL", &no_grants)]).await;
    assert_eq!(code, 1);
    assert!(
        line.contains("DATABASE_URL: role \"nogrants\" lacks usage on schema monitor")
            && line.contains("ingestwatch_reader"),
        "{line}"
    );
    drop(c);
    drop(admin);
    pg.stop().await;
}
