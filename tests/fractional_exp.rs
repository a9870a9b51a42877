//! Fractional `exp` / `nbf` (valid NumericDates per RFC 7519, e.g.
//! `1795690000.5`) are enforced like integers (issue 16.9): on REST, the
//! SSE stream, the WebSocket upgrade, in-band `{"op":"auth"}`, and an open
//! WebSocket is closed once its fractional `exp` (plus the grace) passes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// An operator token from [`SECRET`] with these time claims.
fn token_with(claims: Value) -> String {
    let mut c = json!({"sub": "frac", "role": "operator"});
    for (k, v) in claims.as_object().expect("object") {
        c[k] = v.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_exp_and_nbf_are_enforced_everywhere() {
    let db = TestDb::new().await;
    let mut opts = options();
    opts.auth.jwt_leeway_secs = 0;
    opts.auth.ws_auth_grace_secs = 1;
    let server = TestServer::start_with(&db, opts).await;
    let t = now();
    let expired = token_with(json!({"exp": t - 100.5}));
    let future = token_with(json!({"exp": t + 3600.25, "nbf": t + 100.5}));
    let good = token_with(json!({"exp": t + 3600.75, "nbf": t - 10.5}));

    // REST.
    assert_eq!(server.get_as("/api/kpis", Some(&good)).await.0, 200);
    let (status, body) = server.get_as("/api/kpis", Some(&expired)).await;
    assert_eq!(status, 401, "expired fractional exp: {body}");
    let (status, body) = server.get_as("/api/kpis", Some(&future)).await;
    assert_eq!(status, 401, "future fractional nbf: {body}");
    // SSE.
    // (status only: on a server that accepted the token the stream never ends)
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        server
            .http
            .get(format!("http://{}/api/stream?topics=kpis", server.addr))
            .bearer_auth(&expired)
            .send(),
    )
    .await
    .expect("answer in time")
    .expect("http");
    assert_eq!(
        r.status().as_u16(),
        401,
        "SSE with an expired fractional exp"
    );
    drop(r);
    // WebSocket upgrade.
    assert!(
        server.ws_as(Some(&expired)).await.is_err(),
        "ws with expired token"
    );
    assert!(
        server.ws_as(Some(&future)).await.is_err(),
        "ws with immature token"
    );

    // In-band auth with an expired fractional token is refused.
    let mut ws = server.ws_as(Some(&good)).await.expect("ws");
    ws.next_of("hello", Duration::from_secs(5))
        .await
        .expect("hello");
    ws.send(json!({"op": "auth", "token": expired})).await;
    let f = ws.next(Duration::from_secs(5)).await;
    assert!(
        f.as_ref().is_none_or(|f| f["type"] == "error"),
        "in-band auth with an expired token: {f:?}"
    );
    drop(ws);

    // An open socket whose fractional exp passes is closed after the grace.
    let soon = token_with(json!({"exp": now() + 2.5}));
    let mut ws = server.ws_as(Some(&soon)).await.expect("ws");
    let start = Instant::now();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.stream.next()).await {
            Err(_) => break false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break true,
            Ok(Some(Ok(_))) => continue,
        }
    };
    assert!(closed, "the socket stayed open past its fractional exp");
    assert!(start.elapsed() < Duration::from_secs(15));
    server.stop().await;
}
