//! The listener's status flags (connected, warm, since when), written by the
//! listener and read by `/readyz`, the alerts evaluator and the rollup writer.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Listener status, read by `/readyz`.
#[derive(Debug, Default)]
pub struct Status {
    /// The LISTEN connection is up.
    pub connected: AtomicBool,
    /// The aggregates are warm (set once, after the first warm-up).
    pub warm: AtomicBool,
    /// When `connected` last changed (epoch ms; 0: unknown).
    pub changed_ms: AtomicI64,
}

impl Status {
    /// A status as of now (disconnected, not warm).
    pub fn new() -> Self {
        let s = Status::default();
        s.changed_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Release);
        s
    }

    /// Records that the LISTEN connection is up or down (and since when).
    pub fn set_connected(&self, up: bool) {
        if self.connected.swap(up, Ordering::AcqRel) != up {
            self.changed_ms
                .store(chrono::Utc::now().timestamp_millis(), Ordering::Release);
        }
    }

    /// How long the LISTEN connection has been down at `now_ms` (0 when up).
    pub fn disconnected_ms(&self, now_ms: i64) -> i64 {
        let since = self.changed_ms.load(Ordering::Acquire);
        if self.connected.load(Ordering::Acquire) || since == 0 {
            return 0;
        }
        (now_ms - since).max(0)
    }

    /// Ready to serve live figures.
    pub fn ready(&self) -> bool {
        self.connected.load(Ordering::Acquire) && self.warm.load(Ordering::Acquire)
    }
}
