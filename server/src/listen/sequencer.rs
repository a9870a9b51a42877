//! The watermark: turns what the outbox shows at each read (commit order,
//! with holes) into every committed event exactly once, in seq order.
//!
//! Seq values are handed out before commit, so a reader can see seq 7
//! committed while 6 is still running — or rolled back, leaving a hole forever.
//! When a hole is first seen we take a *marker*: a fresh `pg_current_xact_id()`
//! (larger than every transaction id handed out so far, so larger than the id
//! of whatever transaction holds the missing seq). The hole is passed only
//! when a read whose snapshot has `xmin > marker` (every transaction older
//! than the marker has ended) still does not contain it: then it never will.
//!
//! Events are *seen* (and applied to the KPIs) at first sight, in commit
//! order, so a long transaction holding a hole never freezes the figures;
//! they are *delivered* (to subscribers) strictly in seq order once the
//! watermark reaches them. Pure logic, no I/O: the listener does the reads.

use std::collections::{BTreeMap, HashSet};

use super::event::Event;

/// What the next read should ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    /// Read events with seq greater than this (None: buffer full, probe holes only).
    pub after: Option<i64>,
    /// Also read these seqs (open holes).
    pub holes: Vec<i64>,
}

/// Result of feeding one read into the sequencer.
#[derive(Debug, Default)]
pub struct Fed {
    /// Events seen for the first time that the KPIs must apply.
    pub apply: Vec<Event>,
    /// New holes were found: take a marker and call [`Sequencer::set_marker`].
    pub needs_marker: bool,
}

/// An open hole: its marker once taken, and whether a lock look cleared it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Hole {
    marker: Option<i64>,
    cleared: bool,
}

pub use crate::db::xact::older_than;

/// Watermark, holes and the buffer of seen-but-undelivered events.
#[derive(Debug)]
pub struct Sequencer {
    watermark: i64,
    max_seen: i64,
    buffer: BTreeMap<i64, Event>,
    holes: BTreeMap<i64, Hole>,
    /// Seqs already reflected in the warm-up snapshot: delivered but not applied.
    warm: HashSet<i64>,
    /// Events with a seq up to this one are in the aggregates already (the
    /// last warm-up read them from the base tables): delivered, not applied.
    applied_upto: i64,
    cap: usize,
}

impl Sequencer {
    /// Starts after `watermark` (every seq <= it is resolved); `warm` lists the
    /// seqs above it that the warm-up already counted; `cap` bounds the buffer.
    pub fn new(watermark: i64, warm: HashSet<i64>, cap: usize) -> Self {
        Sequencer {
            watermark,
            max_seen: watermark,
            buffer: BTreeMap::new(),
            holes: BTreeMap::new(),
            warm,
            applied_upto: watermark,
            cap: cap.max(1),
        }
    }

    /// After a re-warm (the aggregates re-read from the base tables, see
    /// `db::warm`): every seq up to `d0` and the seqs in `counted` are in the
    /// aggregates, so they are no longer applied when seen; delivery goes on
    /// from the watermark unchanged (nothing is skipped or repeated on the
    /// event stream). Every event seen so far was committed before `d0` was
    /// read, so its seq is at most `d0`.
    pub fn rebase(&mut self, d0: i64, counted: HashSet<i64>) {
        debug_assert!(self.max_seen <= d0, "seen {} above d0 {d0}", self.max_seen);
        self.applied_upto = self.applied_upto.max(d0);
        self.warm = counted;
    }

    /// Every seq up to this one has been delivered or is a dead hole.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Open holes.
    pub fn open_holes(&self) -> usize {
        self.holes.len()
    }

    /// Events seen but waiting for a hole before them.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// What to read next.
    pub fn plan(&self) -> ReadPlan {
        ReadPlan {
            after: (self.buffer.len() < self.cap).then_some(self.max_seen),
            holes: self.holes.keys().copied().collect(),
        }
    }

