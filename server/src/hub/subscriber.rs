//! One subscriber's side of the hub: its bounded queue of [`Outgoing`]
//! items, the overflow flag the hub sets instead of waiting, and the resync
//! budget its connection spends when it has to start over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

use super::EventFrame;

/// Resyncs a subscriber may need per minute before it is dropped as too slow.
pub const MAX_RESYNCS_PER_MINUTE: usize = 5;

/// Counts a subscriber's resyncs over the last minute (shared by `/ws` and SSE).
#[derive(Debug, Default)]
pub struct ResyncBudget {
    recent: Vec<Instant>,
}

impl ResyncBudget {
    /// Records one resync at `now`; false when the budget is exhausted.
    pub fn spend(&mut self, now: Instant) -> bool {
        self.recent
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        self.recent.push(now);
        self.recent.len() <= MAX_RESYNCS_PER_MINUTE
    }
}

/// An item in a subscriber's queue.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A KPI snapshot or delta frame.
    Kpis(Utf8Bytes),
    /// A batch of event frames, shared by every subscriber.
    Events(Arc<[EventFrame]>),
    /// An alerts snapshot or transition frame.
    Alerts(Utf8Bytes),
    /// An export progress frame.
    Exports(Utf8Bytes),
}

/// One subscriber's side of the hub.
#[derive(Debug)]
pub struct Subscriber {
    /// Connection id.
    pub id: u64,
    pub(super) tx: mpsc::Sender<Outgoing>,
    pub(super) overflowed: AtomicBool,
}

impl Subscriber {
    /// True once its queue overflowed (until [`Subscriber::clear_overflow`]).
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Resets the overflow flag before resubscribing.
    pub fn clear_overflow(&self) {
        self.overflowed.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_budget_allows_five_a_minute() {
        let mut b = ResyncBudget::default();
        let t = Instant::now();
        for _ in 0..MAX_RESYNCS_PER_MINUTE {
            assert!(b.spend(t));
        }
        assert!(!b.spend(t));
        assert!(b.spend(t + Duration::from_secs(61)));
    }
}
