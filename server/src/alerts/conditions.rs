//! Reading the figures a rule compares: the live aggregates (rates, lag,
//! backlog, last record per source — no database I/O), the listener status,
//! and one database read per evaluation tick for what the live aggregates do
//! not hold (consecutive failed runs, start times of running runs,
//! `pg_notification_queue_usage()`).
//!
//! Per-source figures are summed over the sources an instance covers, so
//! "several sources together" is exact (lag percentiles come from the merged
//! histogram, not an average of percentiles).

use std::collections::HashMap;

use super::engine::Observation;
use super::rules::{Condition, Rule, RuleSet, Scope, Selector};
use crate::live::contribution::Counter;
use crate::live::series::Slot;
use crate::live::{Live, SourceWindow};

/// What the once-per-tick database read returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbFigures {
    /// `pg_notification_queue_usage()`.
    pub queue_usage: f64,
    /// Per source name.
    pub runs: HashMap<String, RunFacts>,
}

/// Run facts of one source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFacts {
    /// `started_at` (epoch ms) of its oldest run in status running.
    pub oldest_running_ms: Option<i64>,
    /// Its newest finished runs that failed, counted until one did not.
    pub consecutive_failed: i64,
}

/// True when some rule needs [`read_db`].
pub fn needs_db(rules: &RuleSet) -> bool {
    rules.rules.iter().any(|r| r.condition.needs_db())
}

