//! The subscriber session shared by `/ws` and `GET /api/stream` (SSE): what a
//! client is subscribed to, where it stands in the event feed, its token, and
//! the hub registrations that follow from them.
//!
//! The session owns the protocol's rules — subscribe and unsubscribe, the KPI
//! snapshot, catch-up from the outbox, resync after an overflow, rescoping on
//! a new token, token expiry — and hands the transport [`Frame`]s. The
//! transports differ only in framing: how a frame is written (a WebSocket
//! text message, an SSE event), how client operations arrive (JSON frames on
//! the socket, the query string once), and how a connection ends (close
//! codes, the end of the SSE body after an `error` event).
//!
//! Catch-up is a state, not a loop: after a subscribe or a resync the
//! transport calls [`Session::catch_up`] until it returns `None`, writing each
//! batch before reading the next, and only then reads the hub queue again. So
//! catch-up frames read from the outbox are written before the live ones the
//! hub queued meanwhile, and the KPI snapshot (taken once catch-up is done)
//! follows the replayed events, as docs/protocol.md shows.
//!
//! Each session runs inside its own `tracing` span (connection id, transport,
//! subject, topics), recorded here when they change, so every log line of a
//! connection says whose it is.

mod frames;
mod span;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

pub use frames::{Frame, Frames, Kind};
use span::{connection_span, record_topics};

use crate::auth::Principal;
use crate::hub::catchup::{self, CatchUp};
use crate::hub::{EventFilter, Outgoing, ResyncBudget, Subscriber, Topic};
use crate::state::AppState;

/// Protocol version announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The outbox could not be read for a catch-up; the event topics were dropped.
#[derive(Debug)]
pub struct CatchUpFailed;

/// The client overflowed its queue more often than the resync budget allows.
#[derive(Debug)]
pub struct TooSlow;

/// Where the session's token stands (see [`Session::expiry`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Valid, or expired and already warned about, still within the grace.
    Valid,
    /// Just expired: the client has `grace` seconds to send a fresh one.
    Warn {
        /// Seconds left to refresh.
        grace: i64,
    },
    /// Expired for longer than the grace: the connection must end.
    Expired,
}

/// One subscriber: its hub registration, topics, position and token.
pub struct Session {
    st: AppState,
    sub: Arc<Subscriber>,
    rx: mpsc::Receiver<Outgoing>,
    topics: BTreeSet<Topic>,
    /// Highest event seq written to this client (frames at or below are dropped).
    last_seq: i64,
    resyncs: ResyncBudget,
    principal: Principal,
    /// Reading missed events; not yet registered for live ones.
    catching_up: bool,
    /// A KPI snapshot is owed once catch-up is done.
    kpis_pending: bool,
    /// This catch-up already checked the outbox's retention horizon.
    pruned_checked: bool,
    /// The client was told its token expired (reset by a fresh token).
    expiry_warned: bool,
    span: tracing::Span,
}

impl Session {
    /// A session for `principal` over `transport` (`"ws"` or `"sse"`) with a
    /// fresh hub subscriber; nothing subscribed yet.
    pub fn new(st: AppState, principal: Principal, transport: &'static str) -> Session {
        let (sub, rx) = st.hub.subscriber(st.options.ws_queue as usize);
        let span = connection_span(sub.id, transport, &principal.subject);
        span.in_scope(|| tracing::debug!("subscriber connected"));
        Session {
            st,
            sub,
            rx,
            topics: BTreeSet::new(),
            last_seq: 0,
            resyncs: ResyncBudget::default(),
            principal,
            catching_up: false,
            kpis_pending: false,
            pruned_checked: false,
            expiry_warned: false,
            span,
        }
    }

    /// The application state (options, metrics, auth, shutdown).
    pub fn state(&self) -> &AppState {
        &self.st
    }

    /// The connection's span: run the transport inside it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The verified caller.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The `hello` frame (SSE adds the topics it subscribed, `subscribed`).
    pub fn hello(&self, subscribed: bool) -> Frame {
        let mut v = json!({
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "server": concat!("ingestwatch/", env!("CARGO_PKG_VERSION")),
            "seq": self.st.live.seq(),
            "topics": Topic::ALL.map(Topic::name),
        });
        if subscribed {
            v["subscribed"] = json!(self.names());
        }
        Frame::control("hello", &v)
    }

    /// The `pong` answering a client ping with `id`.
    pub fn pong(&self, id: serde_json::Value) -> Frame {
        Frame::control(
            "pong",
            &json!({"type": "pong", "id": id, "seq": self.st.live.seq()}),
        )
    }

    /// The `subscribed` / `unsubscribed` acknowledgement of a request naming `topics`.
    pub fn ack(&self, kind: &'static str, topics: &[Topic]) -> Frame {
        let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
        Frame::control(
            kind,
            &json!({"type": kind, "topics": names, "active": self.names(), "seq": self.st.live.seq()}),
        )
    }

