//! The one cheap-to-clone application state shared by handlers and tasks.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::auth::Auth;
use crate::config::ServerOptions;
use crate::export::jobs::Exports;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::live::Live;
use crate::metrics::Metrics;

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

/// Shared state; every field is an `Arc` or cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Read pool for REST queries and subscriber catch-up.
    pub pool: Pool,
    /// Live aggregates.
    pub live: Arc<Live>,
    /// Topics and subscribers.
    pub hub: Arc<Hub>,
    /// Listener status.
    pub status: Arc<Status>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Server options.
    pub options: Arc<ServerOptions>,
    /// Token verification.
    pub auth: Arc<Auth>,
    /// Connection counters (total and per token subject).
    pub limits: Arc<Limits>,
    /// Alert rules, the replica's view of the alerts, leadership.
    pub alerts: Arc<Alerts>,
    /// Export jobs and their files.
    pub exports: Arc<Exports>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

/// The verifier alone, for the authentication extractor (which so needs no `AppState`).
impl axum::extract::FromRef<AppState> for Arc<Auth> {
    fn from_ref(st: &AppState) -> Self {
        st.auth.clone()
    }
}
