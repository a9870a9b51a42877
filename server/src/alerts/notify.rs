//! Webhooks. Each receiver has its own worker task on the leader; its queue
//! is its undelivered rows in `monitor.alert_deliveries` (written in the
//! same transaction as the transition), read oldest first in small batches.
//! So a receiver that hangs or fails holds up only itself (every attempt
//! has a timeout; evaluation never waits for a receiver), memory stays
//! bounded whatever the backlog, transitions reach each receiver in order
//! (firing before its resolved), and a new leader resumes where the old one
//! stopped — attempts and the next attempt time are recorded.
//!
//! Each POST carries `Idempotency-Key` (the same for every attempt and every
//! leader: delivery is at least once, receivers dedupe on it),
//! `X-Ingestwatch-Timestamp` and, with a secret,
//! `X-Ingestwatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! 2xx delivers; 5xx, 408, 429, timeouts and connection errors are retried
//! with exponential backoff (`backoff` doubling up to `max_backoff`, at most
//! `max_attempts`); any other 4xx gives up at once.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::record::Transition;
use super::rules::{Format, Receiver};
use super::rules::{Severity, StateName};
use super::store::{self, Attempt};
use super::Writer;
use crate::metrics::Metrics;

/// Undelivered rows read per batch (the in-memory part of a receiver's queue).
const BATCH: i64 = 50;
/// Poll for undelivered rows this often even without a doorbell.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>").
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(), // HMAC accepts keys of any length
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let out = mac.finalize().into_bytes();
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Delay after `attempts` failed attempts: `backoff × 2^(attempts−1)`, capped.
pub fn backoff(r: &Receiver, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
    r.backoff.saturating_mul(factor).min(r.max_backoff)
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "no data".into(),
        Some(v) if unit == "ratio" => format!("{:.1} %", v * 100.0),
        Some(v) if unit == "seconds" => format!("{v:.0} s"),
        Some(v) if unit == "ms" => format!("{v:.0} ms"),
        Some(v) => format!("{v}"),
    }
}

/// The request body for `format`.
pub fn body(format: Format, t: &Transition) -> Vec<u8> {
    let doc = match format {
        Format::Json => {
            let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("version".into(), json!(1));
                o.insert("type".into(), json!("alert"));
            }
            v
        }
        Format::Slack => {
            let what = match t.source.as_deref() {
                Some(s) => format!(" on {s}"),
                None if !t.sources.is_empty() => format!(" on {}", t.sources.join(", ")),
                None => String::new(),
            };
            let color = match t.state {
                StateName::Firing if t.severity == Severity::Critical => "#e01e5a",
                StateName::Firing => "#ecb22e",
                StateName::Resolved => "#2eb67d",
                _ => "#9e9e9e",
            };
            let text = format!(
                "[{}] {}{}: {} (threshold {}){}",
                t.state.as_str().to_uppercase(),
                t.rule,
                what,
                fmt_value(t.value, &t.unit),
                fmt_value(Some(t.threshold), &t.unit),
                t.summary
                    .as_deref()
                    .map(|s| format!(" — {s}"))
                    .unwrap_or_default()
            );
            json!({
                "text": text,
                "attachments": [{
                    "color": color,
                    "fields": [
                        {"title": "severity", "value": t.severity, "short": true},
                        {"title": "condition", "value": t.condition, "short": true},
                        {"title": "since", "value": t.at, "short": true},
                        {"title": "idempotency key", "value": t.idempotency_key, "short": true},
                    ],
                }],
            })
        }
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// What one attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered(u16),
    /// Worth retrying (5xx, 408, 429, timeout, connection error).
    Retry(Option<u16>, String),
    /// Refused (other 4xx): retrying will not help.
    Refused(u16),
}

/// Sends one attempt.
pub async fn send(http: &reqwest::Client, r: &Receiver, t: &Transition, attempt: u32) -> Outcome {
    let payload = body(r.format, t);
    let ts = chrono::Utc::now().timestamp();
    let mut req = http
        .post(&r.url)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("ingestwatch/", env!("CARGO_PKG_VERSION")),
        )
        .header("idempotency-key", &t.idempotency_key)
        .header("x-ingestwatch-timestamp", ts.to_string())
        .header("x-ingestwatch-attempt", attempt.to_string());
    if let Some(secret) = &r.secret {
        req = req.header("x-ingestwatch-signature", signature(secret, ts, &payload));
    }
    match req.body(payload).send().await {
        Ok(resp) => {
            let s = resp.status().as_u16();
            match s {
                200..=299 => Outcome::Delivered(s),
                408 | 429 | 500..=599 => Outcome::Retry(Some(s), format!("HTTP {s}")),
                _ => Outcome::Refused(s),
            }
        }
        Err(e) if e.is_timeout() => Outcome::Retry(None, "timed out".into()),
        Err(e) if e.is_connect() => Outcome::Retry(None, "connection failed".into()),
        Err(_) => Outcome::Retry(None, "request failed".into()),
    }
}

