//! Per-source time buckets: 1-second buckets for the short windows and
//! 1-minute buckets for the long ones, plus the gauges (backlog, runs
//! running, last record). Every contribution goes to both bucket maps;
//! buckets older than the longest window they serve are pruned.

use std::borrow::Cow;
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

    /// Removes another slot (a bucket leaving a running window sum).
    pub fn subtract(&mut self, other: &Slot) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a -= b;
        }
        for (code, n) in &other.codes {
            add_code(&mut self.codes, code, -*n);
        }
        self.lag.subtract(&other.lag);
        self.run_duration.subtract(&other.run_duration);
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

/// A window's buckets over `[from, to)`, summed once and then kept current:
/// [`Series::apply`] adds a contribution that falls inside, and
/// [`Series::advance`] subtracts the buckets that leave and adds the ones that
/// enter as the window moves. A KPI snapshot then merges one slot per source
/// instead of summing the window's buckets (60 to 1,440 per source) again
/// after every event.
#[derive(Debug, Clone, Default)]
struct RunningSum {
    from: i64,
    to: i64,
    slot: Slot,
}

/// First bucket key still held at `now_sec` for `granularity` (older
/// contributions are not kept, and pruning drops older buckets).
fn retained_from(granularity: Granularity, now_sec: i64) -> i64 {
    match granularity {
        Granularity::Second => now_sec - KEEP_SECONDS,
        Granularity::Minute => (now_sec.div_euclid(60) - KEEP_MINUTES) * 60,
    }
}

/// Bucket key of second `sec` for `granularity`.
fn bucket_of(granularity: Granularity, sec: i64) -> i64 {
    match granularity {
        Granularity::Second => sec,
        Granularity::Minute => sec.div_euclid(60) * 60,
    }
}

/// The live state of one source.
#[derive(Debug, Clone, Default)]
pub struct Series {
    seconds: BTreeMap<i64, Slot>,
    minutes: BTreeMap<i64, Slot>,
    /// Running sums, indexed like [`Window::ALL`].
    running: [Option<RunningSum>; 4],
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
                if sec >= retained_from(Granularity::Second, now_sec) {
                    bump(&mut self.seconds, sec, c);
                }
                let minute = bucket_of(Granularity::Minute, sec);
                if minute >= retained_from(Granularity::Minute, now_sec) {
                    bump(&mut self.minutes, minute, c);
                }
                self.drop_unretained_sums(now_sec);
                for (w, run) in Window::ALL.iter().zip(self.running.iter_mut()) {
                    if let Some(r) = run {
                        let key = bucket_of(w.granularity(), sec);
                        if key >= r.from && key < r.to {
                            r.slot.apply(c);
                        }
                    }
                }
            }
        }
    }

    /// Forgets running sums that reach back to buckets no longer held (they
    /// could neither take a late contribution there nor subtract those
    /// buckets when moving on); the next [`Series::advance`] sums afresh.
    fn drop_unretained_sums(&mut self, now_sec: i64) {
        for (w, run) in Window::ALL.iter().zip(self.running.iter_mut()) {
            if run
                .as_ref()
                .is_some_and(|r| r.from < retained_from(w.granularity(), now_sec))
            {
                *run = None;
            }
        }
    }

    /// Drops buckets no window needs any more.
    pub fn prune(&mut self, now_sec: i64) {
        let keep_sec = retained_from(Granularity::Second, now_sec);
        self.seconds = self.seconds.split_off(&keep_sec);
        let keep_min = retained_from(Granularity::Minute, now_sec);
        self.minutes = self.minutes.split_off(&keep_min);
        self.drop_unretained_sums(now_sec);
    }

    /// Moves `window`'s running sum forward to `[from, to)`: the buckets
    /// that left are subtracted and those that entered added (summed afresh
    /// when there is none yet or the window jumped past it). A move backwards
    /// (a reader whose clock is behind) leaves it as it is.
    pub fn advance(&mut self, window: Window, from: i64, to: i64) {
        let g = window.granularity();
        let map = match g {
            Granularity::Second => &self.seconds,
            Granularity::Minute => &self.minutes,
        };
        match &mut self.running[window.index()] {
            Some(r) if (r.from, r.to) == (from, to) || to < r.to => return,
            Some(r) if from < r.to && to - from == r.to - r.from => {
                for (_, slot) in map.range(r.from..from) {
                    r.slot.subtract(slot);
                }
                for (_, slot) in map.range(r.to..to) {
                    r.slot.merge(slot);
                }
                (r.from, r.to) = (from, to);
                return;
            }
            _ => {}
        }
        let slot = self.sum_range(g, from, to);
        self.running[window.index()] = Some(RunningSum { from, to, slot });
    }

    /// True when [`Series::advance`] would change `window`'s running sum.
    pub fn needs_advance(&self, window: Window, from: i64, to: i64) -> bool {
        match &self.running[window.index()] {
            Some(r) => (r.from, r.to) != (from, to) && to > r.to,
            None => true,
        }
    }

    /// Sum of the buckets in `[from, to)` (epoch seconds) for `window`: the
    /// running sum when it covers exactly that, else summed from the buckets.
    pub fn sum(&self, window: Window, from: i64, to: i64) -> Cow<'_, Slot> {
        match &self.running[window.index()] {
            Some(r) if (r.from, r.to) == (from, to) => Cow::Borrowed(&r.slot),
            _ => Cow::Owned(self.sum_range(window.granularity(), from, to)),
        }
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
    fn running_window_sums_equal_summing_the_buckets_as_time_moves() {
        // A pseudo-random walk: contributions (some late, some removals,
        // with codes and lag samples), time jumping by 0-90 s, pruning, and
        // each window's running sum checked against a fresh bucket sum.
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |m: i64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % m as u64) as i64
        };
        let mut now = 1_000_000 * 60 + 13;
        let mut s = Series::default();
        for step in 0..5_000 {
            for _ in 0..next(4) {
                let reach = if next(10) == 0 { 5_000 } else { 120 };
                let sec = now - next(reach);
                let metric = match next(3) {
                    0 => Metric::Counter(Counter::Errors),
                    1 => Metric::Lag,
                    _ => Metric::Counter(Counter::Received),
                };
                let n = if next(5) == 0 { -1 } else { 1 + next(3) };
                let mut con = c(metric, sec, n);
                con.val = Some(next(2_000));
                con.label =
                    (metric == Metric::Counter(Counter::Errors)).then(|| format!("E{}", next(4)));
                s.apply(&con, now);
            }
            now += match next(20) {
                0 => 60 + next(600),
                1 => 100 + next(200),
                2..=4 => 0,
                _ => next(3),
            };
            if step % 50 == 0 {
                s.prune(now);
            }
            for w in Window::ALL {
                if next(3) == 0 {
                    continue; // not read this time: its sum falls behind
                }
                let (from, to) = w.bounds(now * 1000);
                s.advance(w, from, to);
                assert!(!s.needs_advance(w, from, to));
                let running = s.sum(w, from, to);
                assert!(matches!(running, Cow::Borrowed(_)));
                let mut fresh = s.sum_range(w.granularity(), from, to);
                let mut running = running.into_owned();
                running.codes.sort();
                fresh.codes.sort();
                assert_eq!(running, fresh, "step {step}, window {}", w.name());
            }
        }
        // A reader whose clock is behind gets a fresh sum, not a rewound one.
        let (from, to) = Window::M1.bounds((now - 5) * 1000);
        assert!(!s.needs_advance(Window::M1, from, to));
        assert!(matches!(s.sum(Window::M1, from, to), Cow::Owned(_)));
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
