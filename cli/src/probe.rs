//! `ingestwatch probe`: one HTTP GET of a health endpoint, for container
//! health checks where the image has no curl (Docker `HEALTHCHECK`, compose).
//! Exit 0 when the answer is 2xx, 1 otherwise (with the reason on stderr).

use std::time::Duration;

use crate::args::ProbeArgs;

/// Runs the probe; returns the process exit code.
pub async fn run(args: &ProbeArgs) -> i32 {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("probe: {e}");
            return 1;
        }
    };
    match client.get(&args.url).send().await {
        Ok(r) if r.status().is_success() => 0,
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            eprintln!("probe: {} answered {status}: {}", args.url, body.trim());
            1
        }
        Err(e) => {
            eprintln!("probe: {}: {e}", args.url);
            1
        }
    }
}
