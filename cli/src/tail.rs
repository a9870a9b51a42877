//! `ingestwatch tail`: the reference subscriber for other services.
//!
//! Connects to `/ws`, subscribes with `since` = the last seq it printed (or
//! `--since`, or the server's `hello.seq` on the very first connection), and
//! prints one line per frame. When the connection drops (server restart,
//! network, `1001`, idle, too slow) it reconnects with jittered exponential
//! backoff and resumes from its last seq: the server replays exactly the
//! missed events, and anything at or below the last printed seq is dropped,
//! so the output has no gap and no duplicate across reconnects.
//!
//! A resume from before the outbox's retention horizon is the one gap the
//! server cannot fill: it answers with a `resync` frame marked `skipped`,
//! which `tail` prints (stdout, in both formats) and warns about (stderr)
//! before printing the events still kept.
//!
//! It gives up (non-zero exit, message on stderr) only when retrying cannot
//! help: authentication refused (HTTP 401/403 or close codes 4401/4403),
//! a protocol error (an `error` frame such as `unknown_topic`, a URL that is
//! not a WebSocket endpoint).

use std::io::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::args::{TailArgs, TailFormat};

/// Exit code: a protocol error (refused frame, not a WebSocket endpoint, bad URL).
pub const EXIT_PROTOCOL: i32 = 2;
/// Exit code: authentication or authorization refused.
pub const EXIT_AUTH: i32 = 3;

/// Why `tail` stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// Authentication or authorization refused; retrying will not help.
    #[error("{0}")]
    Auth(String),
    /// The server refused what we sent, or is not an ingestwatch endpoint.
    #[error("{0}")]
    Protocol(String),
    /// Standard output is gone (e.g. the reader of a pipe exited).
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl TailError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            TailError::Auth(_) => EXIT_AUTH,
            TailError::Protocol(_) => EXIT_PROTOCOL,
            TailError::Output(_) => 1,
        }
    }
}

/// How one connection ended, when it is worth reconnecting.
enum End {
    Shutdown,
    Reconnect(String),
}