/// One receiver's worker: delivers its undelivered rows in order until
/// `cancel` (leadership lost or shutdown).
pub async fn worker(
    pool: deadpool_postgres::Pool,
    writer: Writer,
    receiver: Receiver,
    doorbell: Arc<Notify>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let http = match reqwest::Client::builder()
        .timeout(receiver.timeout)
        .connect_timeout(receiver.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client");
            return;
        }
    };
    let mut warned = false;
    loop {
        let batch = match pool.get().await {
            Ok(c) => store::pending_deliveries(&**c, &receiver.name, BATCH)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let batch = match batch {
            Ok(b) => {
                warned = false;
                b
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "reading undelivered alerts failed; retrying");
                    warned = true;
                }
                if sleep_or_cancel(Duration::from_secs(1), &cancel).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = doorbell.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = cancel.cancelled() => return,
            }
            continue;
        }
        for p in batch {
            if !deliver(&http, &writer, &receiver, p, &metrics, &cancel).await {
                return;
            }
        }
    }
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = cancel.cancelled() => true,
    }
}

/// Delivers one row with retries; false when the worker must stop.
async fn deliver(
    http: &reqwest::Client,
    writer: &Writer,
    r: &Receiver,
    p: store::Pending,
    metrics: &Metrics,
    cancel: &CancellationToken,
) -> bool {
    let mut attempts = p.attempts.max(0) as u32;
    let mut next = p.next_attempt_ms;
    loop {
        if let Some(n) = next {
            let wait = n - chrono::Utc::now().timestamp_millis();
            if wait > 0 && sleep_or_cancel(Duration::from_millis(wait as u64), cancel).await {
                return false;
            }
        }
        attempts += 1;
        let outcome = tokio::select! {
            o = send(http, r, &p.transition, attempts) => o,
            () = cancel.cancelled() => return false,
        };
        let mut a = Attempt {
            id: p.id,
            attempts: attempts as i32,
            status: None,
            error: None,
            delivered: false,
            gave_up: false,
            next_attempt_ms: None,
        };
        match &outcome {
            Outcome::Delivered(s) => {
                a.status = Some(i32::from(*s));
                a.delivered = true;
                metrics.webhook_deliveries.inc();
            }
            Outcome::Refused(s) => {
                a.status = Some(i32::from(*s));
                a.error = Some(format!("refused with HTTP {s}"));
                a.gave_up = true;
                metrics.webhook_failures.inc();
                metrics.webhook_gave_up.inc();
            }
            Outcome::Retry(s, e) => {
                a.status = s.map(i32::from);
                a.error = Some(e.clone());
                metrics.webhook_failures.inc();
                if attempts >= r.max_attempts {
                    a.gave_up = true;
                    metrics.webhook_gave_up.inc();
                } else {
                    let at = chrono::Utc::now().timestamp_millis()
                        + backoff(r, attempts).as_millis() as i64;
                    a.next_attempt_ms = Some(at);
                }
            }
        }
        if a.gave_up {
            tracing::warn!(
                transition = p.transition.id,
                attempts,
                error = a.error.as_deref().unwrap_or(""),
                "webhook delivery given up"
            );
        } else if !a.delivered {
            tracing::debug!(
                transition = p.transition.id,
                attempts,
                error = a.error.as_deref().unwrap_or(""),
                "webhook attempt failed; retrying"
            );
        }
        if let Err(e) = writer.attempt(a.clone()).await {
            tracing::info!(error = %e, "cannot record a delivery attempt (leadership lost?)");
            return false;
        }
        if a.delivered || a.gave_up {
            return true;
        }
        next = a.next_attempt_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::RuleSet;

    fn receiver() -> Receiver {
        let s = RuleSet::parse(
            "[[receivers]]\nname = \"r\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"key\"\nbackoff = \"100ms\"\nmax_backoff = \"1s\"\n",
        )
        .expect("receiver");
        s.receivers[0].clone()
    }

    fn transition() -> Transition {
        Transition {
            id: 7,
            rule: "lag".into(),
            instance: "crm".into(),
            condition: "lag_p95".into(),
            source: Some("crm".into()),
            sources: vec!["crm".into()],
            from: StateName::Pending,
            state: StateName::Firing,
            value: Some(2500.0),
            threshold: 1000.0,
            unit: "ms".into(),
            severity: Severity::Critical,
            labels: json!({"team": "data"}),
            summary: Some("slow".into()),
            at: "2026-11-26T10:00:00.000Z".into(),
            idempotency_key: "iw-abc".into(),
        }
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 shape: key "Jefe"; our message is "<ts>.<body>".
        let sig = signature("Jefe", 0, b"what do ya want for nothing?");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), 7 + 64);
        assert_ne!(sig, signature("Jefe", 1, b"what do ya want for nothing?"));
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") with an
        // empty timestamp prefix would differ; check against a direct computation.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").expect("key");
        mac.update(b"12.{}");
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(signature("k", 12, b"{}"), format!("sha256={want}"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = receiver();
        let ms: Vec<u128> = (1..=6).map(|a| backoff(&r, a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn bodies() {
        let t = transition();
        let j: Value = serde_json::from_slice(&body(Format::Json, &t)).expect("json");
        assert_eq!(j["version"], 1);
        assert_eq!(j["state"], "firing");
        assert_eq!(j["idempotency_key"], "iw-abc");
        assert_eq!(j["labels"]["team"], "data");
        let s: Value = serde_json::from_slice(&body(Format::Slack, &t)).expect("json");
        let text = s["text"].as_str().expect("text");
        assert!(
            text.starts_with("[FIRING] lag on crm: 2500 ms (threshold 1000 ms)"),
            "{text}"
        );
        assert_eq!(s["attachments"][0]["color"], "#e01e5a");
    }
}
