//! `--auth-disabled` (loopback development) must not be reachable from a
//! web page (issue 16.14): with authentication off, every route refuses a
//! `Host` that is not a loopback name or address (DNS rebinding), and every
//! request carrying an `Origin` — above all the `/ws` upgrade and the SSE
//! stream, which CORS does not protect — must come from a loopback origin or
//! one of `--cors-origins`. Clients that send no `Origin` (curl, `tail`)
//! still work; with authentication on nothing changes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one raw HTTP/1.1 request and returns the status code.
async fn status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    // Only the status line matters (a stream never ends).
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("status line in time")
            .expect("read");
        assert!(n > 0, "connection closed before a status line");
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line: {line}"))
}

const UPGRADE: [(&str, &str); 4] = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

async fn ws_status(addr: SocketAddr, host: &str, origin: Option<&str>) -> u16 {
    let mut h: Vec<(&str, &str)> = UPGRADE.to_vec();
    h.push(("Host", host));
    if let Some(o) = origin {
        h.push(("Origin", o));
    }
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = "GET /ws HTTP/1.1\r\n".to_string();
    for (k, v) in &h {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_disabled_checks_host_everywhere_and_origin_on_streams() {
    let db = TestDb::new().await;
    let mut opts = options();
    opts.auth.jwt_secret = None;
    opts.auth.auth_disabled = true;
    opts.auth.cors_origins = vec!["https://dev.example.test:5173".into()];
    let server = TestServer::start_with(&db, opts).await;
    let a = server.addr;
    let local = a.to_string();
    let port = a.port();

    // Loopback names and addresses pass.
    for host in [
        local.clone(),
        format!("localhost:{port}"),
        "localhost".into(),
        format!("[::1]:{port}"),
        format!("127.0.0.2:{port}"),
    ] {
        assert_eq!(
            status(a, "/api/kpis", &[("Host", &host)]).await,
            200,
            "{host}"
        );
    }
    // DNS rebinding: a foreign name pointing at 127.0.0.1 is refused on every route.
    for path in ["/api/kpis", "/api/runs", "/", "/metrics", "/api/stream"] {
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
        ] {
            assert_eq!(
                status(a, path, &[("Host", host)]).await,
                403,
                "{path} {host}"
            );
        }
    }
    assert_eq!(status(a, "/api/kpis", &[]).await, 403, "no Host at all");
    // The CORS allow-list's hosts count as local names too.
    assert_eq!(
        status(a, "/api/kpis", &[("Host", "dev.example.test:5173")]).await,
        200
    );

    // /ws: a foreign page's Origin is refused; no Origin (tail, curl), a
    // loopback origin and an allow-listed one are accepted.
    assert_eq!(
        ws_status(a, &local, Some("https://evil.example")).await,
        403
    );
    assert_eq!(ws_status(a, &local, Some("null")).await, 403);
    assert_eq!(
        ws_status(a, &local, Some("http://127.0.0.1.evil.example")).await,
        403
    );
    assert_eq!(ws_status(a, &local, None).await, 101);
    assert_eq!(
        ws_status(a, &local, Some(&format!("http://{local}"))).await,
        101
    );
    assert_eq!(
        ws_status(a, &local, Some(&format!("http://localhost:{port}"))).await,
        101
    );
    assert_eq!(
        ws_status(a, &local, Some("https://dev.example.test:5173")).await,
        101
    );
    // SSE likewise.
    let sse = "/api/stream?topics=kpis";
    assert_eq!(
        status(
            a,
            sse,
            &[("Host", &local), ("Origin", "https://evil.example")]
        )
        .await,
        403
    );
    assert_eq!(status(a, sse, &[("Host", &local)]).await, 200);
    assert_eq!(
        status(
            a,
            sse,
            &[("Host", &local), ("Origin", &format!("http://{local}"))]
        )
        .await,
        200
    );
    server.stop().await;

    // With authentication on, Host and Origin are the token's business.
    let server = TestServer::start(&db).await;
    let token = format!("Bearer {}", server.token);
    assert_eq!(
        status(
            server.addr,
            "/api/kpis",
            &[("Host", "monitor.example"), ("Authorization", &token)]
        )
        .await,
        200
    );
    server.stop().await;
}
