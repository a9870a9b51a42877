//! WebSocket protocol: hello, subscribe/unsubscribe, ping, KPI snapshot then
//! deltas, and bad frames answered with error frames on a connection that
//! stays usable.

mod common;

use std::time::Duration;

use common::*;
use ingestwatch_server::hub::mergepatch;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_bad_frames_get_error_frames_and_the_connection_stays_usable() {
    let db = TestDb::new().await;
    let server = TestServer::start(&db).await;
    let mut ws = server.ws().await;
    let hello = ws.next(T).await.expect("hello");
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["protocol"], 1);

    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{not json"), "invalid_json"),
        (Message::text("[1,2]"), "invalid_frame"),
        (
            Message::text(json!({"op": "dance"}).to_string()),
            "unknown_op",
        ),
        (
            Message::text(json!({"op": "subscribe", "topics": ["kpis", "nope"]}).to_string()),
            "unknown_topic",
        ),
        (
            Message::text(json!({"op": "subscribe"}).to_string()),
            "invalid_frame",
        ),
        (
            Message::text(json!({"op": "subscribe", "topics": []}).to_string()),
            "invalid_frame",
        ),
        (
            Message::text(
                json!({"op": "subscribe", "topics": ["events"], "since": -1}).to_string(),
            ),
            "invalid_since",
        ),
        (
            Message::text(
                json!({"op": "subscribe", "topics": ["events"], "since": "x"}).to_string(),
            ),
            "invalid_since",
        ),
        (
            Message::text(format!(
                "{{\"op\":\"ping\",\"pad\":\"{}\"}}",
                "x".repeat(100_000)
            )),
            "frame_too_large",
        ),
        (Message::binary(vec![1u8, 2, 3]), "binary_not_supported"),
    ];
    for (msg, code) in cases {
        ws.send_raw(msg).await;
        let err = ws.next(T).await.expect("error frame");
        assert_eq!(err["type"], "error", "{err}");
        assert_eq!(err["code"], code, "{err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Nothing changed: no topic got subscribed by the refused frames.
    ws.send(json!({"op": "ping", "id": 7})).await;
    let pong = ws.next(T).await.expect("pong");
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["id"], 7);
    ws.send(json!({"op": "subscribe", "topics": ["kpis"]}))
        .await;
    let ack = ws.next(T).await.expect("ack");
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["active"], json!(["kpis"]));
    assert_eq!(server.metric("ingestwatch_ws_bad_frames_total").await, 10.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpi_snapshot_then_deltas_track_the_rest_figures() {
    let db = TestDb::new().await;
    let src = db.source("crm").await;
    let mut opts = options();
    opts.kpi_interval_ms = 50;
    let server = TestServer::start_with(&db, opts).await;
    let mut ws = server.ws().await;
    ws.send(json!({"op": "subscribe", "topics": ["kpis"]}))
        .await;
    let snap = ws.next_of("snapshot", T).await.expect("snapshot");
    let mut data = snap["data"].clone();
    assert!(data["5m"]["total"].is_object());

    let p = Pipeline::new(&db).await;
    let run = p.run(src).await;
    let ids = p.records(run, src, 7).await;
    p.process(&ids[..3], "normalized", 40).await;
    server.wait_caught_up(&db).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(data["5m"]["total"]["received"] == 7 && data["5m"]["total"]["normalized"] == 3) {
        assert!(
            std::time::Instant::now() < deadline,
            "deltas never carried the new figures: {data}"
        );
        if let Some(d) = ws.next_of("delta", Duration::from_millis(500)).await {
            mergepatch::apply(&mut data, &d["data"]);
        }
    }
    let rest = server.kpis("5m").await;
    assert_eq!(data["5m"]["total"]["received"], rest["total"]["received"]);
    assert_eq!(data["5m"]["sources"]["crm"]["backlog"], 4);

    // Unsubscribe stops deltas.
    ws.send(json!({"op": "unsubscribe", "topics": ["kpis"]}))
        .await;
    ws.next_of("unsubscribed", T).await.expect("unsubscribed");
    p.records(run, src, 1).await;
    assert!(ws
        .next_of("delta", Duration::from_millis(600))
        .await
        .is_none());
    server.stop().await;
}
