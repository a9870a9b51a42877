//! The one cheap-to-clone application state shared by handlers and tasks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::config::ServerOptions;
use crate::export::jobs::Exports;
use crate::hub::Hub;
use crate::live::Live;
use crate::metrics::Metrics;

/// Listener status, read by `/readyz`.
#[derive(Debug, Default)]
pub struct Status {
    /// The LISTEN connection is up.
    pub connected: AtomicBool,
    /// The aggregates are warm (set once, after the first warm-up).
    pub warm: AtomicBool,
}

impl Status {
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
    /// Export jobs and their files.
    pub exports: Arc<Exports>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}
