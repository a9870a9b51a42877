//! The WebSocket endpoint `/ws` (protocol in docs/protocol.md): the
//! WebSocket framing of the subscriber session in [`super::session`].
//!
//! What is WebSocket-specific lives here: authentication before the upgrade,
//! client operations as JSON text frames (with a rate limit and a size
//! limit), `auth` to refresh the token in place, ping/idle timeouts, close
//! codes, and writes coalesced into one flush.
//!
//! One task per connection runs a `select!` loop over the socket, the
//! subscriber queue, a ping ticker and shutdown. One task (rather than a
//! reader and a writer task) keeps frame order trivial — catch-up frames read
//! from the outbox are written before the hub starts queueing live ones — and
//! keeps an idle connection cheap. Every write has a timeout, so a client that
//! stops reading is closed instead of holding anything up; the hub never
//! waits for it either (bounded queue, `try_send`).

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::SinkExt;
use serde_json::Value;
use tracing::Instrument;

use super::session::{Expiry, Frame, Frames, Session};
use crate::auth::{self, Principal, Refusal};
use crate::error::AppError;
use crate::hub::{Outgoing, Topic};
use crate::limits::Bucket;
use crate::state::AppState;

pub use super::session::PROTOCOL_VERSION;
/// Frames larger than this are refused by the WebSocket layer itself (close 1009).
pub const HARD_FRAME_LIMIT: usize = 1 << 20;
/// Close code: the client could not keep up even after resyncs.
pub const CLOSE_SLOW: u16 = 4008;
/// Close code: no frame (not even a pong) from the client within the idle timeout.
pub const CLOSE_IDLE: u16 = 4002;
/// Read buffer per socket. tungstenite's default (128 KiB) is zero-filled on
/// the first read, so every idle connection kept 128 KiB resident (141 KB of
/// RSS per idle subscriber in `ingestwatch bench --mode memory`). Client
/// frames are small (subscribe, ping, auth); a larger frame still arrives
/// whole (the buffer grows to its length), only in more reads.
const READ_BUFFER: usize = 1024;
/// Buffered output before a write to the socket. The buffer keeps its
/// high-water capacity for the connection's life, so a catch-up burst with
/// the default (128 KiB) left that much behind per subscriber; every batch is
/// flushed at its end anyway.
const WRITE_BUFFER: usize = 16 * 1024;
/// Queue items written per flush at most (see `Connection::write_item`).
const COALESCE: usize = 64;

/// Close code: the token expired and was not refreshed in time, or is invalid.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code: a refreshed token lacks the role.
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Close code: the client kept flooding past the rate limit.
pub const CLOSE_FLOOD: u16 = 4029;

/// `GET /ws` — authenticates (before the upgrade), takes a connection slot, upgrades.
pub async fn upgrade(
    State(st): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let (principal, via_protocol) = if st.auth.disabled() {
        (Principal::unrestricted(), false)
    } else {
        let token = auth::token_from(&headers, uri.query())
            .ok_or_else(|| AppError::Unauthorized("a bearer token is required".into()))?;
        let via_protocol = headers.get(axum::http::header::AUTHORIZATION).is_none()
            && headers
                .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with(auth::WS_PROTOCOL));
        (st.auth.verify(&token).await?, via_protocol)
    };
    // Before the warm-up the hub does not know where the stream starts: a
    // resume would be answered from the wrong place. Clients retry.
    if !st.status.warm.load(std::sync::atomic::Ordering::Acquire) {
        return Err(AppError::Unavailable("warming up; retry shortly".into()));
    }
    let guard = st
        .limits
        .acquire(&principal.subject)
        .map_err(|why| AppError::TooMany(why.to_string()))?;
    let ws = if via_protocol {
        ws.protocols([auth::WS_PROTOCOL])
    } else {
        ws
    };
    Ok(ws
        .max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            st.metrics.ws_clients.inc();
            let conn = Connection::new(st.clone(), socket, principal);
            let span = conn.session.span().clone();
            conn.run().instrument(span).await;
            st.metrics.ws_clients.dec();
            drop(guard);
        }))
}

/// Why the loop ended.
enum End {
    Gone,
    Close(u16, &'static str),
}

struct Connection {
    session: Session,
    socket: WebSocket,
    write_timeout: Duration,
    bucket: Bucket,
    /// Frames refused by the rate limit in the current 10-second period.
    flooded: u32,
}

impl Connection {
    fn new(st: AppState, socket: WebSocket, principal: Principal) -> Self {
        let write_timeout = Duration::from_secs(st.options.ws_write_timeout_secs.max(1));
        let rate = st.options.auth.ws_messages_per_sec;
        Connection {
            session: Session::new(st, principal, "ws"),
            socket,
            write_timeout,
            bucket: Bucket::new(rate, rate.saturating_mul(2)),
            flooded: 0,
        }
    }

    fn st(&self) -> &AppState {
        self.session.state()
    }

