//! Wiring: builds the state, starts the listener and the KPI ticker, and
//! serves the router until `shutdown` is cancelled. `main` and the tests call
//! the same [`run`].

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use anyhow::Context;

use crate::config::ServerOptions;
use crate::export::jobs::Exports;
use crate::hub::Hub;
use crate::listen::Listener;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::state::{AppState, Status};
use crate::{db, http};

/// Builds the state for `database_url` (no I/O yet: the pool connects lazily).
pub fn state(
    database_url: &str,
    options: ServerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<AppState> {
    let metrics = Arc::new(Metrics::default());
    let pool = db::pool(
        database_url,
        options.pool_size,
        Duration::from_millis(options.statement_timeout_ms),
    )?;
    Ok(AppState {
        pool,
        live: Arc::new(Live::default()),
        hub: Arc::new(Hub::new(options.event_ring, metrics.clone())),
        status: Arc::new(Status::default()),
        metrics,
        exports: Arc::new(
            Exports::new(Duration::from_secs(options.export_ttl_secs))
                .context("creating the export directory")?,
        ),
        options: Arc::new(options),
        shutdown,
    })
}

/// Runs the server on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    database_url: &str,
    options: ServerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let st = state(database_url, options, shutdown.clone())?;
    let tasks = shutdown.child_token();
    let listen = tokio::spawn(
        Listener {
            url: database_url.to_string(),
            live: st.live.clone(),
            hub: st.hub.clone(),
            status: st.status.clone(),
            metrics: st.metrics.clone(),
        }
        .run(tasks.clone()),
    );
    let ticker = tokio::spawn(kpi_ticker(st.clone(), tasks.clone()));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving");
    let served = axum::serve(listener, http::app(st.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    tasks.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = listen.await;
        let _ = ticker.await;
    })
    .await;
    served.map_err(Into::into)
}

/// Every KPI interval: prune old buckets, compute all windows, publish the
/// delta to `kpis` subscribers.
async fn kpi_ticker(st: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(st.options.kpi_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        if now_ms / 1000 != last_prune {
            last_prune = now_ms / 1000;
            st.live.prune(last_prune);
        }
        let data = serde_json::to_value(st.live.all_kpis(now_ms)).unwrap_or_default();
        st.hub.publish_kpis(data, st.live.seq());
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
