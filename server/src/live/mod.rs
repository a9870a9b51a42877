//! Rolling KPI aggregates held in memory: per source and in total, over the
//! 1m / 5m / 1h / 24h windows. One writer (the listener task) applies events;
//! REST handlers and the KPI ticker read snapshots. The state sits behind one
//! `RwLock` so a snapshot is consistent with the `seq` it reports; the lock is
//! never held across an `.await`.
//!
//! Snapshots are cached per (window, scope): a snapshot depends only on the
//! state (whose `version` every change bumps) and on the window's bounds at
//! `now` (which move once a second or minute), so between two changes every
//! reader gets the same `Arc` instead of summing hundreds of buckets again
//! (`GET /api/kpis` at 1,000 requests/s spent most of its CPU there). When
//! the state did change, each source's window is a running sum kept current
//! by every event (see `series::RunningSum`), so a recompute merges one slot
//! per source.

pub mod contribution;
pub mod histogram;
pub mod series;
pub mod snapshot;
pub mod window;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use contribution::Contribution;
use series::{Series, Slot};
use snapshot::{rfc3339, Figures, WindowKpis};
use window::Window;

/// A source as known from `ingest.sources`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// `ingest.sources.id`.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Kind (api, file, …).
    pub kind: Option<String>,
    /// Expected interval between records, in seconds.
    pub expected_interval_secs: Option<f64>,
}

/// One source's sums over an arbitrary window, and its gauges (see
/// [`Live::source_windows`]).
#[derive(Debug, Clone, Default)]
pub struct SourceWindow {
    /// `ingest.sources.id`.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Expected interval between records, in seconds.
    pub expected_interval_secs: Option<f64>,
    /// Counters and lag histogram over the window.
    pub slot: Slot,
    /// Pending records now.
    pub backlog: i64,
    /// Runs running now.
    pub runs_running: i64,
    /// Newest `received_at` (epoch ms).
    pub last_received_ms: Option<i64>,
}

/// Everything the live aggregates hold.
#[derive(Debug, Default)]
pub struct LiveState {
    sources: BTreeMap<i64, SourceInfo>,
    series: HashMap<i64, Series>,
    /// Delivered watermark: every event with seq <= this is applied.
    seq: i64,
    /// Events applied to the aggregates since start (warm-up excluded).
    applied: u64,
    /// Bumped by every change (the snapshot cache's validity).
    version: u64,
}

/// Cache key: window and scope.
type CacheKey = (Window, Option<BTreeSet<String>>);
/// Cached snapshot: the bounds and state version it was computed for.
type Cached = ((i64, i64), u64, Arc<WindowKpis>);
/// Entries kept before the cache is cleared (scopes are few in practice).
const CACHE_CAP: usize = 256;

/// Shared handle to the live aggregates.
#[derive(Debug, Default)]
pub struct Live {
    state: RwLock<LiveState>,
    cache: Mutex<HashMap<CacheKey, Cached>>,
}

impl Live {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, LiveState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, LiveState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces everything with a warmed-up state.
    pub fn reset(
        &self,
        sources: Vec<SourceInfo>,
        contributions: &[Contribution],
        seq: i64,
        now_sec: i64,
    ) {
        let mut st = LiveState {
            sources: sources.into_iter().map(|s| (s.id, s)).collect(),
            seq,
            ..LiveState::default()
        };
        for c in contributions {
            st.series.entry(c.source_id).or_default().apply(c, now_sec);
        }
        let mut cur = self.write();
        st.version = cur.version + 1;
        *cur = st;
    }

    /// Replaces the aggregates with a re-read of the base tables (after a
    /// TRUNCATE, see `listen`), keeping the delivered watermark and the count
    /// of applied events.
    pub fn rewarm(&self, sources: Vec<SourceInfo>, contributions: &[Contribution], now_sec: i64) {
        let mut series: HashMap<i64, Series> = HashMap::new();
        for c in contributions {
            series.entry(c.source_id).or_default().apply(c, now_sec);
        }
        let mut st = self.write();
        st.sources = sources.into_iter().map(|s| (s.id, s)).collect();
        st.series = series;
        st.version += 1;
    }

