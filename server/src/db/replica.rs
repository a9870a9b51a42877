//! The optional read replica (`--replica-database-url`): lists,
//! drill-downs, trends and exports read there ([`AppState::read_pool`]);
//! live figures, subscriber catch-up, the outbox and the monitor's own
//! writes stay on the primary.
//!
//! A watcher task asks the replica for its replay lag every
//! [`CHECK_EVERY`]. While the replica is unreachable or lags by more than
//! `--replica-max-lag-ms`, heavy reads go to the primary; each switch is
//! logged once. `/readyz` (`lag_ms`) and the metrics
//! `ingestwatch_replica_lag_seconds` and `ingestwatch_replica_healthy` show
//! the state.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Pool;
use crate::metrics::Metrics;
use crate::state::AppState;

/// How often the replica's lag is measured.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Replay lag in milliseconds: 0 when everything received is replayed (an
/// idle primary is not lag), else the age of the last replayed commit; 0 on
/// a server that is not a standby.
const LAG_SQL: &str = "select case
         when not pg_is_in_recovery() then 0::float8
         when pg_last_wal_receive_lsn() is not distinct from pg_last_wal_replay_lsn() then 0::float8
         else coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()) * 1000, 0)::float8
       end, pg_is_in_recovery()";

/// The replica pool and what the watcher last saw.
pub struct Replica {
    /// Pool on the replica URL (same settings as the primary's read pool).
    pub pool: Pool,
    /// Largest lag at which reads still go to the replica.
    pub max_lag_ms: i64,
    /// The replica answered the last check and lags less than `max_lag_ms`.
    pub healthy: AtomicBool,
    /// Lag at the last successful check (-1: never measured).
    pub lag_ms: AtomicI64,
    /// The replica is a standby (`pg_is_in_recovery()`).
    pub standby: AtomicBool,
    /// A check has run (the first one is always logged).
    checked: AtomicBool,
}

impl Replica {
    /// A replica not yet checked (reads go to the primary until it is).
    pub fn new(pool: Pool, max_lag_ms: i64) -> Replica {
        Replica {
            pool,
            max_lag_ms,
            healthy: AtomicBool::new(false),
            lag_ms: AtomicI64::new(-1),
            standby: AtomicBool::new(false),
            checked: AtomicBool::new(false),
        }
    }

    /// Whether reads go to the replica now.
    pub fn usable(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// `/readyz`'s view of the replica.
    pub fn report(&self) -> serde_json::Value {
        let lag = self.lag_ms.load(Ordering::Acquire);
        serde_json::json!({
            "healthy": self.usable(),
            "lag_ms": (lag >= 0).then_some(lag),
            "max_lag_ms": self.max_lag_ms,
            "standby": self.standby.load(Ordering::Acquire),
            "reads_from": if self.usable() { "replica" } else { "primary" },
        })
    }

    /// One check: measure, decide, log a switch.
    pub async fn check(&self, metrics: &Metrics) {
        let measured = async {
            let client = self.pool.get().await.map_err(|e| e.to_string())?;
            let row = client
                .query_one(LAG_SQL, &[])
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((row.get::<_, f64>(0).round() as i64, row.get::<_, bool>(1)))
        };
        let verdict = match tokio::time::timeout(Duration::from_secs(5), measured).await {
            Ok(Ok((lag, standby))) => {
                self.lag_ms.store(lag, Ordering::Release);
                self.standby.store(standby, Ordering::Release);
                metrics.replica_lag_seconds.set(lag as f64 / 1000.0);
                if lag <= self.max_lag_ms {
                    Ok(())
                } else {
                    Err(format!("lags {lag} ms (more than {} ms)", self.max_lag_ms))
                }
            }
            Ok(Err(e)) => Err(format!("unreachable: {e}")),
            Err(_) => Err("unreachable: no answer within 5 s".to_string()),
        };
        let ok = verdict.is_ok();
        metrics.replica_healthy.set(i64::from(ok));
        let was = self.healthy.swap(ok, Ordering::AcqRel);
        let first = !self.checked.swap(true, Ordering::AcqRel);
        if !first && was == ok {
            return;
        }
        match verdict {
            Ok(()) => tracing::info!(
                lag_ms = self.lag_ms.load(Ordering::Acquire),
                "read replica in use for lists, drill-downs, trends and exports"
            ),
            Err(why) => {
                tracing::warn!(reason = %why, "read replica not used; heavy reads go to the primary")
            }
        }
    }
}

/// Measures the replica every [`CHECK_EVERY`] until `cancel`.
pub async fn watch(replica: Arc<Replica>, metrics: Arc<Metrics>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        replica.check(&metrics).await;
    }
}

impl AppState {
    /// The pool for heavy reads (lists, drill-downs, trends, exports): the
    /// replica while it is healthy, else the primary's read pool.
    pub fn read_pool(&self) -> &Pool {
        match &self.replica {
            Some(r) if r.usable() => &r.pool,
            _ => &self.pool,
        }
    }
}