/// The one database read of a tick (read-only; uses the indexes on
/// `runs (source_id, started_at)` and the partial index on running runs).
pub async fn read_db(
    client: &impl tokio_postgres::GenericClient,
    rules: &RuleSet,
) -> Result<DbFigures, tokio_postgres::Error> {
    let depth: i64 = rules
        .rules
        .iter()
        .filter_map(|r| match r.condition {
            Condition::FailedRuns { count } => Some(count),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let rows = client
        .query(
            "select q.usage, s.name, s.oldest_running_ms, s.recent
               from (select pg_notification_queue_usage() as usage) q
               left join lateral (
                 select so.name,
                        (select floor(extract(epoch from min(r.started_at)) * 1000)::bigint
                           from ingest.runs r
                          where r.source_id = so.id and r.status = 'running') as oldest_running_ms,
                        array(select r.status from ingest.runs r
                               where r.source_id = so.id and r.status <> 'running'
                               order by r.started_at desc, r.id desc limit $1) as recent
                   from ingest.sources so) s on true",
            &[&depth],
        )
        .await?;
    let mut out = DbFigures::default();
    for r in rows {
        out.queue_usage = r.get(0);
        let Some(name) = r.get::<_, Option<String>>(1) else {
            continue;
        };
        let recent: Vec<String> = r.get::<_, Option<Vec<String>>>(3).unwrap_or_default();
        out.runs.insert(
            name,
            RunFacts {
                oldest_running_ms: r.get(2),
                consecutive_failed: recent.iter().take_while(|s| *s == "failed").count() as i64,
            },
        );
    }
    Ok(out)
}

/// The inputs of one tick.
pub struct Reading<'a> {
    live: &'a Live,
    /// The live aggregates are warm and the listener is connected.
    live_ready: bool,
    /// How long the listener has been disconnected (ms; 0 when connected).
    disconnected_ms: i64,
    db: Option<&'a DbFigures>,
    now_ms: i64,
    /// Sources that never received a record: when the evaluator first saw them.
    first_seen: &'a mut HashMap<String, i64>,
    cache: HashMap<i64, Vec<SourceWindow>>,
}

impl<'a> Reading<'a> {
    /// Inputs at `now_ms`; `db` is `None` when the read failed or was not needed.
    pub fn new(
        live: &'a Live,
        live_ready: bool,
        disconnected_ms: i64,
        db: Option<&'a DbFigures>,
        now_ms: i64,
        first_seen: &'a mut HashMap<String, i64>,
    ) -> Self {
        Reading {
            live,
            live_ready,
            disconnected_ms,
            db,
            now_ms,
            first_seen,
            cache: HashMap::new(),
        }
    }

    fn windows(&mut self, secs: i64) -> &[SourceWindow] {
        let (live, now) = (self.live, self.now_ms);
        self.cache
            .entry(secs)
            .or_insert_with(|| live.source_windows(secs, now))
    }

    /// The observations of `rule`, or `None` when its inputs are unknown this
    /// tick (live figures not ready, database read failed).
    pub fn observe(&mut self, rule: &Rule) -> Option<Vec<Observation>> {
        let c = &rule.condition;
        if c.needs_live() && !self.live_ready {
            return None;
        }
        if c.needs_db() && self.db.is_none() {
            return None;
        }
        match c.scope() {
            Scope::System => Some(vec![Observation {
                key: String::new(),
                source: None,
                sources: Vec::new(),
                value: Some(match c {
                    Condition::NotificationQueue { .. } => self.db?.queue_usage,
                    _ => self.disconnected_ms as f64 / 1e3,
                }),
                threshold: c.threshold().unwrap_or(0.0),
            }]),
            Scope::Aggregate => Some(self.aggregate(rule)),
            Scope::PerSource => Some(self.per_source(rule)),
        }
    }

    fn aggregate(&mut self, rule: &Rule) -> Vec<Observation> {
        let c = rule.condition.clone();
        let secs = match c {
            Condition::ErrorRate { window, .. }
            | Condition::RejectRate { window, .. }
            | Condition::LagP95 { window, .. } => window,
            _ => 1,
        };
        let windows = self.windows(secs).to_vec();
        let threshold = c.threshold().unwrap_or(0.0);
        let group = |members: Vec<&SourceWindow>,
                     key: String,
                     source: Option<String>,
                     sources: Vec<String>| {
            let mut slot = Slot::default();
            let mut backlog = 0;
            for m in &members {
                slot.merge(&m.slot);
                backlog += m.backlog;
            }
            Observation {
                key,
                source,
                sources,
                value: aggregate_value(&c, &slot, backlog),
                threshold,
            }
        };
        match &rule.selector {
            Selector::All => vec![group(
                windows.iter().collect(),
                String::new(),
                None,
                Vec::new(),
            )],
            Selector::Each => windows
                .iter()
                .map(|w| {
                    group(
                        vec![w],
                        w.name.clone(),
                        Some(w.name.clone()),
                        vec![w.name.clone()],
                    )
                })
                .collect(),
            Selector::EachOf(names) => windows
                .iter()
                .filter(|w| names.contains(&w.name))
                .map(|w| {
                    group(
                        vec![w],
                        w.name.clone(),
                        Some(w.name.clone()),
                        vec![w.name.clone()],
                    )
                })
                .collect(),
            Selector::Together(names) => {
                let members: Vec<&SourceWindow> =
                    windows.iter().filter(|w| names.contains(&w.name)).collect();
                let source = (names.len() == 1).then(|| names[0].clone());
                vec![group(members, names.join(","), source, names.clone())]
            }
        }
    }

    fn per_source(&mut self, rule: &Rule) -> Vec<Observation> {
        let now = self.now_ms;
        let windows = self.windows(1).to_vec();
        let chosen: Vec<&SourceWindow> = windows
            .iter()
            .filter(|w| match &rule.selector {
                Selector::All | Selector::Each => true,
                Selector::Together(n) | Selector::EachOf(n) => n.contains(&w.name),
            })
            .collect();
        let mut out = Vec::with_capacity(chosen.len());
        for w in chosen {
            let (value, threshold) = match &rule.condition {
                Condition::Stale { factor, max_age } => {
                    let Some(limit) = max_age.or(w.expected_interval_secs.map(|i| i * factor))
                    else {
                        continue; // no expected interval and no max_age: not watched
                    };
                    let last = match w.last_received_ms {
                        Some(ms) => ms,
                        None => *self.first_seen.entry(w.name.clone()).or_insert(now),
                    };
                    (((now - last).max(0)) as f64 / 1e3, limit)
                }
                Condition::FailedRuns { count } => {
                    let facts = self.db.and_then(|d| d.runs.get(&w.name));
                    (
                        facts.map_or(0, |f| f.consecutive_failed) as f64,
                        *count as f64,
                    )
                }
                Condition::LongRun { longer_than } => {
                    let oldest = self
                        .db
                        .and_then(|d| d.runs.get(&w.name))
                        .and_then(|f| f.oldest_running_ms);
                    (
                        oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1e3),
                        *longer_than,
                    )
                }
                _ => continue,
            };
            out.push(Observation {
                key: w.name.clone(),
                source: Some(w.name.clone()),
                sources: vec![w.name.clone()],
                value: Some(value),
                threshold,
            });
        }
        out
    }
}

