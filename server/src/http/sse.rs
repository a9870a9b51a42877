//! `GET /api/stream` — the `/ws` topics as Server-Sent Events, so `curl -N`
//! (or a browser `EventSource`) is a working subscriber.
//!
//! Each SSE event carries the very JSON frame `/ws` would send, with the frame
//! type as the SSE `event:` name; `event` frames also carry `id: <seq>`, so a
//! reconnecting `EventSource` resumes with `Last-Event-ID` and gets exactly
//! the events it missed (outbox catch-up shared with `/ws`, see
//! [`crate::hub::catchup`]).
//!
//! Authentication and scopes are those of `/ws`: the caller's token (header,
//! or `access_token` in the query for `EventSource`) limits the sources it
//! sees (events of other sources are dropped or redacted exactly as on
//! `/ws`, KPIs and alerts are scoped), the stream takes one of the caller's
//! connection slots, and it ends with `event: error` (`token_expired`) once
//! the token has expired for `INGESTWATCH_WS_AUTH_GRACE_SECS` (reconnect
//! with a fresh token and `Last-Event-ID`).
//!
//! The response body is a stream polled by hyper only as fast as the client
//! reads, so the hub's policy applies unchanged: a bounded queue, `try_send`,
//! and on overflow an `event: resync` followed by a fresh KPI snapshot and the
//! events after the last one written. A client needing more than
//! [`crate::hub::MAX_RESYNCS_PER_MINUTE`] resyncs a minute gets
//! `event: error` (`slow_consumer`) and the stream ends.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::mpsc;

use super::params::{self, ApiQuery, Params};
use super::ws::{scoped, PROTOCOL_VERSION};
use crate::auth::Principal;
use crate::error::AppError;
use crate::hub::catchup::{self, CatchUp};
use crate::hub::{EventFilter, EventFrame, Outgoing, ResyncBudget, Subscriber, Topic};
use crate::limits::ConnGuard;
use crate::state::AppState;

/// Reconnect delay suggested to `EventSource` clients (the SSE `retry:` field).
const RETRY: Duration = Duration::from_millis(1_000);

/// `GET /api/stream?topics=events,kpis&since=SEQ` (or header `Last-Event-ID: SEQ`).
///
/// `topics`: comma-separated (default `events`); `since`: resume after this
/// seq; `Last-Event-ID` (sent by a reconnecting `EventSource`) wins over
/// `since`. Without either, events start after the newest one delivered.
/// `access_token` is read by the authentication extractor (EventSource cannot
/// set headers).
pub async fn stream(
    State(st): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, AppError> {
    let mut topics = BTreeSet::new();
    let names = params::list(q.topics.as_deref()).unwrap_or_else(|| vec!["events".into()]);
    for name in &names {
        let topic = Topic::parse(name).ok_or_else(|| {
            let shown: String = name.chars().take(64).collect();
            AppError::invalid(
                "topics",
                format!("unknown topic {shown:?}; available: {}", Topic::available()),
            )
        })?;
        topics.insert(topic);
    }
    let mut since = match q.since.as_deref() {
        Some(v) => Some(params::seq("since", v)?),
        None => None,
    };
    if let Some(v) = headers.get("last-event-id") {
        let v = v
            .to_str()
            .map_err(|_| AppError::invalid("Last-Event-ID", "not ASCII"))?;
        if !v.trim().is_empty() {
            since = Some(params::seq("Last-Event-ID", v)?);
        }
    }
    if !st.status.warm.load(std::sync::atomic::Ordering::Acquire) {
        return Err(AppError::Unavailable("live figures are warming up".into()));
    }
    let guard = st
        .limits
        .acquire(&principal.subject)
        .map_err(|why| AppError::TooMany(why.to_string()))?;
    let session = Session::new(st.clone(), topics, since, principal, guard);
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(st.options.ws_ping_secs.max(1)));
    let mut resp = Sse::new(session.into_stream())
        .keep_alive(keep_alive)
        .into_response();
    // Tell buffering reverse proxies (nginx) to pass events through at once.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// The query string of `GET /api/stream`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Topics (repeated or comma-separated); default `events`.
    pub topics: Option<String>,
    /// Resume after this seq.
    pub since: Option<String>,
    /// The bearer token (read by the authentication extractor).
    pub access_token: Option<String>,
}

