//! The ingestion figures on `/metrics`, checked the way ops teams consume
//! them: `promtool check metrics` (Debian `prometheus`) accepts the
//! exposition, every figure equals what `/api/kpis` says, and a real
//! Prometheus started by the test scrapes the server and answers a PromQL
//! query for each figure with the same value.
#![allow(missing_docs)]

mod common;
#[path = "common/tools.rs"]
mod tools;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Parses the exposition into `name{labels} -> value` (labels sorted).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((canonical(series), value.parse().ok()?))
        })
        .collect()
}

/// `name{b="2",a="1"}` -> `name{a="1",b="2"}` (label values kept escaped).
fn canonical(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_string();
    };
    let (mut labels, mut cur, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in rest.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' | '}' if !quoted => {
                labels.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    labels.sort_unstable();
    format!("{name}{{{}}}", labels.join(","))
}

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let mut l: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    l.sort_unstable();
    format!("{name}{{{}}}", l.join(","))
}

/// Every (series, expected value) the KPIs of `window` imply, total and per source.
fn expected(kpis: &Value, window: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut figures: Vec<(Option<String>, &Value)> = vec![(None, &kpis["total"])];
    for (name, f) in kpis["sources"].as_object().expect("sources") {
        figures.push((Some(name.clone()), f));
    }
    for (source, f) in figures {
        let with = |rest: &[(&'static str, &'static str)]| -> Vec<(String, String)> {
            let mut l: Vec<(String, String)> = rest
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if let Some(s) = &source {
                l.push(("source".into(), s.clone()));
            }
            l
        };
        let mut push = |name: &str, labels: Vec<(String, String)>, v: &Value| {
            if let Some(v) = v.as_f64() {
                let l: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                out.push((series(name, &l), v));
            }
        };
        let w: &'static str = Box::leak(window.to_string().into_boxed_str());
        for st in ["received", "normalized", "rejected"] {
            push(
                "ingestwatch_window_records",
                with(&[("window", w), ("status", st)]),
                &f[st],
            );
        }
        for (level, key) in [("error", "errors"), ("warning", "warnings")] {
            push(
                "ingestwatch_window_errors",
                with(&[("window", w), ("level", level)]),
                &f[key],
            );
        }
        for o in ["started", "succeeded", "failed", "partial"] {
            let key = format!("runs_{o}");
            push(
                "ingestwatch_window_runs",
                with(&[("window", w), ("outcome", o)]),
                &f[key.as_str()],
            );
        }
        for (q, key) in [("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")] {
            let s = |v: &Value| {
                v.as_f64()
                    .map(|ms| Value::from(ms / 1000.0))
                    .unwrap_or(Value::Null)
            };
            push(
                "ingestwatch_lag_seconds",
                with(&[("window", w), ("quantile", q)]),
                &s(&f["lag_ms"][key]),
            );
            push(
                "ingestwatch_run_duration_seconds",
                with(&[("window", w), ("quantile", q)]),
                &s(&f["run_duration_ms"][key]),
            );
        }
        push("ingestwatch_backlog_records", with(&[]), &f["backlog"]);
        push("ingestwatch_runs_running", with(&[]), &f["runs_running"]);
    }
    out
}

