//! The writer's in-memory sum: contributions added since the last flush,
//! keyed by (source, minute, metric, val), and folded into hour and day
//! buckets (counters) or one histogram per bucket (lag, run duration) when
//! flushed.

use std::collections::{BTreeMap, HashMap};

use crate::live::contribution::Contribution;
use crate::trends::{is_hist_metric, rollup_key};

/// Key of the in-memory sum: (source, minute, metric, val).
pub(super) type Key = (i64, i64, &'static str, i64);
/// Key of one histogram row: (source, bucket, metric).
pub(super) type HistKey = (i64, i64, &'static str);

/// Contributions summed since the last flush.
#[derive(Debug, Default)]
pub struct Pending {
    sums: HashMap<Key, i64>,
}

impl Pending {
    /// Adds one contribution (gauges are ignored).
    pub fn add(&mut self, c: &Contribution) {
        if let Some((metric, sec, val)) = rollup_key(c) {
            let key = (c.source_id, sec.div_euclid(60) * 60, metric, val);
            *self.sums.entry(key).or_default() += c.n;
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.sums.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// The counter sums folded into `step`-second buckets (from `min_bucket`
    /// on), without zeros.
    pub(super) fn fold(&self, step: i64, min_bucket: i64) -> HashMap<Key, i64> {
        let mut out: HashMap<Key, i64> = HashMap::new();
        for (&(src, minute, metric, val), &n) in &self.sums {
            let bucket = minute.div_euclid(step) * step;
            if bucket >= min_bucket && !is_hist_metric(metric) {
                *out.entry((src, bucket, metric, val)).or_default() += n;
            }
        }
        out.retain(|_, n| *n != 0);
        out
    }

    /// The histogram samples (lag, run duration) folded into one histogram
    /// per (source, bucket of `step` seconds, metric) from `min_bucket` on:
    /// bin -> count, without zeros.
    pub(super) fn fold_hists(
        &self,
        step: i64,
        min_bucket: i64,
    ) -> HashMap<HistKey, BTreeMap<i64, i64>> {
        let mut out: HashMap<HistKey, BTreeMap<i64, i64>> = HashMap::new();
        for (&(src, minute, metric, bin), &n) in &self.sums {
            let bucket = minute.div_euclid(step) * step;
            if bucket >= min_bucket && is_hist_metric(metric) {
                *out.entry((src, bucket, metric))
                    .or_default()
                    .entry(bin)
                    .or_default() += n;
            }
        }
        for h in out.values_mut() {
            h.retain(|_, n| *n != 0);
        }
        out.retain(|_, h| !h.is_empty());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::contribution::{Counter, Metric};

    fn c(metric: Metric, sec: i64, val: Option<i64>, n: i64) -> Contribution {
        Contribution {
            source_id: 1,
            metric,
            sec: Some(sec),
            val,
            n,
            label: None,
        }
    }

    #[test]
    fn pending_sums_fold_into_buckets_and_drop_zeros() {
        let mut p = Pending::default();
        let received = Metric::Counter(Counter::Received);
        p.add(&c(received, 3_600 + 5, None, 2));
        p.add(&c(received, 3_600 + 65, None, 3));
        p.add(&c(received, 7_200 + 1, None, 1));
        p.add(&c(received, 7_200 + 2, None, -1));
        p.add(&c(Metric::Backlog, 0, None, 9));
        p.add(&c(Metric::Lag, 10, Some(5_000), 1));
        let hours = p.fold(3_600, i64::MIN);
        assert_eq!(hours.get(&(1, 3_600, "received", 0)), Some(&5));
        assert_eq!(hours.get(&(1, 7_200, "received", 0)), None, "zero dropped");
        assert!(hours.keys().all(|k| k.2 != "lag"), "lag is folded apart");
        p.add(&c(Metric::RunDuration, 50, Some(90_000), 1));
        assert!(
            p.fold(3_600, i64::MIN)
                .keys()
                .all(|k| k.2 != "run_duration"),
            "run duration is folded apart"
        );
        let bin = i64::from(crate::live::histogram::bin(5_000));
        p.add(&c(Metric::Lag, 20, Some(5_001), 1));
        p.add(&c(Metric::Lag, 30, Some(7), 2));
        p.add(&c(Metric::Lag, 40, Some(7), -2));
        let hists = p.fold_hists(3_600, i64::MIN);
        assert_eq!(hists.len(), 2);
        assert_eq!(
            hists[&(1, 0, "run_duration")],
            BTreeMap::from([(i64::from(crate::live::histogram::bin(90_000)), 1)])
        );
        assert_eq!(
            hists[&(1, 0, "lag")],
            BTreeMap::from([(bin, 2)]),
            "7 ms cancelled out"
        );
        let minutes = p.fold(60, 3_600);
        assert_eq!(
            minutes.len(),
            2,
            "minutes before the floor are skipped: {minutes:?}"
        );
    }
}
