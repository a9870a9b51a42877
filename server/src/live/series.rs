//! Per-source time buckets: 1-second buckets for the short windows and
//! 1-minute buckets for the long ones, plus the gauges (backlog, runs
//! running, last record). Every contribution goes to both bucket maps;
//! buckets older than the longest window they serve are pruned.

use std::collections::BTreeMap;

use super::contribution::{Contribution, Metric, COUNTERS};
use super::histogram::LagHistogram;
use super::window::{Granularity, Window};

/// Seconds of 1-second buckets kept (covers the 5m window with margin).
pub const KEEP_SECONDS: i64 = 400;
/// Minutes of 1-minute buckets kept (covers the 24h window with margin).
pub const KEEP_MINUTES: i64 = 1_445;

/// Start of the minute buckets that are complete at `now_sec` (with 5
/// minutes of margin): every contribution to a minute at or after it is in
/// the live aggregates (warm-up loaded [`KEEP_MINUTES`] of them, and every
/// event since is applied), so trends take these minutes from memory.
pub fn complete_minutes_from(now_sec: i64) -> i64 {
    (now_sec.div_euclid(60) - (KEEP_MINUTES - 5)) * 60
}

/// What one bucket (or a sum of buckets) holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slot {
    /// Counters, indexed by [`super::contribution::Counter`].
    pub counts: [i64; COUNTERS],
    /// Processing lag samples.
    pub lag: LagHistogram,
    /// Durations of the runs finished.
    pub run_duration: LagHistogram,
    /// Errors and warnings by code.
    pub codes: Vec<(String, i64)>,
}

impl Slot {
    fn apply(&mut self, c: &Contribution) {
        match c.metric {
            Metric::Counter(k) => {
                self.counts[k as usize] += c.n;
                if let Some(code) = &c.label {
                    add_code(&mut self.codes, code, c.n);
                }
            }
            Metric::Lag => self.lag.add(c.val.unwrap_or(0).max(0) as u64, c.n),
            Metric::RunDuration => self.run_duration.add(c.val.unwrap_or(0).max(0) as u64, c.n),
            _ => {}
        }
    }

    /// Adds another slot into this one.
    pub fn merge(&mut self, other: &Slot) {
        self.merge_counts(other);
        self.lag.merge(&other.lag);
        self.run_duration.merge(&other.run_duration);
    }

    /// Adds another slot's counters and codes (not its histograms).
    fn merge_counts(&mut self, other: &Slot) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        for (code, n) in &other.codes {
            add_code(&mut self.codes, code, *n);
        }
    }

    fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
            && self.lag.is_empty()
            && self.run_duration.is_empty()
            && self.codes.is_empty()
    }
}

fn add_code(codes: &mut Vec<(String, i64)>, code: &str, n: i64) {
    match codes.iter_mut().position(|(c, _)| c == code) {
        Some(i) => {
            codes[i].1 += n;
            if codes[i].1 == 0 {
                codes.swap_remove(i);
            }
        }
        None if n != 0 => codes.push((code.to_owned(), n)),
        None => {}
    }
}

/// The live state of one source.
#[derive(Debug, Clone, Default)]
pub struct Series {
    seconds: BTreeMap<i64, Slot>,
    minutes: BTreeMap<i64, Slot>,
    /// Pending records now.
    pub backlog: i64,
    /// Runs in status running now.
    pub runs_running: i64,
    /// Epoch ms of the newest `received_at` seen.
    pub last_received_ms: Option<i64>,
}

impl Series {
    /// Applies one contribution as of `now_sec`.
    pub fn apply(&mut self, c: &Contribution, now_sec: i64) {
        match c.metric {
            Metric::Backlog => self.backlog += c.n,
            Metric::RunsRunning => self.runs_running += c.n,
            Metric::LastReceived => {
                if c.n > 0 {
                    if let Some(v) = c.val {
                        self.last_received_ms = Some(self.last_received_ms.map_or(v, |m| m.max(v)));
                    }
                }
            }
            Metric::Counter(_) | Metric::Lag | Metric::RunDuration => {
                let Some(sec) = c.sec else { return };
                if sec >= now_sec - KEEP_SECONDS {
                    bump(&mut self.seconds, sec, c);
                }
                let minute = sec.div_euclid(60) * 60;
                if minute >= (now_sec.div_euclid(60) - KEEP_MINUTES) * 60 {
                    bump(&mut self.minutes, minute, c);
                }
            }
        }
    }

    /// Drops buckets no window needs any more.
    pub fn prune(&mut self, now_sec: i64) {
        let keep_sec = now_sec - KEEP_SECONDS;
        self.seconds = self.seconds.split_off(&keep_sec);
        let keep_min = (now_sec.div_euclid(60) - KEEP_MINUTES) * 60;
        self.minutes = self.minutes.split_off(&keep_min);
    }

    /// Sum of the buckets in `[from, to)` (epoch seconds) for `window`.
    pub fn sum(&self, window: Window, from: i64, to: i64) -> Slot {
        self.sum_range(window.granularity(), from, to)
    }

