//! The WebSocket endpoint `/ws` (protocol in docs/protocol.md).
//!
//! One task per connection runs a `select!` loop over the socket, the
//! subscriber queue, a ping ticker and shutdown. One task (rather than a
//! reader and a writer task) keeps frame order trivial — catch-up frames read
//! from the outbox are written before the hub starts queueing live ones — and
//! keeps an idle connection cheap. Every write has a timeout, so a client that
//! stops reading is closed instead of holding anything up; the hub never
//! waits for it either (bounded queue, `try_send`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::{self, Principal, Refusal};
use crate::error::AppError;
use crate::hub::catchup::{self, CatchUp};
use crate::hub::{EventFilter, EventFrame, Outgoing, ResyncBudget, Subscriber, Topic};
use crate::limits::Bucket;
use crate::state::AppState;

/// Protocol version announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;
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
            Connection::new(st.clone(), socket, principal).run().await;
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
    st: AppState,
    socket: WebSocket,
    sub: Arc<Subscriber>,
    rx: mpsc::Receiver<Outgoing>,
    topics: BTreeSet<Topic>,
    /// Highest event seq written to this client (frames at or below are dropped).
    last_seq: i64,
    resyncs: ResyncBudget,
    write_timeout: Duration,
    principal: Principal,
    /// When the current token expires (wall clock, epoch seconds).
    expires_at: Option<i64>,
    bucket: Bucket,
    /// Frames refused by the rate limit in the current 10-second period.
    flooded: u32,
}

fn error_frame(code: &str, message: &str) -> Value {
    json!({"type": "error", "code": code, "message": message})
}

impl Connection {
    fn new(st: AppState, socket: WebSocket, principal: Principal) -> Self {
        let (sub, rx) = st.hub.subscriber(st.options.ws_queue as usize);
        let write_timeout = Duration::from_secs(st.options.ws_write_timeout_secs.max(1));
        let rate = st.options.auth.ws_messages_per_sec;
        Connection {
            expires_at: principal.expires_at,
            principal,
            bucket: Bucket::new(rate, rate.saturating_mul(2)),
            flooded: 0,
            st,
            socket,
            sub,
            rx,
            topics: BTreeSet::new(),
            last_seq: 0,
            resyncs: ResyncBudget::default(),
            write_timeout,
        }
    }

