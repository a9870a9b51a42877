//! The evaluation state machine, pure: no I/O and no clock — every step is
//! given `now` (epoch ms) and the observations of one rule, and returns the
//! transitions it causes. Unit-tested with explicit times.
//!
//! Per alert instance (a rule, and for per-source rules a source):
//!
//! ```text
//!   inactive/resolved --breach--> pending --breach for `for`--> firing
//!        ^                          |                             |
//!        +------ cleared -----------+      cleared for `resolve_for`
//!                                                                  v
//!                                                              resolved
//! ```
//!
//! *Breach*: `value > threshold` (`>=` for counts). *Cleared*: not breaching
//! and `value <= threshold × (1 − hysteresis)`, or no data. A value between
//! the two changes nothing, so a value hovering at the threshold does not
//! flap: a pending alert stays pending (and fires once `for` has passed and
//! it breaches again), a firing one stays firing. With `for = 0` a breach
//! fires at once.
//!
//! `None` observations for a rule mean *unknown* (its inputs could not be
//! read this tick): its instances keep their state and timers.

use std::collections::{BTreeMap, HashMap};

use super::rules::{Cmp, RuleSet, StateName};

/// One instance's reading at this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Instance key: the source name, `a,b` for sources together, `` for all / system.
    pub key: String,
    /// The one source of the instance, if one.
    pub source: Option<String>,
    /// Every source the instance covers (empty: all sources, or none).
    pub sources: Vec<String>,
    /// The value (`None`: no data, counts as cleared).
    pub value: Option<f64>,
    /// The threshold it is compared with.
    pub threshold: f64,
}

/// A state change the engine decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Rule name.
    pub rule: String,
    /// Instance key.
    pub key: String,
    /// The one source, if one.
    pub source: Option<String>,
    /// Sources covered.
    pub sources: Vec<String>,
    /// State before.
    pub from: StateName,
    /// When the state before began (epoch ms; 0 if never recorded).
    pub from_since: i64,
    /// State after.
    pub to: StateName,
    /// When (epoch ms).
    pub at: i64,
    /// The value that caused it.
    pub value: Option<f64>,
    /// The threshold.
    pub threshold: f64,
}

impl Change {
    /// The idempotency key: the same for the same transition whoever
    /// computes it (two leaders restored from the same state agree).
    pub fn idempotency_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.rule.as_str(),
            self.key.as_str(),
            self.from.as_str(),
            self.to.as_str(),
            &self.from_since.to_string(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let d = h.finalize();
        let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("iw-{hex}")
    }
}

/// A recorded instance state (to restore an engine from the database).
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// Rule name.
    pub rule: String,
    /// Instance key.
    pub key: String,
    /// The one source, if one.
    pub source: Option<String>,
    /// Sources covered.
    pub sources: Vec<String>,
    /// Current state.
    pub state: StateName,
    /// Since when (epoch ms).
    pub since: i64,
    /// Threshold recorded with it.
    pub threshold: f64,
}

#[derive(Debug, Clone)]
struct Instance {
    state: StateName,
    since: i64,
    /// While firing: cleared since (for `resolve_for`).
    clearing_since: Option<i64>,
    source: Option<String>,
    sources: Vec<String>,
    threshold: f64,
}

#[derive(Debug, Clone)]
struct Params {
    name: String,
    cmp: Cmp,
    for_ms: i64,
    resolve_for_ms: i64,
    hysteresis: f64,
}

/// Every instance's state, for the rules it was built with.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Vec<Params>,
    by_name: HashMap<String, usize>,
    instances: Vec<BTreeMap<String, Instance>>,
}