/// Runs `tail` until `shutdown`, writing lines to `out`.
pub async fn run(
    args: &TailArgs,
    out: &mut (dyn Write + Send),
    shutdown: CancellationToken,
) -> Result<(), TailError> {
    let mut last = args.since;
    let mut attempt: u32 = 0;
    loop {
        let before = last;
        let end = tokio::select! {
            r = session(args, &mut last, out) => r?,
            () = shutdown.cancelled() => End::Shutdown,
        };
        let reason = match end {
            End::Shutdown => return Ok(()),
            End::Reconnect(reason) => reason,
        };
        // A connection that delivered something resets the backoff.
        attempt = if last != before {
            0
        } else {
            attempt.saturating_add(1)
        };
        let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
        let wait = base / 2 + rand::rng().random_range(0..=base / 2);
        eprintln!(
            "tail: {reason}; reconnecting in {wait} ms (resuming after seq {})",
            last.map_or_else(|| "-".to_string(), |s| s.to_string())
        );
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// One connection: connect, subscribe from `last`, print until it ends.
async fn session(
    args: &TailArgs,
    last: &mut Option<i64>,
    out: &mut (dyn Write + Send),
) -> Result<End, TailError> {
    let mut request = args
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| TailError::Protocol(format!("bad --url {:?}: {e}", args.url)))?;
    if let Some(token) = &args.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| TailError::Auth("--token is not a valid header value".into()))?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let connect = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    );
    let mut ws = match connect.await {
        Err(_) => return Ok(End::Reconnect("connect timed out".into())),
        Ok(Ok((ws, _))) => ws,
        Ok(Err(WsError::Http(resp))) => {
            let status = resp.status();
            return match status {
                StatusCode::UNAUTHORIZED => Err(TailError::Auth(format!(
                    "authentication failed (HTTP 401){}",
                    if args.token.is_some() {
                        ""
                    } else {
                        "; pass --token"
                    }
                ))),
                StatusCode::FORBIDDEN => Err(TailError::Auth(
                    "forbidden (HTTP 403): the token may not subscribe".into(),
                )),
                s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                    Ok(End::Reconnect(format!("server answered HTTP {s}")))
                }
                s => Err(TailError::Protocol(format!(
                    "{} is not an ingestwatch WebSocket endpoint (HTTP {s})",
                    args.url
                ))),
            };
        }
        Ok(Err(e @ (WsError::Url(_) | WsError::HttpFormat(_)))) => {
            return Err(TailError::Protocol(format!(
                "bad --url {:?}: {e}",
                args.url
            )))
        }
        Ok(Err(e)) => return Ok(End::Reconnect(format!("connect failed: {e}"))),
    };
    let idle = Duration::from_secs(args.idle_timeout_secs.max(1));
    let mut subscribed = false;
    loop {
        let msg = match tokio::time::timeout(idle, ws.next()).await {
            Err(_) => return Ok(End::Reconnect(format!("nothing heard for {idle:?}"))),
            Ok(None) => return Ok(End::Reconnect("connection closed".into())),
            Ok(Some(Err(e))) => return Ok(End::Reconnect(format!("connection lost: {e}"))),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return match code {
                    4401 => Err(TailError::Auth(format!(
                        "authentication failed (close 4401): {reason}"
                    ))),
                    4403 => Err(TailError::Auth(format!("forbidden (close 4403): {reason}"))),
                    1002 | 1003 | 1007 | 1008 | 1009 => Err(TailError::Protocol(format!(
                        "server closed the connection (close {code}): {reason}"
                    ))),
                    _ => Ok(End::Reconnect(format!(
                        "server closed (close {code}) {reason}"
                    ))),
                };
            }
            _ => continue,
        };
        let frame: Value = match serde_json::from_str(text.as_str()) {
            Ok(v) => v,
            Err(_) => {
                return Err(TailError::Protocol(format!(
                    "server sent a frame that is not JSON: {}",
                    text.chars().take(120).collect::<String>()
                )))
            }
        };
        match frame["type"].as_str().unwrap_or("") {
            "hello" => {
                if last.is_none() {
                    *last = frame["seq"].as_i64();
                }
                let mut sub = json!({"op": "subscribe", "topics": args.topics});
                if let Some(s) = *last {
                    sub["since"] = json!(s);
                }
                if ws.send(Message::text(sub.to_string())).await.is_err() {
                    return Ok(End::Reconnect("connection lost while subscribing".into()));
                }
            }
            "subscribed" => subscribed = true,
            "event" => {
                let Some(seq) = frame["seq"].as_i64() else {
                    continue;
                };
                if last.is_some_and(|l| seq <= l) {
                    continue; // already printed before a reconnect
                }
                match args.format {
                    TailFormat::Json => writeln!(out, "{}", text.as_str())?,
                    TailFormat::Text => writeln!(out, "{}", text_line(&frame))?,
                }
                out.flush()?;
                *last = Some(seq);
            }
            "snapshot" | "delta" => {
                match args.format {
                    TailFormat::Json => writeln!(out, "{}", text.as_str())?,
                    TailFormat::Text => writeln!(
                        out,
                        "kpis {} seq={} {}",
                        frame["type"].as_str().unwrap_or(""),
                        frame["seq"],
                        kpi_summary(&frame)
                    )?,
                }
                out.flush()?;
            }
            "resync" if frame["skipped"] == true => {
                // Resumed from before the outbox's retention horizon: events
                // after our position may be gone. Say so on stdout too (the
                // output is no longer gap-free), with the figures to restart from.
                eprintln!(
                    "tail: events after seq {} up to seq {} may be missing (outbox pruned); continuing with the events still kept",
                    frame["since"], frame["pruned_upto"]
                );
                match args.format {
                    TailFormat::Json => writeln!(out, "{}", text.as_str())?,
                    TailFormat::Text => writeln!(
                        out,
                        "resync: events after seq {} up to seq {} may be missing (outbox pruned)",
                        frame["since"], frame["pruned_upto"]
                    )?,
                }
                out.flush()?;
            }
            "resync" => eprintln!(
                "tail: server resynced this slow subscriber after seq {}",
                frame["since"]
            ),
            "error" => {
                let code = frame["code"].as_str().unwrap_or("?");
                let message = frame["message"].as_str().unwrap_or("");
                if code == "unavailable" {
                    return Ok(End::Reconnect(format!("server: {message}")));
                }
                return Err(TailError::Protocol(format!(
                    "server refused the {}: {code}: {message}",
                    if subscribed {
                        "request"
                    } else {
                        "subscription"
                    }
                )));
            }
            _ => {} // pong and frame types added later
        }
    }
}

/// A readable line for an `event` frame.
fn text_line(f: &Value) -> String {
    let source = match &f["source"] {
        Value::String(s) => s.clone(),
        _ => f["sources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into()),
    };
    format!(
        "{:>10}  {}  {:<18} {:<20} rows={}",
        f["seq"],
        f["at"].as_str().unwrap_or(""),
        f["kind"].as_str().unwrap_or(""),
        source,
        f["rows"]
    )
}

/// The 5-minute totals of a KPI frame, when it carries them.
fn kpi_summary(f: &Value) -> String {
    let t = &f["data"]["5m"]["total"];
    ["received", "normalized", "rejected", "errors", "backlog"]
        .iter()
        .filter(|k| !t[**k].is_null())
        .map(|k| format!("{k}={}", t[*k]))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_name_the_source_or_the_sources() {
        let one = json!({"type":"event","seq":7,"at":"2026-11-26T10:15:30.123456Z","kind":"raw_records.insert",
                         "source":"crm","sources":["crm"],"rows":3});
        let line = text_line(&one);
        assert!(
            line.contains(" 7 ") || line.trim_start().starts_with('7'),
            "{line}"
        );
        assert!(line.contains("crm") && line.contains("rows=3"), "{line}");
        let many = json!({"seq":8,"kind":"runs.update","source":null,"sources":["a","b"],"rows":2});
        assert!(text_line(&many).contains("a,b"));
        let snap = json!({"type":"delta","data":{"5m":{"total":{"received":5}}}});
        assert_eq!(kpi_summary(&snap), "received=5");
    }
}