    async fn run(mut self) {
        let end = self.serve().await;
        self.st.hub.remove(self.sub.id);
        if let End::Close(code, reason) = end {
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
        let hello = json!({
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "server": concat!("ingestwatch/", env!("CARGO_PKG_VERSION")),
            "seq": self.st.live.seq(),
            "topics": Topic::ALL.map(Topic::name),
        });
        if self.send_json(&hello).await.is_err() {
            return End::Gone;
        }
        let opts = self.st.options.clone();
        let mut ping = tokio::time::interval(Duration::from_secs(opts.ws_ping_secs.max(1)));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let idle = Duration::from_secs(opts.ws_idle_timeout_secs.max(2));
        let mut last_heard = Instant::now();
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut expiry_warned = false;
        let shutdown = self.st.shutdown.clone();
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
                            self.st.metrics.ws_bad_frames.inc();
                            if self.send_json(&error_frame("binary_not_supported", "frames must be JSON text")).await.is_err() {
                                return End::Gone;
                            }
                        }
                        Message::Close(_) => return End::Gone,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                item = self.rx.recv() => {
                    let Some(item) = item else { return End::Gone };
                    if self.write_item(item, true).await.is_err() {
                        self.st.metrics.ws_closed_slow.inc();
                        return End::Gone;
                    }
                    if self.sub.overflowed() && self.rx.is_empty() {
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
                    if let Some(exp) = self.expires_at {
                        let now = chrono::Utc::now().timestamp();
                        let grace = opts.auth.ws_auth_grace_secs as i64;
                        if now >= exp + grace {
                            return End::Close(CLOSE_UNAUTHORIZED, "token expired");
                        }
                        if now >= exp && !expiry_warned {
                            expiry_warned = true;
                            let msg = format!("token expired; send {{\"op\":\"auth\",\"token\":…}} within {grace} s");
                            if self.send_json(&error_frame("token_expired", &msg)).await.is_err() {
                                return End::Gone;
                            }
                        }
                        if now < exp {
                            expiry_warned = false;
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

    async fn send_json(&mut self, v: &Value) -> Result<(), ()> {
        self.write(Message::Text(Utf8Bytes::from(v.to_string())))
            .await
    }

    /// Writes `item` and, with `coalesce`, whatever else is already queued
    /// (up to [`COALESCE`] items), with ONE flush: a subscriber that fell
    /// behind by a few publishes catches up in one `send` instead of one per
    /// publish (the server's CPU with subscribers was 55 % kernel, mostly
    /// per-write TCP work). Catch-up passes false: live items queued during
    /// it must not be written before the outbox frames that precede them.
    async fn write_item(&mut self, item: Outgoing, coalesce: bool) -> Result<(), ()> {
        let deadline = self.write_timeout;
        let res = tokio::time::timeout(deadline, async {
            let mut next = Some(item);
            let mut written = 0;
            while let Some(item) = next.take() {
                self.feed_item(item).await?;
                written += 1;
                if coalesce && written < COALESCE {
                    next = self.rx.try_recv().ok();
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

    /// Feeds one queue item to the socket without flushing.
    async fn feed_item(&mut self, item: Outgoing) -> Result<(), ()> {
        let frame = match item {
            Outgoing::Kpis(frame) if self.topics.contains(&Topic::Kpis) => frame,
            Outgoing::Alerts(frame) if self.topics.contains(&Topic::Alerts) => frame,
            Outgoing::Exports(frame) if self.topics.contains(&Topic::Exports) => frame,
            Outgoing::Kpis(_) | Outgoing::Alerts(_) | Outgoing::Exports(_) => return Ok(()),
            Outgoing::Events(batch) => {
                let Some(filter) = EventFilter::for_topics(&self.topics) else {
                    return Ok(());
                };
                let visible = self
                    .principal
                    .sources
                    .as_ref()
                    .map(|s| self.st.live.source_ids(s));
                let after = self.last_seq;
                for f in batch.iter().filter(|f| f.seq > after) {
                    self.last_seq = f.seq;
                    if !filter.passes(f) {
                        continue;
                    }
                    if let Some(text) = scoped(f, visible.as_ref()) {
                        self.socket
                            .feed(Message::Text(text))
                            .await
                            .map_err(|_| ())?;
                    }
                }
                return Ok(());
            }
        };
        self.socket.feed(Message::Text(frame)).await.map_err(|_| ())
    }

    /// Handles one client frame; errors answer with an error frame and change nothing.
    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        if !self.bucket.take(Instant::now()) {
            self.flooded += 1;
            if self.flooded > 10 * self.st.options.auth.ws_messages_per_sec.max(1) {
                return Err(End::Close(CLOSE_FLOOD, "too many messages"));
            }
            return self
                .refuse("rate_limited", "too many frames; slow down")
                .await;
        }
        if text.len() > self.st.options.ws_max_frame {
            let msg = format!(
                "frame of {} bytes exceeds the limit of {}",
                text.len(),
                self.st.options.ws_max_frame
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
                let pong = json!({"type": "pong", "id": v.get("id").cloned().unwrap_or(Value::Null), "seq": self.st.live.seq()});
                self.send_json(&pong).await.map_err(|()| End::Gone)
            }
            "auth" => {
                let Some(token) = v.get("token").and_then(Value::as_str) else {
                    return self
                        .refuse("invalid_frame", "`auth` needs a string field `token`")
                        .await;
                };
                match self.st.auth.verify(token).await {
                    Ok(p) => {
                        let rescope = p.sources != self.principal.sources;
                        self.expires_at = p.expires_at;
                        self.principal = p;
                        if rescope && self.topics.contains(&Topic::Kpis) {
                            self.subscribe_kpis();
                        }
                        if rescope && self.topics.contains(&Topic::Alerts) {
                            self.subscribe_alerts();
                        }
                        let frame = json!({"type": "authenticated", "role": self.principal.role,
                                           "expires_at": self.expires_at, "sources": self.principal.sources});
                        self.send_json(&frame).await.map_err(|()| End::Gone)
                    }
                    Err(Refusal::Unauthorized(m)) => self.refuse("invalid_token", &m).await,
                    Err(Refusal::Forbidden(m)) => {
                        let _ = self.send_json(&error_frame("forbidden", &m)).await;
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
                    self.subscribe(&topics, since).await
                } else {
                    self.unsubscribe(&topics).await
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
        self.st.metrics.ws_bad_frames.inc();
        tracing::debug!(client = self.sub.id, code, "client frame refused");
        self.send_json(&error_frame(code, message))
            .await
            .map_err(|()| End::Gone)
    }

    async fn ack(&mut self, kind: &str, topics: &[Topic]) -> Result<(), End> {
        let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
        let current: Vec<&str> = self.topics.iter().map(|t| t.name()).collect();
        let frame =
            json!({"type": kind, "topics": names, "active": current, "seq": self.st.live.seq()});
        self.send_json(&frame).await.map_err(|()| End::Gone)
    }

    async fn subscribe(&mut self, topics: &[Topic], since: Option<i64>) -> Result<(), End> {
        for t in topics {
            self.topics.insert(*t);
        }
        self.ack("subscribed", topics).await?;
        for t in topics {
            match t {
                Topic::Kpis => self.subscribe_kpis(),
                Topic::Alerts => self.subscribe_alerts(),
                Topic::Exports => self
                    .st
                    .hub
                    .subscribe_exports(&self.sub, &self.principal.subject),
                Topic::Events | Topic::Errors => {}
            }
        }
        if topics
            .iter()
            .any(|t| matches!(t, Topic::Events | Topic::Errors))
        {
            // `events` and `errors` share one position on the event feed.
            self.st.hub.unsubscribe(self.sub.id, Topic::Events);
            self.last_seq = since.unwrap_or_else(|| self.st.hub.last_seq());
            self.resume_events().await?;
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, topics: &[Topic]) -> Result<(), End> {
        let before = EventFilter::for_topics(&self.topics);
        for t in topics {
            self.topics.remove(t);
            if !matches!(t, Topic::Events | Topic::Errors) {
                self.st.hub.unsubscribe(self.sub.id, *t);
            }
        }
        let after = EventFilter::for_topics(&self.topics);
        if after != before {
            self.st.hub.unsubscribe(self.sub.id, Topic::Events);
            if after.is_some() {
                // e.g. `events` dropped, `errors` kept: same position, narrower filter.
                self.resume_events().await?;
            }
        }
        self.ack("unsubscribed", topics).await
    }

    fn subscribe_kpis(&mut self) {
        self.st.hub.unsubscribe(self.sub.id, Topic::Kpis);
        let scope = self.principal.sources.clone();
        let live = self.st.live.clone();
        let for_initial = scope.clone();
        self.st.hub.subscribe_kpis(&self.sub, scope, move || {
            let now = chrono::Utc::now().timestamp_millis();
            (
                serde_json::to_value(live.all_kpis(now, for_initial.as_ref())).unwrap_or_default(),
                live.seq(),
            )
        });
    }

    /// A snapshot of the active alerts this principal may see, then transitions.
    fn subscribe_alerts(&mut self) {
        self.st.hub.unsubscribe(self.sub.id, Topic::Alerts);
        self.st
            .alerts
            .view
            .subscribe(&self.st.hub, &self.sub, self.principal.sources.clone());
    }

    /// Writes the events after `last_seq` that the event topics select
    /// (outbox first if the ring lost them), then registers for live ones.
    async fn resume_events(&mut self) -> Result<(), End> {
        let Some(filter) = EventFilter::for_topics(&self.topics) else {
            return Ok(());
        };
        loop {
            let st = &self.st;
            let step = catchup::step(
                &st.hub,
                &st.pool,
                &st.live,
                &self.sub,
                self.last_seq,
                filter,
            )
            .await;
            match step {
                Ok(CatchUp::Live) => return Ok(()),
                Ok(CatchUp::Batch { frames, covered }) => {
                    self.write_item(Outgoing::Events(frames), false)
                        .await
                        .map_err(|()| End::Gone)?;
                    self.last_seq = self.last_seq.max(covered);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "catch-up read for a subscriber failed");
                    self.topics.remove(&Topic::Events);
                    self.topics.remove(&Topic::Errors);
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
}

impl Connection {
    /// The queue overflowed and is now drained: say so, then resubscribe from
    /// where the client is (a fresh KPI snapshot; events after the last written).
    async fn resync(&mut self) -> Result<(), End> {
        if !self.resyncs.spend(Instant::now()) {
            self.st.metrics.ws_closed_slow.inc();
            return Err(End::Close(
                CLOSE_SLOW,
                "too slow: queue overflowed repeatedly",
            ));
        }
        self.sub.clear_overflow();
        let topics: Vec<Topic> = self.topics.iter().copied().collect();
        let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
        let frame = json!({"type": "resync", "reason": "slow_consumer", "topics": names, "since": self.last_seq});
        self.send_json(&frame).await.map_err(|()| End::Gone)?;
        for t in topics {
            match t {
                Topic::Kpis => self.subscribe_kpis(),
                Topic::Alerts => self.subscribe_alerts(),
                Topic::Exports => self
                    .st
                    .hub
                    .subscribe_exports(&self.sub, &self.principal.subject),
                Topic::Events | Topic::Errors => {}
            }
        }
        self.resume_events().await
    }
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

/// The frame as this client may see it: unchanged when every source it
/// touches is visible (or the client is unscoped), `None` when none is, and a
/// redacted copy (other sources' names, ids and contributions removed) when
/// the statement touched both.
pub(crate) fn scoped(
    f: &EventFrame,
    visible: Option<&std::collections::BTreeSet<i64>>,
) -> Option<Utf8Bytes> {
    let Some(visible) = visible else {
        return Some(f.text.clone());
    };
    let seen = f.sources.iter().filter(|s| visible.contains(s)).count();
    if seen == f.sources.len() && seen > 0 {
        return Some(f.text.clone());
    }
    if seen == 0 {
        return None;
    }
    let mut v: Value = serde_json::from_str(f.text.as_str()).ok()?;
    if let Some(kpi) = v.get_mut("kpi").and_then(Value::as_array_mut) {
        kpi.retain(|t| {
            t.get(0)
                .and_then(Value::as_i64)
                .is_some_and(|id| visible.contains(&id))
        });
    }
    v["ids"] = json!([]);
    v["source"] = Value::Null;
    v["sources"] = json!([]);
    v["redacted"] = Value::Bool(true);
    Some(Utf8Bytes::from(v.to_string()))
}
