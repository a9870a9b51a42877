//! Deployment files against the real binary and server: the Dockerfile's
//! `HEALTHCHECK` and the compose file's health check answer readiness (not
//! `--version`), every `command:` of `docker-compose.yml` is a command line the
//! binary accepts, and `docker compose config` accepts the file where the
//! tool exists.
#![allow(missing_docs)]

mod common;

use common::*;

/// The JSON-array commands of a file's lines that start with `key` (the
/// compose file and the Dockerfile write commands as JSON arrays).
fn commands(text: &str, key: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .filter_map(|rest| rest.find('[').map(|i| &rest[i..]))
        .map(|a| serde_json::from_str(a).unwrap_or_else(|e| panic!("{a}: {e}")))
        .collect()
}

fn file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `ingestwatch args…`; returns (exit code, stderr).
async fn run(args: &[String]) -> (i32, String) {
    let out = tokio::process::Command::new(common::bin::ingestwatch())
        .args(args)
        .output()
        .await
        .expect("run the binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A health-check command pointed at `addr` instead of the container's port.
fn at(cmd: &[String], addr: &str) -> Vec<String> {
    cmd.iter()
        .skip_while(|a| *a == "CMD" || *a == "ingestwatch")
        .map(|a| a.replace("127.0.0.1:8080", addr))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_answer_readiness_and_compose_commands_are_valid() {
    let db = TestDb::new().await;
    let server = TestServer::start(&db).await;
    let addr = server.addr.to_string();

    let docker = commands(&file("Dockerfile"), "HEALTHCHECK");
    let compose = file("docker-compose.yml");
    let compose_checks = commands(&compose, "test:");
    assert_eq!(docker.len(), 1, "one HEALTHCHECK");
    for check in docker.iter().chain(
        compose_checks
            .iter()
            .filter(|c| c.contains(&"ingestwatch".to_string())),
    ) {
        assert!(
            check.iter().any(|a| a.ends_with("/readyz")),
            "the health check asks for readiness: {check:?}"
        );
        let (code, err) = run(&at(check, &addr)).await;
        assert_eq!(code, 0, "{check:?} against a ready server: {err}");
        // The same check fails when nothing answers, or on a non-2xx answer.
        let (code, _) = run(&at(check, "127.0.0.1:1")).await;
        assert_eq!(code, 1, "{check:?} with nothing listening");
        let wrong: Vec<String> = at(check, &addr)
            .iter()
            .map(|a| a.replace("/readyz", "/nope"))
            .collect();
        let (code, err) = run(&wrong).await;
        assert_eq!(code, 1, "{wrong:?} answered 404");
        assert!(err.contains("404"), "{err}");
    }

    let service_commands = commands(&compose, "command:");
    assert!(
        service_commands.len() >= 3,
        "migrate, serve, simulate: {service_commands:?}"
    );
    for cmd in &service_commands {
        let mut args = cmd.clone();
        args.push("--help".into());
        let (code, err) = run(&args).await;
        assert_eq!(
            code,
            0,
            "`ingestwatch {}` is accepted: {err}",
            cmd.join(" ")
        );
    }

    let has_compose = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_compose {
        let out = std::process::Command::new("docker")
            .args(["compose", "-f", "../docker-compose.yml", "config", "-q"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("docker compose config");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("docker compose is not installed here: `docker compose config` not run");
    }
    server.stop().await;
}