    /// Feeds one read, made with the plan from [`Sequencer::plan`]: `rows` are
    /// the events it returned (any order), `xmin` its snapshot's xmin.
    pub fn feed(&mut self, plan: &ReadPlan, rows: Vec<Event>, xmin: i64) -> Fed {
        let mut fed = Fed::default();
        let mut rows = rows;
        rows.sort_by_key(|e| e.seq);
        for e in rows {
            let seq = e.seq;
            if seq <= self.watermark || self.buffer.contains_key(&seq) {
                continue; // already delivered or buffered
            }
            let was_hole = self.holes.remove(&seq).is_some();
            if !was_hole {
                if seq <= self.max_seen {
                    continue; // neither hole nor new: a dead hole already passed
                }
                for missing in (self.max_seen + 1)..seq {
                    self.holes.insert(missing, Hole::default());
                    fed.needs_marker = true;
                }
                self.max_seen = seq;
            }
            let counted = self.warm.remove(&seq);
            if seq > self.applied_upto && !counted {
                fed.apply.push(e.clone());
            }
            self.buffer.insert(seq, e);
        }
        // Holes probed by this read and proven finished before it (xmin past
        // their marker, or cleared by a lock look): dead.
        let probed: HashSet<i64> = plan.holes.iter().copied().collect();
        self.holes.retain(|seq, h| {
            let finished = h.cleared || matches!(h.marker, Some(m) if xmin > m);
            !(probed.contains(seq) && finished)
        });
        fed
    }

    /// True when some hole still waits for its marker.
    pub fn unmarked_holes(&self) -> bool {
        self.holes.values().any(|h| h.marker.is_none())
    }

    /// True when some marked hole is not cleared yet (a lock look may help).
    pub fn uncleared_holes(&self) -> bool {
        self.holes
            .values()
            .any(|h| h.marker.is_some() && !h.cleared)
    }

    /// Records the marker for every hole that has none yet.
    pub fn set_marker(&mut self, marker: i64) {
        for h in self.holes.values_mut() {
            if h.marker.is_none() {
                h.marker = Some(marker);
            }
        }
    }

    /// A look at `pg_locks`: `holders` are the 32-bit xids of the transactions
    /// holding a lock on `monitor.events` now. Clears every marked hole with
    /// no holder older than its marker (its writer has ended).
    pub fn clear(&mut self, holders: &[u32]) {
        for h in self.holes.values_mut() {
            if let Some(m) = h.marker {
                if !holders.iter().any(|&x| older_than(x, m)) {
                    h.cleared = true;
                }
            }
        }
    }

    /// Advances the watermark over delivered events and dead holes; returns
    /// the events now deliverable, in seq order.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let next = self.watermark + 1;
            if next > self.max_seen {
                break;
            }
            if let Some(e) = self.buffer.remove(&next) {
                out.push(e);
            } else if self.holes.contains_key(&next) {
                break;
            }
            // else: a dead hole (removed from `holes`): pass it
            self.watermark = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(seq: i64) -> Event {
        Event {
            seq,
            xid: seq,
            at: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
            kind: "raw_records.insert".into(),
            source_id: Some(1),
            rows: 1,
            summary: json!({}),
        }
    }

