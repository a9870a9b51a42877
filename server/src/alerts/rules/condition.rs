//! What a rule watches: [`ConditionKind`], the one list of condition names
//! (the `condition = "…"` values, the keys each takes, unit, comparison and
//! scope), and [`Condition`], a kind with its validated parameters.

/// How a value is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// Breaches when `value > threshold`.
    Above,
    /// Breaches when `value >= threshold` (counts: "N consecutive").
    AtLeast,
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Error rows (severity error) ÷ records received, over `window` seconds.
    ErrorRate {
        /// Window in seconds.
        window: i64,
        /// Threshold (fraction, e.g. 0.05).
        above: f64,
        /// Fewer records received than this: no data (not breaching).
        min_records: i64,
    },
    /// Rejected ÷ (normalized + rejected), over `window` seconds.
    RejectRate {
        /// Window in seconds.
        window: i64,
        /// Threshold (fraction).
        above: f64,
        /// Fewer records processed than this: no data.
        min_records: i64,
    },
    /// No record from a source for longer than its `expected_interval` × `factor` (or `max_age`).
    Stale {
        /// Multiple of the source's `expected_interval`.
        factor: f64,
        /// Fixed limit in seconds instead of the source's interval.
        max_age: Option<f64>,
    },
    /// The newest `count` finished runs of a source all failed.
    FailedRuns {
        /// Consecutive failed runs.
        count: i64,
    },
    /// Processing lag p95 (ms) over `window` seconds.
    LagP95 {
        /// Window in seconds.
        window: i64,
        /// Threshold in ms.
        above_ms: f64,
        /// Fewer records processed than this: no data.
        min_records: i64,
    },
    /// Pending records now.
    Backlog {
        /// Threshold in records.
        above: f64,
    },
    /// A run in status running for longer than this many seconds.
    LongRun {
        /// Limit in seconds.
        longer_than: f64,
    },
    /// `pg_notification_queue_usage()` (0..1).
    NotificationQueue {
        /// Threshold (fraction).
        above: f64,
    },
    /// The server's LISTEN connection has been down for longer than this many seconds.
    ListenerDisconnected {
        /// Limit in seconds.
        longer_than: f64,
    },
}

/// Whether a condition is about one source, sums sources, or about the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Figures that add up over sources (rates, lag, backlog).
    Aggregate,
    /// Only meaningful per source (stale, failed runs, long runs).
    PerSource,
    /// About the server or database, not sources.
    System,
}

/// The kinds of condition, by their `condition = "…"` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionKind {
    /// `error_rate`.
    ErrorRate,
    /// `reject_rate`.
    RejectRate,
    /// `stale`.
    Stale,
    /// `failed_runs`.
    FailedRuns,
    /// `lag_p95`.
    LagP95,
    /// `backlog`.
    Backlog,
    /// `long_run`.
    LongRun,
    /// `notification_queue`.
    NotificationQueue,
    /// `listener_disconnected`.
    ListenerDisconnected,
}

