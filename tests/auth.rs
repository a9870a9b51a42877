//! Authentication and authorization against the real server: bad tokens of
//! every kind on REST and WebSocket, roles, source scopes on every live route
//! and topic, expiry with in-band refresh, tokens from an independent library
//! (PyJWT) through a JWKS served over HTTP, with key rotation.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const AUD: &str = "ingestwatch";
const ISS: &str = "https://issuer.test";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/jwt")
        .join(name)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(role: &str) -> Value {
    json!({"sub": "alice", "role": role, "aud": AUD, "iss": ISS, "iat": now(), "exp": now() + 600})
}

fn hs(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

fn rs(claims: &Value, key_file: &str, kid: Option<&str>) -> String {
    let pem = std::fs::read(fixture(key_file)).expect("key");
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &h,
        claims,
        &EncodingKey::from_rsa_pem(&pem).expect("rsa key"),
    )
    .expect("encode")
}

fn b64(v: &[u8]) -> String {
    // base64url without padding, enough for hand-made tokens
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in v.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..(c.len() + 1) {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn secured_server(db: &TestDb) -> TestServer {
    let mut o = options();
    o.auth.jwt_public_key = Some(fixture("rsa_public.pem"));
    o.auth.jwt_audience = Some(AUD.into());
    o.auth.jwt_issuer = Some(ISS.into());
    o.auth.jwt_leeway_secs = 5;
    let mut s = TestServer::start_with(db, o).await;
    s.token = hs(&claims("operator"), SECRET);
    s
}

/// Status of a WebSocket upgrade attempt (101 when accepted).
async fn ws_status(server: &TestServer, token: Option<&str>) -> u16 {
    match server.ws_as(token).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected ws error {e}"),
    }
}

/// Status of an SSE request (the stream itself is not read).
async fn sse_status(server: &TestServer, token: Option<&str>) -> u16 {
    let mut req = server
        .http
        .get(format!("http://{}/api/stream?topics=kpis", server.addr));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("sse").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_of_every_kind_are_refused_on_rest_ws_and_sse() {
    let db = TestDb::new().await;
    let server = secured_server(&db).await;
    let good = hs(&claims("viewer"), SECRET);
    let mut c = claims("operator");
    let with = |k: &str, v: Value| {
        let mut c = claims("operator");
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = claims("operator");
        c.as_object_mut().expect("object").remove(k);
        c
    };
    let rsa_pub = std::fs::read_to_string(fixture("rsa_public.pem")).expect("pem");
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = {
        c["role"] = json!("operator");
        c["sub"] = json!("mallory");
        format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        )
    };
    let ec_token = {
        let pem = std::fs::read(fixture("ec_private.pem")).expect("ec");
        jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims("operator"),
            &EncodingKey::from_ec_pem(&pem).expect("ec key"),
        )
        .expect("encode")
    };
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("missing token", None, 401),
        (
            "expired",
            Some(hs(&with("exp", json!(now() - 120)), SECRET)),
            401,
        ),
        (
            "not yet valid",
            Some(hs(&with("nbf", json!(now() + 600)), SECRET)),
            401,
        ),
        (
            "wrong secret",
            Some(hs(&claims("operator"), "another-secret-0123456789")),
            401,
        ),
        (
            "wrong RSA key",
            Some(rs(&claims("operator"), "rsa_other_private.pem", None)),
            401,
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(claims("operator").to_string().as_bytes())
            )),
            401,
        ),
        (
            "HS/RS confusion",
            Some(hs(&claims("operator"), &rsa_pub)),
            401,
        ),
        (
            "wrong aud",
            Some(hs(&with("aud", json!("someone-else")), SECRET)),
            401,
        ),
        (
            "wrong iss",
            Some(hs(&with("iss", json!("https://evil.test")), SECRET)),
            401,
        ),
        ("missing aud", Some(hs(&without("aud"), SECRET)), 401),
        ("missing exp", Some(hs(&without("exp"), SECRET)), 401),
        ("missing iss", Some(hs(&without("iss"), SECRET)), 401),
        ("truncated", Some(good[..good.len() - 10].to_string()), 401),
        ("garbage base64", Some("@@@.!!!.###".into()), 401),
        ("two parts", Some(format!("{}.{}", parts[0], parts[1])), 401),
        (
            "header not json",
            Some(format!("{}.{}.{}", b64(b"nope"), parts[1], parts[2])),
            401,
        ),
        (
            "payload not json",
            Some(format!("{}.{}.{}", parts[0], b64(b"nope"), parts[2])),
            401,
        ),
        ("tampered payload", Some(tampered), 401),
        (
            "huge token",
            Some(format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2])),
            401,
        ),
        ("empty bearer", Some(String::new()), 401),
        ("ES256 with an unconfigured key", Some(ec_token), 401),
        (
            "HS512 with the wrong secret",
            Some(
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS512),
                    &claims("operator"),
                    &EncodingKey::from_secret(b"wrong-wrong-wrong-wrong"),
                )
                .expect("enc"),
            ),
            401,
        ),
        ("no role", Some(hs(&without("role"), SECRET)), 403),
        (
            "unknown role",
            Some(hs(&with("role", json!("admin")), SECRET)),
            403,
        ),
        (
            "sources not a list",
            Some(hs(&with("sources", json!("crm")), SECRET)),
            403,
        ),
    ];
    assert!(cases.len() >= 20);
    for (what, token, want) in &cases {
        let (status, body) = server.get_as("/api/kpis", token.as_deref()).await;
        assert_eq!(status, *want, "REST {what}: {body}");
        assert!(
            body["error"]["code"].is_string(),
            "REST {what}: JSON envelope"
        );
        if let Some(t) = token.as_deref().filter(|t| t.len() > 20) {
            assert!(
                !body.to_string().contains(t),
                "{what}: token echoed in the error"
            );
        }
        assert_eq!(
            ws_status(&server, token.as_deref()).await,
            *want,
            "WS {what}"
        );
        assert_eq!(
            sse_status(&server, token.as_deref()).await,
            *want,
            "SSE {what}"
        );
    }
    // The WWW-Authenticate header on 401.
    let r = server
        .http
        .get(format!("http://{}/api/kpis", server.addr))
        .send()
        .await
        .expect("http");
    assert!(r
        .headers()
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("Bearer")));
    // Good tokens: HS256 viewer, RS256 viewer through the PEM key, and the browser ways for WS.
    assert_eq!(server.get_as("/api/kpis", Some(&good)).await.0, 200);
    let rs_good = rs(&claims("viewer"), "rsa_private.pem", None);
    assert_eq!(server.get_as("/api/kpis", Some(&rs_good)).await.0, 200);
    assert_eq!(ws_status(&server, Some(&rs_good)).await, 101);
    assert_eq!(sse_status(&server, Some(&rs_good)).await, 200);
    let url = format!("ws://{}/ws?access_token={good}", server.addr);
    assert!(
        Ws::connect_with(&url, None).await.is_ok(),
        "access_token query"
    );
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .expect("req");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("bearer, {good}").parse().expect("hv"),
    );
    let (_, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("subprotocol auth");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("bearer")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_scoped_to_one_source_never_sees_another() {
    let db = TestDb::new().await;
    let a = db.source("alpha").await;
    let b = db.source("beta").await;
    let server = TestServer::start(&db).await;
    let scoped = token("viewer", &["alpha"], "1h");
    let mut ws = server.ws_as(Some(&scoped)).await.expect("ws");
    ws.send(json!({"op": "subscribe", "topics": ["events", "kpis"], "since": 0}))
        .await;

    let p = Pipeline::new(&db).await;
    let ra = p.run(a).await;
    let rb = p.run(b).await;
    let ids_a = p.records(ra, a, 3).await;
    let ids_b = p.records(rb, b, 5).await;
    p.process(&ids_b, "rejected", 30).await;
    p.error(rb, b, Some(ids_b[0]), "error", "E_BETA_ONLY").await;
    p.process(&ids_a, "normalized", 10).await;
    // One statement touching both sources.
    p.client
        .execute(
            "insert into ingest.raw_records (source_id, payload) values ($1, '{}'), ($2, '{\"secret\":\"beta\"}')",
            &[&a, &b],
        )
        .await
        .expect("mixed");
    server.wait_caught_up(&db).await;

    let mut frames = Vec::new();
    let last = db.max_seq().await;
    loop {
        let Some(f) = ws.next(Duration::from_secs(3)).await else {
            break;
        };
        let done = f["type"] == "event" && f["seq"] == last;
        frames.push(f);
        if done {
            break;
        }
    }
    let text = serde_json::to_string(&frames).expect("json");
    assert!(!text.contains("beta"), "scoped client saw beta: {text}");
    assert!(!text.contains("E_BETA_ONLY"));
    let b_tuples = frames
        .iter()
        .filter_map(|f| f["kpi"].as_array())
        .flatten()
        .filter(|t| t[0] == b)
        .count();
    assert_eq!(b_tuples, 0, "no contribution of beta");
    assert!(frames
        .iter()
        .any(|f| f["type"] == "event" && f["source"] == "alpha"));
    let redacted = frames
        .iter()
        .find(|f| f["redacted"] == true)
        .expect("the mixed statement, redacted");
    assert_eq!(
        redacted["kpi"]
            .as_array()
            .map(|k| k.iter().all(|t| t[0] == a)),
        Some(true)
    );
    let snapshot = frames
        .iter()
        .find(|f| f["type"] == "snapshot")
        .expect("kpi snapshot");
    let names: BTreeSet<&str> = snapshot["data"]["5m"]["sources"]
        .as_object()
        .expect("sources")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, BTreeSet::from(["alpha"]));

    let (status, kpis) = server.get_as("/api/kpis?window=5m", Some(&scoped)).await;
    assert_eq!(status, 200);
    assert_eq!(
        kpis["sources"]
            .as_object()
            .map(|s| s.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["alpha".to_string()])
    );
    assert_eq!(
        kpis["total"], kpis["sources"]["alpha"],
        "the total counts only alpha"
    );
    assert!(!kpis.to_string().contains("E_BETA_ONLY"));
    let full = server.kpis("5m").await;
    assert_eq!(full["total"]["received"], 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_socket_is_closed_with_4401_and_a_refreshed_one_keeps_receiving() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let mut o = options();
    o.auth.jwt_leeway_secs = 0;
    o.auth.ws_auth_grace_secs = 1;
    let server = TestServer::start_with(&db, o).await;
    let short = token("viewer", &[], "2s");
    let mut lapsing = server.ws_as(Some(&short)).await.expect("ws");
    let mut refreshed = server.ws_as(Some(&short)).await.expect("ws");
    for ws in [&mut lapsing, &mut refreshed] {
        ws.send(json!({"op": "subscribe", "topics": ["events"]}))
            .await;
        ws.next_of("subscribed", Duration::from_secs(5))
            .await
            .expect("subscribed");
    }
    refreshed
        .send(json!({"op": "auth", "token": token("viewer", &[], "1h")}))
        .await;
    let ok = refreshed
        .next_of("authenticated", Duration::from_secs(5))
        .await
        .expect("authenticated");
    assert_eq!(ok["role"], "viewer");
    // A bad refresh is refused and changes nothing.
    refreshed
        .send(json!({"op": "auth", "token": "garbage"}))
        .await;
    let err = refreshed
        .next_of("error", Duration::from_secs(5))
        .await
        .expect("error");
    assert_eq!(err["code"], "invalid_token");

    // The lapsing one is closed with 4401 after expiry + grace.
    let started = std::time::Instant::now();
    let code = loop {
        use futures_util::StreamExt;
        match tokio::time::timeout(Duration::from_secs(10), lapsing.stream.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f))))) => {
                break u16::from(f.code)
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, 4401);
    assert!(started.elapsed() < Duration::from_secs(8));

    // The refreshed one still receives new events.
    let p = Pipeline::new(&db).await;
    let run = p.run(src).await;
    let seq = db.max_seq().await;
    let got = refreshed.events_until(seq, Duration::from_secs(5)).await;
    assert_eq!(
        got.last().copied(),
        Some(seq),
        "refreshed socket keeps receiving (run {run})"
    );
    server.stop().await;
}

