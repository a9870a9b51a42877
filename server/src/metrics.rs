//! Prometheus metrics of one server instance (a registry per instance, no
//! globals, so several servers can run in one test process).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The counters and gauges the server exports at `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Outbox events applied to the live aggregates.
    pub events_applied: Counter,
    /// Outbox events delivered in seq order to the hub.
    pub events_delivered: Counter,
    /// Events read in catch-up reads (at start and after every reconnect).
    pub catchup_events: Counter,
    /// NOTIFY doorbells received.
    pub notifications: Counter,
    /// Times the listener connection was re-established.
    pub listener_reconnects: Counter,
    /// Times the live aggregates were re-read from the base tables while
    /// running (a TRUNCATE, or a database that went back in time).
    pub rewarms: Counter,
    /// 1 while the LISTEN connection is up.
    pub listener_connected: Gauge,
    /// Open holes in the seq sequence (transactions in flight or just rolled back).
    pub open_holes: Gauge,
    /// Events seen but waiting for an earlier seq before delivery.
    pub buffered_events: Gauge,
    /// The delivered watermark.
    pub watermark: Gauge,
    /// WebSocket clients connected now.
    pub ws_clients: Gauge,
    /// SSE (`/api/stream`) clients connected now.
    pub sse_clients: Gauge,
    /// Clients told to resync because their queue overflowed.
    pub ws_resynced: Counter,
    /// Clients closed for being too slow (repeated overflow or a stuck write).
    pub ws_closed_slow: Counter,
    /// Resumes from before the outbox's retention horizon, answered with a
    /// `resync` that says events were skipped.
    pub resyncs_pruned: Counter,
    /// Client frames answered with an error frame.
    pub ws_bad_frames: Counter,
    /// 1 while this replica holds the rollup writer lock.
    pub rollup_writer: Gauge,
    /// `rollup_state.seq` as last written by this replica.
    pub rollup_seq: Gauge,
    /// Rollup flush transactions committed.
    pub rollup_flushes: Counter,
    /// Rollup rows upserted (minute, hour and day together).
    pub rollup_rows: Counter,
    /// `pg_notification_queue_usage()` at the last scrape (0..1).
    pub notification_queue_usage: Gauge<f64, AtomicU64>,
    /// Alerts firing now (as this replica shows them).
    pub alerts_firing: Gauge,
    /// Alerts pending now.
    pub alerts_pending: Gauge,
    /// 1 while this replica is the alerts leader.
    pub alerts_leader: Gauge,
    /// Replay lag of the read replica at the last check, in seconds.
    pub replica_lag_seconds: Gauge<f64, AtomicU64>,
    /// 1 while heavy reads go to the read replica (0: to the primary).
    pub replica_healthy: Gauge,
    /// Alert transitions recorded by this replica (as leader).
    pub alert_transitions: Counter,
    /// Evaluation ticks run by this replica (as leader).
    pub alert_evaluations: Counter,
    /// Duration of the last evaluation tick, in seconds.
    pub alert_evaluation_seconds: Gauge<f64, AtomicU64>,
    /// Webhook deliveries that succeeded (2xx).
    pub webhook_deliveries: Counter,
    /// Webhook attempts that failed (error, timeout, non-2xx).
    pub webhook_failures: Counter,
    /// Webhook deliveries given up (attempts exhausted, or refused with a 4xx).
    pub webhook_gave_up: Counter,
    /// Frames queued for subscribers, summed over all of them (at the last scrape).
    pub hub_queued: Gauge,
    /// The longest single subscriber queue (at the last scrape).
    pub hub_queue_max: Gauge,
    /// Events held in the resume ring (at the last scrape).
    pub hub_ring_events: Gauge,
    /// Subscribers of the `events` topic (at the last scrape).
    pub hub_event_subscribers: Gauge,
    /// Time buckets held by the live aggregates (at the last scrape).
    pub live_buckets: Gauge,
    /// Tasks alive in the server's tokio runtime (at the last scrape).
    pub runtime_tasks: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ingestwatch");
        macro_rules! reg {
            ($name:literal, $help:literal, $m:expr) => {{
                let m = $m;
                registry.register($name, $help, m.clone());
                m
            }};
        }
        Metrics {
            events_applied: reg!(
                "events_applied",
                "Outbox events applied to the live aggregates",
                Counter::default()
            ),
            events_delivered: reg!(
                "events_delivered",
                "Outbox events delivered in seq order",
                Counter::default()
            ),
            catchup_events: reg!(
                "catchup_events",
                "Events read by catch-up after a (re)connect",
                Counter::default()
            ),
            notifications: reg!(
                "notifications",
                "NOTIFY doorbells received",
                Counter::default()
            ),
            listener_reconnects: reg!(
                "listener_reconnects",
                "LISTEN connection re-established",
                Counter::default()
            ),
            rewarms: reg!(
                "rewarms",
                "Live aggregates re-read from the base tables while running (TRUNCATE, database back in time)",
                Counter::default()
            ),
            listener_connected: reg!(
                "listener_connected",
                "1 while the LISTEN connection is up",
                Gauge::default()
            ),
            open_holes: reg!(
                "open_holes",
                "Open holes in the outbox seq",
                Gauge::default()
            ),
            buffered_events: reg!(
                "buffered_events",
                "Events waiting for an earlier seq",
                Gauge::default()
            ),
            watermark: reg!("watermark", "Delivered watermark (seq)", Gauge::default()),
            ws_clients: reg!(
                "ws_clients",
                "WebSocket clients connected",
                Gauge::default()
            ),
            sse_clients: reg!(
                "sse_clients",
                "SSE (/api/stream) clients connected",
                Gauge::default()
            ),
            ws_resynced: reg!(
                "ws_resynced",
                "WebSocket clients told to resync (queue overflow)",
                Counter::default()
            ),
            ws_closed_slow: reg!(
                "ws_closed_slow",
                "WebSocket clients closed as too slow",
                Counter::default()
            ),
            resyncs_pruned: reg!(
                "resyncs_pruned",
                "Resumes from before the outbox retention horizon, answered with a resync (events skipped)",
                Counter::default()
            ),
            ws_bad_frames: reg!(
                "ws_bad_frames",
                "Client frames answered with an error frame",
                Counter::default()
            ),
            rollup_writer: reg!(
                "rollup_writer",
                "1 while this replica writes the trend rollups",
                Gauge::default()
            ),
            rollup_seq: reg!(
                "rollup_seq",
                "Events up to this seq are in the trend rollups",
                Gauge::default()
            ),
            rollup_flushes: reg!(
                "rollup_flushes",
                "Rollup flush transactions committed",
                Counter::default()
            ),
            rollup_rows: reg!("rollup_rows", "Rollup rows upserted", Counter::default()),
            notification_queue_usage: reg!(
                "pg_notification_queue_usage",
                "pg_notification_queue_usage() at the last scrape",
                Gauge::<f64, AtomicU64>::default()
            ),
            alerts_firing: reg!("alerts_firing", "Alerts firing", Gauge::default()),
            alerts_pending: reg!("alerts_pending", "Alerts pending", Gauge::default()),
            alerts_leader: reg!(
                "alerts_leader",
                "1 while this replica is the alerts leader",
                Gauge::default()
            ),
            replica_lag_seconds: reg!(
                "replica_lag_seconds",
                "Replay lag of the read replica at the last check in seconds",
                Gauge::<f64, AtomicU64>::default()
            ),
            replica_healthy: reg!(
                "replica_healthy",
                "1 while heavy reads go to the read replica (0: to the primary)",
                Gauge::default()
            ),
            alert_transitions: reg!(
                "alert_transitions",
                "Alert transitions recorded (as leader)",
                Counter::default()
            ),
            alert_evaluations: reg!(
                "alert_evaluations",
                "Alert evaluation ticks (as leader)",
                Counter::default()
            ),
            alert_evaluation_seconds: reg!(
                "alert_evaluation_seconds",
                "Duration of the last alert evaluation tick in seconds",
                Gauge::<f64, AtomicU64>::default()
            ),
            webhook_deliveries: reg!(
                "webhook_deliveries",
                "Webhook deliveries that succeeded",
                Counter::default()
            ),
            webhook_failures: reg!(
                "webhook_failures",
                "Webhook attempts that failed",
                Counter::default()
            ),
            webhook_gave_up: reg!(
                "webhook_gave_up",
                "Webhook deliveries given up",
                Counter::default()
            ),
            hub_queued: reg!(
                "hub_queued",
                "Frames queued for subscribers (sum)",
                Gauge::default()
            ),
            hub_queue_max: reg!(
                "hub_queue_max",
                "Longest subscriber queue",
                Gauge::default()
            ),
            hub_ring_events: reg!(
                "hub_ring_events",
                "Events held in the resume ring",
                Gauge::default()
            ),
            hub_event_subscribers: reg!(
                "hub_event_subscribers",
                "Subscribers of the events topic",
                Gauge::default()
            ),
            live_buckets: reg!(
                "live_buckets",
                "Time buckets held by the live aggregates",
                Gauge::default()
            ),
            runtime_tasks: reg!(
                "runtime_tasks",
                "Tasks alive in the tokio runtime",
                Gauge::default()
            ),
            registry,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