    /// Sum of the `granularity` buckets in `[from, to)` (epoch seconds).
    ///
    /// Every contribution is in both maps, so a second-granularity sum takes
    /// the whole minutes inside `[from, to)` from the minute buckets and only
    /// the ragged edges from the second buckets: a 5-minute window sums about
    /// 60 buckets instead of 300 (the KPI snapshot's main cost).
    pub fn sum_range(&self, granularity: Granularity, from: i64, to: i64) -> Slot {
        let (inner_from, inner_to) = (
            from.div_euclid(60) * 60 + if from.rem_euclid(60) == 0 { 0 } else { 60 },
            to.div_euclid(60) * 60,
        );
        let ranges: Vec<(&BTreeMap<i64, Slot>, i64, i64)> = match granularity {
            Granularity::Minute => vec![(&self.minutes, from, to)],
            Granularity::Second if inner_from < inner_to => vec![
                (&self.seconds, from, inner_from),
                (&self.minutes, inner_from, inner_to),
                (&self.seconds, inner_to, to),
            ],
            Granularity::Second => vec![(&self.seconds, from, to)],
        };
        let mut out = Slot::default();
        let mut lags = Vec::new();
        let mut durations = Vec::new();
        let slots = ranges
            .into_iter()
            .flat_map(|(map, a, b)| map.range(a..b.max(a)).map(|(_, s)| s));
        for slot in slots {
            out.merge_counts(slot);
            lags.push(&slot.lag);
            if !slot.run_duration.is_empty() {
                durations.push(&slot.run_duration);
            }
        }
        out.lag = LagHistogram::sum(lags);
        out.run_duration = LagHistogram::sum(durations);
        out
    }

    /// The 1-minute buckets in `[from, to)` (epoch seconds, minute starts).
    pub fn minutes(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, &Slot)> {
        self.minutes.range(from..to.max(from)).map(|(k, v)| (*k, v))
    }

    /// Buckets held (for metrics and memory tests).
    pub fn buckets(&self) -> usize {
        self.seconds.len() + self.minutes.len()
    }
}

fn bump(map: &mut BTreeMap<i64, Slot>, key: i64, c: &Contribution) {
    let slot = map.entry(key).or_default();
    slot.apply(c);
    if slot.is_empty() {
        map.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::contribution::Counter;

    fn c(metric: Metric, sec: i64, n: i64) -> Contribution {
        Contribution {
            source_id: 1,
            metric,
            sec: Some(sec),
            val: Some(10),
            n,
            label: None,
        }
    }

    #[test]
    fn windows_sum_their_buckets_and_prune_keeps_what_they_need() {
        let now = 1_000_000 * 60;
        let mut s = Series::default();
        s.apply(&c(Metric::Counter(Counter::Received), now - 30, 2), now);
        s.apply(&c(Metric::Counter(Counter::Received), now - 200, 3), now);
        s.apply(&c(Metric::Counter(Counter::Received), now - 7200, 4), now);
        s.apply(&c(Metric::Lag, now - 10, 1), now);
        let (f, t) = Window::M1.bounds(now * 1000);
        assert_eq!(s.sum(Window::M1, f, t).counts[0], 2);
        let (f, t) = Window::M5.bounds(now * 1000);
        assert_eq!(s.sum(Window::M5, f, t).counts[0], 5);
        let (f, t) = Window::H24.bounds(now * 1000);
        assert_eq!(s.sum(Window::H24, f, t).counts[0], 9);
        assert_eq!(s.sum(Window::H24, f, t).lag.count(), 1);
        s.prune(now + 3600);
        let (f, t) = Window::H24.bounds((now + 3600) * 1000);
        assert_eq!(s.sum(Window::H24, f, t).counts[0], 9);
        s.prune(now + 86_400 * 2);
        assert_eq!(s.buckets(), 0);
    }

    #[test]
    fn second_sums_take_whole_minutes_from_minute_buckets_and_equal_brute_force() {
        let now = 1_000_000 * 60 + 37;
        let mut s = Series::default();
        let mut applied = Vec::new();
        for i in 0..390 {
            let sec = now - i;
            let n = 1 + (i * 7) % 5;
            s.apply(&c(Metric::Counter(Counter::Received), sec, n), now);
            s.apply(&c(Metric::Lag, sec, 1), now);
            applied.push((sec, n));
        }
        for (from, to) in [
            (now - 299, now + 1),
            (now - 59, now + 1),
            (now - 37, now - 36),
            (now - 120 - 37, now - 37),
            (now - 300 - 37, now - 37),
        ] {
            let want: i64 = applied
                .iter()
                .filter(|(sec, _)| *sec >= from && *sec < to)
                .map(|(_, n)| n)
                .sum();
            let got = s.sum_range(Granularity::Second, from, to);
            assert_eq!(got.counts[0], want, "[{from}, {to})");
            assert_eq!(got.lag.count(), to - from, "[{from}, {to})");
        }
    }

    #[test]
    fn an_update_that_cancels_leaves_no_bucket() {
        let now = 600_000;
        let mut s = Series::default();
        s.apply(&c(Metric::Counter(Counter::Normalized), now, 1), now);
        s.apply(&c(Metric::Counter(Counter::Normalized), now, -1), now);
        assert_eq!(s.buckets(), 0);
    }
}