impl Params for StreamQuery {
    const MULTI: &'static [&'static str] = &["topics"];
}

/// One SSE subscriber: the hub subscription and what has been written.
struct Session {
    st: AppState,
    principal: Principal,
    _slot: ConnGuard,
    sub: Arc<Subscriber>,
    rx: mpsc::Receiver<Outgoing>,
    topics: BTreeSet<Topic>,
    filter: Option<EventFilter>,
    /// Highest event seq written (frames at or below are dropped).
    last_seq: i64,
    /// Reading missed events from the outbox; not yet registered for live ones.
    catching_up: bool,
    /// SSE events ready to be written, in order.
    out: VecDeque<SseEvent>,
    resyncs: ResyncBudget,
    /// The stream ends once `out` is drained.
    ending: bool,
}

impl Session {
    fn new(
        st: AppState,
        topics: BTreeSet<Topic>,
        since: Option<i64>,
        principal: Principal,
        slot: ConnGuard,
    ) -> Session {
        let (sub, rx) = st.hub.subscriber(st.options.ws_queue as usize);
        st.metrics.sse_clients.inc();
        let filter = EventFilter::for_topics(&topics);
        let last_seq = since.unwrap_or_else(|| st.hub.last_seq());
        let hello = json!({
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "server": concat!("ingestwatch/", env!("CARGO_PKG_VERSION")),
            "seq": st.live.seq(),
            "topics": Topic::ALL.map(Topic::name),
            "subscribed": topics.iter().map(|t| t.name()).collect::<Vec<_>>(),
        });
        let mut s = Session {
            st,
            principal,
            _slot: slot,
            sub,
            rx,
            topics,
            filter,
            last_seq,
            catching_up: filter.is_some(),
            out: VecDeque::new(),
            resyncs: ResyncBudget::default(),
            ending: false,
        };
        s.out
            .push_back(frame_event("hello", &hello.to_string()).retry(RETRY));
        if !s.catching_up {
            s.subscribe_kpis();
        }
        if s.topics.contains(&Topic::Alerts) {
            s.st.alerts
                .view
                .subscribe(&s.st.hub, &s.sub, s.principal.sources.clone());
        }
        if s.topics.contains(&Topic::Exports) {
            s.st.hub.subscribe_exports(&s.sub, &s.principal.subject);
        }
        s
    }

    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
        futures_util::stream::unfold(self, |mut s| async move {
            let e = s.next().await?;
            Some((Ok(e), s))
        })
    }

    /// A snapshot of the KPIs this principal may see, then deltas.
    fn subscribe_kpis(&mut self) {
        if !self.topics.contains(&Topic::Kpis) {
            return;
        }
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

    /// When the stream must end for an expired token (expiry plus grace).
    fn token_deadline(&self) -> Option<tokio::time::Instant> {
        let exp = self.principal.expires_at?;
        let grace = self.st.options.auth.ws_auth_grace_secs as i64;
        let left = (exp + grace - chrono::Utc::now().timestamp()).max(0);
        Some(tokio::time::Instant::now() + Duration::from_secs(left as u64))
    }

    /// The next SSE event; None ends the response.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.out.pop_front() {
                return Some(e);
            }
            if self.ending || self.st.shutdown.is_cancelled() {
                return None;
            }
            if self.catching_up {
                self.catch_up().await;
                continue;
            }
            let shutdown = self.st.shutdown.clone();
            let expiry = self.token_deadline();
            tokio::select! {
                item = self.rx.recv() => match item {
                    Some(item) => self.push(item),
                    None => return None,
                },
                () = shutdown.cancelled() => return None,
                () = async {
                    match expiry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let err = json!({"type": "error", "code": "token_expired",
                        "message": "the token expired; reconnect with a fresh one (Last-Event-ID resumes)"});
                    self.out.push_back(frame_event("error", &err.to_string()));
                    self.ending = true;
                    continue;
                }
            }
            if self.sub.overflowed() && self.rx.is_empty() {
                self.resync();
            }
        }
    }

    /// One catch-up step: an outbox batch, or the switch to live frames.
    async fn catch_up(&mut self) {
        let Some(filter) = self.filter else {
            self.catching_up = false;
            return;
        };
        let st = &self.st;
        match catchup::step(
            &st.hub,
            &st.pool,
            &st.live,
            &self.sub,
            self.last_seq,
            filter,
        )
        .await
        {
            Ok(CatchUp::Live) => {
                self.catching_up = false;
                self.subscribe_kpis();
            }
            Ok(CatchUp::Batch { frames, covered }) => {
                self.push_frames(&frames);
                self.last_seq = self.last_seq.max(covered);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "catch-up read for an SSE subscriber failed");
                let err = json!({"type": "error", "code": "unavailable",
                    "message": "could not read past events; reconnect shortly (Last-Event-ID resumes)"});
                self.out.push_back(frame_event("error", &err.to_string()));
                self.ending = true;
            }
        }
    }

    fn push(&mut self, item: Outgoing) {
        match item {
            Outgoing::Kpis(text) => {
                if self.topics.contains(&Topic::Kpis) {
                    let kind = crate::hub::kpi_frame_type(&text);
                    self.out.push_back(frame_event(kind, &text));
                }
            }
            Outgoing::Alerts(text) => {
                if self.topics.contains(&Topic::Alerts) {
                    self.push_typed(&text, "alert");
                }
            }
            Outgoing::Exports(text) => {
                if self.topics.contains(&Topic::Exports) {
                    self.push_typed(&text, "export");
                }
            }
            Outgoing::Events(batch) => self.push_frames(&batch),
        }
    }

    /// A frame named by its own `type` (alerts and exports frames are rare:
    /// parsing them is cheap).
    fn push_typed(&mut self, text: &str, fallback: &str) {
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let kind = v["type"].as_str().unwrap_or(fallback).to_string();
        self.out.push_back(frame_event(&kind, text));
    }

    fn push_frames(&mut self, frames: &[EventFrame]) {
        let Some(filter) = self.filter else { return };
        let visible = self
            .principal
            .sources
            .as_ref()
            .map(|s| self.st.live.source_ids(s));
        for f in frames {
            if f.seq <= self.last_seq {
                continue;
            }
            self.last_seq = f.seq;
            if !filter.passes(f) {
                continue;
            }
            if let Some(text) = scoped(f, visible.as_ref()) {
                self.out
                    .push_back(frame_event("event", &text).id(f.seq.to_string()));
            }
        }
    }

    /// The queue overflowed and is drained: say so, then resubscribe from
    /// where the client is (events after the last written, a fresh snapshot).
    fn resync(&mut self) {
        self.sub.clear_overflow();
        if !self.resyncs.spend(Instant::now()) {
            self.st.metrics.ws_closed_slow.inc();
            let err = json!({"type": "error", "code": "slow_consumer",
                "message": "too slow: queue overflowed repeatedly; reconnect (Last-Event-ID resumes)"});
            self.out.push_back(frame_event("error", &err.to_string()));
            self.ending = true;
            return;
        }
        let names: Vec<&str> = self.topics.iter().map(|t| t.name()).collect();
        let frame = json!({"type": "resync", "reason": "slow_consumer", "topics": names, "since": self.last_seq});
        self.out
            .push_back(frame_event("resync", &frame.to_string()));
        if self.filter.is_some() {
            self.catching_up = true; // kpis resubscribe once caught up
        } else {
            self.subscribe_kpis();
        }
        if self.topics.contains(&Topic::Alerts) {
            self.st.hub.unsubscribe(self.sub.id, Topic::Alerts);
            self.st
                .alerts
                .view
                .subscribe(&self.st.hub, &self.sub, self.principal.sources.clone());
        }
        if self.topics.contains(&Topic::Exports) {
            self.st
                .hub
                .subscribe_exports(&self.sub, &self.principal.subject);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.st.hub.remove(self.sub.id);
        self.st.metrics.sse_clients.dec();
    }
}

fn frame_event(kind: &str, data: &str) -> SseEvent {
    SseEvent::default().event(kind).data(data)
}