impl ConditionKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [ConditionKind; 9] = [
        ConditionKind::ErrorRate,
        ConditionKind::RejectRate,
        ConditionKind::Stale,
        ConditionKind::FailedRuns,
        ConditionKind::LagP95,
        ConditionKind::Backlog,
        ConditionKind::LongRun,
        ConditionKind::NotificationQueue,
        ConditionKind::ListenerDisconnected,
    ];

    /// The `condition = "…"` name (also stored with every transition).
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionKind::ErrorRate => "error_rate",
            ConditionKind::RejectRate => "reject_rate",
            ConditionKind::Stale => "stale",
            ConditionKind::FailedRuns => "failed_runs",
            ConditionKind::LagP95 => "lag_p95",
            ConditionKind::Backlog => "backlog",
            ConditionKind::LongRun => "long_run",
            ConditionKind::NotificationQueue => "notification_queue",
            ConditionKind::ListenerDisconnected => "listener_disconnected",
        }
    }

    /// Parses a `condition = "…"` name.
    pub fn parse(s: &str) -> Option<ConditionKind> {
        ConditionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The parameter keys it takes (any other is refused).
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            ConditionKind::ErrorRate | ConditionKind::RejectRate | ConditionKind::LagP95 => {
                &["window", "above", "min_records"]
            }
            ConditionKind::Stale => &["factor", "max_age"],
            ConditionKind::FailedRuns => &["count"],
            ConditionKind::Backlog | ConditionKind::NotificationQueue => &["above"],
            ConditionKind::LongRun | ConditionKind::ListenerDisconnected => &["longer_than"],
        }
    }

    /// Unit of the value and threshold.
    pub fn unit(self) -> &'static str {
        match self {
            ConditionKind::ErrorRate
            | ConditionKind::RejectRate
            | ConditionKind::NotificationQueue => "ratio",
            ConditionKind::Stale | ConditionKind::LongRun | ConditionKind::ListenerDisconnected => {
                "seconds"
            }
            ConditionKind::FailedRuns => "runs",
            ConditionKind::LagP95 => "ms",
            ConditionKind::Backlog => "records",
        }
    }

    /// How the value is compared.
    pub fn cmp(self) -> Cmp {
        match self {
            ConditionKind::FailedRuns => Cmp::AtLeast,
            _ => Cmp::Above,
        }
    }

    /// Aggregate, per source or system.
    pub fn scope(self) -> Scope {
        match self {
            ConditionKind::ErrorRate
            | ConditionKind::RejectRate
            | ConditionKind::LagP95
            | ConditionKind::Backlog => Scope::Aggregate,
            ConditionKind::Stale | ConditionKind::FailedRuns | ConditionKind::LongRun => {
                Scope::PerSource
            }
            ConditionKind::NotificationQueue | ConditionKind::ListenerDisconnected => Scope::System,
        }
    }

    /// Needs the once-per-tick database read (runs, notification queue).
    pub fn needs_db(self) -> bool {
        matches!(
            self,
            ConditionKind::FailedRuns | ConditionKind::LongRun | ConditionKind::NotificationQueue
        )
    }

    /// Reads the live aggregates (skipped while they are not ready).
    pub fn needs_live(self) -> bool {
        !matches!(
            self,
            ConditionKind::NotificationQueue | ConditionKind::ListenerDisconnected
        )
    }

    /// Every name, for messages: `a, b, … or z`.
    pub fn names() -> String {
        let names: Vec<&str> = ConditionKind::ALL.iter().map(|k| k.as_str()).collect();
        let (last, rest) = names.split_last().expect("nine kinds");
        format!("{} or {last}", rest.join(", "))
    }
}

impl std::fmt::Display for ConditionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Condition {
    /// Its kind.
    pub fn kind(&self) -> ConditionKind {
        match self {
            Condition::ErrorRate { .. } => ConditionKind::ErrorRate,
            Condition::RejectRate { .. } => ConditionKind::RejectRate,
            Condition::Stale { .. } => ConditionKind::Stale,
            Condition::FailedRuns { .. } => ConditionKind::FailedRuns,
            Condition::LagP95 { .. } => ConditionKind::LagP95,
            Condition::Backlog { .. } => ConditionKind::Backlog,
            Condition::LongRun { .. } => ConditionKind::LongRun,
            Condition::NotificationQueue { .. } => ConditionKind::NotificationQueue,
            Condition::ListenerDisconnected { .. } => ConditionKind::ListenerDisconnected,
        }
    }

    /// Unit of the value and threshold.
    pub fn unit(&self) -> &'static str {
        self.kind().unit()
    }

    /// How the value is compared.
    pub fn cmp(&self) -> Cmp {
        self.kind().cmp()
    }

    /// Aggregate, per source or system.
    pub fn scope(&self) -> Scope {
        self.kind().scope()
    }

    /// Needs the once-per-tick database read (runs, notification queue).
    pub fn needs_db(&self) -> bool {
        self.kind().needs_db()
    }

    /// Reads the live aggregates (skipped while they are not ready).
    pub fn needs_live(&self) -> bool {
        self.kind().needs_live()
    }

    /// The fixed threshold, when it does not depend on the source.
    pub fn threshold(&self) -> Option<f64> {
        Some(match self {
            Condition::ErrorRate { above, .. }
            | Condition::RejectRate { above, .. }
            | Condition::Backlog { above }
            | Condition::NotificationQueue { above } => *above,
            Condition::LagP95 { above_ms, .. } => *above_ms,
            Condition::FailedRuns { count } => *count as f64,
            Condition::LongRun { longer_than }
            | Condition::ListenerDisconnected { longer_than } => *longer_than,
            Condition::Stale { max_age, .. } => return *max_age,
        })
    }
}
