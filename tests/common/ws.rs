//! A WebSocket test client: connect with a token, send, read JSON frames,
//! subscribe, and collect event seqs.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket test client.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    /// Connects with `Authorization: Bearer <token>` when given.
    pub async fn connect_with(
        url: &str,
        token: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request()?;
        if let Some(t) = token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header value"),
            );
        }
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Ws { stream })
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .expect("ws send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.stream.send(m).await.expect("ws send");
    }

    /// Next JSON text frame (skipping pings), or None on close/timeout.
    pub async fn next(&mut self, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.stream.next())
                .await
                .ok()??
            {
                Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Next frame of `type` (skipping others).
    /// Subscribes to `topics` from `since` and waits for `subscribed`.
    pub async fn subscribe(&mut self, topics: &[&str], since: i64) {
        self.send(serde_json::json!({"op": "subscribe", "topics": topics, "since": since}))
            .await;
        self.next_of("subscribed", Duration::from_secs(5))
            .await
            .expect("subscribed");
    }

    pub async fn next_of(&mut self, kind: &str, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let v = self.next(left).await?;
            if v["type"] == kind {
                return Some(v);
            }
        }
    }

    /// Collects event seqs until `upto` is seen.
    pub async fn events_until(&mut self, upto: i64, limit: Duration) -> Vec<i64> {
        let deadline = Instant::now() + limit;
        let mut seqs = Vec::new();
        while seqs.last().copied().unwrap_or(0) < upto {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let Some(v) = self.next(left).await else {
                break;
            };
            if v["type"] == "event" {
                seqs.push(v["seq"].as_i64().expect("seq"));
            }
        }
        seqs
    }
}