/// The value of an aggregate condition over a summed slot.
fn aggregate_value(c: &Condition, slot: &Slot, backlog: i64) -> Option<f64> {
    let n = |k: Counter| slot.counts[k as usize];
    match c {
        Condition::ErrorRate { min_records, .. } => {
            let received = n(Counter::Received);
            (received >= *min_records && received > 0)
                .then(|| n(Counter::Errors) as f64 / received as f64)
        }
        Condition::RejectRate { min_records, .. } => {
            let processed = n(Counter::Normalized) + n(Counter::Rejected);
            (processed >= *min_records && processed > 0)
                .then(|| n(Counter::Rejected) as f64 / processed as f64)
        }
        Condition::LagP95 { min_records, .. } => {
            if slot.lag.count() < *min_records {
                return None;
            }
            slot.lag.percentile(0.95)
        }
        Condition::Backlog { .. } => Some(backlog as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::contribution::{Contribution, Metric};
    use crate::live::SourceInfo;

    fn live(now_sec: i64) -> Live {
        let live = Live::default();
        let src = |id, name: &str| SourceInfo {
            id,
            name: name.into(),
            kind: None,
            expected_interval_secs: Some(60.0),
        };
        let c = |id, metric, n, val| Contribution {
            source_id: id,
            metric,
            sec: Some(now_sec - 5),
            val,
            n,
            label: None,
        };
        live.reset(
            vec![src(1, "a"), src(2, "b"), src(3, "c")],
            &[
                c(1, Metric::Counter(Counter::Received), 10, None),
                c(1, Metric::Counter(Counter::Errors), 5, None),
                c(1, Metric::Counter(Counter::Normalized), 6, None),
                c(1, Metric::Counter(Counter::Rejected), 4, None),
                c(2, Metric::Counter(Counter::Received), 30, None),
                c(2, Metric::Counter(Counter::Normalized), 30, None),
                c(1, Metric::Lag, 10, Some(5_000)),
                c(2, Metric::Lag, 30, Some(10)),
                c(2, Metric::Backlog, 7, None),
                Contribution {
                    source_id: 1,
                    metric: Metric::LastReceived,
                    sec: None,
                    val: Some((now_sec - 100) * 1000),
                    n: 1,
                    label: None,
                },
            ],
            0,
            now_sec,
        );
        live
    }

    fn rule(text: &str) -> Rule {
        let r = RuleSet::parse(&format!("[[rules]]\nname = \"r\"\n{text}\n")).expect("rule");
        r.rules[0].clone()
    }

    fn values(obs: &[Observation]) -> Vec<(String, Option<f64>)> {
        obs.iter().map(|o| (o.key.clone(), o.value)).collect()
    }

    #[test]
    fn rates_lag_and_backlog_by_selector() {
        let now = 1_700_000_000;
        let l = live(now);
        let mut seen = HashMap::new();
        let mut r = Reading::new(&l, true, 0, None, now * 1000, &mut seen);
        let each = r
            .observe(&rule(
                "condition = \"error_rate\"\nwindow = \"30s\"\nabove = 0.1\nsources = \"each\"",
            ))
            .expect("known");
        assert_eq!(
            values(&each),
            [
                ("a".into(), Some(0.5)),
                ("b".into(), Some(0.0)),
                ("c".into(), None)
            ]
        );
        let all = r
            .observe(&rule(
                "condition = \"error_rate\"\nwindow = \"30s\"\nabove = 0.1",
            ))
            .expect("known");
        assert_eq!(values(&all), [(String::new(), Some(5.0 / 40.0))]);
        let rej = r
            .observe(&rule("condition = \"reject_rate\"\nwindow = \"1m\"\nabove = 0.1\nsources = [\"a\", \"b\"]\nmin_records = 41"))
            .expect("known");
        assert_eq!(values(&rej), [("a,b".into(), None)], "below min_records");
        let lag = r
            .observe(&rule("condition = \"lag_p95\"\nwindow = \"10s\"\nabove = \"1s\"\nsources = [\"a\", \"b\"]"))
            .expect("known");
        // the merged histogram's p95 (5,000 ms within the histogram's 0.8 %)
        assert_eq!(lag[0].key, "a,b");
        assert!(
            (lag[0].value.unwrap_or(0.0) - 5_000.0).abs() <= 40.0,
            "{lag:?}"
        );
        let few = r
            .observe(&rule(
                "condition = \"lag_p95\"\nwindow = \"10s\"\nabove = 1000\nmin_records = 41",
            ))
            .expect("known");
        assert_eq!(
            values(&few),
            [(String::new(), None)],
            "40 samples < min_records"
        );
        let gone = r
            .observe(&rule(
                "condition = \"lag_p95\"\nwindow = \"2s\"\nabove = \"1s\"",
            ))
            .expect("known");
        assert_eq!(
            values(&gone),
            [(String::new(), None)],
            "samples outside the window"
        );
        let b = r
            .observe(&rule("condition = \"backlog\"\nabove = 5\nsources = \"b\""))
            .expect("known");
        assert_eq!(values(&b), [("b".into(), Some(7.0))]);
        assert_eq!(b[0].source.as_deref(), Some("b"));
    }

    #[test]
    fn stale_runs_and_system_conditions() {
        let now = 1_700_000_000;
        let l = live(now);
        let mut seen = HashMap::new();
        let db = DbFigures {
            queue_usage: 0.25,
            runs: HashMap::from([(
                "a".to_string(),
                RunFacts {
                    oldest_running_ms: Some((now - 90) * 1000),
                    consecutive_failed: 3,
                },
            )]),
        };
        let mut r = Reading::new(&l, true, 4_500, Some(&db), now * 1000, &mut seen);
        let stale = r
            .observe(&rule("condition = \"stale\"\nfactor = 1.5"))
            .expect("known");
        assert_eq!(
            values(&stale),
            [
                ("a".into(), Some(100.0)),
                ("b".into(), Some(0.0)),
                ("c".into(), Some(0.0))
            ]
        );
        assert_eq!(stale[0].threshold, 90.0);
        let failed = r
            .observe(&rule(
                "condition = \"failed_runs\"\ncount = 3\nsources = { each = [\"a\", \"b\"] }",
            ))
            .expect("known");
        assert_eq!(
            values(&failed),
            [("a".into(), Some(3.0)), ("b".into(), Some(0.0))]
        );
        let long = r
            .observe(&rule(
                "condition = \"long_run\"\nlonger_than = \"1m\"\nsources = \"a\"",
            ))
            .expect("known");
        assert_eq!(values(&long), [("a".into(), Some(90.0))]);
        let q = r
            .observe(&rule("condition = \"notification_queue\"\nabove = 0.5"))
            .expect("known");
        assert_eq!(values(&q), [(String::new(), Some(0.25))]);
        let d = r
            .observe(&rule(
                "condition = \"listener_disconnected\"\nlonger_than = \"3s\"",
            ))
            .expect("known");
        assert_eq!(values(&d), [(String::new(), Some(4.5))]);
        // unknown inputs: no observations at all
        let mut seen = HashMap::new();
        let mut r = Reading::new(&l, false, 0, None, now * 1000, &mut seen);
        assert!(r
            .observe(&rule("condition = \"backlog\"\nabove = 1"))
            .is_none());
        assert!(r
            .observe(&rule("condition = \"failed_runs\"\ncount = 1"))
            .is_none());
        assert!(r
            .observe(&rule(
                "condition = \"listener_disconnected\"\nlonger_than = \"1s\""
            ))
            .is_some());
    }
}
