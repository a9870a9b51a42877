//! `serve` warns at start-up when neither the audience nor the issuer is
//! configured (issue 16.16): then a token signed with the key for any
//! application of the identity provider is accepted. The real binary, its
//! log output captured (stdout and stderr) up to the "serving" line.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Starts `ingestwatch serve` with `env`, returns its log lines up to "serving".
async fn startup_log(db: &TestDb, env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = tokio::process::Command::new(common::bin::ingestwatch());
    for (k, _) in std::env::vars() {
        if k.starts_with("INGESTWATCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve")
        .env("DATABASE_URL", &db.reader_url)
        .env("INGESTWATCH_LISTEN", "127.0.0.1:0")
        .env("INGESTWATCH_JWT_SECRET", SECRET)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn ingestwatch serve");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    for r in [
        Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(err),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(plain(&l)).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut log = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(l)) => {
                let done = l.contains("serving");
                log.push(l);
                if done {
                    break;
                }
            }
            Ok(None) => panic!("serve exited before serving: {log:#?}"),
            Err(_) => panic!("serve did not start in time: {log:#?}"),
        }
    }
    child.start_kill().expect("kill serve");
    let _ = child.wait().await;
    log
}

/// `line` without ANSI colour sequences.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn warned(log: &[String]) -> bool {
    log.iter().any(|l| {
        l.contains("WARN")
            && l.contains("any application")
            && l.contains("INGESTWATCH_JWT_AUDIENCE")
            && l.contains("INGESTWATCH_JWT_ISSUER")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_neither_audience_nor_issuer_is_set() {
    let db = TestDb::new().await;
    let log = startup_log(&db, &[]).await;
    assert!(warned(&log), "no aud/iss warning in {log:#?}");

    for env in [
        [("INGESTWATCH_JWT_AUDIENCE", "authenticated")],
        [("INGESTWATCH_JWT_ISSUER", "https://idp.example/")],
    ] {
        let log = startup_log(&db, &env).await;
        assert!(!warned(&log), "{env:?}: unexpected warning in {log:#?}");
    }
}