#[test]
fn serve_refuses_to_start_without_keys_and_disabled_auth_off_loopback() {
    let mut o = options();
    o.auth.jwt_secret = None;
    let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
    let public: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
    assert!(ingestwatch_server::auth::Auth::from_options(&o.auth, loopback).is_err());
    o.auth.auth_disabled = true;
    assert!(ingestwatch_server::auth::Auth::from_options(&o.auth, loopback).is_ok());
    assert!(ingestwatch_server::auth::Auth::from_options(&o.auth, public).is_err());
    o.auth.auth_disabled = false;
    o.auth.jwt_secret = Some("short".into());
    assert!(ingestwatch_server::auth::Auth::from_options(&o.auth, loopback).is_err());
}

/// A Python with PyJWT (and cryptography), in a project-local virtualenv made on first use.
fn pyjwt() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/pyjwt");
    let py = root.join("bin/python");
    let ok = |py: &PathBuf| {
        std::process::Command::new(py)
            .args(["-c", "import jwt, cryptography"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(&py) {
        let st = std::process::Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&root)
            .status()
            .expect("python3 -m venv");
        assert!(st.success(), "creating the PyJWT virtualenv");
        let st = std::process::Command::new(root.join("bin/pip"))
            .args(["install", "-q", "pyjwt[crypto]"])
            .status()
            .expect("pip");
        assert!(st.success(), "installing PyJWT");
    }
    py
}

const PY_MINT: &str = r#"
import json, sys, time, jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
secret, aud, iss = sys.argv[1], sys.argv[2], sys.argv[3]
now = int(time.time())
claims = {"sub": "py", "aud": aud, "iss": iss, "iat": now, "exp": now + 600,
          "app_metadata": {"ingestwatch_role": "viewer"}}
keys, tokens = [], {}
for kid in ("k1", "k2"):
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(k.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    keys.append(jwk)
    tokens[kid] = jwt.encode(claims, k, algorithm="RS256", headers={"kid": kid})
tokens["hs"] = jwt.encode(claims, secret, algorithm="HS256")
tokens["unknown_kid"] = jwt.encode(claims, k, algorithm="RS256", headers={"kid": "k9"})
print(json.dumps({"jwks1": {"keys": keys[:1]}, "jwks2": {"keys": keys}, "tokens": tokens}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_tokens_are_accepted_through_hs256_and_a_rotating_jwks() {
    let py = pyjwt();
    let out = std::process::Command::new(py)
        .args(["-c", PY_MINT, SECRET, AUD, ISS])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted: Value = serde_json::from_slice(&out.stdout).expect("json");

    // A JWKS endpoint that starts with k1 only; rotation adds k2.
    let jwks = std::sync::Arc::new(std::sync::Mutex::new(minted["jwks1"].clone()));
    let served = jwks.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let v = served.lock().map(|g| g.clone()).unwrap_or_default();
            async move { axum::Json(v) }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let jwks_addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });

    let db = TestDb::new().await;
    let mut o = options();
    o.auth.jwks_url = Some(format!("http://{jwks_addr}/jwks.json"));
    o.auth.jwt_audience = Some(AUD.into());
    o.auth.jwt_issuer = Some(ISS.into());
    o.auth.role_claim = "app_metadata.ingestwatch_role".into();
    let server = TestServer::start_with(&db, o).await;
    let t = |k: &str| minted["tokens"][k].as_str().expect("token").to_string();

    assert_eq!(
        server.get_as("/api/kpis", Some(&t("hs"))).await.0,
        200,
        "PyJWT HS256"
    );
    assert_eq!(
        server.get_as("/api/kpis", Some(&t("k1"))).await.0,
        200,
        "PyJWT RS256 via JWKS"
    );
    assert_eq!(ws_status(&server, Some(&t("k1"))).await, 101);
    assert_eq!(
        server.get_as("/api/kpis", Some(&t("unknown_kid"))).await.0,
        401,
        "unknown kid"
    );
    // Rotation: k2 is published later; the server re-fetches on the unknown kid.
    *jwks.lock().expect("lock") = minted["jwks2"].clone();
    let server_ref = &server;
    let k2 = t("k2");
    wait_for(
        "k2 accepted after rotation",
        Duration::from_secs(30),
        || {
            let k2 = k2.clone();
            async move { server_ref.get_as("/api/kpis", Some(&k2)).await.0 == 200 }
        },
    )
    .await;
    server.stop().await;
}