impl Engine {
    /// An engine for `rules`, every instance inactive.
    pub fn new(rules: &RuleSet) -> Self {
        let params: Vec<Params> = rules
            .rules
            .iter()
            .map(|r| Params {
                name: r.name.clone(),
                cmp: r.condition.cmp(),
                for_ms: r.for_.as_millis() as i64,
                resolve_for_ms: r.resolve_for.as_millis() as i64,
                hysteresis: r.hysteresis,
            })
            .collect();
        Engine {
            by_name: params
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), i))
                .collect(),
            instances: vec![BTreeMap::new(); params.len()],
            rules: params,
        }
    }

    /// Replaces the state with what the database recorded. Active instances
    /// of rules that no longer exist are returned as changes ending them
    /// (pending → inactive, firing → resolved) at `now`.
    pub fn restore(&mut self, rows: Vec<Restored>, now: i64) -> Vec<Change> {
        for m in &mut self.instances {
            m.clear();
        }
        let mut orphans = Vec::new();
        for r in rows {
            match self.by_name.get(&r.rule) {
                Some(&i) => {
                    self.instances[i].insert(
                        r.key,
                        Instance {
                            state: r.state,
                            since: r.since,
                            clearing_since: None,
                            source: r.source,
                            sources: r.sources,
                            threshold: r.threshold,
                        },
                    );
                }
                None if r.state.is_active() => orphans.push(Change {
                    to: if r.state == StateName::Firing {
                        StateName::Resolved
                    } else {
                        StateName::Inactive
                    },
                    rule: r.rule,
                    key: r.key,
                    source: r.source,
                    sources: r.sources,
                    from: r.state,
                    from_since: r.since,
                    at: now,
                    value: None,
                    threshold: r.threshold,
                }),
                None => {}
            }
        }
        orphans
    }

    /// State of one instance (tests, diagnostics).
    pub fn state(&self, rule: &str, key: &str) -> Option<(StateName, i64)> {
        let i = *self.by_name.get(rule)?;
        self.instances[i].get(key).map(|s| (s.state, s.since))
    }

    /// Pending and firing instances.
    pub fn active(&self) -> usize {
        self.instances
            .iter()
            .flat_map(|m| m.values())
            .filter(|s| s.state.is_active())
            .count()
    }

    /// Applies one tick's observations of rule number `rule` at `now`.
    /// `None`: unknown this tick, nothing changes. Instances missing from
    /// the observations have no data (they clear).
    pub fn step(&mut self, rule: usize, obs: Option<Vec<Observation>>, now: i64) -> Vec<Change> {
        let Some(obs) = obs else { return Vec::new() };
        let Some(p) = self.rules.get(rule).cloned() else {
            return Vec::new();
        };
        let instances = &mut self.instances[rule];
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::with_capacity(obs.len());
        for o in obs {
            seen.insert(o.key.clone());
            let inst = instances.entry(o.key.clone()).or_insert_with(|| Instance {
                state: StateName::Inactive,
                since: 0,
                clearing_since: None,
                source: o.source.clone(),
                sources: o.sources.clone(),
                threshold: o.threshold,
            });
            inst.source.clone_from(&o.source);
            inst.sources.clone_from(&o.sources);
            inst.threshold = o.threshold;
            if let Some(c) = advance(&p, &o.key, inst, o.value, o.threshold, now) {
                out.push(c);
            }
        }
        for (key, inst) in instances.iter_mut() {
            if !seen.contains(key) && inst.state.is_active() {
                let threshold = inst.threshold;
                if let Some(c) = advance(&p, key, inst, None, threshold, now) {
                    out.push(c);
                }
            }
        }
        out
    }
}

