//! CSV exports of the runs, records and errors lists.
//!
//! - Synchronous (`GET /api/export/{runs|records|errors}.csv`): up to
//!   [`SYNC_MAX_ROWS`] rows, one statement streamed row by row from
//!   PostgreSQL (`query_raw`) into the HTTP body in ~64 KiB chunks, so memory
//!   stays constant whatever the row count; a cheap capped count refuses
//!   bigger exports up front (400 `export_too_large`, pointing to the jobs).
//!   Count and rows are read in one repeatable-read snapshot ([`ReadTx`]), so
//!   rows committed in between can neither exceed the cap nor push rows that
//!   were counted out of a newest-first export.
//! - Jobs ([`jobs`]): a background task writes a file in batches, each one
//!   short keyset-paged statement (so every statement stays within the pool's
//!   statement timeout and no snapshot is held open on the pipeline's
//!   database for the whole export).
//!
//! RFC 4180 (the `csv` crate: CRLF record terminators, fields with commas,
//! quotes or newlines quoted, quotes doubled), a header row, UTC ISO-8601
//! timestamps with microseconds, empty fields for NULL, and JSON columns
//! (`payload`, `details`) as PostgreSQL's jsonb text. Text cells from the
//! data that a spreadsheet would evaluate as a formula get a leading `'`
//! unless `--csv-raw-formulas` ([`CsvCells`]).

pub mod jobs;

use std::pin::Pin;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio_postgres::RowStream;

use crate::db::keyset::Order;
use crate::db::queries::{Filters, Kind};
use crate::db::rows::{csv_header, CsvCells, Item};

/// Most rows a synchronous export serves.
pub const SYNC_MAX_ROWS: i64 = 10_000;
/// Bytes buffered before a chunk is sent.
const CHUNK_BYTES: usize = 64 * 1024;

/// What to export, with sources already resolved against the caller's scope.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    /// Which list.
    pub kind: Kind,
    /// Resolved filters.
    pub filters: Filters,
    /// Row order.
    pub order: Order,
    /// Records: add the payload column.
    pub include_payload: bool,
    /// Formula-looking text cells guarded or raw (`--csv-raw-formulas`).
    pub cells: CsvCells,
}

fn empty_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(CHUNK_BYTES + 4096))
}

/// A CSV writer into memory, starting with the header of `kind`.
pub fn writer(kind: Kind, include_payload: bool) -> csv::Result<csv::Writer<Vec<u8>>> {
    let mut w = empty_writer();
    w.write_record(csv_header(kind, include_payload))?;
    Ok(w)
}

/// Takes what `w` has written so far (`w` goes on with an empty buffer).
pub fn take(w: &mut csv::Writer<Vec<u8>>) -> std::io::Result<Vec<u8>> {
    std::mem::replace(w, empty_writer())
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// A pooled connection inside a read-only repeatable-read transaction. Its
/// drop ends the transaction (a rollback: nothing was written) before the
/// connection can serve anyone else, also when the HTTP client goes away
/// mid-stream.
pub struct ReadTx(Option<deadpool_postgres::Object>);

impl ReadTx {
    /// Begins the transaction on `client`.
    pub async fn begin(client: deadpool_postgres::Object) -> Result<ReadTx, tokio_postgres::Error> {
        client.batch_execute(crate::db::SNAPSHOT_BEGIN).await?;
        Ok(ReadTx(Some(client)))
    }

    /// The connection.
    pub fn client(&self) -> &tokio_postgres::Client {
        self.0.as_deref().expect("present until dropped")
    }
}

impl Drop for ReadTx {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if client.batch_execute("rollback").await.is_err() {
                        // Unknown state: keep it out of the pool.
                        drop(deadpool_postgres::Object::take(client));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(client)),
        }
    }
}

struct Streaming {
    /// Held so the connection is not handed to anyone else mid-stream.
    _tx: ReadTx,
    rows: Pin<Box<RowStream>>,
    w: csv::Writer<Vec<u8>>,
    kind: Kind,
    cells: CsvCells,
    done: bool,
}

/// The HTTP body for `rows` (of `kind`), CSV in chunks of about 64 KiB.
/// A database error mid-stream aborts the body (the client sees a truncated
/// transfer, never a CSV that silently lacks rows).
pub fn csv_body(
    tx: ReadTx,
    rows: RowStream,
    kind: Kind,
    include_payload: bool,
    cells: CsvCells,
) -> csv::Result<Body> {
    let st = Streaming {
        _tx: tx,
        rows: Box::pin(rows),
        w: writer(kind, include_payload)?,
        kind,
        cells,
        done: false,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.rows.next().await {
                Some(Ok(row)) => {
                    let written = Item::from_row(st.kind, &row)
                        .map_err(|e| e.to_string())
                        .and_then(|item| {
                            item.write_csv(&mut st.w, st.cells)
                                .map_err(|e| e.to_string())
                        });
                    if let Err(e) = written {
                        return Some((Err(abort(&mut st, &e)), st));
                    }
                    if st.w.get_ref().len() >= CHUNK_BYTES {
                        return Some((take(&mut st.w).map(Bytes::from), st));
                    }
                }
                Some(Err(e)) => {
                    let e = e.to_string();
                    return Some((Err(abort(&mut st, &e)), st));
                }
                None => {
                    st.done = true;
                    return Some((take(&mut st.w).map(Bytes::from), st));
                }
            }
        }
    });
    Ok(Body::from_stream(stream))
}

fn abort(st: &mut Streaming, e: &str) -> std::io::Error {
    st.done = true;
    tracing::error!(error = %e, kind = st.kind.name(), "CSV export aborted");
    std::io::Error::other("export aborted")
}