async fn metrics_text(server: &TestServer) -> String {
    server
        .http
        .get(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_figures_pass_promtool_equal_the_kpis_and_a_real_prometheus_reads_them() {
    let _ = tools::deps(); // installs prometheus (promtool) when missing
    let db = TestDb::new().await;
    let crm = db.source("crm").await;
    let erp = db.source("erp \"eu\"").await;
    let server = TestServer::start(&db).await;
    let p = Pipeline::new(&db).await;
    for i in 0..12 {
        p.varied_step(if i % 3 == 0 { erp } else { crm }, i).await;
    }
    let run = p.run(crm).await;
    p.records(run, crm, 3).await; // a running run and a backlog
    server.wait_caught_up(&db).await;

    // promtool accepts the exposition.
    let text = metrics_text(&server).await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every figure equals /api/kpis (read right after; nothing is written).
    let have = samples(&text);
    let kpis = server.kpis("5m").await;
    let want = expected(&kpis, "5m");
    assert!(want.len() > 40, "figures to compare: {}", want.len());
    for (s, v) in &want {
        assert_eq!(have.get(s), Some(v), "{s} on /metrics equals /api/kpis");
    }
    let healthy = series(
        "ingestwatch_source_health",
        &[("source", "crm"), ("state", "healthy")],
    );
    assert_eq!(have.get(&healthy), Some(&1.0), "crm is healthy: {healthy}");
    assert!(have.contains_key(&series(
        "ingestwatch_source_last_record_age_seconds",
        &[("source", "crm")]
    )));

    // A real Prometheus scrapes the server and answers PromQL with the same figures.
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: ingestwatch\n    static_configs: [{{targets: ['{}']}}]\n",
            tools::root().join("docs/grafana/ingestwatch.rules.yml").display(),
            server.addr
        ),
    )
    .expect("config");
    let mut prom = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");
    let http = reqwest::Client::new();
    let query = |q: String| {
        let http = http.clone();
        async move {
            let r: Value = http
                .get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            r["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
        }
    };
    let received = series(
        "ingestwatch_window_records",
        &[("window", "5m"), ("status", "received")],
    );
    let total_received = kpis["total"]["received"].as_f64().expect("received");
    wait_for(
        "Prometheus scraped the server",
        Duration::from_secs(60),
        || {
            let q = query(received.clone());
            async move { q.await.is_some() }
        },
    )
    .await;
    for (s, v) in &want {
        // Without a `source` label the selector must not match per-source series.
        let selector = if s.contains("source=") {
            s.clone()
        } else if s.contains('{') {
            s.replacen('{', "{source=\"\",", 1)
        } else {
            format!("{s}{{source=\"\"}}")
        };
        let got = query(selector.clone()).await;
        assert_eq!(got, Some(*v), "PromQL {selector}");
    }
    assert_eq!(
        query(format!(
            "sum({})",
            received.replacen('{', "{source!=\"\",", 1)
        ))
        .await,
        Some(total_received),
        "the per-source series add up to the total"
    );
    // The shipped alerting rules load and evaluate without errors.
    let rules_ok = || {
        let http = http.clone();
        async move {
            let r: Option<Value> = async {
                http.get(format!("http://127.0.0.1:{port}/api/v1/rules"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()
            }
            .await;
            let rules: Vec<Value> = r
                .and_then(|r| r["data"]["groups"][0]["rules"].as_array().cloned())
                .unwrap_or_default();
            rules.len() == 9
                && rules
                    .iter()
                    .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z")
        }
    };
    wait_for(
        "the alerting rules evaluated, healthy",
        Duration::from_secs(30),
        rules_ok,
    )
    .await;
    let _ = prom.kill().await;
    server.stop().await;
}

/// Every metric the Grafana dashboard and the alerting rules name exists on
/// `/metrics`, and `promtool check rules` accepts the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_rules_name_only_metrics_the_server_exposes() {
    let _ = tools::deps();
    let rules = tools::root().join("docs/grafana/ingestwatch.rules.yml");
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let server = TestServer::start(&db).await;
    Pipeline::new(&db).await.varied_step(src, 1).await;
    server.wait_caught_up(&db).await;
    let text = metrics_text(&server).await;
    // Families (`# TYPE`, also those without samples now, e.g. no alert
    // active) and sample names.
    let exposed: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(t) => t.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .collect();

    let dashboard =
        std::fs::read_to_string(tools::root().join("docs/grafana/ingestwatch.dashboard.json"))
            .expect("dashboard");
    let _: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let rules_text = std::fs::read_to_string(&rules).expect("rules");
    let mut named = std::collections::BTreeSet::new();
    for text in [&dashboard, &rules_text] {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("ingestwatch_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            named.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    assert!(named.len() >= 8, "metrics named: {named:?}");
    for m in &named {
        assert!(
            exposed.contains(m.as_str()),
            "{m} is named by the dashboard or the rules but not on /metrics"
        );
    }
    server.stop().await;
}