fn advance(
    p: &Params,
    key: &str,
    inst: &mut Instance,
    value: Option<f64>,
    threshold: f64,
    now: i64,
) -> Option<Change> {
    let breaching = match (value, p.cmp) {
        (Some(v), Cmp::Above) => v > threshold,
        (Some(v), Cmp::AtLeast) => v >= threshold,
        (None, _) => false,
    };
    let cleared = !breaching && value.is_none_or(|v| v <= threshold * (1.0 - p.hysteresis));
    let to = match inst.state {
        StateName::Inactive | StateName::Resolved if breaching => {
            if p.for_ms == 0 {
                StateName::Firing
            } else {
                StateName::Pending
            }
        }
        StateName::Pending if cleared => StateName::Inactive,
        StateName::Pending if breaching && now - inst.since >= p.for_ms => StateName::Firing,
        StateName::Firing if cleared => {
            let since = *inst.clearing_since.get_or_insert(now);
            if now - since >= p.resolve_for_ms {
                StateName::Resolved
            } else {
                return None;
            }
        }
        StateName::Firing => {
            inst.clearing_since = None;
            return None;
        }
        _ => return None,
    };
    let change = Change {
        rule: p.name.clone(),
        key: key.to_string(),
        source: inst.source.clone(),
        sources: inst.sources.clone(),
        from: inst.state,
        from_since: inst.since,
        to,
        at: now,
        value,
        threshold,
    };
    inst.state = to;
    inst.since = now;
    inst.clearing_since = None;
    Some(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::RuleSet;

    fn engine(extra: &str) -> Engine {
        let text = format!(
            "[[rules]]\nname = \"r\"\ncondition = \"backlog\"\nabove = 100\n{extra}\n\
             [[rules]]\nname = \"runs\"\ncondition = \"failed_runs\"\ncount = 3\n"
        );
        Engine::new(&RuleSet::parse(&text).expect("rules"))
    }

    fn obs(key: &str, v: Option<f64>) -> Option<Vec<Observation>> {
        Some(vec![Observation {
            key: key.into(),
            source: Some(key.into()),
            sources: vec![key.into()],
            value: v,
            threshold: 100.0,
        }])
    }

    fn states(c: &[Change]) -> Vec<(StateName, StateName)> {
        c.iter().map(|c| (c.from, c.to)).collect()
    }

    use StateName::*;

    #[test]
    fn for_delays_firing_and_a_clear_cancels_pending() {
        let mut e = engine("for = \"10s\"");
        assert_eq!(
            states(&e.step(0, obs("a", Some(150.0)), 1_000)),
            [(Inactive, Pending)]
        );
        assert!(e.step(0, obs("a", Some(150.0)), 5_000).is_empty());
        assert!(e.step(0, obs("a", Some(150.0)), 10_999).is_empty());
        let c = e.step(0, obs("a", Some(170.0)), 11_000);
        assert_eq!(states(&c), [(Pending, Firing)]);
        assert_eq!(c[0].value, Some(170.0));
        assert_eq!(c[0].from_since, 1_000);
        // a second episode: pending, then cleared before `for`
        assert_eq!(
            states(&e.step(0, obs("a", Some(10.0)), 12_000)),
            [(Firing, Resolved)]
        );
        assert_eq!(
            states(&e.step(0, obs("a", Some(101.0)), 13_000)),
            [(Resolved, Pending)]
        );
        assert_eq!(
            states(&e.step(0, obs("a", Some(50.0)), 14_000)),
            [(Pending, Inactive)]
        );
        assert_eq!(e.state("r", "a"), Some((Inactive, 14_000)));
    }

    #[test]
    fn hysteresis_stops_flapping_at_the_threshold() {
        let mut e = engine("hysteresis = 0.2");
        assert_eq!(
            states(&e.step(0, obs("a", Some(101.0)), 0)),
            [(Inactive, Firing)]
        );
        // hovering between 80 and 100 changes nothing
        let mut t = 0;
        for v in [99.0, 101.0, 85.0, 100.0, 81.0, 120.0, 80.5] {
            t += 1_000;
            assert!(e.step(0, obs("a", Some(v)), t).is_empty(), "value {v}");
        }
        assert_eq!(
            states(&e.step(0, obs("a", Some(80.0)), t + 1_000)),
            [(Firing, Resolved)]
        );
        // and once resolved, hovering below the threshold does not re-fire
        assert!(e.step(0, obs("a", Some(95.0)), t + 2_000).is_empty());
        assert!(e.step(0, obs("a", Some(100.0)), t + 3_000).is_empty());
    }

    #[test]
    fn pending_in_the_band_stays_pending_and_fires_on_the_next_breach() {
        let mut e = engine("for = \"5s\"\nhysteresis = 0.5");
        e.step(0, obs("a", Some(150.0)), 0);
        assert!(
            e.step(0, obs("a", Some(60.0)), 3_000).is_empty(),
            "in the band"
        );
        assert!(
            e.step(0, obs("a", Some(60.0)), 6_000).is_empty(),
            "for passed, not breaching"
        );
        assert_eq!(
            states(&e.step(0, obs("a", Some(101.0)), 7_000)),
            [(Pending, Firing)]
        );
    }

    #[test]
    fn resolve_for_needs_a_continuous_clear() {
        let mut e = engine("resolve_for = \"3s\"");
        e.step(0, obs("a", Some(200.0)), 0);
        assert!(e.step(0, obs("a", Some(10.0)), 1_000).is_empty());
        assert!(
            e.step(0, obs("a", Some(150.0)), 2_000).is_empty(),
            "breach resets"
        );
        assert!(e.step(0, obs("a", Some(10.0)), 3_000).is_empty());
        assert!(e.step(0, obs("a", Some(10.0)), 5_999).is_empty());
        assert_eq!(
            states(&e.step(0, obs("a", Some(10.0)), 6_000)),
            [(Firing, Resolved)]
        );
    }

    #[test]
    fn counts_fire_at_the_count_and_unknown_changes_nothing() {
        let mut e = engine("");
        let o = |v| {
            Some(vec![Observation {
                key: "s".into(),
                source: Some("s".into()),
                sources: vec!["s".into()],
                value: Some(v),
                threshold: 3.0,
            }])
        };
        assert!(e.step(1, o(2.0), 0).is_empty());
        assert_eq!(states(&e.step(1, o(3.0), 1)), [(Inactive, Firing)]);
        assert!(e.step(1, None, 2).is_empty(), "unknown: no change");
        assert_eq!(states(&e.step(1, o(0.0), 3)), [(Firing, Resolved)]);
    }

    #[test]
    fn a_vanished_instance_clears_and_instances_are_independent() {
        let mut e = engine("");
        let both = Some(vec![
            obs("a", Some(500.0)).unwrap_or_default().remove(0),
            obs("b", Some(500.0)).unwrap_or_default().remove(0),
        ]);
        assert_eq!(e.step(0, both, 0).len(), 2);
        let c = e.step(0, obs("a", Some(500.0)), 1_000);
        assert_eq!(states(&c), [(Firing, Resolved)]);
        assert_eq!(c[0].key, "b");
        assert_eq!(e.active(), 1);
    }

    #[test]
    fn restore_continues_timers_and_ends_orphans_with_stable_keys() {
        let mut e = engine("for = \"10s\"");
        let rows = vec![
            Restored {
                rule: "r".into(),
                key: "a".into(),
                source: Some("a".into()),
                sources: vec!["a".into()],
                state: Pending,
                since: 1_000,
                threshold: 100.0,
            },
            Restored {
                rule: "gone".into(),
                key: "".into(),
                source: None,
                sources: vec![],
                state: Firing,
                since: 500,
                threshold: 1.0,
            },
        ];
        let orphans = e.restore(rows.clone(), 9_000);
        assert_eq!(states(&orphans), [(Firing, Resolved)]);
        let c = e.step(0, obs("a", Some(150.0)), 11_000);
        assert_eq!(states(&c), [(Pending, Firing)]);
        // another engine restored from the same rows computes the same key
        let mut other = engine("for = \"10s\"");
        other.restore(rows, 9_500);
        let c2 = other.step(0, obs("a", Some(190.0)), 11_200);
        assert_eq!(c[0].idempotency_key(), c2[0].idempotency_key());
        assert_ne!(c[0].idempotency_key(), orphans[0].idempotency_key());
    }
}