    /// Sources whose newest record may just have been deleted or moved away
    /// (a negative `last_received` contribution at or above the newest time
    /// held): their `last_received_at` must be re-read from the base table.
    pub fn stale_last_received(&self, contributions: &[Contribution]) -> Vec<i64> {
        let st = self.read();
        let mut ids: Vec<i64> = contributions
            .iter()
            .filter(|c| c.metric == contribution::Metric::LastReceived && c.n < 0)
            .filter(|c| {
                let held = st.series.get(&c.source_id).and_then(|s| s.last_received_ms);
                matches!((held, c.val), (Some(h), Some(v)) if v >= h)
            })
            .map(|c| c.source_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Sets the newest `received_at` of sources as re-read from the base
    /// table (None: the source has no record left).
    pub fn set_last_received(&self, newest: &[(i64, Option<i64>)]) {
        let mut st = self.write();
        for &(id, ms) in newest {
            st.series.entry(id).or_default().last_received_ms = ms;
        }
        st.version += 1;
    }

    /// Replaces the known sources (after a change to `ingest.sources`).
    pub fn set_sources(&self, sources: Vec<SourceInfo>) {
        let mut st = self.write();
        st.sources = sources.into_iter().map(|s| (s.id, s)).collect();
        st.version += 1;
    }

    /// Applies the contributions of one event (first sight, any seq order).
    pub fn apply(&self, contributions: &[Contribution], now_sec: i64) {
        let mut st = self.write();
        for c in contributions {
            st.series.entry(c.source_id).or_default().apply(c, now_sec);
        }
        st.applied += 1;
        st.version += 1;
    }

    /// Advances the delivered watermark.
    pub fn set_seq(&self, seq: i64) {
        if seq <= self.read().seq {
            return; // one writer (the listener): nothing to change
        }
        let mut st = self.write();
        if seq > st.seq {
            st.seq = seq;
            st.version += 1;
        }
    }

    /// The delivered watermark.
    pub fn seq(&self) -> i64 {
        self.read().seq
    }

    /// Events applied since start.
    pub fn applied(&self) -> u64 {
        self.read().applied
    }

    /// Drops buckets older than any window needs.
    pub fn prune(&self, now_sec: i64) {
        let mut st = self.write();
        for s in st.series.values_mut() {
            s.prune(now_sec);
        }
        st.version += 1;
    }

    /// Known sources by id.
    pub fn sources(&self) -> Vec<SourceInfo> {
        self.read().sources.values().cloned().collect()
    }

    /// Name of a source id (falls back to `#<id>` for one not loaded yet).
    pub fn source_name(&self, id: i64) -> String {
        self.read()
            .sources
            .get(&id)
            .map_or_else(|| format!("#{id}"), |s| s.name.clone())
    }

    /// Names by id, for serializing many events at once.
    pub fn source_names(&self) -> HashMap<i64, String> {
        self.read()
            .sources
            .values()
            .map(|s| (s.id, s.name.clone()))
            .collect()
    }

    /// The figures of `window` at `now_ms`, in total and per source; with a
    /// `scope`, only those sources are listed and counted in the total.
    pub fn kpis(
        &self,
        window: Window,
        now_ms: i64,
        scope: Option<&BTreeSet<String>>,
    ) -> WindowKpis {
        Self::compute(&self.read(), window, now_ms, scope)
    }

    /// [`Live::kpis`], shared: the cached snapshot when neither the state nor
    /// the window's bounds changed since it was computed.
    pub fn kpis_shared(
        &self,
        window: Window,
        now_ms: i64,
        scope: Option<&BTreeSet<String>>,
    ) -> Arc<WindowKpis> {
        let bounds = window.bounds(now_ms);
        let (from, to) = bounds;
        let key: CacheKey = (window, scope.cloned());
        // Lock order: state, then cache (writers never take the cache).
        let mut st = self.read();
        let lock = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((b, v, k)) = lock().get(&key) {
            if *b == bounds && *v == st.version {
                return k.clone();
            }
        }
        if st
            .series
            .values()
            .any(|s| s.needs_advance(window, from, to))
        {
            // The window moved: bring the running sums along (a short write;
            // the figures do not change, so neither does the version).
            drop(st);
            for s in self.write().series.values_mut() {
                s.advance(window, from, to);
            }
            st = self.read();
        }
        let k = Arc::new(Self::compute(&st, window, now_ms, scope));
        let mut cache = lock();
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(key, (bounds, st.version, k.clone()));
        k
    }

    fn compute(
        st: &LiveState,
        window: Window,
        now_ms: i64,
        scope: Option<&BTreeSet<String>>,
    ) -> WindowKpis {
        let (from, to) = window.bounds(now_ms);
        let mut total_slot = Slot::default();
        let (mut backlog, mut running, mut last) = (0, 0, None::<i64>);
        let mut sources = BTreeMap::new();
        let empty = Series::default();
        let mut ids: Vec<i64> = st.sources.keys().copied().collect();
        ids.extend(st.series.keys().filter(|id| !st.sources.contains_key(id)));
        for id in ids {
            let name = st
                .sources
                .get(&id)
                .map_or_else(|| format!("#{id}"), |s| s.name.clone());
            if scope.is_some_and(|s| !s.contains(&name)) {
                continue;
            }
            let series = st.series.get(&id).unwrap_or(&empty);
            let slot = series.sum(window, from, to);
            total_slot.merge(&slot);
            backlog += series.backlog;
            running += series.runs_running;
            last = match (last, series.last_received_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let name = st
                .sources
                .get(&id)
                .map_or_else(|| format!("#{id}"), |s| s.name.clone());
            sources.insert(
                name,
                Figures::from_slot(
                    &slot,
                    series.backlog,
                    series.runs_running,
                    series.last_received_ms,
                ),
            );
        }
        WindowKpis {
            window: window.name(),
            from: rfc3339(from),
            to: rfc3339(to),
            seq: st.seq,
            total: Figures::from_slot(&total_slot, backlog, running, last),
            sources,
        }
    }

    /// All windows at once (the WebSocket `kpis` payload).
    pub fn all_kpis(
        &self,
        now_ms: i64,
        scope: Option<&BTreeSet<String>>,
    ) -> BTreeMap<&'static str, WindowKpis> {
        Window::ALL
            .into_iter()
            .map(|w| (w.name(), (*self.kpis_shared(w, now_ms, scope)).clone()))
            .collect()
    }

    /// Ids of the sources named in `scope`.
    pub fn source_ids(&self, scope: &BTreeSet<String>) -> BTreeSet<i64> {
        self.read()
            .sources
            .values()
            .filter(|s| scope.contains(&s.name))
            .map(|s| s.id)
            .collect()
    }

    /// Each known source's sums over the last `secs` seconds at `now_ms`,
    /// with its gauges (for alert rules, whose windows are not limited to the
    /// four KPI windows). Up to 300 s the 1-second buckets are summed up to
    /// the end of the current second; longer windows (whole minutes) sum
    /// 1-minute buckets up to the end of the current minute.
    pub fn source_windows(&self, secs: i64, now_ms: i64) -> Vec<SourceWindow> {
        let st = self.read();
        let now_sec = now_ms.div_euclid(1000);
        let (granularity, to) = if secs <= 300 {
            (window::Granularity::Second, now_sec + 1)
        } else {
            (
                window::Granularity::Minute,
                now_sec.div_euclid(60) * 60 + 60,
            )
        };
        let empty = Series::default();
        st.sources
            .values()
            .map(|s| {
                let series = st.series.get(&s.id).unwrap_or(&empty);
                SourceWindow {
                    id: s.id,
                    name: s.name.clone(),
                    expected_interval_secs: s.expected_interval_secs,
                    slot: series.sum_range(granularity, to - secs, to),
                    backlog: series.backlog,
                    runs_running: series.runs_running,
                    last_received_ms: series.last_received_ms,
                }
            })
            .collect()
    }

    /// Calls `f(source_id, minute, slot)` for every live 1-minute bucket in
    /// `[from, to)`. The read lock is held during the calls: `f` must not
    /// block (no I/O).
    pub fn for_each_minute(&self, from: i64, to: i64, mut f: impl FnMut(i64, i64, &Slot)) {
        let st = self.read();
        for (id, series) in &st.series {
            for (minute, slot) in series.minutes(from, to) {
                f(*id, minute, slot);
            }
        }
    }

    /// Buckets held across sources.
    pub fn buckets(&self) -> usize {
        self.read().series.values().map(Series::buckets).sum()
    }
}
