//! Time-based behaviour: bursts, bad minutes and stalls planned per source
//! ([`Schedule`]), the pacer that hands out statement permits at the
//! configured rate ([`pace`]), and the effects in force at an instant.

use super::*;

/// A span of time since the simulator started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) from: Duration,
    pub(crate) to: Duration,
}

impl Window {
    pub(crate) fn contains(&self, t: Duration) -> bool {
        self.from <= t && t < self.to
    }
}

/// Bursts, bad minutes and stalls, drawn from the seed for 24 hours (then repeating).
#[derive(Debug)]
pub(crate) struct Schedule {
    pub(crate) start: Instant,
    /// Traffic ×[`BURST_FACTOR`].
    pub(crate) bursts: Vec<Window>,
    /// One source rejects ~40 %.
    pub(crate) bad_minutes: Vec<(Window, usize)>,
    /// Sources with `stalls` write nothing.
    pub(crate) stalls: Vec<Window>,
}

/// Length of the drawn schedule; it repeats after that.
pub(crate) const HORIZON: Duration = Duration::from_secs(24 * 3600);

impl Schedule {
    pub(crate) fn new(seed: u64, start: Instant) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5c4e_d01e_5eed_0001);
        let secs =
            |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_secs(rng.random_range(lo..=hi));
        let mut bursts = Vec::new();
        let mut t = secs(&mut rng, 20, 40);
        while t < HORIZON {
            let len = secs(&mut rng, 8, 12);
            bursts.push(Window {
                from: t,
                to: t + len,
            });
            t += len + secs(&mut rng, 90, 240);
        }
        let mut bad_minutes = Vec::new();
        let mut t = secs(&mut rng, 60, 120);
        while t < HORIZON {
            let source = rng.random_range(0..SOURCES.len());
            bad_minutes.push((
                Window {
                    from: t,
                    to: t + Duration::from_secs(60),
                },
                source,
            ));
            t += secs(&mut rng, 180, 420);
        }
        let mut stalls = Vec::new();
        let mut t = secs(&mut rng, 150, 210);
        while t < HORIZON {
            let len = secs(&mut rng, 240, 420);
            stalls.push(Window {
                from: t,
                to: t + len,
            });
            t += len + secs(&mut rng, 180, 300);
        }
        Schedule {
            start,
            bursts,
            bad_minutes,
            stalls,
        }
    }

    /// Time since start, folded into the horizon.
    pub(crate) fn offset(&self, now: Instant) -> Duration {
        let t = now.saturating_duration_since(self.start);
        Duration::from_nanos((t.as_nanos() % HORIZON.as_nanos()) as u64)
    }

    pub(crate) fn in_burst(&self, now: Instant) -> bool {
        let t = self.offset(now);
        self.bursts.iter().any(|w| w.contains(t))
    }

    pub(crate) fn bad_minute(&self, source: usize, now: Instant) -> bool {
        let t = self.offset(now);
        self.bad_minutes
            .iter()
            .any(|(w, s)| *s == source && w.contains(t))
    }

    pub(crate) fn stalled(&self, source: usize, now: Instant) -> bool {
        SOURCES[source].stalls && {
            let t = self.offset(now);
            self.stalls.iter().any(|w| w.contains(t))
        }
    }
}

/// State shared by the pacer and the writers.
#[derive(Debug)]
pub(crate) struct Shared {
    /// One permit per statement; closed on stop.
    pub(crate) permits: Semaphore,
    pub(crate) schedule: Schedule,
    /// When each source last started a run (to keep every source fresh).
    pub(crate) last_start: Mutex<Vec<Option<Instant>>>,
    pub(crate) stats: Mutex<SimStats>,
}

impl Shared {
    pub(crate) fn stats_snapshot(&self) -> SimStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn record(&self, delta: &SimStats) {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(delta);
    }
}

/// Hands out `rate` statement permits per second (×5 in bursts) until stop,
/// then closes the semaphore so that waiting writers wake up and stop.
pub(crate) async fn pace(
    shared: Arc<Shared>,
    rate: f64,
    writers: usize,
    mut stop: watch::Receiver<bool>,
) {
    let period = Duration::from_secs_f64((1.0 / rate).clamp(0.001, 0.1));
    // Unused permits pile up to at most this (a slow writer must not cause a stampede later).
    let cap = (writers * 2).max((rate * BURST_FACTOR * period.as_secs_f64() * 2.0).ceil() as usize);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut credit = 0.0_f64;
    let mut bursting = false;
    let mut effects = Effects::default();
    while !*stop.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let now = Instant::now();
        let burst = shared.schedule.in_burst(now);
        if burst != bursting {
            bursting = burst;
            tracing::info!(
                burst,
                "simulated traffic {}",
                if burst {
                    "burst begins"
                } else {
                    "back to normal"
                }
            );
        }
        effects.log_changes(&shared.schedule, now);
        let current = if burst { rate * BURST_FACTOR } else { rate };
        credit += current * now.duration_since(last).as_secs_f64();
        last = now;
        let whole = credit.floor();
        credit -= whole;
        let room = cap.saturating_sub(shared.permits.available_permits());
        let add = (whole as usize).min(room);
        if add > 0 {
            shared.permits.add_permits(add);
        }
    }
    shared.permits.close();
}

/// Which sources are stalled or in a bad minute, to log when that changes.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) stalled: Vec<bool>,
    pub(crate) bad: Vec<bool>,
}

impl Effects {
    pub(crate) fn log_changes(&mut self, schedule: &Schedule, now: Instant) {
        self.stalled.resize(SOURCES.len(), false);
        self.bad.resize(SOURCES.len(), false);
        for (i, source) in SOURCES.iter().enumerate() {
            let stalled = schedule.stalled(i, now);
            if stalled != self.stalled[i] {
                self.stalled[i] = stalled;
                tracing::info!(
                    source = source.name,
                    expected_interval_s = source.interval_secs,
                    "simulated source {}",
                    if stalled { "stalls" } else { "resumes" }
                );
            }
            let bad = schedule.bad_minute(i, now);
            if bad != self.bad[i] {
                self.bad[i] = bad;
                tracing::info!(
                    source = source.name,
                    "simulated bad minute {}",
                    if bad {
                        "begins (~40 % rejects)"
                    } else {
                        "ends"
                    }
                );
            }
        }
    }
}
