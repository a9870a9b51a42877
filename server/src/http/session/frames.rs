//! What a subscriber session hands its transport: [`Frame`]s (serialized
//! once, tagged with what they are so SSE can name them) and the [`Frames`]
//! of one queue item or catch-up batch, filtered and scoped for this client.
//!
//! The transport decides only how a frame is written: `/ws` sends its text as
//! a WebSocket message, SSE as an event named by [`Frame::sse_name`].

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde_json::{json, Value};

use crate::hub::{kpi_frame_type, EventFilter, EventFrame};

/// What a frame is (its text is the same for every transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A frame of the session itself (`hello`, `subscribed`, `resync`,
    /// `error`, `pong`, `authenticated`…), named by its `type`.
    Control(&'static str),
    /// An `event` frame with its seq.
    Event(i64),
    /// A KPI `snapshot` or `delta`.
    Kpis,
    /// An alerts `snapshot` or `alert` transition.
    Alerts,
    /// An `export` progress frame.
    Exports,
}

/// One frame for the client: JSON text and its kind.
#[derive(Debug, Clone)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// The JSON text.
    pub text: Utf8Bytes,
}

impl Frame {
    /// A session frame of type `kind`.
    pub fn control(kind: &'static str, v: &Value) -> Frame {
        Frame {
            kind: Kind::Control(kind),
            text: Utf8Bytes::from(v.to_string()),
        }
    }

    /// An `error` frame.
    pub fn error(code: &str, message: &str) -> Frame {
        Frame::control(
            "error",
            &json!({"type": "error", "code": code, "message": message}),
        )
    }

    /// The SSE `event:` name: the frame's `type` (alerts and exports frames
    /// are rare, so parsing them for it is cheap; KPI frames are not parsed).
    pub fn sse_name(&self) -> String {
        let typed = |fallback: &str| {
            let v: Value = serde_json::from_str(self.text.as_str()).unwrap_or_default();
            v["type"].as_str().unwrap_or(fallback).to_string()
        };
        match self.kind {
            Kind::Control(name) => name.to_string(),
            Kind::Event(_) => "event".into(),
            Kind::Kpis => kpi_frame_type(self.text.as_str()).into(),
            Kind::Alerts => typed("alert"),
            Kind::Exports => typed("export"),
        }
    }
}

/// The frames of one queue item (or catch-up batch) that this client gets,
/// in order. Event frames at or below the session's last written seq are
/// skipped; iterating advances that position (to `covered` at the end of a
/// catch-up batch), so a transport that writes every frame it is given keeps
/// seq order with no gap and no duplicate.
#[derive(Debug)]
pub struct Frames<'a> {
    pub(super) last_seq: &'a mut i64,
    pub(super) inner: Inner,
    /// Position after the last frame (catch-up: events up to it were read).
    pub(super) covered: Option<i64>,
}

#[derive(Debug)]
pub(super) enum Inner {
    One(Option<Frame>),
    Events {
        batch: Arc<[EventFrame]>,
        next: usize,
        filter: EventFilter,
        /// Ids of the sources a scoped client sees (`None`: unscoped).
        visible: Option<BTreeSet<i64>>,
    },
}

impl Iterator for Frames<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let found = match &mut self.inner {
            Inner::One(f) => f.take(),
            Inner::Events {
                batch,
                next,
                filter,
                visible,
            } => loop {
                let Some(f) = batch.get(*next) else {
                    break None;
                };
                *next += 1;
                if f.seq <= *self.last_seq {
                    continue;
                }
                *self.last_seq = f.seq;
                if !filter.passes(f) {
                    continue;
                }
                if let Some(text) = f.scoped(visible.as_ref()) {
                    break Some(Frame {
                        kind: Kind::Event(f.seq),
                        text,
                    });
                }
            },
        };
        if found.is_none() {
            if let Some(c) = self.covered.take() {
                *self.last_seq = (*self.last_seq).max(c);
            }
        }
        found
    }
}