    fn names(&self) -> Vec<&'static str> {
        self.topics.iter().map(|t| t.name()).collect()
    }

    fn topics_changed(&self) {
        record_topics(&self.span, &self.names());
    }

    /// The next item of the hub queue (None once the hub dropped the subscriber).
    pub async fn recv(&mut self) -> Option<Outgoing> {
        self.rx.recv().await
    }

    /// An item already queued, if any.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        self.rx.try_recv().ok()
    }

    /// The frames of `item` this client gets (topic subscribed, event filter,
    /// source scope, not yet written).
    pub fn frames(&mut self, item: Outgoing) -> Frames<'_> {
        let one = |f: Option<Frame>| frames::Inner::One(f);
        let inner = match item {
            Outgoing::Kpis(text) => one(self.topics.contains(&Topic::Kpis).then_some(Frame {
                kind: Kind::Kpis,
                text,
            })),
            Outgoing::Alerts(text) => one(self.topics.contains(&Topic::Alerts).then_some(Frame {
                kind: Kind::Alerts,
                text,
            })),
            Outgoing::Exports(text) => {
                one(self.topics.contains(&Topic::Exports).then_some(Frame {
                    kind: Kind::Exports,
                    text,
                }))
            }
            Outgoing::Events(batch) => match EventFilter::for_topics(&self.topics) {
                None => one(None),
                Some(filter) => frames::Inner::Events {
                    batch,
                    next: 0,
                    filter,
                    visible: self
                        .principal
                        .sources
                        .as_ref()
                        .map(|s| self.st.live.source_ids(s)),
                },
            },
        };
        Frames {
            last_seq: &mut self.last_seq,
            inner,
            covered: None,
        }
    }

    /// Adds `topics`: snapshots follow on the queue (the KPI one once any
    /// catch-up is done); with an event topic the event feed restarts after
    /// `since` (default: the newest event), so call [`Session::catch_up`].
    pub fn subscribe(&mut self, topics: &[Topic], since: Option<i64>) {
        self.topics.extend(topics.iter().copied());
        self.topics_changed();
        for t in topics {
            match t {
                Topic::Kpis => self.kpis_pending = true,
                Topic::Alerts => self.subscribe_alerts(),
                Topic::Exports => self.subscribe_exports(),
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
            self.catching_up = true;
            self.pruned_checked = false;
        }
        self.settle();
    }

    /// Drops `topics`. When the event filter changes but an event topic stays
    /// (e.g. `events` dropped, `errors` kept), the feed resumes at the same
    /// position with the narrower filter: call [`Session::catch_up`].
    pub fn unsubscribe(&mut self, topics: &[Topic]) {
        let before = EventFilter::for_topics(&self.topics);
        for t in topics {
            self.topics.remove(t);
            match t {
                Topic::Events | Topic::Errors => {}
                Topic::Kpis => {
                    self.kpis_pending = false;
                    self.st.hub.unsubscribe(self.sub.id, *t);
                }
                Topic::Alerts | Topic::Exports => self.st.hub.unsubscribe(self.sub.id, *t),
            }
        }
        self.topics_changed();
        let after = EventFilter::for_topics(&self.topics);
        if after != before {
            self.st.hub.unsubscribe(self.sub.id, Topic::Events);
            self.catching_up = after.is_some();
        }
        self.settle();
    }

    /// Replaces the token. A differently scoped one re-snapshots `kpis` and
    /// `alerts` for the new scope. Returns the `authenticated` frame.
    pub fn reauthenticate(&mut self, p: Principal) -> Frame {
        let rescope = p.sources != self.principal.sources;
        self.principal = p;
        self.span
            .record("subject", tracing::field::display(&self.principal.subject));
        if rescope && self.topics.contains(&Topic::Kpis) {
            self.kpis_pending = true;
        }
        if rescope && self.topics.contains(&Topic::Alerts) {
            self.subscribe_alerts();
        }
        self.settle();
        let p = &self.principal;
        Frame::control(
            "authenticated",
            &json!({"type": "authenticated", "role": p.role,
                    "expires_at": p.expires_at, "sources": p.sources}),
        )
    }

    /// One catch-up step: the next batch of missed events read from the
    /// outbox (write it, then call again), or `None` once registered for
    /// live events (or when nothing is being caught up). On a failed read
    /// the event topics are dropped.
    pub async fn catch_up(&mut self) -> Result<Option<Frames<'_>>, CatchUpFailed> {
        let filter = match EventFilter::for_topics(&self.topics) {
            Some(f) if self.catching_up => f,
            _ => {
                self.catching_up = false;
                self.settle();
                return Ok(None);
            }
        };
        let st = &self.st;
        let step = catchup::step(
            &st.hub,
            &st.pool,
            &st.live,
            &self.sub,
            self.last_seq,
            filter,
            !self.pruned_checked,
        )
        .await;
        self.pruned_checked = true;
        match step {
            Ok(CatchUp::Pruned { upto }) => {
                let frame = self.pruned_resync(upto);
                Ok(Some(Frames {
                    last_seq: &mut self.last_seq,
                    inner: frames::Inner::One(Some(frame)),
                    covered: None,
                }))
            }
            Ok(CatchUp::Live) => {
                self.catching_up = false;
                self.settle();
                Ok(None)
            }
            Ok(CatchUp::Batch { frames, covered }) => {
                let mut out = self.frames(Outgoing::Events(frames));
                out.covered = Some(covered);
                Ok(Some(out))
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "catch-up read failed");
                self.topics.remove(&Topic::Events);
                self.topics.remove(&Topic::Errors);
                self.topics_changed();
                self.catching_up = false;
                self.settle();
                Err(CatchUpFailed)
            }
        }
    }

    /// The `resync` frame for a resume from before the outbox's retention
    /// horizon `upto`: events after the client's position may be gone, so
    /// it carries the current KPI figures (the snapshot to start again
    /// from) and `skipped: true`; the events still kept follow.
    fn pruned_resync(&self, upto: i64) -> Frame {
        self.st.metrics.resyncs_pruned.inc();
        tracing::info!(
            since = self.last_seq,
            pruned_upto = upto,
            "resume from before the outbox retention: resync"
        );
        let now = chrono::Utc::now().timestamp_millis();
        let kpis = self.st.live.all_kpis(now, self.principal.sources.as_ref());
        Frame::control(
            "resync",
            &json!({"type": "resync", "reason": "events_pruned", "skipped": true,
                    "topics": self.names(), "since": self.last_seq, "pruned_upto": upto,
                    "seq": self.st.live.seq(), "kpis": kpis}),
        )
    }

    /// True when the queue overflowed and is drained: time for [`Session::resync`].
    pub fn needs_resync(&self) -> bool {
        self.sub.overflowed() && self.rx.is_empty()
    }

    /// Resubscribes from where the client is (a fresh snapshot for `kpis` and
    /// `alerts`; events after the last written: call [`Session::catch_up`]);
    /// returns the `resync` frame to write first. `TooSlow` when the budget
    /// of resyncs a minute is spent.
    pub fn resync(&mut self) -> Result<Frame, TooSlow> {
        if !self.resyncs.spend(Instant::now()) {
            self.st.metrics.ws_closed_slow.inc();
            return Err(TooSlow);
        }
        self.sub.clear_overflow();
        let frame = Frame::control(
            "resync",
            &json!({"type": "resync", "reason": "slow_consumer", "skipped": false, "topics": self.names(), "since": self.last_seq}),
        );
        let topics: Vec<Topic> = self.topics.iter().copied().collect();
        for t in topics {
            match t {
                Topic::Kpis => self.kpis_pending = true,
                Topic::Alerts => self.subscribe_alerts(),
                Topic::Exports => self.subscribe_exports(),
                Topic::Events | Topic::Errors => self.catching_up = true,
            }
        }
        self.settle();
        Ok(frame)
    }

    /// Checks the token at `now` (epoch seconds) against its expiry and the
    /// grace for a refresh; warns once per expiry.
    pub fn expiry(&mut self, now: i64) -> Expiry {
        let Some(exp) = self.principal.expires_at else {
            return Expiry::Valid;
        };
        let grace = self.st.options.auth.ws_auth_grace_secs as i64;
        if now >= exp + grace {
            return Expiry::Expired;
        }
        if now >= exp && !self.expiry_warned {
            self.expiry_warned = true;
            return Expiry::Warn { grace };
        }
        if now < exp {
            self.expiry_warned = false;
        }
        Expiry::Valid
    }

    /// When the token will have expired for longer than the grace (for a
    /// transport that cannot take a fresh token and just ends).
    pub fn token_deadline(&self) -> Option<tokio::time::Instant> {
        let exp = self.principal.expires_at?;
        let grace = self.st.options.auth.ws_auth_grace_secs as i64;
        let left = (exp + grace - chrono::Utc::now().timestamp()).max(0);
        Some(tokio::time::Instant::now() + Duration::from_secs(left as u64))
    }

    /// Removes the subscriber from the hub (also done on drop).
    pub fn leave(&self) {
        self.st.hub.remove(self.sub.id);
    }

    /// Takes the KPI subscription owed, unless events are still being caught up.
    fn settle(&mut self) {
        if self.kpis_pending && !self.catching_up {
            self.kpis_pending = false;
            self.subscribe_kpis();
        }
    }

    /// A snapshot of the KPIs this principal may see, then deltas.
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

    /// Progress of the jobs started with this principal's subject.
    fn subscribe_exports(&mut self) {
        self.st
            .hub
            .subscribe_exports(&self.sub, &self.principal.subject);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.leave();
        self.span.in_scope(|| tracing::debug!("subscriber gone"));
    }
}
