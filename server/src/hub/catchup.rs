//! Catch-up of a resuming event subscriber, shared by `/ws` and the SSE
//! stream: when the hub's ring no longer holds everything after the
//! subscriber's position, the missing events are read from the outbox in
//! batches (written by the transport), and once the ring covers the rest the
//! subscriber is registered for live frames. The hub takes the ring check and
//! the registration under one lock, so the switch from outbox to live has no
//! gap and no duplicate.
//!
//! The transport owns "last seq written": it passes it in, writes the frames
//! of a [`CatchUp::Batch`] that are above it, then advances it to `covered`
//! (seqs between the frames are holes or filtered out, never events to come).
//!
//! Retention: when the outbox was pruned past the subscriber's position
//! (`monitor.outbox_pruned.upto`, sql/0013, is above `since`), events it
//! missed may be gone. The first step that needs the outbox then says so
//! ([`CatchUp::Pruned`]) instead of reading on silently; the session tells
//! the client with an explicit resync and catch-up goes on with the events
//! still kept.

use std::sync::Arc;

use crate::db::Pool;

use super::{EventFilter, EventFrame, Hub, Resume, Subscriber};
use crate::listen::event::{Event, COLUMNS};
use crate::live::Live;

/// Events read per outbox query.
pub const OUTBOX_BATCH: i64 = 1_000;

/// One step of catch-up.
#[derive(Debug)]
pub enum CatchUp {
    /// Registered for live frames (the ring's backlog is already queued).
    Live,
    /// Frames read from the outbox; after writing them the subscriber's
    /// position is `covered`. Call [`step`] again.
    Batch {
        /// Event frames in seq order (those passing the filter).
        frames: Arc<[EventFrame]>,
        /// Every event up to this seq is in `frames` or filtered out.
        covered: i64,
    },
    /// The outbox was pruned past `since`: events after it may be gone.
    /// Nothing was registered or read; tell the client, then call [`step`]
    /// again (with `check_pruned` false).
    Pruned {
        /// Every seq at or below this one may have been deleted.
        upto: i64,
    },
}

/// Catches `sub` up from `since` (the last seq it was written) by one step;
/// with `check_pruned`, first checks the outbox's retention horizon when the
/// ring does not reach back to `since`.
pub async fn step(
    hub: &Hub,
    pool: &Pool,
    live: &Live,
    sub: &Arc<Subscriber>,
    since: i64,
    filter: EventFilter,
    check_pruned: bool,
) -> anyhow::Result<CatchUp> {
    let upto = match hub.resume_events(sub, since, filter) {
        Resume::Registered => return Ok(CatchUp::Live),
        Resume::NeedOutbox { upto } => upto,
    };
    if check_pruned {
        let pruned = pruned_upto(pool).await?;
        if since < pruned {
            return Ok(CatchUp::Pruned { upto: pruned });
        }
    }
    let (events, read_upto) = read_outbox(pool, since, upto, filter).await?;
    let names = live.source_names();
    let frames: Arc<[EventFrame]> = events.iter().map(|e| EventFrame::new(e, &names)).collect();
    Ok(CatchUp::Batch {
        frames,
        covered: read_upto,
    })
}

/// The outbox's retention horizon: every seq at or below it may have been
/// deleted (0 when nothing was ever pruned).
pub async fn pruned_upto(pool: &Pool) -> anyhow::Result<i64> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "select coalesce((select upto from monitor.outbox_pruned where id = 1), 0)",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Reads delivered events in `(after, upto]` passing `filter`, at most
/// [`OUTBOX_BATCH`] of them; also returns how far the read covers (`upto`
/// when the batch is not full). Everything up to `upto` is below the
/// delivered watermark, so it is final: holes in it are dead.
pub async fn read_outbox(
    pool: &Pool,
    after: i64,
    upto: i64,
    filter: EventFilter,
) -> anyhow::Result<(Vec<Event>, i64)> {
    let client = pool.get().await?;
    let kinds = match filter {
        EventFilter::All => "",
        EventFilter::Errors => " and kind like 'errors.%'",
    };
    let sql = format!(
        "select {COLUMNS} from monitor.events
          where seq > $1 and seq <= $2{kinds} order by seq limit $3"
    );
    let rows = client.query(&sql, &[&after, &upto, &OUTBOX_BATCH]).await?;
    let events = rows
        .iter()
        .map(|r| Event::from_row(r, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let covered = if (events.len() as i64) < OUTBOX_BATCH {
        upto
    } else {
        events.last().map_or(upto, |e| e.seq)
    };
    Ok((events, covered))
}
