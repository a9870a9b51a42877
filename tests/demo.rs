//! The README demo command serves live figures within 30 s: the real binary,
//! a throwaway PostgreSQL from the installed binaries, the simulator.

#[path = "common/bin.rs"]
mod bin;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn f_demo_serves_live_figures_within_30_seconds() {
    let bin = bin::ingestwatch();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--duration",
            "60",
            "--rate",
            "40",
        ])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut url = None;
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    for line in lines.by_ref() {
        if let Some(rest) = line.split("is live:").nth(1) {
            url = Some(rest.trim().to_string());
            break;
        }
    }
    // Keep draining stdout so the demo never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let printed = url.expect("demo printed its URL");
    let (base, token) = printed
        .split_once("/#token=")
        .expect("the URL carries a token");
    let (url, token) = (base.to_string(), token.to_string());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let received = rt.block_on(async {
        let http = reqwest::Client::new();
        loop {
            if started.elapsed() > Duration::from_secs(30) {
                return 0;
            }
            let req = http
                .get(format!("{url}/api/kpis?window=1m"))
                .bearer_auth(&token);
            if let Ok(r) = req.send().await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    let n = v["total"]["received"].as_i64().unwrap_or(0);
                    if n > 0 && v["sources"].as_object().is_some_and(|s| s.len() >= 4) {
                        return n;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let page = rt.block_on(async {
        reqwest::get(format!("{url}/"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    });
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(received > 0, "no live figures within 30 s");
    assert!(
        page.is_some_and(|p| p.contains("ingestwatch")),
        "client page served"
    );
}
