//! Wiring: builds the state, starts the listener, the KPI ticker and the
//! trend rollup writer, and serves the router until `shutdown` is cancelled.
//! `main` and the tests call the same [`run`].

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::alerts::rules::RuleSet;
use crate::alerts::Alerts;
use anyhow::Context;

use crate::config::ServerOptions;
use crate::export::jobs::Exports;
use crate::hub::Hub;
use crate::listen::Listener;
use crate::listen::Status;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::trends::rollup::RollupWriter;
use crate::{db, http};

/// Builds the state for `database_url` (no I/O yet: the pool connects lazily).
pub fn state(
    database_url: &str,
    options: ServerOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<AppState> {
    // Rules first: a bad rules file fails start-up before any I/O.
    let rules = match &options.alerts {
        Some(path) => RuleSet::load(path)?,
        None if options.default_alerts => RuleSet::defaults(),
        None => RuleSet::default(),
    };
    let metrics = Arc::new(Metrics::default());
    let pool = db::pool(
        database_url,
        options.pool_size,
        Duration::from_millis(options.statement_timeout_ms),
        options.pooler_mode,
    )
    .map_err(|e| anyhow::anyhow!("DATABASE_URL: {e}"))?;
    let auth = Arc::new(crate::auth::Auth::from_options(
        &options.auth,
        options.listen,
    )?);
    let limits = Arc::new(crate::limits::Limits::new(
        options.auth.max_connections,
        options.auth.max_connections_per_token,
    ));
    let replica = match &options.replica_database_url {
        Some(url) => Some(Arc::new(db::replica::Replica::new(
            db::pool(
                url,
                options.pool_size,
                Duration::from_millis(options.statement_timeout_ms),
                options.pooler_mode,
            )
            .map_err(|e| anyhow::anyhow!("REPLICA_DATABASE_URL: {e}"))?,
            i64::try_from(options.replica_max_lag_ms).unwrap_or(i64::MAX),
        ))),
        None => None,
    };
    Ok(AppState {
        replica,
        auth,
        limits,
        alerts: Arc::new(Alerts::new(rules)),
        pool,
        live: Arc::new(Live::default()),
        hub: Arc::new(Hub::new(options.event_ring, metrics.clone())),
        status: Arc::new(Status::new()),
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
    // LISTEN, the rollup writer and the alerts leader need a direct session
    // on the primary; the pool may go through a transaction pooler.
    let direct_url = st
        .options
        .listen_database_url
        .clone()
        .unwrap_or_else(|| database_url.to_string());
    let direct_url = direct_url.as_str();
    db::preflight::check(
        &st.pool,
        database_url,
        direct_url,
        db::preflight::Settings::new(st.options.listen_database_url.is_some()),
    )
    .await?;
    // Refuse to start on an outbox sequence that hands out seqs ahead (the
    // listener checks again on every connect, for a database unreachable now).
    if let Ok(client) = st.pool.get().await {
        db::warm::check_outbox_sequence(&**client).await?;
    }
    let tasks = shutdown.child_token();
    let replica = st.replica.clone().map(|r| {
        let metrics = st.metrics.clone();
        let cancel = tasks.clone();
        tokio::spawn(async move {
            r.check(&metrics).await; // first verdict (and its log line) at once
            db::replica::watch(r, metrics, cancel).await
        })
    });
    // Every task's span names the database it works on.
    let db_name = db::parse_url(database_url)
        .ok()
        .and_then(|c| c.get_dbname().map(str::to_string))
        .unwrap_or_default();
    let listen = tokio::spawn(
        Listener {
            url: direct_url.to_string(),
            live: st.live.clone(),
            hub: st.hub.clone(),
            status: st.status.clone(),
            metrics: st.metrics.clone(),
        }
        .run(tasks.clone())
        .instrument(tracing::info_span!("listener", db = %db_name)),
    );
    let ticker = tokio::spawn(kpi_ticker(st.clone(), tasks.clone()));
    let rollups = tokio::spawn(
        RollupWriter {
            url: direct_url.to_string(),
            live: st.live.clone(),
            status: st.status.clone(),
            metrics: st.metrics.clone(),
            flush_every: Duration::from_millis(st.options.rollup_flush_ms),
            minute_days: i64::from(st.options.rollup_minute_days),
        }
        .run(tasks.clone())
        .instrument(tracing::info_span!("rollup_writer", db = %db_name)),
    );
    let alerts = crate::alerts::spawn(
        &crate::alerts::Deps {
            pool: st.pool.clone(),
            live: st.live.clone(),
            hub: st.hub.clone(),
            status: st.status.clone(),
            metrics: st.metrics.clone(),
            alerts: st.alerts.clone(),
        },
        direct_url,
        &tasks,
    );
    tracing::info!(
        rules = st.alerts.rules.rules.len(),
        receivers = st.alerts.rules.receivers.len(),
        "alert rules loaded"
    );
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving");
    // Nagle's algorithm would hold small frames for the peer's delayed ACK
    // (~40 ms at p95 in `ingestwatch bench`): every accepted socket gets
    // TCP_NODELAY.
    let listener = axum::serve::ListenerExt::tap_io(listener, |t: &mut tokio::net::TcpStream| {
        let _ = t.set_nodelay(true);
    });
    let served = axum::serve(listener, http::app(st.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    tasks.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = listen.await;
        let _ = ticker.await;
        let _ = rollups.await;
        if let Some(r) = replica {
            let _ = r.await;
        }
        for t in alerts {
            let _ = t.await;
        }
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
        let seq = st.live.seq();
        for scope in st.hub.kpi_scopes() {
            let data =
                serde_json::to_value(st.live.all_kpis(now_ms, scope.as_ref())).unwrap_or_default();
            st.hub.publish_kpis(&scope, data, seq);
        }
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
