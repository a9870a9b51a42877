//! The topics a client subscribes to, and the filter an event-feed
//! subscriber registers with (`events`, `errors` or both share one feed).

use super::EventFrame;

/// A topic a client can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// KPI snapshot then deltas.
    Kpis,
    /// Every outbox event, in seq order.
    Events,
    /// The `errors.*` events only (a filtered view of `events`, same seqs).
    Errors,
    /// Active alerts snapshot, then alert transitions.
    Alerts,
    /// Progress of the subscriber's own export jobs.
    Exports,
}

impl Topic {
    /// Parses a topic name.
    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The topic names, comma-separated (for error messages).
    pub fn available() -> String {
        Topic::ALL.map(Topic::name).join(", ")
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Kpis => "kpis",
            Topic::Events => "events",
            Topic::Errors => "errors",
            Topic::Alerts => "alerts",
            Topic::Exports => "exports",
        }
    }

    /// Every topic, in the order `hello` lists them.
    pub const ALL: [Topic; 5] = [
        Topic::Kpis,
        Topic::Events,
        Topic::Errors,
        Topic::Alerts,
        Topic::Exports,
    ];
}

/// Which events an event-feed subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFilter {
    /// Every event (`events`; also `events` + `errors`, which is the same set).
    All,
    /// Only `errors.*` events (`errors` alone).
    Errors,
}

impl EventFilter {
    /// The filter for a set of subscribed topics; None when no event topic is in it.
    pub fn for_topics<'a>(topics: impl IntoIterator<Item = &'a Topic>) -> Option<EventFilter> {
        let mut out = None;
        for t in topics {
            match t {
                Topic::Events => return Some(EventFilter::All),
                Topic::Errors => out = Some(EventFilter::Errors),
                Topic::Kpis | Topic::Alerts | Topic::Exports => {}
            }
        }
        out
    }

    /// Does `frame` pass?
    pub fn passes(self, frame: &EventFrame) -> bool {
        self == EventFilter::All || frame.errors
    }
}

/// True for events of `ingest.errors` (the `errors` topic).
pub fn is_errors_kind(kind: &str) -> bool {
    kind.starts_with("errors.")
}
