//! The one cheap-to-clone application state shared by handlers and tasks.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::auth::Auth;
use crate::config::ServerOptions;
use crate::export::jobs::Exports;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::listen::Status;
use crate::live::Live;
use crate::metrics::Metrics;

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