    async fn run(mut self) {
        let end = self.serve().await;
        self.session.leave();
        if let End::Close(code, reason) = end {
            tracing::debug!(code, reason, "closing");
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.socket.send(Message::Close(Some(frame))),
            )
            .await;
            // Closing handshake: read (and drop) what the client still sends
            // until its Close, for at most a second. Dropping a socket with
            // unread input makes the kernel send a reset, which can overtake
            // our Close frame (a flooding client then saw no 4029).
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(Ok(m)) = self.socket.recv().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }

    async fn serve(&mut self) -> End {
        let hello = self.session.hello(false);
        if self.send(hello).await.is_err() {
            return End::Gone;
        }
        let opts = self.st().options.clone();
        let mut ping = tokio::time::interval(Duration::from_secs(opts.ws_ping_secs.max(1)));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let idle = Duration::from_secs(opts.ws_idle_timeout_secs.max(2));
        let mut last_heard = Instant::now();
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.st().shutdown.clone();
        loop {
            tokio::select! {
                msg = self.socket.recv() => {
                    let Some(Ok(msg)) = msg else { return End::Gone };
                    last_heard = Instant::now();
                    match msg {
                        Message::Text(text) => {
                            // Boxed: handling a frame can go deep (outbox
                            // catch-up, JWKS fetch); inline, that state would
                            // size every idle connection's task (4.6 KiB).
                            if let Err(end) = Box::pin(self.on_text(text.as_str())).await {
                                return end;
                            }
                        }
                        Message::Binary(_) => {
                            self.st().metrics.ws_bad_frames.inc();
                            if self.send(Frame::error("binary_not_supported", "frames must be JSON text")).await.is_err() {
                                return End::Gone;
                            }
                        }
                        Message::Close(_) => return End::Gone,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                item = self.session.recv() => {
                    let Some(item) = item else { return End::Gone };
                    if self.write_item(item).await.is_err() {
                        self.st().metrics.ws_closed_slow.inc();
                        return End::Gone;
                    }
                    if self.session.needs_resync() {
                        if let Err(end) = Box::pin(self.resync()).await {
                            return end;
                        }
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > idle {
                        return End::Close(CLOSE_IDLE, "idle timeout");
                    }
                    if self.write(Message::Ping(Default::default())).await.is_err() {
                        return End::Gone;
                    }
                }
                _ = second.tick() => {
                    self.flooded = self.flooded.saturating_sub(self.flooded / 10 + 1);
                    match self.session.expiry(chrono::Utc::now().timestamp()) {
                        Expiry::Valid => {}
                        Expiry::Expired => return End::Close(CLOSE_UNAUTHORIZED, "token expired"),
                        Expiry::Warn { grace } => {
                            let msg = format!("token expired; send {{\"op\":\"auth\",\"token\":…}} within {grace} s");
                            if self.send(Frame::error("token_expired", &msg)).await.is_err() {
                                return End::Gone;
                            }
                        }
                    }
                }
                () = shutdown.cancelled() => return End::Close(1001, "server shutting down"),
            }
        }
    }

    async fn write(&mut self, msg: Message) -> Result<(), ()> {
        match tokio::time::timeout(self.write_timeout, self.socket.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    async fn send(&mut self, frame: Frame) -> Result<(), ()> {
        self.write(Message::Text(frame.text)).await
    }

    /// Writes `item` and whatever else is already queued (up to [`COALESCE`]
    /// items), with ONE flush: a subscriber that fell behind by a few
    /// publishes catches up in one `send` instead of one per publish (the
    /// server's CPU with subscribers was 55 % kernel, mostly per-write TCP
    /// work).
    async fn write_item(&mut self, item: Outgoing) -> Result<(), ()> {
        let deadline = self.write_timeout;
        let res = tokio::time::timeout(deadline, async {
            let mut next = Some(item);
            let mut written = 0;
            while let Some(item) = next.take() {
                feed(&mut self.socket, self.session.frames(item)).await?;
                written += 1;
                if written < COALESCE {
                    next = self.session.try_recv();
                }
            }
            self.socket.flush().await.map_err(|_| ())
        })
        .await;
        match res {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Handles one client frame; errors answer with an error frame and change nothing.
    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let per_sec = self.st().options.auth.ws_messages_per_sec;
        if !self.bucket.take(Instant::now()) {
            self.flooded += 1;
            if self.flooded > 10 * per_sec.max(1) {
                return Err(End::Close(CLOSE_FLOOD, "too many messages"));
            }
            return self
                .refuse("rate_limited", "too many frames; slow down")
                .await;
        }
        let max_frame = self.st().options.ws_max_frame;
        if text.len() > max_frame {
            let msg = format!(
                "frame of {} bytes exceeds the limit of {max_frame}",
                text.len()
            );
            return self.refuse("frame_too_large", &msg).await;
        }
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .refuse("invalid_json", &format!("malformed JSON: {e}"))
                    .await
            }
        };
        let Some(op) = v.get("op").and_then(Value::as_str) else {
            return self
                .refuse("invalid_frame", "a frame needs a string field `op`")
                .await;
        };
        match op {
            "ping" => {
                let pong = self
                    .session
                    .pong(v.get("id").cloned().unwrap_or(Value::Null));
                self.send(pong).await.map_err(|()| End::Gone)
            }
            "auth" => {
                let Some(token) = v.get("token").and_then(Value::as_str) else {
                    return self
                        .refuse("invalid_frame", "`auth` needs a string field `token`")
                        .await;
                };
                let auth = self.st().auth.clone();
                match auth.verify(token).await {
                    Ok(p) => {
                        let frame = self.session.reauthenticate(p);
                        self.send(frame).await.map_err(|()| End::Gone)
                    }
                    Err(Refusal::Unauthorized(m)) => self.refuse("invalid_token", &m).await,
                    Err(Refusal::Forbidden(m)) => {
                        let _ = self.send(Frame::error("forbidden", &m)).await;
                        Err(End::Close(CLOSE_FORBIDDEN, "token lacks the role"))
                    }
                }
            }
            "subscribe" | "unsubscribe" => {
                let topics = match parse_topics(&v) {
                    Ok(t) => t,
                    Err((code, msg)) => return self.refuse(code, &msg).await,
                };
                let since =
                    match v.get("since") {
                        None | Some(Value::Null) => None,
                        Some(s) => match s.as_i64() {
                            Some(n) if n >= 0 && op == "subscribe" => Some(n),
                            _ => return self
                                .refuse(
                                    "invalid_since",
                                    "`since` must be a non-negative integer seq (subscribe only)",
                                )
                                .await,
                        },
                    };
                if op == "subscribe" {
                    // The ack comes before the snapshots and replayed events.
                    self.session.subscribe(&topics, since);
                    let ack = self.session.ack("subscribed", &topics);
                    self.send(ack).await.map_err(|()| End::Gone)?;
                    self.catch_up().await
                } else {
                    self.session.unsubscribe(&topics);
                    self.catch_up().await?;
                    let ack = self.session.ack("unsubscribed", &topics);
                    self.send(ack).await.map_err(|()| End::Gone)
                }
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                let msg = format!("unknown op {shown:?}; use subscribe, unsubscribe, ping or auth");
                self.refuse("unknown_op", &msg).await
            }
        }
    }

    async fn refuse(&mut self, code: &str, message: &str) -> Result<(), End> {
        self.st().metrics.ws_bad_frames.inc();
        tracing::debug!(code, "client frame refused");
        self.send(Frame::error(code, message))
            .await
            .map_err(|()| End::Gone)
    }

    /// Writes the missed events the session reads from the outbox, batch by
    /// batch (each flushed before the next is read; live frames queued
    /// meanwhile wait), until it is registered for live ones.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let timeout = self.write_timeout;
            match self.session.catch_up().await {
                Ok(None) => return Ok(()),
                Ok(Some(frames)) => {
                    let socket = &mut self.socket;
                    let written = tokio::time::timeout(timeout, async {
                        feed(socket, frames).await?;
                        socket.flush().await.map_err(|_| ())
                    })
                    .await;
                    if !matches!(written, Ok(Ok(()))) {
                        return Err(End::Gone);
                    }
                }
                Err(_) => {
                    return self
                        .refuse(
                            "unavailable",
                            "could not read past events; subscribe again shortly",
                        )
                        .await;
                }
            }
        }
    }

    /// The queue overflowed and is now drained: say so, then resubscribe from
    /// where the client is (a fresh KPI snapshot; events after the last written).
    async fn resync(&mut self) -> Result<(), End> {
        let Ok(frame) = self.session.resync() else {
            return Err(End::Close(
                CLOSE_SLOW,
                "too slow: queue overflowed repeatedly",
            ));
        };
        self.send(frame).await.map_err(|()| End::Gone)?;
        self.catch_up().await
    }
}

/// Feeds `frames` to the socket without flushing.
async fn feed(socket: &mut WebSocket, frames: Frames<'_>) -> Result<(), ()> {
    for frame in frames {
        socket
            .feed(Message::Text(frame.text))
            .await
            .map_err(|_| ())?;
    }
    Ok(())
}

/// Parses a client's `topics` array (1–16 names, duplicates ignored).
fn parse_topics(v: &Value) -> Result<Vec<Topic>, (&'static str, String)> {
    let Some(list) = v.get("topics").and_then(Value::as_array) else {
        return Err((
            "invalid_frame",
            "`topics` must be an array of topic names".into(),
        ));
    };
    if list.is_empty() || list.len() > 16 {
        return Err(("invalid_frame", "`topics` must name 1 to 16 topics".into()));
    }
    let mut out = Vec::new();
    for t in list {
        let name = t.as_str().unwrap_or("");
        match Topic::parse(name) {
            Some(topic) if !out.contains(&topic) => out.push(topic),
            Some(_) => {}
            None => {
                let shown: String = t.to_string().chars().take(64).collect();
                return Err((
                    "unknown_topic",
                    format!("unknown topic {shown}; available: {}", Topic::available()),
                ));
            }
        }
    }
    Ok(out)
}
