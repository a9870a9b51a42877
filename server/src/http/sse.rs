//! `GET /api/stream` — the `/ws` topics as Server-Sent Events, so `curl -N`
//! (or a browser `EventSource`) is a working subscriber: the SSE framing of
//! the subscriber session in [`super::session`].
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
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use tracing::Instrument;

use super::params::{self, ApiQuery, Params};
use super::session::{Frame, Kind, Session};
use crate::auth::Principal;
use crate::error::AppError;
use crate::hub::Topic;
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
    let stream = SseStream::new(st.clone(), topics, since, principal, guard);
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(st.options.ws_ping_secs.max(1)));
    let mut resp = Sse::new(stream.into_stream())
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

/// One SSE subscriber: its session and the SSE events ready to be written.
struct SseStream {
    session: Session,
    _slot: ConnGuard,
    /// SSE events ready to be written, in order.
    out: VecDeque<SseEvent>,
    /// The stream ends once `out` is drained.
    ending: bool,
}

impl SseStream {
    fn new(
        st: AppState,
        topics: BTreeSet<Topic>,
        since: Option<i64>,
        principal: Principal,
        slot: ConnGuard,
    ) -> SseStream {
        st.metrics.sse_clients.inc();
        let mut session = Session::new(st, principal, "sse");
        let topics: Vec<Topic> = topics.into_iter().collect();
        let mut out = VecDeque::new();
        let span = session.span().clone();
        span.in_scope(|| {
            session.subscribe(&topics, since);
            out.push_back(sse_event(&session.hello(true)).retry(RETRY));
        });
        SseStream {
            session,
            _slot: slot,
            out,
            ending: false,
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
        futures_util::stream::unfold(self, |mut s| async move {
            let span = s.session.span().clone();
            let e = s.next().instrument(span).await?;
            Some((Ok(e), s))
        })
    }

    /// Ends the stream after an `error` frame.
    fn end_with(&mut self, code: &str, message: &str) {
        tracing::debug!(code, "ending the stream");
        self.out.push_back(sse_event(&Frame::error(code, message)));
        self.ending = true;
    }

    /// The next SSE event; None ends the response.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.out.pop_front() {
                return Some(e);
            }
            let shutdown = self.session.state().shutdown.clone();
            if self.ending || shutdown.is_cancelled() {
                return None;
            }
            match self.session.catch_up().await {
                Ok(None) => {}
                Ok(Some(frames)) => {
                    self.out.extend(frames.map(|f| sse_event(&f)));
                    continue;
                }
                Err(_) => {
                    self.end_with(
                        "unavailable",
                        "could not read past events; reconnect shortly (Last-Event-ID resumes)",
                    );
                    continue;
                }
            }
            let expiry = self.session.token_deadline();
            tokio::select! {
                item = self.session.recv() => match item {
                    Some(item) => self.out.extend(self.session.frames(item).map(|f| sse_event(&f))),
                    None => return None,
                },
                () = shutdown.cancelled() => return None,
                () = async {
                    match expiry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.end_with(
                        "token_expired",
                        "the token expired; reconnect with a fresh one (Last-Event-ID resumes)",
                    );
                    continue;
                }
            }
            if self.session.needs_resync() {
                match self.session.resync() {
                    Ok(frame) => self.out.push_back(sse_event(&frame)),
                    Err(_) => self.end_with(
                        "slow_consumer",
                        "too slow: queue overflowed repeatedly; reconnect (Last-Event-ID resumes)",
                    ),
                }
            }
        }
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        self.session.state().metrics.sse_clients.dec();
    }
}

/// A frame as an SSE event named by its type; `event` frames carry `id: <seq>`.
fn sse_event(f: &Frame) -> SseEvent {
    let e = SseEvent::default()
        .event(f.sse_name())
        .data(f.text.as_str());
    match f.kind {
        Kind::Event(seq) => e.id(seq.to_string()),
        Kind::Control(_) | Kind::Kpis | Kind::Alerts | Kind::Exports => e,
    }
}