    fn seqs(es: &[Event]) -> Vec<i64> {
        es.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn in_order_events_flow_straight_through() {
        let mut s = Sequencer::new(0, HashSet::new(), 100);
        let p = s.plan();
        assert_eq!(p.after, Some(0));
        let fed = s.feed(&p, vec![ev(2), ev(1), ev(3)], 10);
        assert_eq!(seqs(&fed.apply), vec![1, 2, 3]);
        assert!(!fed.needs_marker);
        assert_eq!(seqs(&s.drain()), vec![1, 2, 3]);
        assert_eq!(s.watermark(), 3);
    }

    #[test]
    fn out_of_order_commit_waits_for_the_hole_then_delivers_in_order() {
        let mut s = Sequencer::new(0, HashSet::new(), 100);
        let p = s.plan();
        let fed = s.feed(&p, vec![ev(2)], 10);
        assert_eq!(seqs(&fed.apply), vec![2], "applied at first sight");
        assert!(fed.needs_marker);
        s.set_marker(50);
        assert!(s.drain().is_empty());
        // xmin not past the marker: the hole stays even though not found.
        let p = s.plan();
        assert_eq!(p.holes, vec![1]);
        s.feed(&p, vec![], 40);
        assert!(s.drain().is_empty());
        // the hole's transaction commits
        let p = s.plan();
        let fed = s.feed(&p, vec![ev(1)], 45);
        assert_eq!(seqs(&fed.apply), vec![1]);
        assert_eq!(seqs(&s.drain()), vec![1, 2]);
        assert_eq!(s.open_holes(), 0);
    }

    #[test]
    fn rolled_back_hole_is_passed_once_xmin_exceeds_marker() {
        let mut s = Sequencer::new(0, HashSet::new(), 100);
        let p = s.plan();
        s.feed(&p, vec![ev(1), ev(3)], 10);
        s.set_marker(20);
        assert_eq!(seqs(&s.drain()), vec![1]);
        let p = s.plan();
        s.feed(&p, vec![], 21);
        assert_eq!(seqs(&s.drain()), vec![3]);
        assert_eq!(s.watermark(), 3);
    }

    #[test]
    fn marker_taken_after_a_read_does_not_resolve_with_that_read() {
        let mut s = Sequencer::new(0, HashSet::new(), 100);
        let p = s.plan();
        // hole 1 found by this read; xmin is already huge but no marker existed.
        s.feed(&p, vec![ev(2)], 1_000);
        assert_eq!(s.open_holes(), 1);
        assert!(s.unmarked_holes());
        s.set_marker(2_000);
        assert!(!s.unmarked_holes());
        let p = s.plan();
        s.feed(&p, vec![], 1_500);
        assert_eq!(s.open_holes(), 1);
    }

    #[test]
    fn a_lock_look_clears_holes_despite_an_old_xmin_elsewhere() {
        let mut s = Sequencer::new(0, HashSet::new(), 100);
        let p = s.plan();
        s.feed(&p, vec![ev(2)], 10);
        s.set_marker(500);
        // A writer older than the marker still holds the lock: not cleared.
        s.clear(&[499]);
        let p = s.plan();
        s.feed(&p, vec![], 10);
        assert_eq!(s.open_holes(), 1);
        // Only a younger writer holds it; xmin is still old (another database).
        s.clear(&[501]);
        let p = s.plan();
        s.feed(&p, vec![], 10);
        assert_eq!(seqs(&s.drain()), vec![2]);
        assert_eq!(s.open_holes(), 0);
    }

    #[test]
    fn duplicates_and_rereads_are_ignored() {
        let mut s = Sequencer::new(0, HashSet::new(), 100);
        let p = s.plan();
        s.feed(&p, vec![ev(1), ev(3)], 10);
        s.set_marker(11);
        let p = s.plan();
        let fed = s.feed(&p, vec![ev(3), ev(1)], 10);
        assert!(fed.apply.is_empty());
        let p = s.plan();
        let fed = s.feed(&p, vec![ev(2), ev(3)], 12);
        assert_eq!(seqs(&fed.apply), vec![2]);
        assert_eq!(seqs(&s.drain()), vec![1, 2, 3]);
        let p = s.plan();
        assert!(s.feed(&p, vec![ev(2), ev(3)], 13).apply.is_empty());
    }

    #[test]
    fn warm_events_are_delivered_but_not_applied() {
        let mut s = Sequencer::new(5, HashSet::from([6, 7]), 100);
        let p = s.plan();
        let fed = s.feed(&p, vec![ev(6), ev(7), ev(8)], 10);
        assert_eq!(seqs(&fed.apply), vec![8]);
        assert_eq!(seqs(&s.drain()), vec![6, 7, 8]);
    }

    #[test]
    fn after_a_rebase_events_up_to_d0_and_counted_ones_are_delivered_not_applied() {
        let mut s = Sequencer::new(0, HashSet::new(), 100);
        let p = s.plan();
        // 1 and 3 seen (applied); 2 is a hole whose writer is still running.
        let fed = s.feed(&p, vec![ev(1), ev(3)], 10);
        assert_eq!(seqs(&fed.apply), vec![1, 3]);
        s.set_marker(20);
        assert_eq!(seqs(&s.drain()), vec![1]);
        // Re-warm: d0 = 4 (2 committed meanwhile, 4 too), 6 counted above it.
        s.rebase(4, HashSet::from([6]));
        let p = s.plan();
        let fed = s.feed(&p, vec![ev(2), ev(4), ev(5), ev(6), ev(7)], 30);
        assert_eq!(
            seqs(&fed.apply),
            vec![5, 7],
            "only what the re-warm did not read"
        );
        assert_eq!(
            seqs(&s.drain()),
            vec![2, 3, 4, 5, 6, 7],
            "delivery unchanged"
        );
    }

    #[test]
    fn full_buffer_stops_reading_new_events_but_keeps_probing_holes() {
        let mut s = Sequencer::new(0, HashSet::new(), 2);
        let p = s.plan();
        s.feed(&p, vec![ev(2), ev(3)], 10);
        s.set_marker(100);
        let p = s.plan();
        assert_eq!(p.after, None);
        assert_eq!(p.holes, vec![1]);
        s.feed(&p, vec![ev(1)], 50);
        assert_eq!(seqs(&s.drain()), vec![1, 2, 3]);
        assert_eq!(s.plan().after, Some(3));
    }
}
